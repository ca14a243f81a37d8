// The `lab` command line.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { agentExec } from './agent.ts';
import { demo } from './demo.ts';
import { down, reboot, statusText, up } from './lab.ts';
import { qmp } from './qmp.ts';
import { setup } from './setup.ts';
import { forwardSignals } from './progress.ts';
import { readState, requireState, vmState } from './state.ts';
import { TopologyError } from './topology.ts';

const USAGE = `usage: lab <command>
  setup                         build (once, cached) the sid QEMU chroot and the guest image
  up <topology> [--accel tcg|kvm]
                                start a topology (a name in lab/topologies or a YAML file)
  status                        what is up, where each process runs, log and QMP paths
  exec <vm> [--timeout S] -- <command...>
                                run a command in a guest; prints its output, exits with its status
  qmp <vm> <command> [<json arguments>]
                                send one QMP command to a VM, print the reply
  reboot <vm>                   reboot a guest (its kernel shuts devices down) and wait for it
  down                          stop everything the lab started
  demo [<topology>]             the main job: up (two-hosts-shared-card), fio verify on every NVMe
                                namespace of every guest, down`;

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'setup': {
      expectArgs(rest, 0, 'setup');
      const a = await setup();
      console.log(`QEMU: ${a.qemuVersion} (chroot ${a.sidRoot})\nguest kernel: ${a.kernelVersion} (${a.kernel})\nguest initramfs: ${a.initrd}`);
      return 0;
    }
    case 'up': {
      const { values, positionals } = parse(rest, { accel: { type: 'string' } });
      expectArgs(positionals, 1, 'up <topology>');
      const accel = values.accel as string | undefined;
      if (accel !== undefined && accel !== 'tcg' && accel !== 'kvm') throw new UsageError(`--accel: expected tcg or kvm, got "${accel}"`);
      console.log(statusText(await up(positionals[0]!, { accel })));
      return 0;
    }
    case 'status': {
      expectArgs(rest, 0, 'status');
      const s = readState();
      console.log(s ? statusText(s) : 'no lab is up');
      return 0;
    }
    case 'exec': {
      const dash = rest.indexOf('--');
      if (dash < 0) throw new UsageError('exec: expected "lab exec <vm> -- <command...>"');
      const { values, positionals } = parse(rest.slice(0, dash), { timeout: { type: 'string' } });
      expectArgs(positionals, 1, 'exec <vm> -- <command...>');
      const command = rest.slice(dash + 1);
      if (!command.length) throw new UsageError('exec: no command after "--"');
      const timeout = values.timeout === undefined ? 600 : Number(values.timeout);
      if (!(timeout > 0)) throw new UsageError(`--timeout: expected seconds, got "${values.timeout}"`);
      const vm = vmState(requireState(), positionals[0]!);
      // One argument is taken as a shell command line; several are quoted as words.
      const script = command.length === 1 ? command[0]! : command.map(shellQuote).join(' ');
      const r = await agentExec(vm.agent, script, { timeoutMs: timeout * 1000 });
      process.stdout.write(r.stdout);
      process.stderr.write(r.stderr);
      return r.status;
    }
    case 'qmp': {
      if (rest.length < 2 || rest.length > 3) throw new UsageError('qmp: expected "lab qmp <vm> <command> [<json arguments>]"');
      let args: object | undefined;
      if (rest[2] !== undefined) {
        try {
          args = JSON.parse(rest[2]);
        } catch {
          throw new UsageError(`qmp: arguments are not valid JSON: ${rest[2]}`);
        }
      }
      const reply = await qmp(vmState(requireState(), rest[0]!).qmp, rest[1]!, args);
      console.log(JSON.stringify(reply.error ?? reply.return, null, 2));
      return reply.error ? 1 : 0;
    }
    case 'reboot': {
      expectArgs(rest, 1, 'reboot <vm>');
      const vm = vmState(requireState(), rest[0]!);
      await reboot(vm);
      console.log(`${vm.name} rebooted`);
      return 0;
    }
    case 'down': {
      expectArgs(rest, 0, 'down');
      const stopped = await down();
      console.log(stopped.length ? `stopped ${stopped.join(', ')}` : 'nothing was running');
      return 0;
    }
    case 'demo': {
      if (rest.length > 1) throw new UsageError('demo: expected at most one topology');
      return (await demo(rest[0] ?? 'two-hosts-shared-card')) ? 0 : 1;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command "${cmd}"`);
  }
}

function parse(args: string[], options: NonNullable<ParseArgsConfig['options']>) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function expectArgs(args: string[], n: number, form: string) {
  if (args.length !== n) throw new UsageError(`expected "lab ${form}"`);
}

const shellQuote = (w: string) => (/^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`);

forwardSignals();
try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  if (err instanceof UsageError) {
    console.error(`lab: ${err.message}\n\n${USAGE}`);
    process.exitCode = 2;
  } else {
    console.error(`lab: ${err instanceof TopologyError ? err.message : (err as Error).message}`);
    process.exitCode = 1;
  }
}
