// The benchmark report as markdown: tables of what one run measured, ratios computed only
// from figures of that run, and a list of the figures issue 13 asks for that the run does
// not have ("missing", never estimated).
import { PERFORMANCE_NOTES, whereTimeGoes } from './time-spent.ts';
import type { CpuFigure, Figure, IoFigure, NicFigure, PortCountersFigure, Results, RoundTripFigure, ThroughputFigure } from '../lib/results.ts';

/** The NVMe paths measured side by side, in the order the tables show them. */
export const NVME_PATHS = ['QEMU nvme', 'direct', 'PCIeOE'] as const;
/** The workloads of the NVMe benchmark (bench/lib/fio.ts names them so). */
export const NVME_WORKLOADS = ['randread 512 B', 'randwrite 512 B', 'randrw 70 % read 4 KiB', 'seq read 64 KiB', 'seq write 64 KiB'] as const;
export const QD1_WORKLOAD = 'QD 1 randread 4 KiB';
/** Fabric faults issue 13 asks IOPS against. */
export const LOSS_PERCENTS = [0.1, 1] as const;
export const ADDED_LATENCIES_US = [10, 50, 200] as const;
/** The fault figures issue 13 asks for, as a run records them, in the order tables show them. */
export const FAULTS: readonly Pick<IoFigure, 'lossPercent' | 'addedLatencyUs'>[] = [
  ...LOSS_PERCENTS.map((lossPercent) => ({ lossPercent })),
  ...ADDED_LATENCIES_US.map((addedLatencyUs) => ({ addedLatencyUs })),
];
/** The faulted PCIeOE paths as tables name them, in that order. */
export const FAULT_PATHS = FAULTS.map((f) => pathLabel({ path: 'PCIeOE', ...f }));
const LARGE = (w: string) => w.includes('64 KiB');

/** One ratio of two figures of the run, with the issue's target for it. */
export interface Ratio {
  workload: string;
  what: string;
  /** Percent, or undefined when either figure is missing from the run. */
  percent?: number;
  target: number;
  /** The target is a ceiling (CPU), not a floor (IOPS). */
  atMost?: boolean;
}

/** How a path is named in tables: its fabric faults, if any, after it. */
export function pathLabel(f: Pick<IoFigure, 'path' | 'lossPercent' | 'addedLatencyUs'>): string {
  return [f.path, f.lossPercent ? `${f.lossPercent} % loss` : '', f.addedLatencyUs ? `+${f.addedLatencyUs} µs link` : ''].filter(Boolean).join(' ');
}

/** Whether a figure was measured with fabric faults (loss or added latency). */
export const faulted = (f: Pick<IoFigure, 'lossPercent' | 'addedLatencyUs'>): boolean => !!(f.lossPercent || f.addedLatencyUs);

export const isKind = <K extends Figure['kind']>(k: K) => (f: Figure): f is Extract<Figure, { kind: K }> => f.kind === k;
export const ioFigures = (r: Results, bench: string) => r.figures.filter(isKind('io')).filter((f) => f.bench === bench);
const unique = <T>(xs: T[]) => [...new Set(xs)];
/** Known names first, in their order, then the rest as the run recorded them. */
const ordered = (known: readonly string[], seen: string[]) => unique([...known.filter((k) => seen.includes(k)), ...seen]);

function find(figs: IoFigure[], workload: string, label: string): IoFigure | undefined {
  return figs.find((f) => f.workload === workload && pathLabel(f) === label);
}

/** The ratios issue 13 sets targets for, from the NVMe benchmark's figures of this run. */
export function nvmeRatios(r: Results): Ratio[] {
  const figs = ioFigures(r, 'nvme');
  const ratio = (workload: string, num: string, den: string, target: number): Ratio => {
    const [a, b] = [find(figs, workload, num), find(figs, workload, den)];
    return { workload, what: `${num} / ${den}`, percent: a && b ? (a.iops / b.iops) * 100 : undefined, target };
  };
  const workloads = ordered(NVME_WORKLOADS, unique(figs.map((f) => f.workload)).filter((w) => w !== QD1_WORKLOAD));
  return workloads.flatMap((w) => [
    ratio(w, 'direct', 'QEMU nvme', 100),
    ratio(w, 'PCIeOE', 'direct', LARGE(w) ? 80 : 90),
    ratio(w, `PCIeOE ${LOSS_PERCENTS[0]} % loss`, 'PCIeOE', 85),
  ]);
}

