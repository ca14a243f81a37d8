// A lab without guests for the console's tests: a topology's (default `hotplug`) switch, DIs, HIs and
// manager as real processes (their derived argv), a lab.json naming them, and the `lab` command
// run against it. Assigning fails here (no VM to hot-plug into), which the tests use too.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadTopology } from '../../src/lab/topology.ts';
import { until } from '../support/until.ts';

const repo = fileURLToPath(new URL('../..', import.meta.url));

export class GuestlessLab {
  constructor(private readonly topology = 'hotplug') {}

  readonly state = mkdtempSync(join('/run', 'lab-con-'));
  private readonly data = mkdtempSync(join(tmpdir(), 'lab-con-data-'));
  private readonly children: ChildProcess[] = [];
  readonly env: NodeJS.ProcessEnv = { ...process.env, LAB_STATE: this.state, LAB_DATA: this.data };

  get managerDir(): string {
    return join(this.state, 'manager');
  }

  async start(): Promise<void> {
    const file = join(repo, `lab/topologies/${this.topology}.yaml`);
    const topo = loadTopology(file);
    const processes = [];
    for (const p of topo.processes) {
      const socketDir = join(this.state, 'sockets', p.name);
      mkdirSync(socketDir, { recursive: true });
      const log = join(this.state, `${p.name}.log`);
      processes.push({ name: p.name, socketDir, log, pid: 0 });
      if (p.name === 'manager') {
        // The manager reads lab.json when it starts: it names the processes started so far.
        writeFileSync(join(this.state, 'lab.json'), JSON.stringify({ topology: this.topology, file, accel: 'tcg', qemuVersion: '-', kernelVersion: '-', startedAt: new Date().toISOString(), processes, vms: [] }));
      }
      const args = p.args.map((a) => a.replaceAll('${LAB_STATE}', this.state).replaceAll('${LAB_SOCKET_DIR}', socketDir));
      const child = spawn(process.execPath, ['--import', 'tsx', join(repo, p.run), ...args], { env: { ...this.env, LAB_SOCKET_DIR: socketDir, LAB_TOPOLOGY: this.topology }, stdio: ['ignore', 'ignore', 'inherit'] });
      this.children.push(child);
      const ready = p.name === 'manager' ? join(this.managerDir, 'api.json') : join(socketDir, 'control.sock');
      await until(() => existsSync(ready), `${p.name} ready (${ready})`, { timeoutMs: 60_000, everyMs: 50 });
    }
  }

  /** The real `lab` command, against this lab. */
  lab(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      execFile(process.execPath, [join(repo, 'bin/lab.mjs'), ...args], { env: this.env, timeout: 120_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
      );
    });
  }

  async stop(): Promise<void> {
    await Promise.all(this.children.filter((c) => c.exitCode === null).map((c) => new Promise((resolve) => (c.once('exit', resolve), c.kill('SIGTERM')))));
    for (const d of [this.state, this.data]) rmSync(d, { recursive: true, force: true });
  }
}
