// CPU time of the lab's processes (QEMU included) over a stretch of a benchmark, from
// /proc/PID/stat: under TCG on two cores every process competes with the guest, so CPU
// time per I/O is the figure that decides throughput (design notes §8).
import { execFileSync } from 'node:child_process';
import { statFields } from '../../src/lab/procs.ts';

const TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** utime + stime of one process and all its threads, in µs. */
function cpuUs(pid: number): number {
  const f = statFields(pid);
  if (!f) throw new Error(`process ${pid} is gone`);
  return ((Number(f[11]) + Number(f[12])) * 1e6) / TICKS_PER_SECOND;
}

export interface Named {
  name: string;
  pid: number;
}

/** Starts counting now; the returned function gives each process's CPU µs since. */
export function cpuMeter(procs: readonly Named[]): () => Map<string, number> {
  const start = new Map(procs.map((p) => [p.name, cpuUs(p.pid)]));
  return () => new Map(procs.map((p) => [p.name, cpuUs(p.pid) - start.get(p.name)!]));
}