/** The process QEMU runs as in the NVMe benchmark's CPU figures; every other one is the lab's. */
export const QEMU_PROCESS = 'QEMU';

/**
 * Lab CPU per small I/O, PCIeOE against direct attach: the lab processes that carry each path
 * summed, so the HI, switch and DI together face the direct-attach server (target ≤ 1.5×); the
 * others' idle CPU beside it is left out.
 */
export function labCpuRatios(r: Results): Ratio[] {
  const figs = r.figures.filter(isKind('cpu-per-io')).filter((f) => f.bench === 'nvme' && f.process !== QEMU_PROCESS);
  const lab = (w: string, path: string) => {
    const here = labCpu(r, w, path);
    return here.length ? here.reduce((a, f) => a + f.us, 0) : undefined;
  };
  return unique(figs.map((f) => f.workload)).filter((w) => !LARGE(w) && w !== QD1_WORKLOAD).map((w) => {
    const [a, b] = [lab(w, 'PCIeOE'), lab(w, 'direct')];
    return { workload: w, what: 'lab CPU per I/O, PCIeOE / direct', percent: a !== undefined && b ? (a / b) * 100 : undefined, target: 150, atMost: true };
  });
}

/** The CPU per I/O of each lab process (QEMU left out) that carries one NVMe path's I/O, on one workload of the run. */
export function labCpu(r: Results, workload: string, path: string): CpuFigure[] {
  return r.figures.filter(isKind('cpu-per-io')).filter((f) => f.bench === 'nvme' && f.process !== QEMU_PROCESS && f.workload === workload && f.path === path && f.serves !== false);
}

/** The PCIeOE and direct-attach figures of one NVMe workload, without fabric faults. */
export function remoteAndDirect(r: Results, workload: string): { remote?: IoFigure; direct?: IoFigure } {
  const figs = ioFigures(r, 'nvme').filter((f) => f.workload === workload && !faulted(f));
  return { remote: figs.find((f) => f.path === 'PCIeOE'), direct: figs.find((f) => f.path === 'direct') };
}

/** A target of issue 13 that is not a ratio per workload: fabric rates, round trips, QD 1 latency. */
export interface Check {
  what: string;
  /** In `unit`; undefined when a figure it needs is missing from the run. */
  value?: number;
  unit: string;
  target: number;
  atMost?: boolean;
}

/** The fabric's targets are set for the spread placement (switch on its own CPU). */
export const TARGET_PLACEMENT = 'spread';

/** The fabric bench's round trips (round-trip figures' `what`): a read across the switch, and raw 64 B ping-pongs without and with it. */
export const ROUND_TRIPS = { read: 'MRd 1 DW -> CplD via switch', raw: 'ping-pong 64 B', rawSwitched: 'ping-pong 64 B via switch' } as const;

/** A round trip's median in the target placement, µs. */
export const roundTripUs = (r: Results, what: string, transport: string): number | undefined =>
  r.figures.filter(isKind('round-trip')).find((f) => f.placement === TARGET_PLACEMENT && f.transport === transport && f.what === what)?.medianUs;

