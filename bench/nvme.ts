// NVMe paths side by side in one guest, on the five workloads of issues 4 and 6, each QD 64
// as 2 jobs x iodepth 32, and QD 1 4 KiB random reads (the latency of the path itself), fio
// libaio direct: QEMU's built-in nvme (C), the NVMe model attached directly over vfio-user,
// the same model behind HI + switch + DI (PCIeOE) on a lossless fabric, and PCIeOE again with
// 0.1 % and 1 % of the frames lost in the switch and with 10, 50 and 200 µs of added link
// latency (each frame held that long on its way out of the switch). QEMU's nvme runs with cache=writeback, the model's
// semantics (writes land in the host page cache, Flush syncs; both offer shadow doorbells),
// so the comparison is like with like. The devices alternate per workload so that load from
// anything else on the machine hits all alike; runs differ by ~15 % (design notes §7).
//
//   npm run bench -- nvme   (NVME_BENCH_SECONDS=10 per case, 5 with --quick or BENCH_QUICK=1,
//                            which also leaves out the faulted paths; a case's seconds split over
//                            NVME_BENCH_ROUNDS=2 rounds that take the paths forwards, then backwards;
//                            NVME_BENCH_TOPOLOGY=one-host-nvme-bench,
//                            NVME_BENCH_PIN=CPUS pins the lab's processes there (default the last CPU, none: unpinned),
//                            NVME_BENCH_QEMU_PIN=1 all of QEMU's threads, then NVME_BENCH_VCPU_PIN=0 its
//                            vCPU threads, NVME_BENCH_VCPUS=1 gives the guest that many vCPUs,
//                            NVME_BENCH_LINKS=1 every HI and DI that many links (placements compared in
//                            docs/performance.md),
//                            BENCH_LAB_SCHED=fifo:10 (batch:0, nice:-10) schedules every lab process but QEMU so (bench/lib/lab.ts),
//                            NVME_BENCH_ONLY=qd1 runs only the QD 1 case (its fio job on the guest's last vCPU;
//                            NVME_BENCH_QD1_CPU=none leaves it unpinned), NVME_BENCH_ONLY=TEXT only
//                            the workloads whose name contains TEXT ("64 KiB"); PCIEOE_TRACE=DIR traces
//                            the lab processes' frames, see src/fabric/trace.ts and bench/trace-chain.ts;
//                            NVME_BENCH_TRANSPORT=unix,memif brings the lab up once per transport
//                            between stations and switch, in that order, and compares them at the end;
//                            NVME_BENCH_PROF=DIR records a CPU profile of the HI and the DI over each PCIeOE
//                            case, through their control sockets, prints where each spent its time and
//                            keeps the profiles and the lab processes' logs in DIR; LAB_NODE_ARGS="--trace-gc"
//                            gives every lab process those node options, see src/lab/lab.ts)
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import { cpuMeter } from './lib/cpu.ts';
import { record, recordSettings } from './lib/results.ts';
import { benchUp, type FabricFault, type FabricFaults, fabricFaults, placementText, placeVm, privateLabDirs, scheduleLab } from './lib/lab.ts';
import { movedCounters, profiled, stationCounters, summariseProfile } from './lib/profile.ts';
import { ADDED_LATENCIES_US, FAULTS, LOSS_PERCENTS, pathLabel } from './report/markdown.ts';

const state = privateLabDirs('lab-nvb');
process.env.LAB_QEMU_NVME_CACHE = 'writeback';
const { down } = await import('../src/lab/lab.ts');
const { TRANSPORTS } = await import('../src/lab/topology.ts');
type Transport = import('../src/lab/topology.ts').Transport;
const { WORKLOADS, QD1_RANDREAD, QUICK, SECONDS, controllers, fill, guestShell, mergeRuns, resultCells, resultHeader, runFio } = await import('./lib/fio.ts');
type Result = import('./lib/fio.ts').Result;

const topoName = process.env.NVME_BENCH_TOPOLOGY ?? 'one-host-nvme-bench';
/** Rounds per workload (NVME_BENCH_ROUNDS, default 2), each path SECONDS / ROUNDS a round. */
const ROUNDS = Number(process.env.NVME_BENCH_ROUNDS ?? 2);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error(`NVME_BENCH_ROUNDS: "${process.env.NVME_BENCH_ROUNDS}" is not a whole number of rounds, 1 or more`);

/**
 * PCIeOE with the HI and DI cabled back to back, no switch process between them (the topology's
 * serial PCIEOE-B2B): run in the QD 1 case only, where it tells the switch's part of the latency.
 */
