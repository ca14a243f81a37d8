// What the guest-level restart tests share: a lab process killed with SIGKILL and started again
// with the same command line and environment (lab.json follows, so `lab down` stops the new one),
// and commands in the guest that must succeed.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDetached, startTimeOf } from '../../src/lab/procs.ts';
import type { TestLab } from '../support/lab-harness.ts';
import { until } from '../support/until.ts';

/** fio with crc32c verify on the remote namespace; add --rw, --bs, --size and the rest. */
export const FIO = 'fio --name=t --filename=/dev/nvme0n1 --direct=1 --ioengine=libaio --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=0';

interface LabJson {
  processes: { name: string; pid: number; startTime: string; log: string }[];
}

/** Runs `command` in guest `vm`; throws with its output unless it exits 0. */
export async function guest(lab: TestLab, vm: string, command: string, timeoutS = 300): Promise<string> {
  const r = await lab.exec(vm, command, timeoutS);
  if (r.code !== 0) throw new Error(`guest: ${command.split('\n')[0]}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** The pid of lab process `name` (lab.json). */
export function pidOf(lab: TestLab, name: string): number {
  const file = join(lab.stateDir, 'lab.json');
  const p = (JSON.parse(readFileSync(file, 'utf8')) as LabJson).processes.find((x) => x.name === name);
  if (!p) throw new Error(`no lab process ${name} in ${file}`);
  return p.pid;
}


/** SIGKILL lab process `name` and start it again with the same argv and environment (from /proc); returns the new pid. */
export function killAndRestart(lab: TestLab, name: string): number {
  const file = join(lab.stateDir, 'lab.json');
  const state = JSON.parse(readFileSync(file, 'utf8')) as LabJson;
  const p = state.processes.find((x) => x.name === name);
  if (!p) throw new Error(`no lab process ${name} in ${file}`);
  const split = (f: string) => readFileSync(`/proc/${p.pid}/${f}`, 'latin1').split('\0').filter((x) => x !== '');
  const argv = split('cmdline');
  const env = Object.fromEntries(split('environ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  process.kill(p.pid, 'SIGKILL');
  const rec = startDetached(argv, p.log, undefined, env);
  Object.assign(p, rec, { startTime: startTimeOf(rec.pid) ?? rec.startTime });
  writeFileSync(file, JSON.stringify(state, null, 2));
  return rec.pid;
}

/** Kills a restarted process left over if the lab could not be taken down (it is in lab.json, so normally `lab down` did). */
export function killLeftover(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}