export function otherChecks(r: Results): Check[] {
  const rate = (transport: string, links: number, shaped: boolean) =>
    r.figures.filter(isKind('throughput')).find((f) => f.placement === TARGET_PLACEMENT && f.transport === transport && f.links === links && !!f.shapedGbps === shaped)?.gbps;
  const over = (a?: number, b?: number) => (a !== undefined && b ? (a / b) * 100 : undefined);
  const added = qd1AddedUs(r);
  const addedB2b = qd1AddedUs(r, QD1_BACK_TO_BACK);
  return [
    { what: 'QD 1 4 KiB randread: PCIeOE mean added over direct', value: added, unit: 'µs', target: 50, atMost: true },
    { what: 'QD 1 added latency, the issue\'s floor', value: added, unit: 'µs', target: 200, atMost: true },
    ...(addedB2b === undefined ? [] : [{ what: 'QD 1 added latency, HI and DI back to back (no switch process)', value: addedB2b, unit: 'µs', target: 200, atMost: true }]),
    { what: `one memif link through the switch (${TARGET_PLACEMENT})`, value: rate('memif', 1, false), unit: 'Gb/s', target: 10 },
    { what: `MRd round trip over memif / raw memif round trip (${TARGET_PLACEMENT})`, value: over(roundTripUs(r, ROUND_TRIPS.read, 'memif'), roundTripUs(r, ROUND_TRIPS.raw, 'raw memif')), unit: '%', target: 200, atMost: true },
    { what: `two shaped unix dgram links / one (${TARGET_PLACEMENT})`, value: over(rate('unix dgram', 2, true), rate('unix dgram', 1, true)), unit: '%', target: 180 },
    { what: `two shaped memif links / one (${TARGET_PLACEMENT})`, value: over(rate('memif', 2, true), rate('memif', 1, true)), unit: '%', target: 180 },
  ];
}

/** The QD 1 case's PCIeOE path with the HI and DI cabled back to back (bench/nvme.ts). */
export const QD1_BACK_TO_BACK = 'PCIeOE back to back';

/** What the fabric (the PCIeOE path, or `path`) adds to a QD 1 read's mean latency over direct attach, µs. */
export function qd1AddedUs(r: Results, path = 'PCIeOE'): number | undefined {
  const figs = ioFigures(r, 'nvme').filter((f) => f.workload === QD1_WORKLOAD);
  const remote = find(figs, QD1_WORKLOAD, path);
  const direct = find(figs, QD1_WORKLOAD, 'direct');
  return remote && direct ? remote.meanUs - direct.meanUs : undefined;
}

const verdict = (value: number | undefined, target: number, atMost?: boolean) =>
  value === undefined ? '' : (atMost ? value <= target : value >= target) ? 'met' : 'missed';

/** A markdown table; cells already text. */
export function table(head: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(head), line(head.map((_, i) => (i === 0 ? '---' : '---:'))), ...rows.map(line)].join('\n');
}

export const MISSING = 'missing';
export const num = (x: number | undefined, digits = 0) => (x === undefined ? MISSING : x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }));
const pct = (x: number | undefined) => (x === undefined ? MISSING : `${x.toFixed(0)} %`);

function ioTable(figs: IoFigure[], knownPaths: readonly string[]): string {
  const labels = ordered(knownPaths, unique(figs.map(pathLabel)));
  const workloads = unique(figs.map((f) => f.workload));
  return table(
    ['workload', ...labels.flatMap((p) => [`${p} IOPS`, 'mean µs', 'p99 µs'])],
    workloads.map((w) => [w, ...labels.flatMap((p) => {
      const f = find(figs, w, p);
      return [num(f?.iops), num(f?.meanUs), num(f?.p99Us)];
    })]),
  );
}

/**
 * A measured value beside its target, with as many decimals (up to two) as it takes for the
 * text not to read as the target itself when the verdict goes the other way (89.98 % missed
 * against ≥ 90 % is not "90 %").
 */
export function againstTarget(value: number, target: number, unit: string, decimals = 0): string {
  let d = decimals;
  while (d < decimals + 2 && value !== target && Number(value.toFixed(d)) === target) d++;
  return `${num(value, d)} ${unit}`;
}

function ratioTable(ratios: Ratio[]): string {
  return table(['workload', 'ratio', 'measured', 'target', ''], ratios.map((x) => [
    x.workload, x.what, x.percent === undefined ? MISSING : againstTarget(x.percent, x.target, '%'), `${x.atMost ? '≤' : '≥'} ${x.target} %`, verdict(x.percent, x.target, x.atMost),
  ]));
}

function checkTable(checks: Check[]): string {
  return table(['target', 'measured', 'wanted', ''], checks.map((c) => [
    c.what, c.value === undefined ? MISSING : againstTarget(c.value, c.target, c.unit, c.unit === 'Gb/s' ? 2 : 0), `${c.atMost ? '≤' : '≥'} ${c.target} ${c.unit}`, verdict(c.value, c.target, c.atMost),
  ]));
}