const BACK_TO_BACK = 'PCIeOE back to back';

/**
 * The lab processes that carry a path's I/O, by the names one-host-nvme-bench gives them (the
 * faulted paths are PCIeOE's); every other lab process only idles beside that path.
 */
const CARRIERS: Record<string, readonly string[]> = { direct: ['direct'], PCIeOE: ['hi', 'sw', 'di'], [BACK_TO_BACK]: ['b2b-hi', 'b2b-di'] };
const serves = (side: string, proc: string) => (CARRIERS[FAULTED.has(side) ? 'PCIeOE' : side] ?? []).includes(proc);

/** Which path a controller is, from what the guest sees of it. */
function pathOf(model: string, serial: string): string {
  if (model.includes('QEMU')) return 'QEMU nvme';
  if (serial.includes('B2B')) return BACK_TO_BACK;
  return serial.includes('REMOTE') ? 'PCIeOE' : 'direct';
}
/**
 * Each faulted PCIeOE path (the report's: frame loss, 0.1 % the target's case and 1 % the slope;
 * added one-way link latency) by the name the report gives it, the fault the switch gets for it
 * (a probability, ms) and what its figures record.
 */
const FAULTED = new Map(FAULTS.map((recorded) => {
  const fault: FabricFault = { loss: (recorded.lossPercent ?? 0) / 100, latency: (recorded.addedLatencyUs ?? 0) / 1000 };
  return [pathLabel({ path: 'PCIeOE', ...recorded }), { fault, recorded }] as const;
}));

/** One path's figures on one workload: fio's result, CPU µs per I/O by process. */
interface Measured {
  result: Result;
  cpuUs: Map<string, number>;
}

const transports = (process.env.NVME_BENCH_TRANSPORT ?? '').split(',').filter((x) => x !== '');
for (const t of transports) if (!(TRANSPORTS as readonly string[]).includes(t)) throw new Error(`NVME_BENCH_TRANSPORT: "${t}" is not one of ${TRANSPORTS.join(', ')}`);
/** Several transports: each figure's path names its transport ("PCIeOE memif"). */
const label = (side: string, t: Transport | undefined) => (t && transports.length > 1 ? `${side} ${t}` : side);

