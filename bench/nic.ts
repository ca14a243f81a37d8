// The NIC paths side by side, and PCIeOE sharing the switch with ordinary Ethernet (issue 14).
// Host A has three NICs at once in one lab (lab/topologies/nic-bench.yaml, bench/lib/nic-paths.ts),
// each in a subnet of its own, host B one (QEMU's virtio-net) with an address in each:
//   QEMU virtio-net   QEMU's own virtio-net on the lab switch
//   model direct      the virtio-net model over vfio-user
//   model PCIeOE      the model in a DI's card, through HI + switch
// Per path: iperf3 TCP throughput A -> B and B -> A (the median of NIC_BENCH_ROUNDS rounds, default
// 3, 1 with --quick; each round one run each way per path, the paths in turn, the order rotated
// each round), and PINGS pings A -> B (mean and p99), after WARM_UP_SECONDS of iperf3 each way
// per path that are not recorded. One lab, the paths alternating: the machine's drift between
// labs minutes apart no longer decides the ratios (one lab per path put PCIeOE / direct anywhere
// from 37 to 108 %).
// Co-existence, in nic-coexistence (both hosts also have an NVMe function of the DI's card):
// fio 4 KiB random reads (QD 64) on both hosts' NVMe functions at once, alone and while iperf3
// TCP runs A -> B through the same switch, with the switch's per-port receive counters over
// each case. Targets: model PCIeOE >= 80 % of model direct, model direct >= 50 % of QEMU's,
// NVMe IOPS under iperf3 >= 80 % of alone.
//
//   npm run bench -- nic [--quick]   (NVME_BENCH_SECONDS per iperf3/fio run, NVME_BENCH_PIN: where the lab processes run, as in nvme.ts)
//
// NIC_BENCH_PATHS=direct,pcieoe measures only those paths (of qemu, direct, pcieoe), still in
// turn in one nic-bench lab, and no co-existence case: a short A/B comparison of a change.
// NIC_BENCH_ONLY=coexistence runs only the co-existence case (nic-coexistence, no NIC figures),
// NIC_BENCH_ROUNDS times (default 1) alone / under iperf3 alternating, medians last; each case
// also prints each lab process's CPU and, per switch port, frames out, ring-full waits and the
// most frames queued for it (sampled), so where the NVMe IOPS went can be told apart.
// NIC_BENCH_LOAD_RATE=20M runs the iperf3 load at that rate (iperf3 -b) rather than unbounded;
// NIC_BENCH_LOAD_RATE=2M,0 runs a loaded case per rate in each round (0: unbounded; lo:2M: iperf3
// within host A over its loopback, a control that leaves the NIC and the fabric alone).
//
// NIC_BENCH_AB='[{...},{...}]' (NIC_BENCH_ROUNDS rounds, default 4) compares NIC tunables side by
// side in one nic-coexistence lab instead: each round runs iperf3 A -> B and B -> A under each
// variant in turn, the DI's NIC tuned between runs ({"nic":"net0","tune":variant} on its
// control socket, src/di/main.ts), so the variants share the lab and the machine's drift; the
// means per variant are printed last (with NIC_BENCH_PROF=1, where the DI spent its time over
// all of them). Nothing is recorded.
//
// Each path's first iperf3 A -> B run also records the CPU each lab process (QEMU included)
// used, in % of one CPU, and prints how busy host A's vCPUs were and the interrupts each of its
// NICs took (three NICs in one guest: the idle ones' share is to be seen). NIC_BENCH_PROF=1 profiles the DI, host A's HI and the switch over the model PCIeOE's
// iperf3 A -> B run and prints where they spent their time (profiles kept in the run's directory).
import { copyFileSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { benchUp, placementText, privateLabDirs, scheduleLab } from './lib/lab.ts';
import { HOST_A_NICS, NIC_BENCH_TOPOLOGY, hostASetup, hostBSetup, ipA, ipB, type NicPath } from './lib/nic-paths.ts';

const state = privateLabDirs('lab-nicb');
const { down } = await import('../src/lab/lab.ts');
const { setup } = await import('../src/lab/setup.ts');
const { QUICK, SECONDS, guestShell, runFioOn, controllers } = await import('./lib/fio.ts');
const { record, recordSettings } = await import('./lib/results.ts');
const { SwitchControl } = await import('../src/fabric/switch/control.ts');
const { cpuMeter } = await import('./lib/cpu.ts');
const { movedCounters, profiled, stationCounters, summariseProfile } = await import('./lib/profile.ts');
type LabState = import('../src/lab/state.ts').LabState;
type Shell = import('./lib/fio.ts').Shell;
type Result = import('./lib/fio.ts').Result;

/** nic-coexistence: host A's NIC (the model PCIeOE) and both hosts' addresses (B's set at up). */
const COEX_MAC = '02:00:00:00:0a:01';
const COEX_ENDS: Ends = { a: '10.99.0.1', b: '10.99.0.2' };
/** Host A's and host B's addresses on one path. */
interface Ends {
  a: string;
  b: string;
}
const PINGS = 200;
/**
 * iperf3 rounds, each way on each path in turn; the median is a path's figure (NIC_BENCH_ROUNDS
 * outside NIC_BENCH_AB and NIC_BENCH_ONLY). One with --quick, which must finish all benchmarks in 15 minutes.
 */
const NIC_ROUNDS = Number(process.env.NIC_BENCH_ROUNDS ?? (QUICK ? 1 : 3));
/** iperf3 seconds each way before a path's figures (warmUp). */
const WARM_UP_SECONDS = 3;
const AB = process.env.NIC_BENCH_AB ? (JSON.parse(process.env.NIC_BENCH_AB) as object[]) : undefined;
/**
 * NIC_BENCH_LOAD_RATE (iperf3 -b, e.g. 20M; a list like "2M,0" runs one loaded case per rate in
 * each round, 0 unbounded): the co-existence load at a fixed rate instead of as fast as TCP goes,
 * so whether NVMe's loss follows the load's rate can be told within one round.
 */
const LOAD_RATES = (process.env.NIC_BENCH_LOAD_RATE ?? '0').split(',').map((r) => (r === '0' ? '' : r));
/** NIC_BENCH_ONLY=coexistence: the co-existence case alone (see the header). */
const COEX_ONLY = process.env.NIC_BENCH_ONLY === 'coexistence';
/** NIC_BENCH_PATHS: only these paths' figures, no co-existence case (see the header). */
const ONLY = process.env.NIC_BENCH_PATHS?.split(',');
for (const k of ONLY ?? []) if (!HOST_A_NICS.some((p) => p.key === k)) throw new Error(`NIC_BENCH_PATHS: ${k}? expected some of ${HOST_A_NICS.map((p) => p.key).join(', ')}`);
const PATHS = HOST_A_NICS.filter((p) => !ONLY || ONLY.includes(p.key));
/** What a switch port of nic-coexistence carries: its NIC wires, the manager's station, the HI and DI links. */
const carries = (port: string) => (['di-net0', 'b'].includes(port) ? 'Ethernet' : port.startsWith('manager') ? 'management' : 'PCIeOE');
const NVME_WORKLOAD = { name: 'randread 4 KiB', args: '--rw=randread --bs=4k' };

interface NicFigures {
  aToBMbps: number;
  bToAMbps: number;
  aToBRetransmits: number;
  bToARetransmits: number;
  pingMeanMs: number;
  pingP99Ms: number;
}

/** iperf3 TCP from client to server: Mb/s received, and the segments the sender retransmitted. */
const tcp = async (client: Shell, server: Shell, ip: string, seconds = SECONDS) => {
  await server('iperf3 -s -D -1');
  const end = JSON.parse(await client(`iperf3 -c ${ip} -t ${seconds} -J`)).end;
  return { mbps: (end.sum_received.bits_per_second as number) / 1e6, retransmits: (end.sum_sent.retransmits as number | undefined) ?? 0 };
};

/** PINGS pings to `ip`, 50 ms apart; mean and 99th percentile of the round trips ping printed. */
async function pings(a: Shell, ip: string): Promise<{ meanMs: number; p99Ms: number }> {
  const out = await a(`ping -c ${PINGS} -i 0.05 -W 5 ${ip}`);
  const rtts = [...out.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1])).sort((x, y) => x - y);
  if (rtts.length < PINGS * 0.95) throw new Error(`ping: ${rtts.length} of ${PINGS} answered\n${out}`);
  return { meanMs: rtts.reduce((s, x) => s + x, 0) / rtts.length, p99Ms: rtts[Math.min(rtts.length - 1, Math.ceil(rtts.length * 0.99) - 1)]! };
}