/** PCIeOE under each fault, per workload (QD 1 included): IOPS, its share of the fault-free PCIeOE's, mean latency. */
function faultTable(r: Results): string {
  const figs = ioFigures(r, 'nvme').filter((f) => f.path === 'PCIeOE');
  const faults = ordered(FAULT_PATHS, unique(figs.map(pathLabel)).filter((p) => p !== 'PCIeOE'));
  const workloads = ordered([...NVME_WORKLOADS, QD1_WORKLOAD], unique(figs.filter((f) => faults.includes(pathLabel(f))).map((f) => f.workload)));
  return table(
    ['workload', 'PCIeOE IOPS', 'mean µs', ...faults.flatMap((p) => [`${p.slice('PCIeOE '.length)} IOPS`, 'mean µs'])],
    workloads.map((w) => {
      const clean = find(figs, w, 'PCIeOE');
      return [w, num(clean?.iops), num(clean?.meanUs), ...faults.flatMap((p) => {
        const f = find(figs, w, p);
        return [f && clean ? `${num(f.iops)} (${pct((f.iops / clean.iops) * 100)})` : num(f?.iops), num(f?.meanUs)];
      })];
    }),
  );
}

/** Dependent crossings of the switch in a QD 1 read: the doorbell, the SQE's MRd and CplD, the data with CQE and MSI. */
const QD1_CROSSINGS = 4;

/**
 * What each added link latency did to a QD 1 read beside the delay itself (QD1_CROSSINGS of it),
 * with the switch's CPU per I/O, which says why: a delayed frame wakes the switch once more.
 */
function delayNote(r: Results): string | undefined {
  const figs = ioFigures(r, 'nvme').filter((f) => f.workload === QD1_WORKLOAD && f.path === 'PCIeOE');
  const clean = figs.find((f) => !faulted(f));
  const delayed = figs.filter((f) => f.addedLatencyUs && !f.lossPercent).sort((a, b) => a.addedLatencyUs! - b.addedLatencyUs!);
  if (!clean || !delayed.length) return undefined;
  const sw = (label: string) => r.figures.filter(isKind('cpu-per-io')).find((c) => c.bench === 'nvme' && c.workload === QD1_WORKLOAD && c.path === label && c.process === 'sw')?.us;
  const swText = (us: number | undefined) => (us === undefined ? 'switch CPU not recorded' : `switch ${num(us)} µs`);
  const cases = delayed.map((f) => `+${f.addedLatencyUs} µs: ${num(f.meanUs - clean.meanUs)} µs more (${num(QD1_CROSSINGS * f.addedLatencyUs!)} µs of delay), ${swText(sw(pathLabel(f)))}`);
  return `At QD 1 a read crosses the switch ${QD1_CROSSINGS} times one after another, so a link latency L should add ${QD1_CROSSINGS} L to its mean. ` +
    `Measured, with the switch's CPU per I/O (${swText(sw('PCIeOE'))} without delay): ${cases.join('; ')}. ` +
    'Beyond the delay each delayed frame costs the switch a wake-up of its own (its timerfd), and it leaves the native forward for the fault injector in JavaScript, on the CPUs the guest and the lab share.';
}

function qd1Table(r: Results): string {
  const figs = ioFigures(r, 'nvme').filter((f) => f.workload === QD1_WORKLOAD);
  const direct = find(figs, QD1_WORKLOAD, 'direct');
  return table(['path', 'mean µs', 'p99 µs', 'IOPS', 'mean added over direct'], ordered(NVME_PATHS, unique(figs.map(pathLabel))).map((p) => {
    const f = find(figs, QD1_WORKLOAD, p)!;
    return [p, num(f.meanUs), num(f.p99Us), num(f.iops), p === 'direct' ? '' : direct ? `${num(f.meanUs - direct.meanUs)} µs` : MISSING];
  }));
}

