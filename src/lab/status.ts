// `lab status`: what is up, as data (`--json`) and as text. Per VM the boot stage (read from
// its console) and whether its agent answers; per process its pid, CPU time and the counters
// its control socket reports (HI, DI, switch); per channel whether the peer is reachable.
// The text form samples twice and shows how much each counter moved, so a user tells a stuck
// lab from a slow one.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { agentExec } from './agent.ts';
import { controlRequest } from './control-client.ts';
import { AssignmentStore } from '../manager/store.ts';
import type { Assignment } from '../manager/table.ts';
import { type StationsFile, stationsFile } from '../manager/station-link.ts';
import { stateRoot } from './paths.ts';
import { isAlive, placement, statFields } from './procs.ts';
import type { LabState, ProcessState, VmState } from './state.ts';

/** How far a guest got: from its console log, and the agent's answer. */
export type BootStage = 'stopped' | 'firmware' | 'kernel' | 'init' | 'ready' | 'panic';

export interface VmStatus {
  name: string;
  pid: number;
  running: boolean;
  stage: BootStage;
  /** "answering", or why not ("no socket", "no answer within 1.5 s" — busy with a command, or not up). */
  agent: string;
  placement: string;
  cpuSeconds?: number;
  qmp: string;
  console: string;
  log: string;
}

export interface ProcessStatus {
  name: string;
  pid: number;
  running: boolean;
  placement: string;
  cpuSeconds?: number;
  log: string;
  /** The control socket's reply to {"stats":true} (HI, DI) or {"counters":true} (switch). */
  counters?: Record<string, unknown>;
  /** Per channel of an HI or DI: is the peer reachable over at least one link. */
  channels?: { id: string; peerAlive: boolean }[];
}

export interface LabStatus {
  topology: string;
  file: string;
  accel: string;
  qemuVersion: string;
  kernelVersion: string;
  startedAt: string;
  sampledAt: string;
  vms: VmStatus[];
  processes: ProcessStatus[];
  /** The manager's table (LAB_STATE/manager), for a lab with hosts and DIs. */
  assignments?: Assignment[];
  /**
   * What the manager discovered on the switch: each HI and DI, its liveness per link, an HI's
   * slots, a DI's functions and holders (LAB_STATE/manager/stations.json). `stale`: the manager
   * has not rewritten it for 3 s (it is not running), so liveness is as it last saw it.
   */
  discovery?: StationsFile & { stale: boolean };
}

const CLOCK_TICKS = 100; // USER_HZ on Linux
/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number | undefined {
  const f = statFields(pid);
  return f ? (Number(f[11]) + Number(f[12])) / CLOCK_TICKS : undefined;
}