/**
 * The model PCIeOE's device counters (the DI's NIC function, from its control socket) moved by
 * `run`, printed: how many transmit batches, frames, doorbells, interrupts and receive waits a
 * direction took. Other paths run as they are.
 */
async function withNicCounters<T>(path: string, what: string, run: () => Promise<T>): Promise<T> {
  if (path !== 'model PCIeOE') return run();
  const di = join(state, 'sockets', 'di');
  const before = await stationCounters(di);
  const value = await run();
  const moved = movedCounters(before, await stationCounters(di));
  const of = (prefix: string) => moved.filter(([k]) => k.startsWith(prefix)).map(([k, d]) => `${k.slice(prefix.length)} ${d}`).join(', ');
  console.log(`${path} ${what}: device counters moved: ${of('nics.net0.')}; its wire: ${of('wires.net0.')}`);
  return value;
}

/**
 * Time each process's threads spent runnable but waiting for a CPU (/proc/PID/task/T/schedstat,
 * second field), µs since the call: on two cores, who waited for whom.
 */
function runQueueWait(procs: readonly { name: string; pid: number }[]): () => Map<string, number> {
  const waited = (pid: number) => readdirSync(`/proc/${pid}/task`).reduce((sum, t) => {
    try {
      return sum + Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[1]) / 1000;
    } catch {
      return sum; // a thread gone meanwhile
    }
  }, 0);
  const start = new Map(procs.map((p) => [p.name, waited(p.pid)]));
  return () => new Map(procs.map((p) => [p.name, waited(p.pid) - start.get(p.name)!]));
}