function cpuTables(figs: CpuFigure[]): string {
  const procs = unique(figs.map((f) => f.process));
  return unique(figs.map((f) => f.workload)).map((w) => {
    const here = figs.filter((f) => f.workload === w);
    const paths = ordered(NVME_PATHS, unique(here.map((f) => f.path)));
    return `**${w}**\n\n${table(['path', ...procs.map((p) => `${p} µs`)], paths.map((p) => [p, ...procs.map((proc) => num(here.find((f) => f.path === p && f.process === proc)?.us, 1))]))}`;
  }).join('\n\n');
}

function fabricTable(figs: ThroughputFigure[]): string {
  return table(['placement', 'transport', 'links', 'shaped to', 'Gb/s'], figs.map((f) => [
    f.placement, f.transport, String(f.links), f.shapedGbps ? `${f.shapedGbps} Gb/s per link` : '', num(f.gbps, 2),
  ]));
}

function rttTable(figs: RoundTripFigure[]): string {
  return table(['placement', 'round trip', 'transport', 'median µs', 'mean µs'], figs.map((f) => [f.placement, f.what, f.transport, num(f.medianUs, 1), num(f.meanUs, 1)]));
}

/** What issue 13 asks the report to show that this run has no figure for, and which benchmark would measure it when it was not run. */
export function missingFigures(r: Results): string[] {
  const nvme = ioFigures(r, 'nvme');
  const has = (w: string, label: string) => find(nvme, w, label) !== undefined;
  const out: string[] = [];
  const lacks = (bench: string, what: string) => out.push(r.benches.includes(bench) ? what : `${what} (${bench} not run)`);
  for (const w of [...NVME_WORKLOADS, QD1_WORKLOAD]) {
    const lacking = NVME_PATHS.filter((p) => !has(w, p));
    if (lacking.length) lacks('nvme', `${w}: ${lacking.join(', ')}`);
  }
  for (const loss of LOSS_PERCENTS) if (!NVME_WORKLOADS.some((w) => has(w, `PCIeOE ${loss} % loss`))) lacks('nvme', `IOPS with ${loss} % frame loss`);
  for (const us of ADDED_LATENCIES_US) if (!nvme.some((f) => f.addedLatencyUs === us)) lacks('nvme', `IOPS with ${us} µs added link latency`);
  const sharing = ioFigures(r, 'sharing');
  for (const c of ['2:1', '1:2']) if (!sharing.some((f) => f.path.startsWith(c))) lacks('sharing', `sharing ${c}`);
  const tp = r.figures.filter(isKind('throughput'));
  for (const [transport, links] of [['unix dgram', 1], ['unix dgram', 2], ['memif', 1], ['memif', 2]] as const)
    if (!tp.some((f) => f.transport === transport && f.links === links && !f.shapedGbps)) lacks('fabric', `fabric throughput, ${links} ${transport} link${links > 1 ? 's' : ''}`);
  if (!r.figures.some(isKind('cpu-per-io'))) lacks('nvme', 'CPU µs per I/O');
  const nic = nicFigures(r);
  for (const p of NIC_PATHS) if (!nic.some((f) => f.path === p)) lacks('nic', `NIC ${p}: iperf3 and ping`);
  for (const h of COEX_HOSTS) for (const c of COEX_CASES) if (coexIops(r, h, c) === undefined) lacks('nic', `NVMe IOPS ${h} ${c}`);
  if (!r.figures.some(isKind('port-counters'))) lacks('nic', 'switch per-port counters during the co-existence cases');
  for (const f of Object.keys(HOTPLUG_FLOWS) as (keyof typeof HOTPLUG_FLOWS)[]) if (hotplugValue(r, hotplugFigureName(f)) === undefined) lacks('hotplug', `hot-plug: ${HOTPLUG_FLOWS[f]}`);
  for (const b of r.failed) out.push(`benchmark ${b} failed: its figures may be partial`);
  return out;
}

/** bench/hotplug.ts's flows (issue 12): each has a figure until the guest shows it, and the manager's own time. */
export const HOTPLUG_FLOWS = { assign: 'assign to nvme driver bound', unassign: 'unassign to slot empty', move: 'move to nvme driver bound on the new host' } as const;
export const hotplugFigureName = (flow: keyof typeof HOTPLUG_FLOWS, manager = false) => (manager ? `${flow}: manager's own time (mean)` : `${HOTPLUG_FLOWS[flow]} (mean)`);
const hotplugValue = (r: Results, name: string) => r.figures.filter(isKind('value')).find((f) => f.bench === 'hotplug' && f.name === name)?.value;

