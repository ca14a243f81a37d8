// The record of the lab that is up (LAB_STATE/lab.json): what `status`, `exec`, `qmp` and
// `down` work from.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { stateRoot } from './paths.ts';
import type { ProcRecord } from './procs.ts';
import type { Accel } from './qemu-args.ts';
import { writeFileAtomic } from '../common/atomic-file.ts';
import { makePrivateDir } from '../common/private-dir.ts';

export interface VmState extends ProcRecord {
  name: string;
  dir: string;
  qmp: string;
  agent: string;
  console: string;
  log: string;
  pin?: string;
}

export interface ProcessState extends ProcRecord {
  name: string;
  log: string;
  socketDir: string;
  pin?: string;
}

export interface LabState {
  topology: string;
  file: string;
  accel: Accel;
  qemuVersion: string;
  kernelVersion: string;
  startedAt: string;
  processes: ProcessState[];
  vms: VmState[];
}

const stateFile = () => join(stateRoot, 'lab.json');

export function readState(): LabState | undefined {
  if (!existsSync(stateFile())) return undefined;
  return JSON.parse(readFileSync(stateFile(), 'utf8')) as LabState;
}

export function writeState(s: LabState): void {
  makePrivateDir(stateRoot);
  // Processes the lab starts read it while `lab up` goes on writing it.
  writeFileAtomic(stateFile(), JSON.stringify(s, null, 2) + '\n');
}

export function requireState(): LabState {
  const s = readState();
  if (!s) throw new Error(`no lab is up (nothing in ${stateRoot}); start one with: lab up <topology>`);
  return s;
}

export function vmState(s: LabState, name: string): VmState {
  const vm = s.vms.find((v) => v.name === name);
  if (!vm) throw new Error(`no VM named "${name}" in the lab (VMs: ${s.vms.map((v) => v.name).join(', ')})`);
  return vm;
}