/** Each process's CPU and run-queue wait in % of one CPU, and the sum of the CPU. */
function cpuText(used: Map<string, number>, waited: Map<string, number>, seconds: number): string {
  const pct = (us: number) => (us / 1e4 / seconds).toFixed(0);
  return `${[...used].map(([n, us]) => `${n} ${pct(us)} % (waited ${pct(waited.get(n)!)} %)`).join(', ')}; all ${pct([...used.values()].reduce((x, y) => x + y, 0))} %`;
}

/** iperf3 A -> B to `ip`, with each lab process's CPU use meanwhile (and, if asked, profiles of the DI and HI). */
async function aToBWithCpu(lab: LabState, path: string, a: Shell, b: Shell, ip: string): Promise<{ mbps: number; retransmits: number }> {
  const procs = labProcesses(lab);
  const t0 = Date.now();
  const [cpu, wait] = [cpuMeter(procs), runQueueWait(procs)];
  const prof = process.env.NIC_BENCH_PROF && path === 'model PCIeOE';
  const run = () => tcp(a, b, ip);
  const dirs = { di: join(state, 'sockets', 'di'), hia: join(state, 'sockets', 'hia'), sw: join(state, 'sockets', 'sw') };
  const { value: result, files } = prof ? await profiled(dirs, 'nic-a-to-b', run) : { value: await run(), files: {} };
  const [used, waited] = [cpu(), wait()];
  const seconds = (Date.now() - t0) / 1000;
  for (const [name, us] of used) record({ kind: 'value', bench: 'nic', name: `${path}: CPU of ${name} during iperf3 A->B`, value: us / 1e4 / seconds, unit: '% of a CPU' });
  console.log(`${path}: iperf3 A->B ${result.mbps.toFixed(0)} Mb/s; CPU meanwhile: ${cpuText(used, waited, seconds)}`);
  for (const [name, file] of Object.entries(files)) {
    console.log(`\nprofile of ${name} over ${path} iperf3 A->B (${file}):\n${summariseProfile(file)}`);
    if (process.env.BENCH_RESULTS) copyFileSync(file, join(dirname(process.env.BENCH_RESULTS), basename(file)));
  }
  return result;
}

/**
 * A few seconds of iperf3 each way, not recorded: the first runs after a lab comes up were the
 * slowest of their lab (side-by-side rounds, bench NIC_BENCH_AB: round 0's first variant A->B
 * 54 and 91 Mb/s against 93-136 after), while the device paths' code warms (JIT) and the guests'
 * TCP settles.
 */