function readIfExists(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** The boot stage a console log shows (the agent's answer is what makes a guest "ready"). */
export function consoleStage(consoleText: string): Exclude<BootStage, 'stopped' | 'ready'> {
  if (/Kernel panic/.test(consoleText)) return 'panic';
  if (/lab-init: up/.test(consoleText)) return 'init';
  if (/Linux version/.test(consoleText)) return 'kernel';
  return 'firmware';
}

async function agentState(vm: VmState, timeoutMs: number): Promise<string> {
  if (!existsSync(vm.agent)) return 'no socket';
  // An empty command is the agent's ping. The agent serves one command at a time, so a
  // long `lab exec` in progress shows here as no answer.
  return agentExec(vm.agent, '', { timeoutMs }).then(
    () => 'answering',
    (err: Error) => (/no answer/.test(err.message) ? `no answer within ${timeoutMs / 1000} s (busy with a command, or not up)` : err.message),
  );
}

async function vmStatus(vm: VmState, agentTimeoutMs: number): Promise<VmStatus> {
  const running = isAlive(vm);
  const agent = running ? await agentState(vm, agentTimeoutMs) : 'stopped';
  const seen = consoleStage(readIfExists(vm.console));
  const stage: BootStage = !running ? 'stopped' : seen === 'panic' ? 'panic' : agent === 'answering' ? 'ready' : seen;
  return {
    name: vm.name,
    pid: vm.pid,
    running,
    stage,
    agent,
    placement: running ? placement(vm.pid) : 'not running',
    cpuSeconds: running ? cpuSeconds(vm.pid) : undefined,
    qmp: vm.qmp,
    console: vm.console,
    log: vm.log,
  };
}

async function processCounters(p: ProcessState): Promise<Record<string, unknown> | undefined> {
  const control = join(p.socketDir, 'control.sock');
  if (!existsSync(control)) return undefined;
  // HI and DI answer {"stats":true}; the switch {"counters":true}.
  for (const req of [{ stats: true }, { counters: true }]) {
    const r = await controlRequest(control, req);
    if (r === undefined) return undefined;
    if (r.ok === true) {
      const { ok: _ok, ...counters } = r;
      return counters;
    }
  }
  return undefined;
}

async function processStatus(p: ProcessState): Promise<ProcessStatus> {
  const running = isAlive(p);
  const counters = running ? await processCounters(p) : undefined;
  const chans = counters?.channels as Record<string, { peerAlive?: boolean }> | undefined;
  return {
    name: p.name,
    pid: p.pid,
    running,
    placement: running ? placement(p.pid) : 'not running',
    cpuSeconds: running ? cpuSeconds(p.pid) : undefined,
    log: p.log,
    ...(counters ? { counters } : {}),
    ...(chans ? { channels: Object.entries(chans).map(([id, c]) => ({ id, peerAlive: c.peerAlive === true })) } : {}),
  };
}

export async function labStatus(s: LabState, opts: { agentTimeoutMs?: number } = {}): Promise<LabStatus> {
  const [vms, processes] = await Promise.all([
    Promise.all(s.vms.map((v) => vmStatus(v, opts.agentTimeoutMs ?? 1500))),
    Promise.all(s.processes.map(processStatus)),
  ]);
  const { topology, file, accel, qemuVersion, kernelVersion, startedAt } = s;
  const saved = savedAssignments(topology);
  const discovery = discovered();
  return {
    topology, file, accel, qemuVersion, kernelVersion, startedAt, sampledAt: new Date().toISOString(), vms, processes,
    ...(saved ? { assignments: saved } : {}),
    ...(discovery ? { discovery } : {}),
  };
}

/** The manager writes stations.json every half second while it runs. */
const DISCOVERY_STALE_MS = 3000;

function discovered(): (StationsFile & { stale: boolean }) | undefined {
  try {
    const f = JSON.parse(readFileSync(stationsFile(join(stateRoot, 'manager')), 'utf8')) as StationsFile;
    return { ...f, stale: Date.now() - Date.parse(f.writtenAt) > DISCOVERY_STALE_MS };
  } catch {
    return undefined;
  }
}

function savedAssignments(topology: string): Assignment[] | undefined {
  try {
    const t = new AssignmentStore(join(stateRoot, 'manager')).load();
    return t?.topology === topology ? t.assignments : undefined;
  } catch {
    return undefined;
  }
}

/** Two samples `intervalMs` apart: the second, with the first to show what moved. */
export async function sampledStatus(s: LabState, intervalMs: number): Promise<{ now: LabStatus; before?: LabStatus }> {
  if (intervalMs <= 0) return { now: await labStatus(s) };
  const before = await labStatus(s);
  await sleep(intervalMs);
  return { now: await labStatus(s), before };
}

/** The handful of counters that tell traffic is flowing, summed over a process's channels or ports. */
export function headlineCounters(p: ProcessStatus): Record<string, number> {
  const c = p.counters;
  if (!c) return {};
  const sum = (items: unknown, pick: (x: any) => number | undefined) =>
    Object.values((items ?? {}) as Record<string, unknown>).reduce<number>((n, x) => n + (pick(x) ?? 0), 0);
  if (c.ports) {
    return {
      rxFrames: sum(c.ports, (x) => x.switch?.rxFrames),
      txFrames: sum(c.ports, (x) => x.switch?.txFrames),
      // Dropped by the switch (runts, foreign VLAN) or by the port's fault settings.
      dropped: sum(c.ports, (x) => (x.switch?.rxDropped ?? 0) + faultDrops(x.faults?.tx) + faultDrops(x.faults?.rx)),
      // Dropped by port security: a source MAC that is not the port's station (a forger, or a miscabled station).
      forgedSource: sum(c.ports, (x) => x.switch?.rxSourceViolations),
      // ...and on which ports, once any.
      ...Object.fromEntries(
        Object.entries(c.ports as Record<string, { switch?: { rxSourceViolations?: number } }>)
          .filter(([, x]) => (x.switch?.rxSourceViolations ?? 0) > 0)
          .map(([name, x]) => [`forgedSource@${name}`, x.switch!.rxSourceViolations!]),
      ),
    };
  }
  if (c.channels) {
    return {
      txTlp: sum(c.channels, (x) => x.link?.txTlp),
      rxDelivered: sum(c.channels, (x) => x.link?.rxDelivered),
      replays: sum(c.channels, (x) => x.link?.txReplay),
      // Channels that started over: the peer came back with a new epoch (it restarted), or was cut off.
      resets: sum(c.channels, (x) => (x.link?.peerRestarts ?? 0) + (x.link?.cutOffs ?? 0)),
    };
  }
  return {};
}

const faultDrops = (f?: { lost?: number; downDropped?: number }) => (f?.lost ?? 0) + (f?.downDropped ?? 0);

function moved(now: number, before: number | undefined, secs: number): string {
  if (before === undefined) return String(now);
  const d = now - before;
  return `${now} (${d >= 0 ? '+' : ''}${Math.round(d / secs)}/s)`;
}

export function statusText({ now, before }: { now: LabStatus; before?: LabStatus }): string {
  const secs = before ? (Date.parse(now.sampledAt) - Date.parse(before.sampledAt)) / 1000 : 1;
  const cpu = (n?: number, b?: number) =>
    n === undefined ? '' : b === undefined ? `cpu ${n.toFixed(1)} s` : `cpu ${n.toFixed(1)} s (${Math.round(((n - b) / secs) * 100)} %)`;
  const lines = [
    `topology ${now.topology} (${now.file})`,
    `started ${now.startedAt}, accel ${now.accel}, ${now.qemuVersion}, guest kernel ${now.kernelVersion}`,
  ];
  for (const p of now.processes) {
    const prev = before?.processes.find((x) => x.name === p.name);
    lines.push(`process ${p.name.padEnd(12)} pid ${String(p.pid).padEnd(7)} ${p.running ? 'running' : 'STOPPED'}  ${p.placement}  ${cpu(p.cpuSeconds, prev?.cpuSeconds)}`);
    const head = headlineCounters(p);
    const prevHead = prev ? headlineCounters(prev) : {};
    const counters = Object.entries(head).map(([k, v]) => `${k} ${moved(v, prevHead[k], secs)}`);
    if (counters.length) lines.push(`        ${counters.join(', ')}`);
    if (p.channels?.length) lines.push(`        channels ${p.channels.map((c) => `${c.id} ${c.peerAlive ? 'peer reachable' : 'PEER UNREACHABLE'}`).join(', ')}`);
    lines.push(`        log ${p.log}`);
  }
  for (const v of now.vms) {
    const prev = before?.vms.find((x) => x.name === v.name);
    lines.push(
      `vm      ${v.name.padEnd(12)} pid ${String(v.pid).padEnd(7)} ${v.running ? 'running' : 'STOPPED'}  ${v.placement}  ${cpu(v.cpuSeconds, prev?.cpuSeconds)}\n` +
        `        boot stage ${v.stage}, agent ${v.agent}\n        qmp ${v.qmp}\n        console ${v.console}\n        log ${v.log}`,
    );
  }
  if (now.discovery) {
    const d = now.discovery;
    lines.push(`discovery (manager ${d.manager.mac}, heartbeat timeout ${d.heartbeatTimeoutMs} ms)${d.stale ? ': STALE, the manager has not written since ' + d.writtenAt : ''}`);
    for (const st of d.stations) {
      const links = st.links.map((l) => `${l.link} ${l.up ? 'up' : 'DOWN'}${l.silentMs !== undefined ? ` (${l.silentMs} ms)` : ''}`).join(', ');
      lines.push(`        ${st.role} ${st.name.padEnd(12)} ${st.alive ? 'alive' : 'LOST'}  epoch ${st.epoch.toString(16)}, restarts ${st.restarts}, losses ${st.losses}; links ${links || 'none heard'}`);
      for (const sl of st.slots ?? []) lines.push(`            slot ${sl.slot} ${sl.state}${sl.bdf ? ` (channel ${sl.channel} ${sl.bdf})` : ''}`);
      for (const f of st.functions ?? []) lines.push(`            ${f.name} ${f.vendor}:${f.device} class ${f.class} ${f.holder ? `held on channel ${f.holder.channel} as ${f.holder.bdf}` : 'free'}`);
    }
  }
  if (now.assignments) {
    lines.push(`assignments (manager): ${now.assignments.length ? '' : 'none'}`);
    for (const a of now.assignments) lines.push(`        ${a.di}/${a.function} → ${a.host} slot ${a.slot}`);
  }
  return lines.join('\n');
}
