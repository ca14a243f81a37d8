// A lab process (HI, DI) started from its entry file as the lab starts it, for tests that run the
// processes without VMs. Output is kept for failure messages.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../../src/fabric/switch/switch-process.ts';
import { until } from '../support/until.ts';

export interface LabProcess {
  proc: ChildProcess;
  /** stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit code (null if killed by a signal). */
  exited: Promise<number | null>;
}

/** `node --import tsx <entry> <args>` with LAB_SOCKET_DIR (and LAB_DATA) = dir. */
export function startProcess(entry: string, dir: string, args: string[]): LabProcess {
  mkdirSync(dir, { recursive: true });
  const proc = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, entry), ...args], {
    cwd: repoRoot,
    env: { ...process.env, LAB_SOCKET_DIR: dir, LAB_DATA: dir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { proc, output: () => out, exited };
}

/** Waits until `path` exists (a process's socket); fails with the processes' output if `p` exits first or time runs out. */
export async function waitForSocket(path: string, p: LabProcess, others: LabProcess[] = [], timeoutMs = 30_000): Promise<void> {
  const outputs = () => [p, ...others].map((x) => x.output()).join('\n---\n');
  try {
    await until(() => {
      if (p.proc.exitCode !== null) throw new Error(`exited (${p.proc.exitCode}) before ${path} appeared`);
      return existsSync(path);
    }, path, { timeoutMs, everyMs: 50 });
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${outputs()}`);
  }
}
