// `lab up`, `lab down`, `lab status`: the life cycle of a topology.
import { existsSync, mkdirSync, openSync, closeSync, ftruncateSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { agentExec } from './agent.ts';
import { dataRoot, qemuDir, repoRoot, stateRoot, topologiesDir } from './paths.ts';
import { isAlive, startDetached, stop } from './procs.ts';
import { nicMac, qemuArgs, type Accel } from './qemu-args.ts';
import { setup, type LabArtefacts } from './setup.ts';
import { readState, writeState, type LabState, type ProcessState, type VmState } from './state.ts';
import { loadTopology, parseSize, type ProcessSpec, type Topology, type Transport, type VmSpec } from './topology.ts';
import { AssignmentStore } from '../manager/store.ts';
import { Interrupted, step, throwIfInterrupted, unlessInterrupted } from './progress.ts';
import { makePrivateDir } from '../common/private-dir.ts';
import { labNodeArgs } from '../common/node-options.ts';

export interface UpOptions {
  accel?: Accel;
  bootTimeoutMs?: number;
  /** Stations to switch over this transport, whatever the topology says (benchmarks compare them). */
  transport?: Transport;
  /** Every lab process (not QEMU) on these CPUs, whatever each process's `pin` says. */
  pinLab?: string;
}

/** A topology argument is a file path or the name of a file in lab/topologies. */
export function topologyFile(arg: string): string {
  if (existsSync(arg) && statSync(arg).isFile()) return resolve(arg);
  const named = join(topologiesDir, `${arg}.yaml`);
  if (existsSync(named)) return named;
  throw new Error(`no topology "${arg}": not a file, and no ${named}`);
}

const socketPath = (s: LabState | { processes: { name: string; socketDir: string }[] }, server: string) => {
  const [proc, sock] = server.split('/');
  const dir = s.processes.find((p) => p.name === proc)!.socketDir;
  return join(dir, `${sock ?? proc}.sock`);
};

async function waitFor(what: string, cond: () => boolean, timeoutMs: number, alive: () => boolean, log: string) {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    throwIfInterrupted();
    if (!alive()) throw new Error(`${what}: the process exited (see ${log})`);
    if (Date.now() > end) throw new Error(`${what}: not ready after ${timeoutMs / 1000} s (see ${log})`);
    await sleep(50);
  }
}

/** Starts a process; `ready` resolves once its wanted files (sockets in its socket directory, its spec's `ready` files) exist. */
function startProcess(p: ProcessSpec, topo: Topology, wantedSockets: string[], pinLab: string | undefined): { state: ProcessState; ready: Promise<void> } {
  const socketDir = join(stateRoot, 'sockets', p.name);
  makePrivateDir(socketDir);
  const log = join(stateRoot, `${p.name}.log`);
  const env = { ...process.env, LAB_SOCKET_DIR: socketDir, LAB_TOPOLOGY: topo.name, LAB_DATA: dataRoot, LAB_STATE: stateRoot };
  // Arguments and ready files may name the lab's directories: ${LAB_SOCKET_DIR}, ${LAB_DATA}, ${LAB_STATE}.
  const vars: Record<string, string> = { LAB_SOCKET_DIR: socketDir, LAB_DATA: dataRoot, LAB_STATE: stateRoot };
  const expand = (a: string) => a.replace(/\$\{(LAB_[A-Z_]+)\}/g, (m, v: string) => vars[v] ?? m);
  const args = p.args.map(expand);
  // A ready file left by an earlier run would say ready before this one is.
  const readyFiles = (p.ready ?? []).map(expand);
  for (const f of readyFiles) rmSync(f, { force: true });
  const argv = [process.execPath, ...labNodeArgs(), '--import', 'tsx', join(repoRoot, p.run), ...args];
  const pin = pinLab || p.pin;
  const rec = startDetached(argv, log, pin, env);
  const state: ProcessState = { name: p.name, ...rec, log, socketDir, pin };
  const ready = waitFor(
    `process ${p.name}`,
    () => [...wantedSockets.map((s) => join(socketDir, `${s}.sock`)), ...readyFiles].every((f) => existsSync(f)),
    // Generous: an HI creates its sockets only once the remote function has answered.
    60_000,
    () => isAlive(rec),
    log,
  );
  return { state, ready };
}

function createDisk(path: string, size: string) {
  // Sparse, and kept across runs so data outlives a VM; grown if the topology asks for more.
  const fd = openSync(path, existsSync(path) ? 'r+' : 'w');
  if (statSync(path).size < parseSize(size)) ftruncateSync(fd, parseSize(size));
  closeSync(fd);
}

