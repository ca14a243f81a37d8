// Processes the lab starts and must be able to stop by PID, without ever signalling a
// recycled PID: each record keeps the kernel's start time of the process it started.
import { readFileSync, openSync, closeSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ProcRecord {
  pid: number;
  /** Field 22 of /proc/PID/stat: tells our process from a later one with the same PID. */
  startTime: string;
}

/** The fields of /proc/PID/stat from field 3 on (index 0 is the state), or undefined if the process is gone. */
export function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces; fields after it are plain.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

export function startTimeOf(pid: number): string | undefined {
  return statFields(pid)?.[19];
}

export function isAlive(p: ProcRecord): boolean {
  const f = statFields(p.pid);
  return f !== undefined && f[19] === p.startTime && f[0] !== 'Z';
}

/** Where a process may run and where it ran last: "allowed 0-1, last on 1". */
export function placement(pid: number): string {
  try {
    const allowed = /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return `cpus ${allowed}, last on ${statFields(pid)?.[36]}`;
  } catch {
    return 'not running';
  }
}

/** Starts a detached process (it outlives the `lab` command), pinned if `pin` is given. */
export function startDetached(argv: string[], log: string, pin?: string, env?: NodeJS.ProcessEnv): ProcRecord {
  const full = pin ? ['taskset', '-c', pin, ...argv] : argv;
  const fd = openSync(log, 'a');
  const child = spawn(full[0]!, full.slice(1), { detached: true, stdio: ['ignore', fd, fd], env: env ?? process.env });
  closeSync(fd);
  child.unref();
  if (child.pid === undefined) throw new Error(`cannot start ${argv[0]} (see ${log})`);
  return { pid: child.pid, startTime: startTimeOf(child.pid) ?? '?' };
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function stop(p: ProcRecord, graceMs = 5000): Promise<void> {
  if (!isAlive(p)) return;
  process.kill(p.pid, 'SIGTERM');
  for (let waited = 0; waited < graceMs; waited += 50) {
    if (!isAlive(p)) return;
    await sleep(50);
  }
  if (isAlive(p)) process.kill(p.pid, 'SIGKILL');
  while (isAlive(p)) await sleep(20);
}