function hotplugSection(r: Results): string | undefined {
  const flows = Object.keys(HOTPLUG_FLOWS) as (keyof typeof HOTPLUG_FLOWS)[];
  if (!flows.some((f) => hotplugValue(r, hotplugFigureName(f)) !== undefined)) return undefined;
  const s = (v: number | undefined) => (v === undefined ? MISSING : num(v, 2));
  return table(['flow', 'until the guest shows it, s', "manager's own time, s"], flows.map((f) => [HOTPLUG_FLOWS[f], s(hotplugValue(r, hotplugFigureName(f))), s(hotplugValue(r, hotplugFigureName(f, true)))]));
}

/** The NIC paths of bench/nic.ts, in table order, and issue 14's targets between them. */
export const NIC_PATHS = ['QEMU virtio-net', 'model direct', 'model PCIeOE'] as const;
/** The co-existence cases: NVMe I/O alone, and while iperf3 runs through the same switch. */
export const COEX_CASES = ['alone', 'under iperf3'] as const;
export const COEX_HOSTS = ['host-a', 'host-b'] as const;

export const nicFigures = (r: Results) => r.figures.filter(isKind('nic'));
const coexFigures = (r: Results) => ioFigures(r, 'nic');
const coexIops = (r: Results, host: string, c: string) => coexFigures(r).find((f) => f.path === `${host} ${c}`)?.iops;

/** Issue 14's targets: throughput each way between the NIC paths, and NVMe IOPS under iperf3 against alone (per host and summed). */
export function nicRatios(r: Results): Ratio[] {
  const nic = nicFigures(r);
  const over = (a?: number, b?: number) => (a !== undefined && b ? (a / b) * 100 : undefined);
  const tput = (dir: 'aToBMbps' | 'bToAMbps', num: string, den: string, target: number): Ratio => ({
    workload: `iperf3 TCP ${dir === 'aToBMbps' ? 'A->B' : 'B->A'}`,
    what: `${num} / ${den}`,
    percent: over(nic.find((f) => f.path === num)?.[dir], nic.find((f) => f.path === den)?.[dir]),
    target,
  });
  const sum = (c: string) => {
    const xs = COEX_HOSTS.map((h) => coexIops(r, h, c));
    return xs.every((x) => x !== undefined) ? xs.reduce((a, x) => a! + x!, 0) : undefined;
  };
  const coex = (label: string, a?: number, b?: number): Ratio => ({ workload: `NVMe ${label}`, what: 'IOPS under iperf3 / alone', percent: over(a, b), target: 80 });
  return [
    ...(['aToBMbps', 'bToAMbps'] as const).flatMap((d) => [tput(d, 'model PCIeOE', 'model direct', 80), tput(d, 'model direct', 'QEMU virtio-net', 50)]),
    ...COEX_HOSTS.map((h) => coex(h, coexIops(r, h, 'under iperf3'), coexIops(r, h, 'alone'))),
    coex('both hosts', sum('under iperf3'), sum('alone')),
  ];
}

function nicTable(figs: NicFigure[]): string {
  const paths = ordered(NIC_PATHS, unique(figs.map((f) => f.path)));
  return table(['path', 'TCP A->B Mb/s', 'retransmits', 'TCP B->A Mb/s', 'retransmits', 'ping mean ms', 'ping p99 ms', 'pings'], paths.map((p) => {
    const f = figs.find((x) => x.path === p)!;
    return [p, num(f.aToBMbps), num(f.aToBRetransmits), num(f.bToAMbps), num(f.bToARetransmits), num(f.pingMeanMs, 2), num(f.pingP99Ms, 2), String(f.pings)];
  }));
}