function startVm(vm: VmSpec, topo: Topology, accel: Accel, art: LabArtefacts, procs: ProcessState[]): VmState {
  const dir = join(stateRoot, 'vms', vm.name);
  rmSync(dir, { recursive: true, force: true });
  makePrivateDir(dir);
  const disks = join(dataRoot, topo.name);
  mkdirSync(disks, { recursive: true });
  const files = {
    qmp: join(dir, 'qmp.sock'),
    agent: join(dir, 'agent.sock'),
    console: join(dir, 'console.log'),
    pidfile: join(dir, 'qemu.pid'),
    disk: (id: string) => join(disks, `${vm.name}-${id}.img`),
    socket: (server: string) => socketPath({ processes: procs }, server),
    // The station end of a cable to port N of a switch is N.peer.sock beside the port's own
    // socket: the switch knows where to send without being told.
    nicSocket: (server: string) => socketPath({ processes: procs }, server).replace(/\.sock$/, '.peer.sock'),
  };
  for (const d of vm.devices) if (d.type === 'nvme') createDisk(files.disk(d.id), d.size);
  const log = join(dir, 'qemu.log');
  const binds = [stateRoot, disks, resolve(art.kernel, '..')];
  const argv = [join(qemuDir, 'run-in-sid.sh'), art.sidRoot, ...binds, '--', 'qemu-system-x86_64', ...qemuArgs(vm, accel, art, files)];
  const rec = startDetached(argv, log, vm.pin);
  return { name: vm.name, ...rec, dir, qmp: files.qmp, agent: files.agent, console: files.console, log, pin: vm.pin };
}