async function warmUp(a: Shell, b: Shell, ends: Ends): Promise<void> {
  await a(`ping -c 3 -W 5 ${ends.b} >/dev/null`);
  await tcp(a, b, ends.b, WARM_UP_SECONDS);
  await tcp(b, a, ends.a, WARM_UP_SECONDS);
}

/** Host A's vCPU time (/proc/stat) and each of its NICs' interrupts (/proc/interrupts), by MAC. */
async function guestLoad(a: Shell): Promise<{ busy: number; irq: number; total: number; interrupts: Map<string, number> }> {
  const out = await a('for n in /sys/class/net/*; do [ -e $n/device ] && echo "nic $(cat $n/address) $(basename $(readlink -f $n/device))"; done; grep virtio /proc/interrupts; head -1 /proc/stat');
  const lines = out.trim().split('\n');
  // cpu user nice system idle iowait irq softirq steal
  const t = lines.find((l) => l.startsWith('cpu '))!.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = t.reduce((x, y) => x + y, 0);
  const interrupts = new Map<string, number>();
  for (const [, mac, dev] of lines.map((l) => l.split(' ')).filter((w) => w[0] === 'nic')) {
    // "  24:   0   123   PCI-MSIX-0000:02:00.0   1-edge   virtio1-input.0": the per-CPU counts after the number.
    const counts = lines.filter((l) => l.includes(`${dev}-`)).map((l) => l.trim().split(/\s+/).slice(1).filter((w) => /^\d+$/.test(w)).reduce((x, w) => x + Number(w), 0));
    interrupts.set(mac!, counts.reduce((x, y) => x + y, 0));
  }
  return { busy: total - t[3]! - t[4]!, irq: t[5]! + t[6]!, total, interrupts };
}

/**
 * `run` on one path, printing how busy host A's vCPUs were meanwhile (of both, softirq and irq
 * apart) and the interrupts each of its NICs took: the idle NICs' share of the guest.
 */
async function withGuestLoad<T>(a: Shell, path: string, what: string, run: () => Promise<T>): Promise<T> {
  const before = await guestLoad(a);
  const value = await run();
  const after = await guestLoad(a);
  const ticks = after.total - before.total;
  const pct = (x: number) => ((x / ticks) * 100).toFixed(0);
  const irqs = HOST_A_NICS.map((p) => `${p.path} ${(after.interrupts.get(p.mac) ?? 0) - (before.interrupts.get(p.mac) ?? 0)}`).join(', ');
  console.log(`${path} ${what}: host A's vCPUs busy ${pct(after.busy - before.busy)} % (irq + softirq ${pct(after.irq - before.irq)} %); interrupts per NIC: ${irqs}`);
  return value;
}

type Run = { mbps: number; retransmits: number };

/**
 * Every path's figures in one lab: NIC_ROUNDS rounds, each running iperf3 A -> B then B -> A on
 * each path in turn (the first round with the CPU, the guest's load and the device counters;
 * the order rotated each round, so no path is always first after a pause), each direction's
 * median run kept; then each path's pings. Single runs were up to 2x apart, so the
 * per-round ratios are printed too.
 */
