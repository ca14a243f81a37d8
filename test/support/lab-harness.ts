// Runs the real `lab` command in tests, each test file with its own state, data and
// socket directories, so test labs never touch a lab the user has up (nor each other).
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const labBin = fileURLToPath(new URL('../../bin/lab.mjs', import.meta.url));

export interface LabRun {
  code: number;
  stdout: string;
  stderr: string;
}

export class TestLab {
  readonly env: NodeJS.ProcessEnv;
  private readonly dirs: string[];
  private readonly adopted: number[] = [];

  constructor(tag: string) {
    // Unix socket paths are limited to 107 bytes: keep the state directory short.
    const state = mkdtempSync(join('/run', `lab-${tag}-`));
    const data = mkdtempSync(join(tmpdir(), `lab-data-${tag}-`));
    this.dirs = [state, data];
    this.env = { ...process.env, LAB_STATE: state, LAB_DATA: data };
  }

  get stateDir(): string {
    return this.env.LAB_STATE!;
  }

  run(args: string[], timeoutMs = 600_000): Promise<LabRun> {
    return new Promise((resolve) => {
      execFile(process.execPath, [labBin, ...args], { env: this.env, timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      });
    });
  }

  /** The log of a lab process (`<state>/<name>.log`). */
  log(name: string): string {
    return readFileSync(join(this.stateDir, `${name}.log`), 'utf8');
  }

  /** `lab up`; on failure throws with lab's message and the tail of every process log. */
  async up(topology: string): Promise<LabRun> {
    const r = await this.run(['up', topology]);
    if (r.code === 0) return r;
    const logs = readdirSync(this.stateDir)
      .filter((f) => f.endsWith('.log'))
      .map((f) => `--- ${f}\n${readFileSync(join(this.stateDir, f), 'utf8').slice(-4000)}`);
    throw new Error(`lab up ${topology}: exit ${r.code}\n${r.stderr}\n${logs.join('\n')}`);
  }

  /** `lab exec` with a shell command line. */
  exec(vm: string, command: string, timeoutS = 600): Promise<LabRun> {
    return this.run(['exec', vm, '--timeout', String(timeoutS), '--', command], (timeoutS + 30) * 1000);
  }

  /** A shell command in guest `vm` that must succeed: its stdout, or throws with its output. */
  async sh(vm: string, command: string, timeoutS = 300): Promise<string> {
    const r = await this.exec(vm, command, timeoutS);
    if (r.code !== 0) throw new Error(`${vm}: ${command.split('\n')[0]}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  }

  /** A `lab` command that must succeed: its stdout, or throws with its output. */
  async ok(args: string[]): Promise<string> {
    const r = await this.run(args);
    if (r.code !== 0) throw new Error(`lab ${args.join(' ')}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  }

  /** A process the test started again in place of a lab process: `lab down` stops it (it is in lab.json),
   *  and dispose kills it too in case the lab could not be taken down. */
  adopt(pid: number): void {
    this.adopted.push(pid);
  }

  async dispose(): Promise<void> {
    await this.run(['down']);
    for (const pid of this.adopted) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already (lab down stopped it)
      }
    }
    for (const d of this.dirs) rmSync(d, { recursive: true, force: true });
  }
}