function coexTable(r: Results): string {
  const figs = coexFigures(r);
  const workload = figs[0]?.workload ?? '';
  return `NVMe ${workload} over PCIeOE on both hosts at once, alone and while iperf3 TCP runs A -> B (model PCIeOE) through the same switch.\n\n` +
    table(['host', ...COEX_CASES.flatMap((c) => [`IOPS ${c}`, 'mean µs', 'p99 µs'])], COEX_HOSTS.map((h) => [h, ...COEX_CASES.flatMap((c) => {
      const f = figs.find((x) => x.path === `${h} ${c}`);
      return [num(f?.iops), num(f?.meanUs), num(f?.p99Us)];
    })]));
}

/** What each switch port received during each co-existence case: PCIeOE links and NIC wires side by side. */
function portTable(figs: PortCountersFigure[]): string {
  const cases = unique(figs.map((f) => f.case));
  const ports = unique(figs.map((f) => f.port));
  return table(['port', 'carries', ...cases.flatMap((c) => [`${c}: frames/s`, 'MB/s', 'dropped'])], ports.map((p) => {
    const here = figs.filter((f) => f.port === p);
    return [p, here[0]!.carries, ...cases.flatMap((c) => {
      const f = here.find((x) => x.case === c);
      return f ? [num(f.rxFrames / f.seconds), num(f.rxBytes / f.seconds / 1e6, 2), num(f.dropped)] : [MISSING, MISSING, MISSING];
    })];
  }));
}

/** How the run measured the NIC paths: bench/nic.ts records it (setting nicPaths) since it measures them in one lab. */
export function nicMethod(r: Results): string {
  const how = r.settings.nic?.nicPaths;
  return how === undefined ? 'Each NIC path was measured in a lab of its own, minutes apart.' : `The NIC paths were measured ${how}.`;
}

function nicSection(r: Results, plots: Plots): string | undefined {
  const nic = nicFigures(r);
  const ports = r.figures.filter(isKind('port-counters'));
  const coex = coexFigures(r);
  if (!nic.length && !coex.length && !ports.length) return undefined;
  return [
    nic.length ? `${nicMethod(r)}\n\n${nicTable(nic)}${plot(plots.nic, 'NIC throughput per path')}` : '',
    ratioTable(nicRatios(r)),
    coex.length ? coexTable(r) + plot(plots.coexistence, 'NVMe IOPS alone and under iperf3') : '',
    ports.length ? `Switch per-port receive counters over each case (PCIeOE: HI and DI links; Ethernet: the NICs' wires; management: the manager's station).\n\n${portTable(ports)}` : '',
  ].filter(Boolean).join('\n\n');
}

/** Plots the report embeds, by file name, when the generator produced them. */
export interface Plots {
  iops?: string;
  faults?: string;
  qd1?: string;
  cpu?: string;
  fabric?: string;
  nic?: string;
  coexistence?: string;
}

function whereTimeSection(r: Results): string | undefined {
  const paragraphs = whereTimeGoes(r);
  if (!paragraphs.length) return undefined;
  return [...paragraphs, `Profiles of each process by function, and what would close each gap: [performance notes](${PERFORMANCE_NOTES}).`].join('\n\n');
}

const plot = (file: string | undefined, alt: string) => (file ? `\n\n![${alt}](${file})` : '');
const section = (title: string, body: string | undefined) => `## ${title}\n\n${body ?? 'No figures in this run.'}`;

/**
 * The soft-driver QD 1 bench's profiled round: a row per path and process, CPU µs per I/O in each
 * category of bench/lib/perf-record.ts (kernel included); undefined when the run has none.
 */
function splitTable(r: Results): string | undefined {
  const figs = r.figures.filter(isKind('cpu-split'));
  if (!figs.length) return undefined;
  const categories = unique(figs.map((f) => f.category));
  const rows = unique(figs.map((f) => `${f.path}\u0000${f.process}`)).map((key) => {
    const [path, process] = key.split('\u0000') as [string, string];
    const mine = figs.filter((f) => f.path === path && f.process === process);
    const us = (c: string) => mine.filter((f) => f.category === c).reduce((a, f) => a + f.us, 0);
    return [path, process, num(mine.reduce((a, f) => a + f.us, 0)), ...categories.map((c) => num(us(c)))];
  });
  return (
    'One more round per path of `bench/nvme-qd1.ts` (soft driver, no guest) under `perf record`, after its measured rounds: ' +
    'CPU µs per I/O, kernel included (perf\'s sampling slows what it samples, so totals run above the measured rounds\' figures).\n\n' +
    table(['path', 'process', 'total', ...categories], rows)
  );
}