async function allPaths(lab: LabState, a: Shell, b: Shell, paths: readonly NicPath[]): Promise<Map<string, NicFigures>> {
  const ends = (p: NicPath): Ends => ({ a: ipA(p), b: ipB(p) });
  for (const p of paths) await warmUp(a, b, ends(p));
  const runs = new Map<string, { aToB: Run; bToA: Run }[]>(paths.map((p) => [p.path, []]));
  for (let round = 0; round < NIC_ROUNDS; round++) {
    for (const [i] of paths.entries()) {
      const p = paths[(i + round) % paths.length]!;
      const { a: toA, b: toB } = ends(p);
      const first = <T>(what: string, run: () => Promise<T>) => (round === 0 ? withNicCounters(p.path, what, () => withGuestLoad(a, p.path, what, run)) : run());
      const aToB = await first('iperf3 A->B', () => (round === 0 ? aToBWithCpu(lab, p.path, a, b, toB) : tcp(a, b, toB)));
      const bToA = await first('iperf3 B->A', () => tcp(b, a, toA));
      runs.get(p.path)!.push({ aToB, bToA });
    }
    const of = (num: string, den: string, dir: 'aToB' | 'bToA') => {
      const [x, y] = [runs.get(num)?.[round]?.[dir].mbps, runs.get(den)?.[round]?.[dir].mbps];
      return x !== undefined && y ? `${((x / y) * 100).toFixed(0)} %` : '-';
    };
    console.log(`round ${round}: ${paths.map((p) => `${p.path} ${runs.get(p.path)![round]!.aToB.mbps.toFixed(0)}/${runs.get(p.path)![round]!.bToA.mbps.toFixed(0)}`).join(', ')} Mb/s A->B/B->A; ` +
      `PCIeOE / direct A->B ${of('model PCIeOE', 'model direct', 'aToB')}, B->A ${of('model PCIeOE', 'model direct', 'bToA')}; direct / QEMU A->B ${of('model direct', 'QEMU virtio-net', 'aToB')}`);
  }
  const figures = new Map<string, NicFigures>();
  for (const p of paths) {
    const mine = runs.get(p.path)!;
    const mid = (dir: 'aToB' | 'bToA') => mine.map((r) => r[dir]).sort((x, y) => x.mbps - y.mbps)[Math.floor((mine.length - 1) / 2)]!;
    const [aToB, bToA] = [mid('aToB'), mid('bToA')];
    if (mine.length > 1) console.log(`${p.path}: median of ${mine.length} rounds, A->B ${mine.map((r) => r.aToB.mbps.toFixed(0)).join('/')} Mb/s, B->A ${mine.map((r) => r.bToA.mbps.toFixed(0)).join('/')} Mb/s`);
    const ping = await pings(a, ipB(p));
    figures.set(p.path, { aToBMbps: aToB.mbps, bToAMbps: bToA.mbps, aToBRetransmits: aToB.retransmits, bToARetransmits: bToA.retransmits, pingMeanMs: ping.meanMs, pingP99Ms: ping.p99Ms });
  }
  return figures;
}

type PortReport = {
  switch: { rxFrames: number; rxBytes: number; txFrames: number; rxDropped: number; rxSourceViolations: number };
  socket?: { txQueueDrops?: number; txErrors?: number; txDeferred?: number; txCalls?: number; txFrames?: number };
  /** Frames waiting in the switch for this port's ring or socket now. */
  txQueued?: number;
};
type Ports = Record<string, PortReport>;
/** Frames a port lost either way (see the port-counters figure). */
const lost = (c?: PortReport) => (c ? c.switch.rxDropped + c.switch.rxSourceViolations + (c.socket?.txQueueDrops ?? 0) + (c.socket?.txErrors ?? 0) : 0);
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)]!;
const labProcesses = (lab: LabState) => [...lab.processes.map((p) => ({ name: p.name, pid: p.pid })), ...lab.vms.map((v) => ({ name: `QEMU ${v.name}`, pid: v.pid }))];

/**
 * The most frames each switch port had queued (waiting for its ring or socket), sampled every
 * 100 ms on a control connection of its own until the returned function is called.
 */
