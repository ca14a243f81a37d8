// CPU time of running lab processes from the kernel's sampler (`perf record`), and where it goes:
// the process's own code (JavaScript, V8 and Node, the addon, libc) against the kernel, and in the
// kernel, context switches and waking another process apart from the rest.
//
// V8's --cpu-prof samples wall time while the thread runs JavaScript or V8 and cannot see the
// kernel; here a wake-up's cost is mostly kernel (each context switch and each cross-CPU wake is a
// trip through the hypervisor on these machines), so that profile overstates what JavaScript
// spends and hides what a hop costs. perf's cpu-clock samples land at a fixed rate of CPU time
// (no hardware counters in this VM), kernel included. JIT frames get names from the
// /tmp/perf-<pid>.map each process writes under node's --perf-basic-prof.
import { spawn, execFileSync } from 'node:child_process';

/** Samples per CPU-second. */
export const PERF_FREQUENCY = 499;

/** Where one sample's CPU went, by the frame it was taken in and the frames below it. */
export const PERF_CATEGORIES = ['JavaScript', 'V8 and Node', 'addon', 'libc', 'context switch', 'waking a process', 'other kernel', 'other'] as const;
export type PerfCategory = (typeof PERF_CATEGORIES)[number];
/** The categories of a sample taken in the kernel. */
export const KERNEL_CATEGORIES: readonly PerfCategory[] = ['context switch', 'waking a process', 'other kernel'];

/** One sample: the pid and its stack, innermost frame first, each frame `symbol (dso)`. */
export interface PerfSample {
  pid: number;
  frames: { symbol: string; dso: string }[];
}

/**
 * Samples from `perf script -F pid,ip,sym,dso` output: a line with the pid, then one line per
 * frame (`<address> <symbol> (<dso>)`), a blank line between samples.
 */
export function parsePerfScript(text: string): PerfSample[] {
  const samples: PerfSample[] = [];
  let cur: PerfSample | undefined;
  for (const line of text.split('\n')) {
    const head = /^\s*(\d+)\s*$/.exec(line);
    if (head) {
      cur = { pid: Number(head[1]), frames: [] };
      samples.push(cur);
      continue;
    }
    const frame = /^\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$/.exec(line);
    if (frame && cur) cur.frames.push({ symbol: frame[1]!, dso: frame[2]! });
    else if (line.trim() === '') cur = undefined;
  }
  return samples;
}

const isKernel = (dso: string) => dso.includes('kernel');

/** The category of one sample (see PerfCategory). */
export function categorise(s: PerfSample): PerfCategory {
  const leaf = s.frames[0];
  if (!leaf) return 'other';
  if (isKernel(leaf.dso)) {
    const kernel = s.frames.filter((f) => isKernel(f.dso)).map((f) => f.symbol);
    // A stack with both a wake-up and a switch counts as the wake-up: that is what the process asked for.
    if (kernel.some((k) => k === 'try_to_wake_up' || k === 'eventfd_write' || k.startsWith('__wake_up'))) return 'waking a process';
    if (kernel.some((k) => k === '__schedule' || k.startsWith('finish_task_switch'))) return 'context switch';
    return 'other kernel';
  }
  if (leaf.dso.includes('/perf-') && leaf.dso.endsWith('.map')) return 'JavaScript';
  if (/\/node$/.test(leaf.dso)) return 'V8 and Node';
  if (leaf.dso.includes('pcieoe_native')) return 'addon';
  if (/\/libc[.-]/.test(leaf.dso)) return 'libc';
  return 'other';
}

/** Per pid: samples in each category. */
export function tally(samples: readonly PerfSample[]): Map<number, Map<PerfCategory, number>> {
  const out = new Map<number, Map<PerfCategory, number>>();
  for (const s of samples) {
    let m = out.get(s.pid);
    if (!m) out.set(s.pid, (m = new Map()));
    const c = categorise(s);
    m.set(c, (m.get(c) ?? 0) + 1);
  }
  return out;
}

/** Whether `perf` can record here (the linux-perf package, and a kernel that lets root sample). */
export function perfAvailable(): boolean {
  try {
    execFileSync('perf', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** `perf record` of `pids` (call stacks too) into `file` for `seconds`; resolves when it has written the file. */
export function perfRecord(pids: readonly number[], seconds: number, file: string): Promise<void> {
  const p = spawn('perf', ['record', '-q', '-F', String(PERF_FREQUENCY), '-g', '-p', pids.join(','), '-o', file, '--', 'sleep', String(seconds)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  p.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    p.once('error', reject);
    p.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`perf record exited ${code}: ${err.trim()}`))));
  });
}

/** The samples of a recorded file. */
export function perfSamples(file: string): PerfSample[] {
  const text = execFileSync('perf', ['script', '-i', file, '-F', 'pid,ip,sym,dso'], { encoding: 'utf8', maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'ignore'] });
  return parsePerfScript(text);
}

/** A process's CPU per unit of work (`per`, e.g. I/Os done while recording): its total and each category, most first. */
export interface PerfSplit {
  name: string;
  totalUs: number;
  parts: [PerfCategory, number][];
}

/** The split of each named process (pid) over `per` units of work. */
export function perfSplits(counts: Map<number, Map<PerfCategory, number>>, names: Record<string, number>, per: number): PerfSplit[] {
  const us = (n: number) => (n / PERF_FREQUENCY / per) * 1e6;
  return Object.entries(names).map(([name, pid]) => {
    const m = counts.get(pid) ?? new Map<PerfCategory, number>();
    const parts = [...m.entries()].sort((a, b) => b[1] - a[1]).map(([c, n]): [PerfCategory, number] => [c, us(n)]);
    return { name, totalUs: parts.reduce((a, [, u]) => a + u, 0), parts };
  });
}

/** "hi 210 µs: V8 and Node 61, context switch 34, …" (categories under 1 µs left out), or "hi: no samples". */
export function perfLine(s: PerfSplit): string {
  if (s.parts.length === 0) return `${s.name}: no samples`;
  return `${s.name} ${s.totalUs.toFixed(0)} µs: ${s.parts
    .filter(([, u]) => u >= 1)
    .map(([c, u]) => `${c} ${u.toFixed(0)}`)
    .join(', ')}`;
}
