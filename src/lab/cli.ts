// src/lab — the `lab` command: topologies, QEMU and its chroot, lab processes, the guest agent.
// It may import src/common and src/manager; the device, fabric, HI and DI processes it starts
// are run by path, never imported.
//
// The `lab` command line: one entry per command, each with its own --help.
//
// Exit status: 0 done; 1 the lab failed (the message says what and where to look); 2 the
// command was used wrongly; 130 interrupted (Ctrl-C, SIGTERM), after taking down what it
// started. `lab exec` exits with the guest command's status, and with 255 when the lab itself
// failed (no lab, no such VM, the agent did not answer), as ssh does.
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { consoleUrl } from '../manager/api.ts';
import { type ApiCall, ManagerClient } from '../manager/client.ts';
import type { LinkView } from '../manager/links.ts';
import type { FlowResult } from '../manager/manager.ts';
import type { Assignment } from '../manager/table.ts';
import { stateRoot } from './paths.ts';
import { agentExec } from './agent.ts';
import { captureLink } from './capture.ts';
import { FAULT_WORDS, faultText, parseFaultWords } from './fault-words.ts';
import { catalog, catalogText } from './catalog.ts';
import { demo } from './demo.ts';
import { down, reboot, up } from './lab.ts';
import { logFile, printLog } from './logs.ts';
import { forwardSignals, interrupted, interruptible, Interrupted } from './progress.ts';
import { qmp } from './qmp.ts';
import { setup } from './setup.ts';
import { readState, requireState, vmState } from './state.ts';
import { CPU_LIST, isTransport, TRANSPORTS } from './topology.ts';
import { labStatus, sampledStatus, statusText } from './status.ts';

const EXIT = { ok: 0, failed: 1, usage: 2, execLabFailed: 255, interrupted: 130 } as const;

class UsageError extends Error {}

/** A CPU list ("1", "0-1", "0,2-3") naming only CPUs this machine has, or a UsageError naming the option. */
function checkCpuList(option: string, list: string): void {
  if (!CPU_LIST.test(list)) throw new UsageError(`${option}: expected a CPU list like "1" or "0-1", got "${list}"`);
  const cpus = availableParallelism();
  const highest = Math.max(...list.split(/[,-]/).map(Number));
  if (highest >= cpus) throw new UsageError(`${option}: no CPU ${highest} here (CPUs 0-${cpus - 1})`);
}