export function renderMarkdown(r: Results, plots: Plots = {}): string {
  const v = r.versions;
  const settings = Object.entries(r.settings).map(([bench, s]) => `- ${bench}: ${Object.entries(s).map(([k, x]) => `${k} ${x}`).join(', ')}`);
  const nvme = ioFigures(r, 'nvme');
  const plain = nvme.filter((f) => !faulted(f) && f.workload !== QD1_WORKLOAD);
  const anyFaulted = nvme.some(faulted);
  const sharing = ioFigures(r, 'sharing');
  const cpu = r.figures.filter(isKind('cpu-per-io'));
  const tp = r.figures.filter(isKind('throughput'));
  const rtt = r.figures.filter(isKind('round-trip'));
  const values = r.figures.filter(isKind('value')).filter((f) => f.bench !== 'hotplug');
  const missing = missingFigures(r);
  const qd1 = nvme.some((f) => f.workload === QD1_WORKLOAD);
  return [
    `# PCIeOE benchmark report — ${r.startedAt}`,
    `${r.quick ? 'Quick run (`--quick`)' : 'Full run'} of ${r.benches.join(', ')}, ${r.startedAt} to ${r.finishedAt}. ` +
      'Every figure below was measured in this run; ratios are of figures of this run only. Raw figures: [results.json](results.json).',
    table(['', 'version'], [
      ['Node', v.node], ['QEMU', v.qemu ?? MISSING], ['guest kernel', v.guestKernel ?? MISSING], ['host kernel', v.hostKernel],
      ['git commit', `${v.gitCommit}${v.gitDirty ? ' (working tree had uncommitted changes)' : ''}`], ['CPUs', v.cpus],
    ]),
    section('Settings', settings.length ? settings.join('\n') : undefined),
    section('NVMe IOPS and latency per workload and path', plain.length ? ioTable(plain, NVME_PATHS) + plot(plots.iops, 'IOPS per workload and path') : undefined),
    section('Ratios against issue 13\'s targets', nvme.length ? ratioTable([...nvmeRatios(r), ...labCpuRatios(r)]) : undefined),
    section('Fabric and latency targets', checkTable(otherChecks(r))),
    section('Where the time goes', whereTimeSection(r)),
    section('PCIeOE under fabric faults', anyFaulted ? [
      'Frame loss and added one-way link latency, set on every port of the switch on the way out, so each frame meets them once per crossing; IOPS as a share of PCIeOE without faults in the same run.',
      faultTable(r) + plot(plots.faults, 'PCIeOE IOPS under faults'),
      delayNote(r),
    ].filter(Boolean).join('\n\n') : undefined),
    section('QD 1 latency, 4 KiB random read', qd1 ? qd1Table(r) + plot(plots.qd1, 'QD 1 latency per path') : undefined),
    section('CPU µs per I/O, per process', cpu.length ? cpuTables(cpu) + plot(plots.cpu, 'CPU µs per I/O per process') : undefined),
    section('Where a QD 1 I/O\'s CPU goes, by category (perf)', splitTable(r)),
    section('Sharing (2:1, 1:2)', sharing.length ? ioTable(sharing, []) : undefined),
    section('Fabric throughput per link count and transport', tp.length ? fabricTable(tp) + plot(plots.fabric, 'fabric throughput') : undefined),
    section('Fabric round trips', rtt.length ? rttTable(rtt) : undefined),
    section('NIC paths and PCIeOE beside Ethernet (issue 14)', nicSection(r, plots)),
    section('Hot-plug flows (issue 12)', hotplugSection(r)),
    section('Other figures', values.length ? table(['benchmark', 'figure', 'value', 'unit'], values.map((f) => [f.bench, f.name, num(f.value, 2), f.unit])) : undefined),
    section('Missing from this run', missing.length ? missing.map((m) => `- ${m}`).join('\n') : 'Nothing: every figure asked for was measured.'),
  ].join('\n\n') + '\n';
}
