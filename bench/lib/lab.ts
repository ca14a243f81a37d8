// Lab set-up shared by the guest benchmarks: a private lab state, pinning, fabric faults.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, join } from 'node:path';
import { parse, stringify } from 'yaml';
import { labNodeArgs } from '../../src/common/node-options.ts';

/**
 * A private LAB_STATE and LAB_DATA for one benchmark run. Must run before src/lab/* is
 * imported (paths.ts reads the environment once), hence the dynamic imports in callers.
 */
export function privateLabDirs(prefix: string): string {
  const state = mkdtempSync(`/run/${prefix}-`);
  process.env.LAB_STATE = state;
  process.env.LAB_DATA = state;
  return state;
}

/**
 * The CPUs every lab process (the direct-attach servers too, so the paths stay comparable; not
 * QEMU) runs on: NVME_BENCH_PIN, `none` for unpinned, by default the machine's last CPU. A frame
 * from one lab process to the next then wakes its receiver on the same CPU, which costs the
 * sender a few µs instead of a cross-CPU wake-up's tens (design notes §8; the pairs measured are
 * in docs/performance.md), while QEMU keeps every CPU for its vCPUs.
 */
export function labCpus(): string | undefined {
  const pin = process.env.NVME_BENCH_PIN;
  if (pin === 'none') return undefined;
  if (pin) return pin;
  const n = availableParallelism();
  return n > 1 ? String(n - 1) : undefined;
}

/**
 * Brings `topology` (a name or a file) up for a benchmark in the private lab of `state`
 * (privateLabDirs): NVME_BENCH_VCPUS and NVME_BENCH_LINKS applied, every lab process on labCpus().
 */
export async function benchUp(topology: string, state: string, o: { transport?: import('../../src/lab/topology.ts').Transport } = {}) {
  // Imported here, not above: src/lab reads LAB_STATE once, which privateLabDirs has set by now.
  const { up, topologyFile } = await import('../../src/lab/lab.ts');
  return up(benchTopology(topologyFile(topology), state), { ...o, pinLab: labCpus() });
}

/** A lab benchUp brought up. */
export type BenchLab = Awaited<ReturnType<typeof benchUp>>;

/** The topology file to bring up: as shipped, or a copy with NVME_BENCH_VCPUS and NVME_BENCH_LINKS applied. */
export function benchTopology(file: string, state: string): string {
  const vcpus = process.env.NVME_BENCH_VCPUS;
  const links = process.env.NVME_BENCH_LINKS;
  if (!vcpus && !links) return file;
  // A copy of the topology beside the lab's state: every guest with that many vCPUs, every
  // HI and DI with that many links.
  type Station = { links?: number };
  const topo = parse(readFileSync(file, 'utf8')) as { hosts?: { cpus?: number; hi?: Station }[]; vms?: { cpus?: number }[]; dis?: Station[] };
  if (vcpus) for (const vm of [...(topo.hosts ?? []), ...(topo.vms ?? [])]) vm.cpus = Number(vcpus);
  if (links) for (const s of [...(topo.hosts ?? []).map((h) => (h.hi ??= {})), ...(topo.dis ?? [])]) s.links = Number(links);
  const copy = join(state, basename(file));
  writeFileSync(copy, stringify(topo));
  return copy;
}

/**
 * QEMU's threads after the VM is up: NVME_BENCH_QEMU_PIN puts all of them on those CPUs, then
 * NVME_BENCH_VCPU_PIN its vCPU threads (from QMP query-cpus-fast) on theirs.
 */
export async function placeVm(vm: { name: string; pid: number; qmp: string }): Promise<void> {
  const { execFileSync } = await import('node:child_process');
  const { qmp } = await import('../../src/lab/qmp.ts');
  const all = process.env.NVME_BENCH_QEMU_PIN;
  const vcpus = process.env.NVME_BENCH_VCPU_PIN;
  if (all) execFileSync('taskset', ['-a', '-p', '-c', all, String(vm.pid)], { stdio: 'ignore' });
  if (!vcpus) return;
  const r = await qmp(vm.qmp, 'query-cpus-fast');
  const threads = (r.return as { 'thread-id': number }[] | undefined)?.map((c) => c['thread-id']) ?? [];
  if (threads.length === 0) throw new Error(`${vm.name}: QMP query-cpus-fast named no vCPU threads (${JSON.stringify(r.error)})`);
  for (const tid of threads) execFileSync('taskset', ['-p', '-c', vcpus, String(tid)], { stdio: 'ignore' });
}

