// The figures a benchmark run measured, typed, so that the report is made from what was
// measured and nothing else. Each benchmark runs as its own process (bench/run.ts): it
// records figures and settings as JSON lines into the file named by BENCH_RESULTS; run.ts
// gathers them, with the versions, into one results.json. Without BENCH_RESULTS (a benchmark
// run by hand) recording does nothing and the printed tables are the only output.
import { appendFileSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import { PERF_CATEGORIES } from './perf-record.ts';

/** Where the I/O went: 'QEMU nvme', 'direct', 'PCIeOE', or a sharing case's path ('2:1 host-a', '1:2 card-b'). */
const io = z.object({
  kind: z.literal('io'),
  bench: z.string(),
  workload: z.string(),
  path: z.string(),
  /** Fabric faults during the run (PCIeOE paths): frames lost in the switch, added link latency. */
  lossPercent: z.number().optional(),
  addedLatencyUs: z.number().optional(),
  iops: z.number(),
  meanUs: z.number(),
  p99Us: z.number(),
});

/** CPU time one process of the lab (QEMU included) spent per I/O while one path ran one workload. */
const cpuPerIo = z.object({
  kind: z.literal('cpu-per-io'),
  bench: z.string(),
  workload: z.string(),
  path: z.string(),
  process: z.string(),
  us: z.number(),
  /** Whether the process carries this path's I/O (the HI, switch and DI of PCIeOE; the server of
   * direct attach), or only idles beside it. Absent in runs recorded before it was: all counted. */
  serves: z.boolean().optional(),
});

/** TLP payload (or raw datagram) throughput between two fabric endpoints. */
const throughput = z.object({
  kind: z.literal('throughput'),
  bench: z.string(),
  /** CPU placement of the processes, as the benchmark names it ('one CPU', 'spread', …). */
  placement: z.string(),
  /** 'unix dgram', 'memif', or a raw baseline ('raw unix dgram', 'raw via switch'). */
  transport: z.string(),
  links: z.number().int().positive(),
  /** Each link shaped to this rate, when it was. */
  shapedGbps: z.number().optional(),
  gbps: z.number(),
});

/** A request/answer round trip (MRd -> CplD through the switch, or a raw ping-pong). */
const roundTrip = z.object({
  kind: z.literal('round-trip'),
  bench: z.string(),
  placement: z.string(),
  what: z.string(),
  transport: z.string(),
  medianUs: z.number(),
  meanUs: z.number(),
});

/** Any other single figure (boot seconds, vfio-user round trips per second, …). */
const value = z.object({
  kind: z.literal('value'),
  bench: z.string(),
  name: z.string(),
  value: z.number(),
  unit: z.string(),
});

/** A NIC path's figures (bench/nic.ts): iperf3 TCP throughput each way and a run of pings. */
const nic = z.object({
  kind: z.literal('nic'),
  bench: z.string(),
  /** 'QEMU virtio-net', 'model direct' or 'model PCIeOE'. */
  path: z.string(),
  aToBMbps: z.number(),
  bToAMbps: z.number(),
  /** TCP segments the sender retransmitted in each run (iperf3's count): loss on the path shows here. */
  aToBRetransmits: z.number().int().optional(),
  bToARetransmits: z.number().int().optional(),
  pings: z.number().int().positive(),
  pingMeanMs: z.number(),
  pingP99Ms: z.number(),
});

/** What one port of the lab switch received while a case ran (the co-existence figure's counters). */
const portCounters = z.object({
  kind: z.literal('port-counters'),
  bench: z.string(),
  /** The case measured meanwhile, e.g. 'NVMe alone' or 'NVMe + iperf3'. */
  case: z.string(),
  port: z.string(),
  /** 'PCIeOE' (an HI's or DI's link), 'Ethernet' (a NIC's wire) or 'management' (the manager's station). */
  carries: z.enum(['PCIeOE', 'Ethernet', 'management']),
  seconds: z.number(),
  rxFrames: z.number(),
  rxBytes: z.number(),
  /** Frames the port lost either way: refused on the way in (runts, wrong VLAN, port security) or not sent out (queue full, send error). */
  dropped: z.number().optional(),
});

/** Where one process's CPU per I/O went, from perf's samples over a profiled round (bench/lib/perf-record.ts). */
const cpuSplit = z.object({
  kind: z.literal('cpu-split'),
  bench: z.string(),
  workload: z.string(),
  path: z.string(),
  process: z.string(),
  category: z.enum(PERF_CATEGORIES),
  us: z.number(),
});

export const figureSchema = z.discriminatedUnion('kind', [io, cpuPerIo, throughput, roundTrip, value, nic, portCounters, cpuSplit]);
export type Figure = z.infer<typeof figureSchema>;
export type IoFigure = z.infer<typeof io>;
export type CpuFigure = z.infer<typeof cpuPerIo>;
export type ThroughputFigure = z.infer<typeof throughput>;
export type RoundTripFigure = z.infer<typeof roundTrip>;
export type NicFigure = z.infer<typeof nic>;
export type PortCountersFigure = z.infer<typeof portCounters>;
export type CpuSplitFigure = z.infer<typeof cpuSplit>;

const settingValue = z.union([z.string(), z.number(), z.boolean()]);
export type Settings = Record<string, z.infer<typeof settingValue>>;

const line = z.union([figureSchema, z.object({ kind: z.literal('settings'), bench: z.string(), settings: z.record(z.string(), settingValue) })]);

export const resultsSchema = z.object({
  schema: z.literal(1),
  startedAt: z.string(),
  finishedAt: z.string(),
  quick: z.boolean(),
  /** Benchmarks asked for, and those whose process failed (their figures may be partial). */
  benches: z.array(z.string()),
  failed: z.array(z.string()),
  versions: z.object({
    node: z.string(),
    qemu: z.string().optional(),
    guestKernel: z.string().optional(),
    hostKernel: z.string(),
    gitCommit: z.string(),
    /** Uncommitted changes in the working tree when the run started. */
    gitDirty: z.boolean(),
    cpus: z.string(),
  }),
  /** Per benchmark: what it ran with (seconds per case, topology, placement, …). */
  settings: z.record(z.string(), z.record(z.string(), settingValue)),
  figures: z.array(figureSchema),
});
export type Results = z.infer<typeof resultsSchema>;

function append(entry: z.infer<typeof line>): void {
  const file = process.env.BENCH_RESULTS;
  if (file) appendFileSync(file, `${JSON.stringify(entry)}\n`);
}

/** Records one measured figure for the run's report. */
export function record(figure: Figure): void {
  append(figureSchema.parse(figure));
}

/** Records what a benchmark ran with; later calls add to earlier ones. */
export function recordSettings(bench: string, settings: Settings): void {
  append({ kind: 'settings', bench, settings });
}

/** The figures and settings recorded into one BENCH_RESULTS file (none if it does not exist). */
export function readRecorded(file: string): { figures: Figure[]; settings: Record<string, Settings> } {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const figures: Figure[] = [];
  const settings: Record<string, Settings> = {};
  text.split('\n').forEach((l, i) => {
    if (!l.trim()) return;
    const parsed = line.safeParse(JSON.parse(l));
    if (!parsed.success) throw new Error(`${file}:${i + 1}: not a recorded figure: ${parsed.error.message}`);
    const entry = parsed.data;
    if (entry.kind === 'settings') settings[entry.bench] = { ...settings[entry.bench], ...entry.settings };
    else figures.push(entry);
  });
  return { figures, settings };
}

/** A results.json file, checked against the schema. */
export function readResults(file: string): Results {
  const parsed = resultsSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
  if (!parsed.success) throw new Error(`${file}: not a benchmark results file: ${parsed.error.message}`);
  return parsed.data;
}
