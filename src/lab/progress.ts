// Progress for long operations: one line when a step starts, a heartbeat while it runs,
// one line when it ends; failures name the step and the log to read.
import { openSync, closeSync, readFileSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';

export class StepError extends Error {
  constructor(
    readonly step: string,
    readonly log: string | undefined,
    detail: string,
  ) {
    super(`${step} failed: ${detail}${log ? `\n  log: ${log}` : ''}`);
  }
}

const say = (line: string) => process.stderr.write(line + '\n');

export async function step<T>(name: string, log: string | undefined, work: () => Promise<T>): Promise<T> {
  const start = Date.now();
  const secs = () => ((Date.now() - start) / 1000).toFixed(1);
  say(`▸ ${name}${log ? `  (log: ${log})` : ''}`);
  const beat = setInterval(() => say(`  … ${name}: ${secs()} s`), 15_000);
  try {
    const result = await work();
    say(`✓ ${name} (${secs()} s)`);
    return result;
  } catch (err) {
    say(`✗ ${name} (${secs()} s)`);
    if (err instanceof StepError || err instanceof Interrupted) throw err;
    throw new StepError(name, log, (err as Error).message);
  } finally {
    clearInterval(beat);
  }
}

function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

const running = new Set<ChildProcess>();

/** Ctrl-C or SIGTERM arrived while a command that cleans up after itself was working. */
export class Interrupted extends Error {
  constructor(readonly signal: string) {
    super(`interrupted by ${signal}`);
  }
}

const interruption = new AbortController();
/** Aborted (reason: Interrupted) on the first Ctrl-C or SIGTERM. */
export const interrupted: AbortSignal = interruption.signal;
let guards = 0;

/**
 * Runs work that must clean up when interrupted (`lab up` takes down what it started): while
 * it runs, the first signal aborts `interrupted` instead of exiting, and the work's own
 * error path cleans up. A second signal exits at once.
 */
export async function interruptible<T>(work: () => Promise<T>): Promise<T> {
  guards++;
  try {
    return await work();
  } finally {
    guards--;
  }
}

/** Rejects with the interruption as soon as there is one, else settles as `p` does. */
export function unlessInterrupted<T>(p: Promise<T>): Promise<T> {
  if (interrupted.aborted) return Promise.reject(interrupted.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(interrupted.reason);
    interrupted.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => interrupted.removeEventListener('abort', onAbort));
  });
}

export function throwIfInterrupted(): void {
  if (interrupted.aborted) throw interrupted.reason;
}

/**
 * On Ctrl-C or SIGTERM: pass the signal to the commands we run (their callers then see the
 * failure and clean up, e.g. a partial cache entry is removed), abort `interrupted` for work
 * that cleans up after itself, and exit 130 at once when nothing needs cleaning up.
 */
export function forwardSignals(): void {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (interrupted.aborted) {
        say(`\n${sig} again: exiting without cleaning up`);
        process.exit(130);
      }
      process.exitCode = 130;
      if (!running.size && !guards) process.exit(130);
      say(`\n${sig}: stopping, and taking down what was started…`);
      interruption.abort(new Interrupted(sig));
      // Each command leads its own process group: signal the whole group, as a terminal would.
      for (const child of running) process.kill(-child.pid!, sig);
    });
  }
}

/** Runs a command with stdout and stderr appended to `log`; rejects naming the log on failure. */
export function runLogged(argv: string[], log: string, env?: NodeJS.ProcessEnv): Promise<void> {
  const fd = openSync(log, 'a');
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', fd, fd], env: env ?? process.env, detached: true });
    running.add(child);
    child.on('error', (err) => reject(new Error(`cannot run ${argv[0]}: ${err.message}`)));
    child.on('exit', (code, signal) => {
      running.delete(child);
      closeSync(fd);
      if (code === 0) resolve();
      else {
        const last = tail(log, 8).replace(/^/gm, '    ');
        reject(new Error(`${argv[0]} exited with ${signal ?? code}\n${last}`));
      }
    });
  });
}
