/**
 * Frame-path tracing, for finding where the time of one I/O goes across the
 * processes it crosses (HI, switch, DI). Off by default: every call site is
 * `if (TRACING) trace(...)`, one test of a constant.
 *
 * With PCIEOE_TRACE=DIR each process keeps its last 2^18 events (system-wide
 * monotonic nanoseconds, so events of different processes line up) and writes
 * them at exit to DIR/<PCIEOE_TRACE_NAME or the script's folder-name>-<pid>.trace, one
 * line each: `ns event channel type flags seq ack src tlp`. The frame fields are read
 * from the frame itself (frame.ts layout), so a frame is recognised in every
 * process; `tlp` is the first byte of a TLP frame's payload (Fmt|Type).
 * bench/trace-chain.ts joins the files into one chain.
 *
 * Events: tx (a port was given a frame), out (it left: written to the ring or
 * the socket; `out!` when the peer was woken), wake (an eventfd or socket
 * woke the process), rx (a port delivered a frame), and any a caller names.
 */

import { writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

const DIR = process.env.PCIEOE_TRACE;
/** Whether tracing is on in this process. */
export const TRACING = DIR !== undefined && DIR !== '';

const CAPACITY = 1 << 18;
const ns = new Float64Array(TRACING ? CAPACITY : 0);
const what: string[] = [];
const info: string[] = [];
let count = 0;

/** Record `event` now; with a frame, the frame's identity. */
export function trace(event: string, frame?: Uint8Array): void {
  const i = count++ & (CAPACITY - 1);
  ns[i] = Number(process.hrtime.bigint());
  what[i] = event;
  info[i] = frame ? frameId(frame) : '';
}

/** `channel type flags seq ack src tlp` of a PCIeOE frame (tagged or not); '-' for anything else. */
function frameId(f: Uint8Array): string {
  if (f.length < 42) return '-';
  const h = f[12] === 0x81 && f[13] === 0x00 ? 18 : 14;
  const u16 = (o: number) => (f[o]! << 8) | f[o + 1]!;
  if (u16(h - 2) !== 0x88b5) return '-';
  const type = f[h]! & 0xf;
  const tlp = type === 0 && f.length > h + 24 ? f[h + 24]!.toString(16) : '-';
  return `${u16(h + 2)} ${type} ${f[h + 1]} ${u16(h + 4)} ${u16(h + 6)} ${f[11]!.toString(16)} ${tlp}`;
}

if (TRACING) {
  process.on('exit', () => {
    // src/hi/main.ts -> hi-main: the folder tells the lab's main.ts processes apart.
    const script = process.argv[1] ?? 'node';
    const name = process.env.PCIEOE_TRACE_NAME ?? `${basename(dirname(script))}-${basename(script).replace(/\.[tj]s$/, '')}`;
    const first = Math.max(0, count - CAPACITY);
    const lines: string[] = [];
    for (let k = first; k < count; k++) {
      const i = k & (CAPACITY - 1);
      lines.push(`${ns[i]} ${what[i]} ${info[i]}`);
    }
    try {
      writeFileSync(join(DIR!, `${name}-${process.pid}.trace`), lines.join('\n') + '\n');
    } catch {
      // Tracing must never take a process down.
    }
  });
}