interface Command {
  /** The arguments after the command's name, as shown in usage lines. */
  args: string;
  summary: string;
  /** More than the summary: options, what it prints, exit status. */
  help?: string;
  options?: NonNullable<ParseArgsConfig['options']>;
  /** Takes everything after "--" as one more argument list (`lab exec`). */
  dashDash?: boolean;
  run(positionals: string[], values: Record<string, unknown>, rest: string[]): Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  setup: {
    args: '',
    summary: 'build (once, cached) the sid QEMU chroot and the guest image',
    async run(pos) {
      expectArgs(pos, 0, 'setup');
      const a = await interruptible(setup);
      console.log(`QEMU: ${a.qemuVersion} (chroot ${a.sidRoot})\nguest kernel: ${a.kernelVersion} (${a.kernel})\nguest initramfs: ${a.initrd}`);
      return EXIT.ok;
    },
  },
  list: {
    args: '',
    summary: 'the shipped topologies (names for lab up / lab demo) and what each one is',
    async run(pos) {
      expectArgs(pos, 0, 'list');
      console.log(catalogText(catalog()));
      return EXIT.ok;
    },
  },
  up: {
    args: '<topology> [--accel tcg|kvm] [--transport memif|unix] [--pin-lab CPUS]',
    summary: 'start a topology (a name from lab list, or a YAML file)',
    help: 'Starts the topology\'s processes, then its VMs, and waits until every guest agent answers.\n' +
      'Ctrl-C while it starts takes down what it started.\n  --accel tcg|kvm   default tcg (kvm is probed first and refused if a guest does not boot)\n' +
      '  --transport memif|unix   how stations reach the switch, instead of the topology\'s fabric.transport (default memif)\n' +
      '  --pin-lab CPUS   every lab process (HI, switch, DI, manager, direct servers; not QEMU) on these CPUs,\n' +
      '                   e.g. 1: hops between lab processes then wake on one CPU (the benchmarks\' placement)',
    options: { accel: { type: 'string' }, transport: { type: 'string' }, 'pin-lab': { type: 'string' } },
    async run(pos, values) {
      expectArgs(pos, 1, 'up <topology>');
      const accel = values.accel as string | undefined;
      if (accel !== undefined && accel !== 'tcg' && accel !== 'kvm') throw new UsageError(`--accel: expected tcg or kvm, got "${accel}"`);
      const transport = values.transport as string | undefined;
      if (transport !== undefined && !isTransport(transport)) throw new UsageError(`--transport: expected ${TRANSPORTS.join(' or ')}, got "${transport}"`);
      const pinLab = values['pin-lab'] as string | undefined;
      if (pinLab !== undefined) checkCpuList('--pin-lab', pinLab);
      const state = await interruptible(() => up(pos[0]!, { accel, transport, pinLab }));
      console.log(statusText({ now: await labStatus(state) }));
      return EXIT.ok;
    },
  },
  status: {
    args: '[--json] [--interval S]',
    summary: 'what is up: boot stage and agent of each VM, pid, CPU and counters of each process, links',
    help: 'The text form samples twice, --interval seconds apart (default 1), and shows how much each\n' +
      'counter moved, so "stuck" and "slow" look different. --json prints one sample as data.\n' +
      '  --json           per VM: boot stage (firmware, kernel, init, ready, panic, stopped) and agent state;\n' +
      '                   per process: pid, cpuSeconds, counters (its control socket\'s reply), channels\n' +
      '  --interval S     seconds between the two samples of the text form (0: one sample)',
    options: { json: { type: 'boolean' }, interval: { type: 'string' } },
    async run(pos, values) {
      expectArgs(pos, 0, 'status');
      const interval = values.interval === undefined ? 1 : Number(values.interval);
      if (!(interval >= 0)) throw new UsageError(`--interval: expected seconds, got "${values.interval}"`);
      const s = readState();
      if (values.json) {
        console.log(JSON.stringify(s ? await labStatus(s) : null, null, 2));
        return EXIT.ok;
      }
      console.log(s ? statusText(await sampledStatus(s, interval * 1000)) : 'no lab is up');
      return EXIT.ok;
    },
  },
  logs: {
    args: '[-f] [--qemu] <vm|process>',
    summary: "a VM's console or a lab process's output (-f: keep following)",
    help: '  -f, --follow     keep printing what is appended, until Ctrl-C\n' +
      "  --qemu           a VM's QEMU log instead of its console\n" +
      'Logs stay after lab down (and after a failed lab up) until the next lab up.',
    options: { follow: { type: 'boolean', short: 'f' }, qemu: { type: 'boolean' } },
    async run(pos, values) {
      expectArgs(pos, 1, 'logs [-f] <vm|process>');
      const file = logFile(pos[0]!, { qemu: values.qemu === true });
      await interruptible(() => printLog(file, { follow: values.follow === true, signal: interrupted }));
      return EXIT.ok;
    },
  },
  exec: {
    args: '<vm> [--timeout S] -- <command...>',
    summary: 'run a command in a guest; prints its output, exits with its status',
    help: 'One argument after "--" is a shell command line; several are quoted as words.\n' +
      '  --timeout S      give up after S seconds (default 600)\n' +
      `Exit status: the guest command's; ${EXIT.execLabFailed} when the lab failed (no lab, no such VM, no answer).`,
    options: { timeout: { type: 'string' } },
    dashDash: true,
    async run(pos, values, command) {
      expectArgs(pos, 1, 'exec <vm> -- <command...>');
      if (!command.length) throw new UsageError('exec: no command after "--"');
      const timeout = values.timeout === undefined ? 600 : Number(values.timeout);
      if (!(timeout > 0)) throw new UsageError(`--timeout: expected seconds, got "${values.timeout}"`);
      const vm = vmState(requireState(), pos[0]!);
      const script = command.length === 1 ? command[0]! : command.map(shellQuote).join(' ');
      const r = await agentExec(vm.agent, script, { timeoutMs: timeout * 1000 });
      process.stdout.write(r.stdout);
      process.stderr.write(r.stderr);
      return r.status;
    },
  },
  qmp: {
    args: '<vm> <command> [<json arguments>]',
    summary: 'send one QMP command to a VM, print the reply (exit 1 on a QMP error)',
    async run(pos) {
      if (pos.length < 2 || pos.length > 3) throw new UsageError('qmp: expected "lab qmp <vm> <command> [<json arguments>]"');
      let args: object | undefined;
      if (pos[2] !== undefined) {
        try {
          args = JSON.parse(pos[2]);
        } catch {
          throw new UsageError(`qmp: arguments are not valid JSON: ${pos[2]}`);
        }
      }
      const reply = await qmp(vmState(requireState(), pos[0]!).qmp, pos[1]!, args);
      console.log(JSON.stringify(reply.error ?? reply.return, null, 2));
      return reply.error ? EXIT.failed : EXIT.ok;
    },
  },
  reboot: {
    args: '<vm>',
    summary: 'reboot a guest (its kernel shuts devices down) and wait for it',
    async run(pos) {
      expectArgs(pos, 1, 'reboot <vm>');
      const vm = vmState(requireState(), pos[0]!);
      await reboot(vm);
      console.log(`${vm.name} rebooted`);
      return EXIT.ok;
    },
  },
  down: {
    args: '',
    summary: 'stop everything the lab started',
    async run(pos) {
      expectArgs(pos, 0, 'down');
      const stopped = await down();
      console.log(stopped.length ? `stopped ${stopped.join(', ')}` : 'nothing was running');
      return EXIT.ok;
    },
  },
  assign: {
    args: '<host> <di>/<function> [--slot N]',
    summary: "hot-plug a DI's function into a running host's free HI slot (through the manager)",
    help: 'The DI maps the function to the host, the HI serves it, QMP device_add puts it into the\n' +
      "host's slot and the guest's pciehp probes it. Refused with the reason, nothing changed, when the\n" +
      'function is assigned already, the host has no free slot, or either is unknown.\n' +
      '  --slot N         that slot of the host\'s HI (default: its lowest free one)',
    options: { slot: { type: 'string' } },
    async run(pos, values) {
      expectArgs(pos, 2, 'assign <host> <di>/<function>');
      const slot = slotOption(values.slot);
      const r = await managerCall<FlowResult>({ op: 'assign', host: pos[0]!, function: pos[1]!, ...(slot !== undefined ? { slot } : {}) });
      console.log(`assigned ${r.assignment.di}/${r.assignment.function} to ${r.assignment.host} slot ${r.assignment.slot} (${r.ms} ms)`);
      return EXIT.ok;
    },
  },
  unassign: {
    args: '<host> <di>/<function>',
    summary: 'take a function away from a host: the guest releases it first, then HI and DI unmap it',
    help: 'A guest that does not release the device in time: reported, and the mapping stays.',
    async run(pos) {
      expectArgs(pos, 2, 'unassign <host> <di>/<function>');
      const r = await managerCall<FlowResult>({ op: 'unassign', host: pos[0]!, function: pos[1]! });
      console.log(`unassigned ${r.assignment.di}/${r.assignment.function} from ${r.assignment.host} slot ${r.assignment.slot} (${r.ms} ms)`);
      return EXIT.ok;
    },
  },
  move: {
    args: '<di>/<function> <host> [--slot N]',
    summary: 'unassign a function from its host, then assign it to another',
    options: { slot: { type: 'string' } },
    async run(pos, values) {
      expectArgs(pos, 2, 'move <di>/<function> <host>');
      const slot = slotOption(values.slot);
      const r = await managerCall<FlowResult & { from: Assignment }>({ op: 'move', function: pos[0]!, host: pos[1]!, ...(slot !== undefined ? { slot } : {}) });
      console.log(`moved ${r.assignment.di}/${r.assignment.function} from ${r.from.host} slot ${r.from.slot} to ${r.assignment.host} slot ${r.assignment.slot} (${r.ms} ms)`);
      return EXIT.ok;
    },
  },
  console: {
    args: '[--json]',
    summary: "the web console's URL: the running topology, live link counters, assign and unassign by clicking",
    help: 'The manager serves the console on 127.0.0.1; the URL carries the API token in its fragment\n' +
      '(#token=…), so keep it to yourself. Open it in a browser on this machine (or through an ssh tunnel).\n' +
      '  --json           {"url": …}',
    options: { json: { type: 'boolean' } },
    async run(pos, values) {
      expectArgs(pos, 0, 'console');
      // Connecting first: a manager that is not running (or a stale api.json) is said plainly.
      (await ManagerClient.connect(managerDir())).close();
      const url = consoleUrl(managerDir());
      console.log(values.json ? JSON.stringify({ url }) : url);
      return EXIT.ok;
    },
  },
  links: {
    args: '[--json]',
    summary: "the fabric's links (one switch port each): station, up or down, frame counters, faults",
    options: { json: { type: 'boolean' } },
    async run(pos, values) {
      expectArgs(pos, 0, 'links');
      const { links } = await managerCall<{ links: LinkView[] }>({ op: 'links' });
      if (values.json) console.log(JSON.stringify(links, null, 2));
      else for (const l of links) console.log(linkLine(l));
      return EXIT.ok;
    },
  },
  fault: {
    args: '<link> <fault...> [--dir tx|rx] [--json]',
    summary: 'set faults on a link (through the manager): loss=… delay=… down, up, clear',
    help: '<link> is a switch port (lab links lists them: hi-host-a0, di0), or an HI, DI or host name\n' +
      'for all its links. Faults stay until changed; several words combine.\n' +
      `${FAULT_WORDS}\n` +
      '  --dir tx|rx      only frames to the station (tx) or from it (rx); default both\n' +
      '  --json           each port\'s settings after the change',
    options: { dir: { type: 'string' }, json: { type: 'boolean' } },
    async run(pos, values) {
      if (pos.length < 2) throw new UsageError('expected "lab fault <link> <fault...>"');
      const dir = values.dir as string | undefined;
      if (dir !== undefined && dir !== 'tx' && dir !== 'rx') throw new UsageError(`--dir: expected tx or rx, got "${dir}"`);
      let set;
      try {
        set = parseFaultWords(pos.slice(1));
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
      const r = await managerCall<{ ports: Record<string, { tx: Record<string, unknown>; rx: Record<string, unknown> }> }>({ op: 'fault', link: pos[0]!, set, ...(dir ? { dir } : {}) });
      if (values.json) console.log(JSON.stringify(r.ports, null, 2));
      else for (const [port, c] of Object.entries(r.ports)) console.log(`${port}: tx ${faultText(c.tx)}; rx ${faultText(c.rx)}`);
      return EXIT.ok;
    },
  },
  capture: {
    args: '<link|all> [-w file.pcap] [--seconds S] [--json]',
    summary: 'capture frames on a link (or on all) as the switch sees them, through the manager',
    help: 'Without -w, one line per frame (time, MACs, PCIeOE type, channel, sequence, ACK); with -w,\n' +
      'a pcap file for tshark/Wireshark (lab/wireshark has the PCIeOE dissector). Until Ctrl-C or --seconds.\n' +
      '"all" records every port into one file: a frame the switch forwards is in it twice (in and out).\n' +
      '  -w FILE          write the frames to FILE (classic pcap)\n' +
      '  --seconds S      stop after S seconds\n' +
      '  --json           at the end, {"link","ports","frames","file"} instead of the frame lines',
    options: { write: { type: 'string', short: 'w' }, seconds: { type: 'string' }, json: { type: 'boolean' } },
    async run(pos, values) {
      expectArgs(pos, 1, 'capture <link|all>');
      const seconds = values.seconds === undefined ? undefined : Number(values.seconds);
      if (seconds !== undefined && !(seconds > 0)) throw new UsageError(`--seconds: expected seconds, got "${values.seconds}"`);
      const write = values.write as string | undefined;
      const quiet = values.json === true || write !== undefined;
      const client = await ManagerClient.connect(managerDir());
      try {
        const r = await interruptible(() =>
          captureLink(client, pos[0]!, {
            write,
            seconds,
            signal: interrupted,
            onStart: (ports) => values.json || console.error(`capturing ${ports.join(', ')}${write ? ` into ${write}` : ''}; Ctrl-C stops`),
            onFrame: quiet ? undefined : (line) => console.log(line),
          }),
        );
        if (values.json) console.log(JSON.stringify(r));
        else console.error(`${r.frames} frames${r.file ? ` in ${r.file}` : ''}`);
      } finally {
        client.close();
      }
      return EXIT.ok;
    },
  },
  demo: {
    args: '[<topology>]',
    summary: 'the main job: up (two-hosts-shared-card), fio verify on every NVMe namespace of every guest, down',
    help:
      'Exit status 0 when every namespace verified, 1 otherwise. Ctrl-C takes the lab down.\n' +
      '`lab demo hotplug` runs the hot-plug flows instead, each step timed: assign di/fn0 to host-a, fio write + verify, move to host-b, fio verify of the same data, unassign.',
    async run(pos) {
      if (pos.length > 1) throw new UsageError('demo: expected at most one topology');
      return (await interruptible(() => demo(pos[0] ?? 'two-hosts-shared-card'))) ? EXIT.ok : EXIT.failed;
    },
  },
};

function slotOption(value: unknown): number | undefined {
  const slot = value === undefined ? undefined : Number(value);
  if (slot !== undefined && !(Number.isInteger(slot) && slot >= 0)) throw new UsageError(`--slot: expected a slot number, got "${value}"`);
  return slot;
}

const managerDir = () => join(stateRoot, 'manager');

function linkLine(l: LinkView): string {
  const who = l.kind === 'hi' ? `HI ${l.station} (${l.host})` : l.kind === 'di' ? `DI ${l.station}` : l.kind === 'manager' ? 'the manager' : 'Ethernet wire';
  const faults = faultText(l.faults.tx) === faultText(l.faults.rx) ? faultText(l.faults.tx) : `tx ${faultText(l.faults.tx)}; rx ${faultText(l.faults.rx)}`;
  return `${l.port.padEnd(14)} ${who.padEnd(24)} ${l.up ? 'up  ' : 'DOWN'}  rx ${l.rxFrames} tx ${l.txFrames} frames, ${l.dropped} dropped; ${faults}`;
}

/** One call to the lab's manager, through its API (src/manager/api.ts). */
async function managerCall<T>(req: ApiCall): Promise<T> {
  const client = await ManagerClient.connect(managerDir());
  try {
    return await client.call<T>(req);
  } finally {
    client.close();
  }
}

const usageLine = (name: string, c: Command) => `lab ${name}${c.args ? ` ${c.args}` : ''}`;

function usage(): string {
  const width = 30;
  const lines = Object.entries(COMMANDS).map(([name, c]) => {
    const form = `  ${name}${c.args ? ` ${c.args}` : ''}`;
    return form.length < width ? `${form.padEnd(width)}${c.summary}` : `${form}\n${' '.repeat(width)}${c.summary}`;
  });
  return `usage: lab <command> [--help]\n${lines.join('\n')}`;
}

function commandHelp(name: string, c: Command): string {
  return `usage: ${usageLine(name, c)}\n${c.summary}${c.help ? `\n\n${c.help}` : ''}`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    const topic = name === 'help' ? rest[0] : undefined;
    if (topic !== undefined) {
      const c = COMMANDS[topic];
      if (!c) throw new UsageError(`unknown command "${topic}"`);
      console.log(commandHelp(topic, c));
    } else console.log(usage());
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  const c = Object.hasOwn(COMMANDS, name) ? COMMANDS[name]! : undefined;
  if (!c) throw new UsageError(`unknown command "${name}"`);
  const dash = c.dashDash ? rest.indexOf('--') : -1;
  const own = dash >= 0 ? rest.slice(0, dash) : rest;
  if (own.includes('--help') || own.includes('-h')) {
    console.log(commandHelp(name, c));
    return EXIT.ok;
  }
  if (c.dashDash && dash < 0) throw new UsageError(`${name}: expected "${usageLine(name, c)}"`);
  let parsed;
  try {
    parsed = parseArgs({ args: own, options: c.options ?? {}, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return c.run(parsed.positionals, parsed.values, dash >= 0 ? rest.slice(dash + 1) : []);
}

function expectArgs(args: string[], n: number, form: string) {
  if (args.length !== n) throw new UsageError(`expected "lab ${form}"`);
}

const shellQuote = (w: string) => (/^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`);

forwardSignals();
const argv = process.argv.slice(2);
// In `lab exec` every failure of the lab itself has one status no ordinary command uses.
const labFailure = (code: number) => (argv[0] === 'exec' ? EXIT.execLabFailed : code);
try {
  process.exitCode = await main(argv);
  // `lab logs -f` ends with Ctrl-C: that is how it is meant to end.
  if (argv[0] === 'logs' && interrupted.aborted) process.exitCode = EXIT.ok;
} catch (err) {
  if (err instanceof UsageError) {
    const c = argv[0] !== undefined && Object.hasOwn(COMMANDS, argv[0]) ? COMMANDS[argv[0]] : undefined;
    console.error(`lab: ${err.message}\n\n${c ? commandHelp(argv[0]!, c) : usage()}`);
    process.exitCode = labFailure(EXIT.usage);
  } else if (err instanceof Interrupted || interrupted.aborted) {
    console.error(`lab: ${interrupted.reason?.message ?? (err as Error).message} (anything it had started is stopped)`);
    process.exitCode = labFailure(EXIT.interrupted);
  } else {
    console.error(`lab: ${(err as Error).message}`);
    process.exitCode = labFailure(EXIT.failed);
  }
}
