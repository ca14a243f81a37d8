// `lab logs [-f] <vm|process>`: a VM's console (or QEMU's own log) or a lab process's output.
// Works from the files alone, so the logs of a lab that failed or was taken down stay readable
// until the next `lab up`.
import { closeSync, existsSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stateRoot } from './paths.ts';

/** The log file of a VM (its console, or QEMU's log with `qemu`) or of a lab process. */
export function logFile(name: string, opts: { qemu?: boolean } = {}): string {
  const vmDir = join(stateRoot, 'vms', name);
  if (existsSync(vmDir)) return join(vmDir, opts.qemu ? 'qemu.log' : 'console.log');
  if (opts.qemu) throw new Error(`--qemu: no VM named "${name}" (${known()})`);
  const proc = join(stateRoot, `${name}.log`);
  if (existsSync(proc)) return proc;
  throw new Error(`no VM or process named "${name}" has logs in ${stateRoot} (${known()})`);
}

function known(): string {
  const list = (dir: string) => (existsSync(dir) ? readdirSync(dir) : []);
  const vms = list(join(stateRoot, 'vms'));
  const procs = list(stateRoot).filter((f) => f.endsWith('.log')).map((f) => f.slice(0, -4));
  return vms.length || procs.length ? `VMs: ${vms.join(', ') || 'none'}; processes: ${procs.join(', ') || 'none'}` : 'no lab has run here';
}

/** Copies the file from `offset` to `out`; returns the new offset (0 if the file shrank: a new run). */
function copyFrom(file: string, offset: number, out: NodeJS.WritableStream): number {
  if (!existsSync(file)) return 0;
  const size = statSync(file).size;
  if (size < offset) offset = 0;
  if (size === offset) return offset;
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(64 * 1024);
    while (offset < size) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, size - offset), offset);
      if (n <= 0) break;
      out.write(buf.subarray(0, n));
      offset += n;
    }
  } finally {
    closeSync(fd);
  }
  return offset;
}

/** Prints the log; with `follow`, keeps printing what is appended until `signal` aborts. */
export async function printLog(file: string, opts: { follow?: boolean; signal?: AbortSignal; out?: NodeJS.WritableStream } = {}): Promise<void> {
  const out = opts.out ?? process.stdout;
  let offset = copyFrom(file, 0, out);
  while (opts.follow && !opts.signal?.aborted) {
    await sleep(200, undefined, { signal: opts.signal }).catch(() => {});
    offset = copyFrom(file, offset, out);
  }
}
