// Tests wait on conditions, never on fixed sleeps: `until` polls a condition so the event loop
// keeps running between checks, and fails naming what it waited for.
import { setTimeout as sleep } from 'node:timers/promises';

export interface UntilOptions {
  /** Give up after this long (default 10 s). */
  timeoutMs?: number;
  /** Check this often (default 5 ms; slower for conditions that are costly to check, such as a guest command). */
  everyMs?: number;
}

/** Resolves once `cond` holds; rejects with "timed out waiting for <what>" after `timeoutMs`. */
export async function until(cond: () => boolean | Promise<boolean>, what: string, options: UntilOptions = {}): Promise<void> {
  const { timeoutMs = 10_000, everyMs = 5 } = options;
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (${timeoutMs} ms)`);
    await sleep(everyMs);
  }
}
