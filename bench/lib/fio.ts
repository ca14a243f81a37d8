// fio in lab guests, as the NVMe benchmarks run it: the five workloads of issues 4 and 6,
// each QD 64 as 2 jobs x iodepth 32, and a QD 1 latency case; libaio direct, JSON output
// reduced to one Result.
import { agentExec } from '../../src/lab/agent.ts';

export interface Workload {
  name: string;
  /** fio's --rw and --bs (and mix). */
  args: string;
  /** Queue depth as jobs x iodepth; default 2 x 32 (QD 64). */
  jobs?: number;
  iodepth?: number;
  /** Pin the job to one guest vCPU (fio --cpus_allowed): 'last', or none (the default). */
  cpu?: 'last';
}

export const WORKLOADS: readonly Workload[] = [
  { name: 'randread 512 B', args: '--rw=randread --bs=512' },
  { name: 'randwrite 512 B', args: '--rw=randwrite --bs=512' },
  { name: 'randrw 70 % read 4 KiB', args: '--rw=randrw --rwmixread=70 --bs=4k' },
  { name: 'seq read 64 KiB', args: '--rw=read --bs=64k' },
  { name: 'seq write 64 KiB', args: '--rw=write --bs=64k' },
];

/**
 * One I/O at a time: the latency of the path itself (issue 13's QD 1 target). The job runs on the
 * guest's last vCPU, as latency benchmarks pin their thread: left free, the guest's scheduler moves
 * fio between vCPUs while it sleeps on an I/O, the more often the longer the I/O takes, and under
 * TCG each move costs the next I/O tens of µs (docs/performance.md). NVME_BENCH_QD1_CPU=none
 * leaves it unpinned.
 */
export const QD1_RANDREAD: Workload = { name: 'QD 1 randread 4 KiB', args: '--rw=randread --bs=4k', jobs: 1, iodepth: 1, cpu: process.env.NVME_BENCH_QD1_CPU === 'none' ? undefined : 'last' };

/** `--quick` (or BENCH_QUICK=1): shorter runs, for a first look. */
export const QUICK = process.argv.includes('--quick') || process.env.BENCH_QUICK === '1';
export const SECONDS = Number(process.env.NVME_BENCH_SECONDS ?? (QUICK ? 5 : 10));

/** A command in one guest, resolving with its standard output. */
export type Shell = (cmd: string) => Promise<string>;

interface FioSide {
  iops: number;
  lat_ns: { mean: number };
  clat_ns?: { percentile?: Record<string, number> };
}
export interface Result {
  iops: number;
  meanUs: number;
  p99Us: number;
}

/** Read and write sides of a group-reported job combined: IOPS summed, mean weighted, p99 the worse one. */
function combine(job: { read: FioSide; write: FioSide }): Result {
  const sides = [job.read, job.write].filter((s) => s.iops > 0);
  const iops = sides.reduce((a, s) => a + s.iops, 0);
  const meanUs = sides.reduce((a, s) => a + s.iops * s.lat_ns.mean, 0) / iops / 1000;
  const p99Us = Math.max(...sides.map((s) => s.clat_ns?.percentile?.['99.000000'] ?? 0)) / 1000;
  return { iops, meanUs, p99Us };
}

/** A shell in one guest that throws on a non-zero exit. */
export function guestShell(agent: string): Shell {
  return async (cmd) => {
    const r = await agentExec(agent, cmd, { timeoutMs: (SECONDS + 120) * 1000 });
    if (r.status !== 0) throw new Error(`guest: ${cmd}: exit ${r.status}\n${r.stdout}${r.stderr}`);
    return r.stdout;
  };
}

/** NVMe controllers the guest sees: model, serial and the block device of the first namespace. */
export async function controllers(sh: Shell): Promise<{ model: string; serial: string; dev: string }[]> {
  const out = await sh('for c in /sys/class/nvme/nvme*; do echo "$(basename $c)|$(cat $c/model)|$(cat $c/serial)"; done');
  return out.trim().split('\n').map((l) => {
    const [ctrl, model, serial] = l.split('|');
    return { model: model!.trim(), serial: serial!.trim(), dev: `/dev/${ctrl}n1` };
  });
}

/** Write the area the reads cover, so reads hit written (not sparse) blocks everywhere. */
export async function fill(sh: Shell, dev: string): Promise<void> {
  await sh(`fio --name=fill --filename=${dev} --direct=1 --ioengine=libaio --rw=write --bs=1M --iodepth=8 --size=256M >/dev/null`);
}

export async function runFio(sh: Shell, dev: string, w: Workload, seconds = SECONDS): Promise<Result> {
  return (await runFioOn(sh, [dev], w, seconds))[0]!;
}

/**
 * Runs of equal length on one path, as one: IOPS their mean, mean latency weighted by IOPS, p99 the
 * worst run's (fio's percentiles cannot be merged; the worst keeps the figure conservative).
 */
export function mergeRuns(runs: readonly Result[]): Result {
  const iops = runs.reduce((a, r) => a + r.iops, 0) / runs.length;
  const meanUs = runs.reduce((a, r) => a + r.iops * r.meanUs, 0) / (iops * runs.length);
  return { iops, meanUs, p99Us: Math.max(...runs.map((r) => r.p99Us)) };
}

/** One fio run on several devices at once (the workload's QD each), a reporting group and a Result per device. */
export async function runFioOn(sh: Shell, devs: string[], w: Workload, seconds = SECONDS): Promise<Result[]> {
  const jobs = devs.map((d, i) => `--name=d${i} --filename=${d}${i ? ' --new_group' : ''}`).join(' ');
  const pin = w.cpu === 'last' ? ' --cpus_allowed=$(($(nproc) - 1))' : '';
  const out = await sh(
    `fio --direct=1 --ioengine=libaio ${w.args}${pin} --iodepth=${w.iodepth ?? 32} --numjobs=${w.jobs ?? 2} --group_reporting ` +
      `--time_based --runtime=${Math.round(seconds * 1000)}ms --ramp_time=2 --size=256M --randrepeat=0 --output-format=json ${jobs}`,
  );
  const report = JSON.parse(out.slice(out.indexOf('{'))) as { jobs: { read: FioSide; write: FioSide }[] };
  if (report.jobs.length !== devs.length) throw new Error(`fio reported ${report.jobs.length} groups for ${devs.length} devices`);
  return report.jobs.map(combine);
}

/** "IOPS mean p99" columns, and their header. */
export const resultHeader = (label: string) => ` | ${`${label} IOPS`.padStart(14)} ${'mean µs'.padStart(8)} ${'p99 µs'.padStart(8)}`;
export const resultCells = (x: Result) => ` | ${Math.round(x.iops).toString().padStart(14)} ${x.meanUs.toFixed(0).padStart(8)} ${x.p99Us.toFixed(0).padStart(8)}`;
