// CPU time of the lab's processes (QEMU included) over a stretch of a benchmark, from
// /proc/PID/stat: under TCG on two cores every process competes with the guest, so CPU
// time per I/O is the figure that decides throughput (design notes §8).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** utime + stime of one process and all its threads, in µs. */
function cpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // f[0] is field 3
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