function readIfExists(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

async function waitForAgent(vm: VmState, timeoutMs: number): Promise<void> {
  await waitFor(`VM ${vm.name}`, () => existsSync(vm.agent), 20_000, () => isAlive(vm), vm.log);
  let answered = false;
  // QEMU stops (but does not exit) on a KVM internal error, and a panicked kernel halts:
  // read both logs to fail fast instead of waiting out the timeout.
  const fatal = () =>
    /^.*(internal error|emulation failure).*$/im.exec(readFileSync(vm.log, 'utf8'))?.[0] ??
    /^.*Kernel panic.*$/m.exec(readIfExists(vm.console))?.[0];
  const guestDied = new Promise<never>(async (_, reject) => {
    while (!answered && isAlive(vm) && !fatal()) await sleep(200);
    if (!answered) reject(new Error(isAlive(vm) ? fatal()!.trim() : `QEMU exited during boot (see ${vm.log})`));
  });
  try {
    const r = await unlessInterrupted(Promise.race([agentExec(vm.agent, '', { timeoutMs, retryEveryMs: 1000 }), guestDied]));
    if (r.status !== 0) throw new Error(`agent answered with status ${r.status}`);
  } catch (err) {
    if (err instanceof Interrupted) throw err;
    throw new Error(`VM ${vm.name}: guest agent did not answer: ${(err as Error).message} (console: ${vm.console})`);
  } finally {
    answered = true;
  }
}

/** Brings each NIC up inside its guest, with the topology's address if it has one. */
async function configureNics(spec: VmSpec, vm: VmState): Promise<void> {
  const script = spec.devices
    .flatMap((d) => {
      if (d.type !== 'nic') return [];
      const mac = nicMac(spec.name, d);
      const ifname = `$(ip -o link | grep -i 'ether ${mac}' | cut -d: -f2 | tr -d ' ')`;
      return [`i=${ifname}; [ -n "$i" ] || { echo "no interface with MAC ${mac}" >&2; exit 1; }`, `ip link set "$i" up`, ...(d.ip ? [`ip addr add ${d.ip} dev "$i"`] : [])];
    })
    .join('\n');
  if (!script) return;
  const r = await unlessInterrupted(agentExec(vm.agent, `set -e\n${script}`, { timeoutMs: 120_000 })).catch((err: Error) => {
    if (err instanceof Interrupted) throw err;
    throw new Error(`VM ${vm.name}: NIC set-up: ${err.message}`);
  });
  if (r.status !== 0) throw new Error(`VM ${vm.name}: NIC set-up failed: ${r.stderr.trim()}`);
}

export async function up(arg: string, opts: UpOptions = {}): Promise<LabState> {
  const file = topologyFile(arg);
  const topo = withSavedAssignments(file, loadTopology(file, { transport: opts.transport }), opts.transport);
  const current = readState();
  if (current && [...current.vms, ...current.processes].some(isAlive))
    throw new Error(`a lab is already up (topology "${current.topology}"); run lab down first`);
  if (current) await down();
  rmSync(join(stateRoot, 'vms'), { recursive: true, force: true });
  const art = await setup();
  const accel = opts.accel ?? topo.accel;
  if (accel === 'kvm') await probeKvm(art);
  const state: LabState = {
    topology: topo.name,
    file,
    accel,
    qemuVersion: art.qemuVersion,
    kernelVersion: art.kernelVersion,
    startedAt: new Date().toISOString(),
    processes: [],
    vms: [],
  };
  makePrivateDir(stateRoot);
  try {
    await step(`lab ${topo.name}: ${topo.processes.length} processes, ${topo.vms.length} VMs (${accel}, ${art.qemuVersion})`, undefined, async () => {
      for (const p of topo.processes) {
        throwIfInterrupted();
        const wanted = topo.vms.flatMap((v) =>
          v.devices.flatMap((d) => ('server' in d && d.server.split('/')[0] === p.name ? [d.server.split('/')[1] ?? p.name] : [])),
        );
        // Recorded before it is ready, so that a failure or Ctrl-C while waiting stops it too.
        const started = startProcess(p, topo, wanted, opts.pinLab);
        state.processes.push(started.state);
        writeState(state);
        await started.ready;
      }
      for (const vm of topo.vms) {
        throwIfInterrupted();
        state.vms.push(startVm(vm, topo, accel, art, state.processes));
        writeState(state);
      }
      await Promise.all(state.vms.map((vm) => waitForAgent(vm, opts.bootTimeoutMs ?? 180_000)));
      await Promise.all(topo.vms.map((vm) => configureNics(vm, state.vms.find((v) => v.name === vm.name)!)));
    });
  } catch (err) {
    await down();
    throw err;
  }
  return state;
}

/**
 * A lab that comes up again keeps the assignments its manager saved (LAB_STATE/manager): the
 * topology is derived with them instead of its own `assign`. A table saved for another
 * topology, or one that no longer fits this one, is dropped (with a warning for the latter).
 */
export function withSavedAssignments(file: string, topo: Topology, transport?: Transport): Topology {
  if (!topo.fabric) return topo;
  const store = new AssignmentStore(join(stateRoot, 'manager'));
  let saved;
  try {
    saved = store.load();
  } catch (err) {
    process.stderr.write(`lab: dropping the saved assignments: ${(err as Error).message}\n`);
  }
  if (saved?.topology !== topo.name) {
    store.clear();
    return topo;
  }
  try {
    return loadTopology(file, { transport, assignments: saved.assignments.map((a) => ({ function: `${a.di}/${a.function}`, host: a.host, slot: a.slot })) });
  } catch (err) {
    process.stderr.write(`lab: the saved assignments no longer fit ${topo.name}; starting from the topology's:\n${(err as Error).message}\n`);
    store.clear();
    return topo;
  }
}

/** KVM is used only if a guest really boots with it (on nested PVM hosts it does not). */
async function probeKvm(art: LabArtefacts): Promise<void> {
  if (!existsSync('/dev/kvm')) throw new Error('--accel kvm: /dev/kvm does not exist (no KVM on this host); use the default, tcg');
  const vm: VmSpec = { name: 'kvm-probe', cpus: 1, memory: '512M', devices: [] };
  const topo: Topology = { name: 'kvm-probe', accel: 'kvm', processes: [], vms: [vm] };
  const state = startVm(vm, topo, 'kvm', art, []);
  try {
    await waitForAgent(state, 30_000);
  } catch (err) {
    throw new Error(`--accel kvm: a guest does not boot under KVM on this host: ${(err as Error).message}; use the default, tcg (log: ${state.log})`);
  } finally {
    await stop(state);
  }
}

export async function down(): Promise<string[]> {
  const s = readState();
  const stopped: string[] = [];
  if (s) {
    // VMs first: a vfio-user server that vanishes under a running guest makes noise.
    for (const group of [s.vms, s.processes]) {
      await Promise.all(
        group.map(async (p) => {
          if (isAlive(p)) stopped.push(`${p.name} (pid ${p.pid})`);
          await stop(p);
        }),
      );
    }
  }
  // Logs stay (an error message may point at them) until the next `lab up`; sockets go.
  rmSync(join(stateRoot, 'sockets'), { recursive: true, force: true });
  for (const vm of s?.vms ?? []) for (const f of [vm.qmp, vm.agent, join(vm.dir, 'qemu.pid')]) rmSync(f, { force: true });
  rmSync(join(stateRoot, 'lab.json'), { force: true });
  return stopped;
}

const BOOT_ID = 'cat /proc/sys/kernel/random/boot_id';

/**
 * Reboots a guest the way its own `reboot` does: the kernel flushes and shuts its devices
 * down (an NVMe controller sees CC.SHN) and the machine resets; returns once the new boot's
 * agent answers.
 */
export async function reboot(vm: VmState, timeoutMs = 180_000): Promise<void> {
  const before = (await agentExec(vm.agent, BOOT_ID)).stdout.trim();
  // In the background, so the agent's reply leaves before the kernel goes down.
  await agentExec(vm.agent, 'sync; (sleep 0.5; reboot -f) >/dev/null 2>&1 &');
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    await sleep(1000);
    if (!isAlive(vm)) throw new Error(`VM ${vm.name}: QEMU exited during the reboot (see ${vm.log})`);
    const now = await agentExec(vm.agent, BOOT_ID, { timeoutMs: 2000 }).then((r) => r.stdout.trim(), () => before);
    if (now && now !== before) return;
  }
  throw new Error(`VM ${vm.name}: no new boot within ${timeoutMs / 1000} s (console: ${vm.console})`);
}
