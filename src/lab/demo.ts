// The lab's main job: bring up a topology, run a data-verifying fio on every NVMe namespace
// every guest sees (QEMU's own controllers, directly attached models, remote functions
// reached over PCIeOE alike), all guests at once, print each result, take the lab down.
import { agentExec } from './agent.ts';
import { timedAssign, timedMove, timedUnassign } from './hotplug-flows.ts';
import { down, up } from './lab.ts';
import { unlessInterrupted } from './progress.ts';
import { requireState, type VmState } from './state.ts';

export interface DiskCheck {
  vm: string;
  /** Namespace device and its controller's model and serial, as the guest sees them. */
  device: string;
  passed: boolean;
  summary: string;
}

export function fioVerifyCommand(dev: string, size = '64M'): string {
  return [
    'fio --name=lab-verify --filename=' + dev,
    '--ioengine=libaio --direct=1 --rw=randwrite --bs=4k --iodepth=32',
    `--size=${size} --verify=crc32c --verify_fatal=1 --do_verify=1`,
  ].join(' ');
}

/** The lines of fio's report that say what ran and how it went. */
export function fioSummary(out: string): string {
  return out
    .split('\n')
    .filter((l) => /err=|^\s*(read|write): IOPS|^\s*(READ|WRITE): bw|verify/.test(l))
    .join('\n');
}

/** Prints "<dev> <model> <serial>" per NVMe namespace block device of the guest. */
const LIST_NAMESPACES = `for b in /sys/block/nvme*n*; do [ -e "$b" ] || continue; c=$b/device; echo "/dev/$(basename $b) $(tr -d ' ' < $c/model) $(tr -d ' ' < $c/serial)"; done`;

async function verifyVm(vm: VmState, fioSize?: string): Promise<DiskCheck[]> {
  const list = await agentExec(vm.agent, LIST_NAMESPACES);
  const results: DiskCheck[] = [];
  for (const line of list.stdout.trim().split('\n').filter(Boolean)) {
    const [dev, model, serial] = line.split(' ');
    const r = await agentExec(vm.agent, fioVerifyCommand(dev!, fioSize));
    const out = r.stdout + r.stderr;
    const passed = r.status === 0 && /err= 0/.test(out) && !/verify: bad/i.test(out);
    results.push({ vm: vm.name, device: `${dev} (${model}, serial ${serial})`, passed, summary: passed ? fioSummary(out) : out.trim() });
  }
  return results;
}

export async function verifyDisks(fioSize?: string): Promise<DiskCheck[]> {
  const state = requireState();
  return (await Promise.all(state.vms.map((vm) => verifyVm(vm, fioSize)))).flat();
}

export async function demo(topology: string): Promise<boolean> {
  if (topology === 'hotplug') return hotplugDemo();
  await up(topology);
  try {
    // On Ctrl-C the guests' fio is left to die with them: the lab goes down at once.
    const results = await unlessInterrupted(verifyDisks());
    for (const r of results) {
      console.log(`\n=== ${r.vm} ${r.device}: fio verify=crc32c ${r.passed ? 'PASS' : 'FAIL'} ===`);
      console.log(r.summary);
    }
    const ok = results.length > 0 && results.every((r) => r.passed);
    console.log(`\n${ok ? 'PASS' : 'FAIL'}: ${results.filter((r) => r.passed).length}/${results.length} NVMe namespaces verified`);
    return ok;
  } finally {
    await down();
  }
}

// `lab demo hotplug`: the hot-plug flows on the `hotplug` topology (lab/topologies/hotplug.yaml:
// its di/fn0 is the NVMe function with this serial), each step timed: assign to host-a, fio
// writes and verifies, move to host-b, fio verifies the same data there, unassign.
const HOTPLUG = { fn: 'di/fn0', serial: 'PCIEOE-HOTPLUG-FN0', from: 'host-a', to: 'host-b', size: '32M' };

/** The demo's fio job; with `verifyOnly` it checks the data an earlier run of the same job wrote. */
function fioPatternCommand(dev: string, verifyOnly: boolean): string {
  return `${fioVerifyCommand(dev, HOTPLUG.size).replace('--name=lab-verify', '--name=lab-hotplug')}${verifyOnly ? ' --verify_only' : ''}`;
}

async function hotplugDemo(): Promise<boolean> {
  const { fn, serial, from, to } = HOTPLUG;
  await up('hotplug');
  const vm = (name: string) => requireState().vms.find((v) => v.name === name)!;
  const steps: { step: string; ms: number; ok: boolean }[] = [];
  const run = async <T>(step: string, work: () => Promise<T>, ok: (v: T) => boolean = () => true, detail: (v: T) => string = () => ''): Promise<T> => {
    const start = performance.now();
    const v = await unlessInterrupted(work());
    const s = { step, ms: Math.round(performance.now() - start), ok: ok(v) };
    steps.push(s);
    const more = detail(v);
    console.log(`${s.ok ? 'ok  ' : 'FAIL'} ${step}: ${s.ms} ms${more ? ` (${more})` : ''}`);
    return v;
  };
  const fio = async (host: string, dev: string, verifyOnly: boolean) => {
    const r = await agentExec(vm(host).agent, fioPatternCommand(dev, verifyOnly));
    const out = r.stdout + r.stderr;
    return { passed: r.status === 0 && /err= 0/.test(out) && !/verify: bad/i.test(out), out };
  };
  try {
    const a = await run(`assign ${fn} to ${from} (to nvme driver bound)`, () => timedAssign(from, fn, serial), () => true, (t) => `${t.device}; manager ${t.managerMs} ms`);
    const w = await run(`fio write + verify (crc32c, ${HOTPLUG.size}) on ${from}`, () => fio(from, a.device!, false), (r) => r.passed);
    if (!w.passed) console.log(w.out);
    const m = await run(`move ${fn} to ${to} (to nvme driver bound)`, () => timedMove(fn, to, serial), () => true, (t) => `${t.device}; manager ${t.managerMs} ms`);
    const v = await run(`fio verify of the same data on ${to}`, () => fio(to, m.device!, true), (r) => r.passed);
    if (!v.passed) console.log(v.out);
    await run(`unassign ${fn} from ${to} (to slot empty)`, () => timedUnassign(to, fn, serial), () => true, (t) => `manager ${t.managerMs} ms`);
    const ok = steps.every((s) => s.ok);
    console.log(`\n${ok ? 'PASS' : 'FAIL'}: ${steps.filter((s) => s.ok).length}/${steps.length} steps, ${steps.reduce((n, s) => n + s.ms, 0)} ms in all`);
    return ok;
  } catch (err) {
    console.log(`FAIL: ${(err as Error).message}`);
    return false;
  } finally {
    await down();
  }
}