/** Brings the lab up (over `transport`, or the topology's own), runs every chosen workload on every path, prints its tables. */
async function benchLab(transport: Transport | undefined): Promise<Map<string, Map<string, Measured>>> {
  let faults: FabricFaults | undefined;
  const out = new Map<string, Map<string, Measured>>();
  try {
    const lab = await benchUp(topoName, state, { transport });
    for (const vm of lab.vms) await placeVm(vm);
    // Priority: each hop of a PCIeOE I/O wakes a lab process, and on a loaded machine a woken (or
    // preempted) process waits behind busy ones for its turn; the direct server gets the same.
    const placement = [placementText(), await scheduleLab(lab.processes.map((p) => p.pid))].filter((x) => x !== '').join(', ');
    const sh = guestShell(lab.vms[0]!.agent);
    const devs = new Map((await controllers(sh)).map((c) => [pathOf(c.model, c.serial), c.dev]));
    if (devs.has('PCIeOE') && !QUICK) {
      for (const side of FAULTED.keys()) devs.set(side, devs.get('PCIeOE')!);
      faults = await fabricFaults(state);
    }
    const allSides = ['QEMU nvme', 'direct', 'PCIeOE', BACK_TO_BACK, ...FAULTED.keys()].filter((p) => devs.has(p));
    const sidesOf = (w: string) => allSides.filter((p) => p !== BACK_TO_BACK || w === QD1_RANDREAD.name);
    // Each path against the one it is built on: direct vs QEMU, PCIeOE (either fabric) vs direct.
    const base = (p: string) => (p === 'direct' ? 'QEMU nvme' : 'direct');
    const ratios = allSides.filter((p) => p !== 'QEMU nvme' && devs.has(base(p)));
    console.log(`NVMe, topology ${topoName}${transport ? `, stations on ${transport}` : ''}: ${[...devs].map(([p, d]) => `${p} ${d}`).join(', ')}; ${lab.qemuVersion}, ${lab.accel}, ${process.env.NVME_BENCH_VCPUS ?? 2} vCPUs, ` +
      `${placement}; QEMU nvme cache=writeback; ${SECONDS} s per case in ${ROUNDS} round(s), paths forwards then backwards; QD 64 = 2 jobs x 32`);
    console.log(`${'workload'.padEnd(24)}${allSides.map(resultHeader).join('')}${ratios.map((p) => ` | ${`${p}/${base(p)}`.padStart(24)}`).join('')}`);
    recordSettings(label('nvme', transport), { topology: topoName, transport: transport ?? 'topology', secondsPerCase: SECONDS, roundsPerCase: `${ROUNDS} (paths forwards, then backwards)`, accel: lab.accel, placement, qemuNvmeCache: 'writeback', queueDepth: `2 jobs x 32 (QD 1 case: 1 x 1${QD1_RANDREAD.cpu ? ', on the guest\'s last vCPU' : ''})`, lossPercent: faults ? LOSS_PERCENTS.join(', ') : 0, addedLatencyUs: faults ? ADDED_LATENCIES_US.join(', ') : 0 });
    for (const d of new Set(devs.values())) await fill(sh, d);
    const procs = [{ name: 'QEMU', pid: lab.vms[0]!.pid }, ...lab.processes];
    // The back-to-back pair serves only its own path: its idle CPU is not measured beside the others.
    const procsOf = (side: string) => (side === BACK_TO_BACK ? procs : procs.filter((p) => !CARRIERS[BACK_TO_BACK]!.includes(p.name)));
    /** Per workload and path: CPU µs per I/O of each process, over fio's ramp and run. */
    const cpu: string[] = [];
    const only = process.env.NVME_BENCH_ONLY;
    const all = [...WORKLOADS, QD1_RANDREAD];
    for (const w of only === 'qd1' ? [QD1_RANDREAD] : only ? all.filter((x) => x.name.includes(only)) : all) {
      const r = new Map<string, Measured>();
      out.set(w.name, r);
      const sides = sidesOf(w.name);
      /** Per path: each round's fio result, CPU µs by process and I/Os, summed over the rounds below. */
      const runs = new Map(sides.map((side) => [side, { results: [] as Result[], cpu: new Map<string, number>(), ios: 0 }]));
      // The rounds go through the paths forwards, then backwards (A B C, C B A): a drift of the
      // machine's speed over the minutes of a workload then falls on every path alike.
      for (let round = 0; round < ROUNDS; round++) {
        for (const side of round % 2 ? [...sides].reverse() : sides) {
          const faulted = FAULTED.get(side);
          if (faulted) await faults!.set(faulted.fault);
          try {
            const used = cpuMeter(procsOf(side));
            const profile = round === 0 && side === 'PCIeOE' && PROF_STATIONS(lab.processes);
            const result = await profiledRun(profile, `${w.name}-${transport ?? 'topology'}`, () => runFio(sh, devs.get(side)!, w, SECONDS / ROUNDS));
            const run = runs.get(side)!;
            run.results.push(result);
            run.ios += result.iops * (SECONDS / ROUNDS + 2); // ramp at about the same rate
            for (const [proc, us] of used()) run.cpu.set(proc, (run.cpu.get(proc) ?? 0) + us);
          } finally {
            if (faulted) await faults!.set({});
          }
        }
      }
      for (const [side, run] of runs) {
        const faulted = FAULTED.get(side);
        const result = mergeRuns(run.results);
        const cpuUs = new Map([...run.cpu].map(([proc, us]) => [proc, us / run.ios]));
        r.set(side, { result, cpuUs });
        const path = label(faulted ? 'PCIeOE' : side, transport);
        record({ kind: 'io', bench: 'nvme', workload: w.name, path, ...faulted?.recorded, ...result });
        for (const [proc, us] of cpuUs) record({ kind: 'cpu-per-io', bench: 'nvme', workload: w.name, path: label(side, transport), process: proc, us, serves: serves(side, proc) });
      }
      // A path this workload leaves out (back to back beside QD 1) keeps its columns, empty.
      const ratio = (p: string) => ` | ${(r.has(p) ? `${((r.get(p)!.result.iops / r.get(base(p))!.result.iops) * 100).toFixed(0)} %` : '').padStart(24)}`;
      console.log(`${w.name.padEnd(24)}${allSides.map((p) => (r.has(p) ? resultCells(r.get(p)!.result) : ` | ${''.padStart(32)}`)).join('')}${ratios.map(ratio).join('')}`);
      cpu.push(`${w.name.padEnd(24)}${allSides.map((p) => ` | ${(r.has(p) ? perIoText(r.get(p)!, procs.map((x) => x.name)) : '').padStart(26)}`).join('')}`);
    }
    console.log(`\nCPU µs per I/O, by process (${procs.map((p) => p.name).join(' / ')}), path by path`);
    console.log(`${'workload'.padEnd(24)}${allSides.map((p) => ` | ${p.padStart(26)}`).join('')}`);
    for (const line of cpu) console.log(line);
    if (faults) console.log(`frames lost in the switch during the lossy runs: ${await faults.lost()}`);
    // The lab processes' logs go with the lab: keep them with the profiles (LAB_NODE_ARGS=--trace-gc writes its lines there).
    const keep = process.env.NVME_BENCH_PROF;
    if (keep) {
      mkdirSync(keep, { recursive: true });
      for (const p of lab.processes) copyFileSync(p.log, join(keep, `${transport ?? 'topology'}-${basename(p.log)}`));
    }
  } finally {
    faults?.close();
    await down();
  }
  return out;
}