async function queuePeaks(path: string): Promise<() => Promise<Map<string, number>>> {
  const ctl = await SwitchControl.connect(path);
  const peaks = new Map<string, number>();
  let on = true;
  const sampling = (async () => {
    while (on) {
      for (const [port, c] of Object.entries((await ctl.must({ counters: true })).ports as Ports)) peaks.set(port, Math.max(peaks.get(port) ?? 0, c.txQueued ?? 0));
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return async () => {
    on = false;
    await sampling;
    ctl.close();
    return peaks;
  };
}

/**
 * NVMe IOPS on both hosts' functions at once, alone and under iperf3 A -> B, with the switch's
 * per-port counters and each lab process's CPU; `rounds` times alternating (NIC_BENCH_ONLY), the
 * first round recorded.
 */
async function coexistence(lab: LabState, a: Shell, b: Shell, rounds = 1): Promise<void> {
  const switchControl = join(state, 'sockets', 'sw', 'control.sock');
  const ctl = await SwitchControl.connect(switchControl);
  const ports = async () => (await ctl.must({ counters: true })).ports as Ports;
  const procs = labProcesses(lab);
  /** Per load rate, per round: host A's, host B's and both hosts' IOPS under the load / alone. */
  const ratios = LOAD_RATES.map((): number[][] => []);
  try {
    const devs = await Promise.all([a, b].map(async (sh) => (await controllers(sh))[0]!.dev));
    const fioBoth = async () => (await Promise.all([a, b].map((sh, i) => runFioOn(sh, [devs[i]!], NVME_WORKLOAD)))).map((r) => r[0]!);
    const measured = async (what: string, run: () => Promise<Result[]>, recorded: boolean) => {
      const [before, t0, cpu, wait, peaks] = [await ports(), Date.now(), cpuMeter(procs), runQueueWait(procs), await queuePeaks(switchControl)];
      const rs = await run();
      const [used, waited, peak] = [cpu(), wait(), await peaks()];
      const [after, seconds] = [await ports(), (Date.now() - t0) / 1000];
      if (recorded) {
        rs.forEach((r, i) => record({ kind: 'io', bench: 'nic', workload: NVME_WORKLOAD.name, path: `${i ? 'host-b' : 'host-a'} ${what}`, ...r }));
        // Where the CPUs went in each case (the two-CPU machine is full in both: see docs/performance.md, Remote NIC).
        for (const [name, us] of [...used, ['all lab processes', [...used.values()].reduce((x, y) => x + y, 0)] as const]) {
          record({ kind: 'value', bench: 'nic', name: `NVMe ${what}: CPU of ${name}`, value: us / 1e4 / seconds, unit: '% of a CPU' });
        }
        for (const [port, c] of Object.entries(after)) {
          const was = before[port]?.switch ?? { rxFrames: 0, rxBytes: 0 };
          record({ kind: 'port-counters', bench: 'nic', case: what, port, carries: carries(port), seconds, rxFrames: c.switch.rxFrames - was.rxFrames, rxBytes: c.switch.rxBytes - was.rxBytes, dropped: lost(c) - lost(before[port]) });
        }
      }
      const moved = (p: string, f: (c: PortReport) => number) => f(after[p]!) - (before[p] ? f(before[p]) : 0);
      console.log(`NVMe ${NVME_WORKLOAD.name} ${what}: host-a ${Math.round(rs[0]!.iops)} IOPS, host-b ${Math.round(rs[1]!.iops)} IOPS\n` +
        `  CPU: ${cpuText(used, waited, seconds)}\n` +
        `  switch per port, frames/s in/out, ring-full waits (frames waiting, summed), dropped, most queued[, frames per send call on a socket port]: ` +
        Object.keys(after).map((p) => `${p} ${Math.round(moved(p, (c) => c.switch.rxFrames) / seconds)}/${Math.round(moved(p, (c) => c.switch.txFrames) / seconds)} ` +
          `${moved(p, (c) => c.socket?.txDeferred ?? 0)} ${moved(p, lost)} ${peak.get(p) ?? 0}` +
          (after[p]!.socket?.txCalls === undefined ? '' : ` ${(moved(p, (c) => c.socket?.txFrames ?? 0) / Math.max(1, moved(p, (c) => c.socket?.txCalls ?? 0))).toFixed(1)}`)).join(', '));
      return rs;
    };
    // A first run, not recorded: the device paths' code is warm (JIT) before either case.
    await fioBoth();
    for (let round = 0; round < rounds; round++) {
      const alone = await measured('alone', fioBoth, round === 0);
      for (const [k, rate] of LOAD_RATES.entries()) {
        // "lo:RATE": iperf3 within host A over its loopback, the NIC and fabric untouched (a control).
        const loopback = rate.startsWith('lo:');
        const bps = loopback ? rate.slice(3) : rate;
        const what = `under iperf3${loopback ? ' on host A\'s loopback' : ''}${bps ? ` -b ${bps}` : ''}`;
        const recorded = round === 0 && k === 0;
        // iperf3 outlasts fio (its 2 s ramp and start-up included) and is read once fio is done.
        await (loopback ? a : b)('iperf3 -s -D -1');
        await a(`rm -f /tmp/load.json; (iperf3 -c ${loopback ? '127.0.0.1' : COEX_ENDS.b} -t ${SECONDS + 8}${bps && bps !== '0' ? ` -b ${bps}` : ''} -J > /tmp/load.json 2>&1 </dev/null &)`);
        const loaded = await withNicCounters('model PCIeOE', `NVMe ${what}`, () => measured(what, fioBoth, recorded));
        // iperf3 -J prints its report when it ends; the report's last line is its closing brace.
        const load = JSON.parse(await a(`for i in $(seq 600); do [ "$(tail -n 1 /tmp/load.json 2>/dev/null)" = "}" ] && break; sleep 0.1; done; cat /tmp/load.json`));
        const mbps = load.end.sum_received.bits_per_second / 1e6;
        if (recorded) record({ kind: 'value', bench: 'nic', name: 'iperf3 TCP A->B load beside NVMe (model PCIeOE)', value: mbps, unit: 'Mb/s' });
        const r = [0, 1].map((i) => loaded[i]!.iops / alone[i]!.iops);
        r.push((loaded[0]!.iops + loaded[1]!.iops) / (alone[0]!.iops + alone[1]!.iops));
        ratios[k]!.push(r);
        console.log(`iperf3 load A -> B meanwhile: ${mbps.toFixed(0)} Mb/s; round ${round}: ${what} / alone host-a ${(r[0]! * 100).toFixed(0)} %, host-b ${(r[1]! * 100).toFixed(0)} %, both ${(r[2]! * 100).toFixed(0)} %`);
      }
    }
  } finally {
    ctl.close();
  }
  if (rounds === 1 && LOAD_RATES.length === 1) return;
  for (const [k, rate] of LOAD_RATES.entries()) {
    const of = (i: number) => `${(median(ratios[k]!.map((r) => r[i]!)) * 100).toFixed(0)} % (${ratios[k]!.map((r) => (r[i]! * 100).toFixed(0)).join('/')})`;
    console.log(`NVMe under iperf3 ${rate || 'unbounded'} / alone, median of ${rounds} rounds: host-a ${of(0)}, host-b ${of(1)}, both ${of(2)}`);
  }
}

/** NIC_BENCH_AB: the variants' iperf3 figures, side by side in one lab (see the header). */
async function sideBySide(a: Shell, b: Shell, variants: object[]): Promise<void> {
  const rounds = Number(process.env.NIC_BENCH_ROUNDS ?? 4);
  const ctl = await SwitchControl.connect(join(state, 'sockets', 'di', 'control.sock'));
  const runs = variants.map(() => ({ aToB: [] as number[], bToA: [] as number[] }));
  try {
    await warmUp(a, b, COEX_ENDS);
    for (let r = 0; r < rounds; r++) {
      for (const [i, v] of variants.entries()) {
        const tuned = await ctl.requestLine(JSON.stringify({ nic: 'net0', tune: v }));
        if (!tuned.ok) throw new Error(`tune ${JSON.stringify(v)}: ${String(tuned.error)}`);
        const name = `variant ${i} ${JSON.stringify(v)}`;
        const aToB = await withNicCounters('model PCIeOE', `${name} A->B`, () => tcp(a, b, COEX_ENDS.b));
        const bToA = await withNicCounters('model PCIeOE', `${name} B->A`, () => tcp(b, a, COEX_ENDS.a));
        runs[i]!.aToB.push(aToB.mbps);
        runs[i]!.bToA.push(bToA.mbps);
        console.log(`round ${r} ${name}: A->B ${aToB.mbps.toFixed(0)} Mb/s (${aToB.retransmits} retransmits), B->A ${bToA.mbps.toFixed(0)} Mb/s (${bToA.retransmits})`);
      }
    }
  } finally {
    ctl.close();
  }
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
  for (const [i, v] of variants.entries()) {
    const { aToB, bToA } = runs[i]!;
    console.log(`variant ${i} ${JSON.stringify(v)}: A->B mean ${mean(aToB).toFixed(0)} (${aToB.map((x) => x.toFixed(0)).join('/')}), B->A mean ${mean(bToA).toFixed(0)} (${bToA.map((x) => x.toFixed(0)).join('/')}) Mb/s`);
  }
}

/** `run` in a lab of `topology`, given host A's and host B's shells; the lab goes down after. */
async function inLab<T>(topology: string, run: (lab: LabState, a: Shell, b: Shell) => Promise<T>): Promise<T> {
  const lab = await benchUp(topology, state);
  try {
    const sched = await scheduleLab(lab.processes.map((p) => p.pid));
    if (sched) console.log(sched);
    return await run(lab, guestShell(lab.vms.find((v) => v.name === 'host-a')!.agent), guestShell(lab.vms.find((v) => v.name === 'host-b')!.agent));
  } finally {
    await down();
  }
}

/** nic-coexistence: the model's interface is a vfio-user device to the lab, so its address is given here. */
const coexAddress = (a: Shell) => a(`i=$(ip -o link | grep -i 'ether ${COEX_MAC}' | cut -d: -f2 | tr -d ' '); ip link set "$i" up && ip addr add ${COEX_ENDS.a}/24 dev "$i"`);

await setup();
recordSettings('nic', {
  secondsPerRun: SECONDS,
  pings: PINGS,
  pingInterval: '50 ms',
  // The report says so above the NIC table (bench/report/markdown.ts, nicMethod).
  nicPaths: `alternately in one lab (${NIC_BENCH_TOPOLOGY}, host A with all three NICs), in turn in each of ${NIC_ROUNDS} round(s), each figure the median`,
  nvmeWorkload: `${NVME_WORKLOAD.name} QD 64 (2 x 32), both hosts at once`,
  placement: placementText(),
});
try {
  if (AB) {
    await inLab('nic-coexistence', async (_, a, b) => {
      await coexAddress(a);
      const run = () => sideBySide(a, b, AB);
      // NIC_BENCH_PROF: the DI profiled over all the variants' runs.
      if (process.env.NIC_BENCH_PROF) console.log(summariseProfile((await profiled({ di: join(state, 'sockets', 'di') }, 'nic-ab', run)).files.di!, 30));
      else await run();
    });
  } else if (COEX_ONLY) {
    await inLab('nic-coexistence', async (lab, a, b) => {
      await coexAddress(a);
      await warmUp(a, b, COEX_ENDS);
      // The iperf3 load's own CPU, without fio beside it.
      await aToBWithCpu(lab, 'model PCIeOE', a, b, COEX_ENDS.b);
      await coexistence(lab, a, b, Number(process.env.NIC_BENCH_ROUNDS ?? 1));
    });
  } else {
    const results = await inLab(NIC_BENCH_TOPOLOGY, async (lab, a, b) => {
      await a(hostASetup(HOST_A_NICS));
      await b(hostBSetup(HOST_A_NICS));
      return allPaths(lab, a, b, PATHS);
    });
    for (const [path, f] of results) {
      record({ kind: 'nic', bench: 'nic', path, pings: PINGS, ...f });
      console.log(`${path.padEnd(16)} TCP A->B ${f.aToBMbps.toFixed(0)} Mb/s (${f.aToBRetransmits} retransmits), B->A ${f.bToAMbps.toFixed(0)} Mb/s (${f.bToARetransmits}); ping mean ${f.pingMeanMs.toFixed(2)} ms, p99 ${f.pingP99Ms.toFixed(2)} ms`);
    }
    const [q, d, r] = ['QEMU virtio-net', 'model direct', 'model PCIeOE'].map((p) => results.get(p));
    const pct = (x: NicFigures | undefined, y: NicFigures | undefined, dir: 'aToBMbps' | 'bToAMbps') => (x && y ? `${((x[dir] / y[dir]) * 100).toFixed(0)} %` : 'not run');
    console.log(`direct / QEMU (A->B): ${pct(d, q, 'aToBMbps')} (target >= 50 %); PCIeOE / direct: A->B ${pct(r, d, 'aToBMbps')}, B->A ${pct(r, d, 'bToAMbps')} (target >= 80 %)`);
    if (!ONLY) {
      await inLab('nic-coexistence', async (lab, a, b) => {
        await coexAddress(a);
        // As in the NIC figures, the load's path warmed first.
        await warmUp(a, b, COEX_ENDS);
        await coexistence(lab, a, b);
      });
    }
  }
} finally {
  // The labs are down; their private state (profiles were copied into the run's directory) goes too.
  rmSync(state, { recursive: true, force: true });
}