/**
 * BENCH_LAB_SCHED: every lab process (the direct server too, so the paths stay comparable;
 * not QEMU) under another scheduling policy, all its threads: `fifo:N` (real-time, priority N:
 * a woken HI, switch or DI runs at once instead of queueing behind the guests' vCPUs, as
 * hardware would not wait for a host's CPU), `batch:0` (SCHED_BATCH: a woken lab process does not
 * preempt the one that woke it, which finishes its turn first) or `nice:N`. Returns the words for the
 * placement line.
 */
export async function scheduleLab(pids: readonly number[]): Promise<string> {
  const spec = process.env.BENCH_LAB_SCHED;
  if (!spec) return '';
  const m = /^(fifo|batch|nice):(-?\d+)$/.exec(spec);
  if (!m) throw new Error(`BENCH_LAB_SCHED: "${spec}" is not fifo:PRIORITY, batch:0 or nice:N`);
  const { execFileSync } = await import('node:child_process');
  const { readdirSync } = await import('node:fs');
  const { setPriority } = await import('node:os');
  for (const pid of pids) {
    if (m[1] !== 'nice') execFileSync('chrt', ['-a', m[1] === 'fifo' ? '-f' : '-b', '-p', m[2]!, String(pid)], { stdio: 'ignore' });
    else for (const tid of readdirSync(`/proc/${pid}/task`)) setPriority(Number(tid), Number(m[2]));
  }
  return m[1] === 'nice' ? `lab processes at nice ${m[2]}` : `lab processes SCHED_${m[1].toUpperCase()} ${m[2]}`;
}

export const placementText = (cpus = labCpus()) =>
  [
    cpus ? `lab processes pinned to CPU ${cpus}` : 'lab processes unpinned',
    process.env.NVME_BENCH_QEMU_PIN ? `QEMU on CPU ${process.env.NVME_BENCH_QEMU_PIN}` : '',
    process.env.NVME_BENCH_VCPU_PIN ? `its vCPUs on CPU ${process.env.NVME_BENCH_VCPU_PIN}` : '',
    process.env.NVME_BENCH_VCPUS ? `${process.env.NVME_BENCH_VCPUS} vCPU(s)` : '',
    process.env.NVME_BENCH_LINKS ? `${process.env.NVME_BENCH_LINKS} link(s) per station` : '',
    `lab processes' node options ${labNodeArgs().join(' ') || 'none'}`,
  ].filter((x) => x !== '').join(', ');

/** The faults bench paths set in the switch: frame loss (a probability), added one-way latency (ms). */
export interface FabricFault {
  loss?: number;
  latency?: number;
}

export interface FabricFaults {
  /** Set on every port; what is not given goes back to none. */
  set(fault: FabricFault): Promise<void>;
  /** Frames lost on purpose so far, summed over the switch's ports. */
  lost(): Promise<number>;
  close(): void;
}

/**
 * Faults on every port of the lab's switch, on the way out of the switch only, so each frame
 * meets them once on its way from one station to another: a loss probability once, a latency
 * once per crossing (the one-way latency a link between the two stations would add).
 */
export async function fabricFaults(state: string, switchProcess = 'sw'): Promise<FabricFaults> {
  const { SwitchControl } = await import('../../src/fabric/switch/control.ts');
  const ctl = await SwitchControl.connect(join(state, 'sockets', switchProcess, 'control.sock'));
  type Report = { faults: { tx: { lost: number } } };
  const ports = async () => (await ctl.must({ counters: true })).ports as Record<string, Report>;
  const names = Object.keys(await ports());
  return {
    async set(fault) {
      for (const port of names) await ctl.must({ port, dir: 'tx', set: { loss: fault.loss ?? 0, latency: fault.latency ?? 0 } });
    },
    async lost() {
      return Object.values(await ports()).reduce((n, r) => n + r.faults.tx.lost, 0);
    },
    close: () => ctl.close(),
  };
}
