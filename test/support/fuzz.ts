// Sizes and seeds for the fuzz tests (test/fuzz). `npm test` runs each at the CI size given
// in the test; `npm run fuzz` sets FUZZ_RUNS (10^5 cases per property). FUZZ_SEED replays a
// run: every fuzz test logs the seed it used.
import type { ExecutionContext } from 'ava';
import type { Parameters } from 'fast-check';

/** fast-check parameters for a property checked `ciRuns` times in `npm test`. */
export function fuzzParams<T>(t: ExecutionContext, ciRuns: number): Parameters<T> {
  const runs = process.env.FUZZ_RUNS ? Number(process.env.FUZZ_RUNS) : ciRuns;
  if (!Number.isSafeInteger(runs) || runs < 1) throw new Error(`FUZZ_RUNS=${process.env.FUZZ_RUNS}: expected a positive integer`);
  const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : (Date.now() ^ (Math.random() * 0x7fffffff)) | 0;
  t.log(`${runs} cases, FUZZ_SEED=${seed}`);
  return { numRuns: runs, seed };
}

/** `p`, or a rejection naming `what` once `ms` pass: a fuzz case that hangs fails instead of stalling the run. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms to ${what}`)), ms))),
  ]);
}