/** NVME_BENCH_PROF: the stations whose profiles are recorded (name -> state directory), those of the lab that exist. */
const PROF_STATIONS = (processes: readonly { name: string; socketDir: string }[]): Record<string, string> | false =>
  !!process.env.NVME_BENCH_PROF && Object.fromEntries(processes.filter((p) => p.name === 'hi' || p.name === 'di').map((p) => [p.name, p.socketDir]));

/** `run`, profiled in `stations` if any are given: each profile's summary printed, the profile copied into NVME_BENCH_PROF. */
async function profiledRun<T>(stations: Record<string, string> | false, what: string, run: () => Promise<T>): Promise<T> {
  if (!stations) return run();
  const tag = what.replace(/[^A-Za-z0-9]+/g, '-');
  const before = await Promise.all(Object.values(stations).map(stationCounters));
  const { value, files } = await profiled(stations, tag, run);
  const after = await Promise.all(Object.values(stations).map(stationCounters));
  // Counters that moved, per I/O of the case (fio's IOPS over its run and ramp, as the CPU figures): frames, TLPs, interrupts.
  const ios = (value as { iops?: number }).iops! * (SECONDS + 2);
  Object.keys(stations).forEach((name, i) => {
    const moved = movedCounters(before[i]!, after[i]!).map(([k, d]) => [k, d / ios] as const).filter(([, d]) => d >= 0.01);
    console.log(`\n${name} counters per I/O over PCIeOE ${what}: ${moved.map(([k, d]) => `${k} ${d.toFixed(2)}`).join(', ')}`);
  });
  for (const [name, file] of Object.entries(files)) {
    console.log(`\nprofile of ${name} over PCIeOE ${what} (${file}):\n${summariseProfile(file, 25)}`);
    mkdirSync(process.env.NVME_BENCH_PROF!, { recursive: true });
    copyFileSync(file, join(process.env.NVME_BENCH_PROF!, basename(file)));
  }
  return value;
}

/** CPU µs per I/O of each process named (default: those measured), '-' for one not measured on that path. */
const perIoText = (m: Measured, names: string[] = [...m.cpuUs.keys()]) => names.map((n) => m.cpuUs.get(n)?.toFixed(0) ?? '-').join(' / ');

/** PCIeOE on each transport, workload by workload: IOPS (and its share of the same lab's direct path), CPU µs per I/O by process. */
function compareTransports(runs: Map<Transport, Map<string, Map<string, Measured>>>): void {
  const [first] = runs.values();
  const names = [...([...first!.values()][0]?.get('PCIeOE')?.cpuUs.keys() ?? [])].join(' / ');
  console.log(`\nPCIeOE by transport between stations and switch: IOPS (% of that lab's direct), mean latency, CPU µs per I/O (${names})`);
  for (const w of first!.keys()) {
    for (const [t, byWorkload] of runs) {
      const m = byWorkload.get(w);
      const pcieoe = m?.get('PCIeOE');
      if (!pcieoe) continue;
      const direct = m!.get('direct');
      const share = direct ? ` (${((pcieoe.result.iops / direct.result.iops) * 100).toFixed(0)} %)` : '';
      console.log(`${w.padEnd(24)} ${t.padEnd(6)} ${`${Math.round(pcieoe.result.iops)}${share}`.padStart(14)}  mean ${pcieoe.result.meanUs.toFixed(0).padStart(6)} µs | ${perIoText(pcieoe)}`);
    }
  }
}

try {
  const runs = new Map<Transport, Map<string, Map<string, Measured>>>();
  for (const t of transports.length ? (transports as Transport[]) : [undefined]) {
    const measured = await benchLab(t);
    if (t) runs.set(t, measured);
  }
  if (runs.size > 1) compareTransports(runs);
} finally {
  rmSync(state, { recursive: true, force: true });
}
