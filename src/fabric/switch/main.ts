/**
 * The Ethernet switch as a lab process.
 *
 *   LAB_SOCKET_DIR=DIR node --import tsx src/fabric/switch/main.ts \
 *     --port NAME [--port NAME ...]       one unix datagram port each, bound at DIR/NAME.sock
 *     [--port NAME=memif[:server[:PATH]]]  a memif port (wire/memif/): the switch listens at PATH
 *                                         (default DIR/NAME.memif) and a station or DPDK/VPP connects
 *     [--port NAME=memif:client:PATH]     a memif port connecting to a memif server (DPDK net_memif, VPP)
 *     [--peer NAME=PATH ...]              where the port sends (the station's own bound socket);
 *                                         without it the port answers whoever sent to it last
 *     [--vlan NAME=access:VID ...]        default access:1
 *     [--vlan NAME=trunk:VID,VID[:native=VID]] | NAME=trunk:all[:native=VID]
 *     [--vxlan NAME=VNI,LADDR:LPORT,RADDR:RPORT ...]  a VXLAN tunnel port (RFC 7348) to a remote VTEP
 *     [--station NAME=MAC[,MAC] ...]      port security: NAME accepts frames from these source MACs only;
 *     [--station NAME=learn:N]              or from the first N it sees, then locks (unix ports: learn:1);
 *     [--station NAME=open]                 or from any (VXLAN ports: a tunnel carries a whole segment)
 *     [--max-macs N]                      MAC table size (default 4096)
 *     [--pcap-dir DIR]                    NAME.pcap per port, both directions, as the switch sees them
 *     [--seed N]                          fault-injection randomness (default: time-based, logged)
 *     [--busy-poll US]                    poll without sleeping until US µs pass with no frame
 *                                         (costs a CPU while traffic flows; see busy-poll.ts)
 *
 * A QEMU NIC joins port NAME with
 *   -netdev dgram,id=n0,local.type=unix,local.path=P,remote.type=unix,remote.path=DIR/NAME.sock
 * and the port answers P once the NIC has sent a frame; `--peer NAME=P` (or
 * the control request below) fixes P from the start, so frames flooded before
 * the guest's first packet reach it too. A port talks to one station at a
 * time: it connects its socket to that station (see unix-dgram-port.ts).
 *
 * Control: DIR/control.sock, a unix stream socket speaking line-delimited
 * JSON, one reply line per request line (see ControlRequest):
 *   {"port":"di0","dir":"tx","set":{"loss":0.01}}   faults; dir tx = out of the switch to the
 *                                                  station, rx = from the station, omitted = both
 *   {"port":"di0","peer":"/path/to/station.sock"}  where unix port di0 sends (null: the last sender)
 *   {"counters":true}  or  {"counters":true,"port":"di0"}    per port: counters (rxSourceViolations:
 *                                                  frames dropped by port security), bound stations,
 *                                                  fastPath: what memif-forward.ts moved natively (in
 *                                                  switch and socket counters too), txQueued: frames
 *                                                  waiting for the port now; the MAC table's size
 *                                                  and refusals
 *   {"capture":true}  or  {"capture":true,"port":"di0"}   start a capture of every port (or one) into
 *                                                  DIR/capture-<id>.pcap, both directions; reply: id, file
 *   {"capture":false,"id":1}                       stop it (file flushed and closed; reply: frames)
 *   {"profile":"start"}, {"profile":"stop","file":"x.cpuprofile"}   a CPU profile of the switch into DIR
 * Replies: {"ok":true,...} or {"ok":false,"error":"..."}.
 *
 * SIGTERM or SIGINT: sockets are closed and unlinked, pcap files flushed, exit 0.
 */

import { lstatSync, mkdirSync } from 'node:fs';
import { removeStaleSocket } from '../../common/socket-file.ts';
import { exitOnHelp, usageError } from '../../common/command-line.ts';
import { processLogger } from '../../common/logger.ts';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { BusyPoller } from './busy-poll.ts';
import { MemifForwarding, type NativeCounts } from './memif-forward.ts';
import { PortPath } from './port-path.ts';
import { cpuProfileControl, serveLineControl } from '../../common/control-socket.ts';
import { realClock } from '../clock.ts';
import type { Direction, FaultConfig, FaultCounters, FaultyPort } from '../wire/faults.ts';
import { TimerfdTimer } from '../wire/fine-timer.ts';
import { PcapWriter } from '../wire/pcap.ts';
import { seededRng } from '../rng.ts';
import { EthernetSwitch, type PortSecurity, type VlanMode } from './switch.ts';
import { formatMac, parseMac } from '../wire/mac.ts';
import { UnixDgramPort } from '../wire/unix-dgram-port.ts';
import { MemifPort } from '../wire/memif/port.ts';
import { type VxlanEndpoint, VxlanPort } from '../wire/vxlan-port.ts';

/** security null: an open port. */
export type PortConfig = { name: string; vlan: VlanMode; security: PortSecurity | null } & (
  | { kind: 'unix'; peer: string | null }
  | { kind: 'vxlan'; vni: number; local: VxlanEndpoint; remote: VxlanEndpoint }
  | { kind: 'memif'; role: 'server' | 'client'; socket: string }
);

export interface SwitchConfig {
  socketDir: string;
  ports: PortConfig[];
  pcapDir: string | null;
  seed: number;
  /** Busy-poll window, µs; 0: sleep in epoll whenever idle. */
  busyPollUs: number;
  maxMacs: number;
}

const PORT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** Parse the command line (and LAB_SOCKET_DIR) into a config; throws a usage error. */
export function parseSwitchArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): SwitchConfig {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      port: { type: 'string', multiple: true, default: [] },
      peer: { type: 'string', multiple: true, default: [] },
      vlan: { type: 'string', multiple: true, default: [] },
      vxlan: { type: 'string', multiple: true, default: [] },
      station: { type: 'string', multiple: true, default: [] },
      'max-macs': { type: 'string' },
      'pcap-dir': { type: 'string' },
      'socket-dir': { type: 'string' },
      seed: { type: 'string' },
      'busy-poll': { type: 'string' },
    },
    strict: true,
    allowPositionals: false,
  });
  const socketDir = values['socket-dir'] ?? env.LAB_SOCKET_DIR;
  if (!socketDir) throw new Error('LAB_SOCKET_DIR is not set (or pass --socket-dir)');
  const tunnels = new Map<string, string>();
  for (const a of values.vxlan) {
    const eq = a.indexOf('=');
    if (eq < 1) throw new Error(`--vxlan ${a}: expected NAME=VNI,LADDR:LPORT,RADDR:RPORT`);
    tunnels.set(a.slice(0, eq), a.slice(eq + 1));
  }
  const memifs = new Map<string, { role: 'server' | 'client'; socket: string }>();
  for (const a of values.port.filter((p) => p.includes('='))) memifs.set(a.slice(0, a.indexOf('=')), parseMemifPort(a, socketDir));
  const names = [...values.port.map((p) => (p.includes('=') ? p.slice(0, p.indexOf('=')) : p)), ...tunnels.keys()];
  if (names.length === 0) throw new Error('no --port or --vxlan given');
  for (const n of names) if (!PORT_NAME.test(n)) throw new Error(`bad port name "${n}"`);
  if (new Set(names).size !== names.length) throw new Error('a port name is given twice');
  if (names.includes('control')) throw new Error('"control" is the control socket, not a port name');
  const assignments = (opt: string, list: string[]) => {
    const m = new Map<string, string>();
    for (const a of list) {
      const eq = a.indexOf('=');
      const name = a.slice(0, eq);
      if (eq < 0 || !names.includes(name)) throw new Error(`--${opt} ${a}: expected NAME=VALUE for one of the --port names`);
      m.set(name, a.slice(eq + 1));
    }
    return m;
  };
  const peers = assignments('peer', values.peer);
  const vlans = assignments('vlan', values.vlan);
  const stations = assignments('station', values.station);
  const seed = values.seed === undefined ? Date.now() % 2 ** 31 : Number(values.seed);
  if (!Number.isInteger(seed)) throw new Error(`--seed ${values.seed}: not an integer`);
  const busyPollUs = values['busy-poll'] === undefined ? 0 : Number(values['busy-poll']);
  if (!/^\d+$/.test(values['busy-poll'] ?? '0') || busyPollUs > 1_000_000) throw new Error(`--busy-poll ${values['busy-poll']}: expected microseconds, 0-1000000`);
  const maxMacs = Number(values['max-macs'] ?? 4096);
  if (!/^\d+$/.test(values['max-macs'] ?? '4096') || maxMacs < 1 || maxMacs > 1_000_000) throw new Error(`--max-macs ${values['max-macs']}: expected 1-1000000`);
  const ports = names.map((name): PortConfig => {
    const vlan = parseVlan(vlans.get(name) ?? 'access:1');
    const tunnel = tunnels.get(name);
    const station = stations.get(name);
    const memif = memifs.get(name);
    if (memif !== undefined) {
      if (peers.has(name)) throw new Error(`--peer ${name}: a memif port's peer is whoever completes the handshake`);
      return { name, kind: 'memif', vlan, security: parseStation(station ?? 'learn:1', name), ...memif };
    }
    if (tunnel === undefined) return { name, kind: 'unix', peer: peers.get(name) ?? null, vlan, security: parseStation(station ?? 'learn:1', name) };
    if (peers.has(name)) throw new Error(`--peer ${name}: a VXLAN port's peer is its remote VTEP`);
    return { name, kind: 'vxlan', vlan, security: parseStation(station ?? 'open', name), ...parseTunnel(tunnel) };
  });
  const bound = ports.flatMap((p) => (p.security && 'macs' in p.security ? p.security.macs : []));
  const twice = bound.find((m, i) => bound.indexOf(m) !== i);
  if (twice !== undefined) throw new Error(`--station: ${formatMac(twice)} is given to two ports`);
  return {
    socketDir,
    ports,
    pcapDir: values['pcap-dir'] ?? null,
    seed,
    busyPollUs,
    maxMacs,
  };
}

/** `NAME=memif`, `NAME=memif:server[:PATH]` or `NAME=memif:client:PATH` (see --port). */
export function parseMemifPort(spec: string, socketDir: string): { role: 'server' | 'client'; socket: string } {
  const name = spec.slice(0, spec.indexOf('='));
  const [kind, role = 'server', ...rest] = spec.slice(name.length + 1).split(':');
  const path = rest.join(':');
  if (kind !== 'memif' || (role !== 'server' && role !== 'client')) throw new Error(`--port ${spec}: expected NAME, NAME=memif[:server[:PATH]] or NAME=memif:client:PATH`);
  if (role === 'client' && path === '') throw new Error(`--port ${spec}: a memif client needs the server's socket path`);
  return { role, socket: path === '' ? join(socketDir, `${name}.memif`) : resolve(path) };
}

/** `MAC[,MAC]`, `learn:N` or `open` (see --station). */
export function parseStation(spec: string, port: string): PortSecurity | null {
  if (spec === 'open') return null;
  const what = `--station ${port}=${spec}`;
  if (spec.startsWith('learn:')) {
    const n = Number(spec.slice(6));
    if (!/^\d+$/.test(spec.slice(6)) || n < 1 || n > 1024) throw new Error(`${what}: expected learn:N with N 1-1024`);
    return { learn: n };
  }
  try {
    return { macs: spec.split(',').map(parseMac) };
  } catch (err) {
    throw new Error(`${what}: expected MAC[,MAC], learn:N or open (${(err as Error).message})`);
  }
}

function parseEndpoint(text: string, what: string): VxlanEndpoint {
  const colon = text.lastIndexOf(':');
  const port = Number(text.slice(colon + 1));
  if (colon < 1 || !/^\d+$/.test(text.slice(colon + 1)) || port > 65535) throw new Error(`${what}: expected ADDRESS:PORT, got "${text}"`);
  return { address: text.slice(0, colon), port };
}

/** `VNI,LADDR:LPORT,RADDR:RPORT`. */
export function parseTunnel(spec: string): { vni: number; local: VxlanEndpoint; remote: VxlanEndpoint } {
  const [vni, local, remote, ...rest] = spec.split(',');
  const what = `VXLAN spec "${spec}"`;
  if (remote === undefined || rest.length > 0) throw new Error(`${what}: expected VNI,LADDR:LPORT,RADDR:RPORT`);
  if (!/^\d+$/.test(vni!) || Number(vni) > 0xff_ffff) throw new Error(`${what}: VNI must be 0-16777215`);
  return { vni: Number(vni), local: parseEndpoint(local!, what), remote: parseEndpoint(remote, what) };
}

function parseVid(text: string, what: string): number {
  const v = Number(text);
  if (!/^\d+$/.test(text) || v < 1 || v > 4094) throw new Error(`${what}: VLAN id must be 1-4094, got "${text}"`);
  return v;
}

/** `access:VID`, `trunk:VID,VID,...[:native=VID]`, `trunk:all[:native=VID]`. */
export function parseVlan(spec: string): VlanMode {
  const [mode, list, native, ...rest] = spec.split(':');
  if (mode === 'access' && list !== undefined && native === undefined) return { mode: 'access', vid: parseVid(list, spec) };
  if (mode === 'trunk' && list !== undefined && rest.length === 0) {
    const vids = list === 'all' ? 'all' : list.split(',').map((v) => parseVid(v, spec));
    if (native === undefined) return { mode: 'trunk', vids };
    if (!native.startsWith('native=')) throw new Error(`VLAN spec "${spec}": expected native=VID after the list`);
    return { mode: 'trunk', vids, native: parseVid(native.slice(7), spec) };
  }
  throw new Error(`VLAN spec "${spec}": expected access:VID or trunk:VID,VID,...[:native=VID] or trunk:all`);
}

// ---- control protocol ----

const probability = z.number().min(0).max(1);
const millis = z.number().min(0).max(60_000);
const faultSet = z.strictObject({
  loss: probability,
  duplicate: probability,
  reorder: probability,
  reorderDelay: millis,
  corrupt: probability,
  latency: millis,
  jitter: millis,
  // 0 is unlimited; below 1 Mb/s one jumbo frame would hold the wire for tens of ms.
  rateGbps: z.number().refine((v) => v === 0 || (v >= 0.001 && v <= 1000), 'rateGbps: 0 (unlimited) or 0.001-1000'),
  down: z.boolean(),
}).partial() satisfies z.ZodType<Partial<FaultConfig>>;

export const ControlRequest = z.union([
  z.strictObject({ port: z.string(), dir: z.enum(['tx', 'rx']).optional(), set: faultSet }),
  // A unix socket path (sun_path holds 107 bytes); where it may point is checked in peerProblem.
  z.strictObject({ port: z.string(), peer: z.string().min(1).max(107).nullable() }),
  z.strictObject({ counters: z.literal(true), port: z.string().optional() }),
  z.strictObject({ capture: z.literal(true), port: z.string().optional() }),
  z.strictObject({ capture: z.literal(false), id: z.number().int() }),
]);
export type ControlRequest = z.infer<typeof ControlRequest>;

/** The switch's view of `tx`/`rx` (from the switch's side) in FaultyPort's terms. */
const DIRECTION: Record<'tx' | 'rx', Direction> = { tx: 'toStation', rx: 'toSwitch' };


interface RunningPort {
  config: PortConfig;
  id: number;
  transport: UnixDgramPort | VxlanPort | MemifPort;
  path: PortPath;
  faults: FaultyPort;
  pcap: PcapWriter | null;
  /** Captures started over the control socket that include this port. */
  live: Set<LiveCapture>;
}

interface LiveCapture {
  id: number;
  file: string;
  writer: PcapWriter;
  frames: number;
}

export interface RunningSwitch {
  handle(request: unknown): Record<string, unknown>;
  close(): Promise<void>;
}

const switchLog = processLogger('switch');

/** Bind every port and the control socket. Resolves once all sockets exist. */
export async function runSwitch(cfg: SwitchConfig, log: (line: string) => void = (line) => switchLog('info', line)): Promise<RunningSwitch> {
  mkdirSync(cfg.socketDir, { recursive: true });
  if (cfg.pcapDir) mkdirSync(cfg.pcapDir, { recursive: true });
  const poller = cfg.busyPollUs > 0 ? new BusyPoller(cfg.busyPollUs, realClock) : null;
  // Memif to memif in native code, past the core, once the core has routed a stream of frames.
  const fast = new MemifForwarding(realClock, poller && (() => poller.kick()), cfg.seed);
  const sw = new EthernetSwitch({ clock: realClock, maxMacs: cfg.maxMacs, log, fastPath: fast });
  const rng = seededRng(cfg.seed);
  const ports = new Map<string, RunningPort>();
  // Control first: once the port sockets appear the lab starts guests, which may want faults set at once.
  const controlPath = join(cfg.socketDir, 'control.sock');
  removeStaleSocket(controlPath);
  // {"profile":"start"} / {"profile":"stop","file":...}: a CPU profile into the socket directory, as the HI and DI have.
  const profiler = cpuProfileControl(cfg.socketDir);
  const server = await serveLineControl(controlPath, (req) => profiler(req) ?? handle(req));
  for (const config of cfg.ports) {
    const transport =
      config.kind === 'unix'
        ? new UnixDgramPort({ path: join(cfg.socketDir, `${config.name}.sock`), peer: config.peer ?? undefined })
        : config.kind === 'memif'
          ? new MemifPort({ socket: config.socket, role: config.role, name: `pcieoe-switch-${config.name}`, log })
          : await VxlanPort.open({ vni: config.vni, local: config.local, remote: config.remote });
    const pcap = cfg.pcapDir ? new PcapWriter(join(cfg.pcapDir, `${config.name}.pcap`)) : null;
    const live = new Set<LiveCapture>();
    const sink = {
      write(frame: Uint8Array, time?: number) {
        pcap?.write(frame, time);
        for (const c of live) {
          c.frames++;
          c.writer.write(frame, time);
        }
      },
    };
    // Through the fault injector and the capture once either is wanted (a capture started later over
    // the control socket included), straight past them until then.
    const path = new PortPath(transport, realClock, rng, sink, () => pcap !== null || live.size > 0, () => new TimerfdTimer());
    const id = sw.addPort(poller ? poller.watch(path) : path, config.vlan, config.name, config.security ?? undefined);
    if (transport instanceof MemifPort) fast.add(id, transport, path);
    ports.set(config.name, { config, id, transport, path, faults: path.faults, pcap, live });
  }
  const lives = new Map<number, LiveCapture>();
  let nextCapture = 1;
  // Captures reach their files at least this often even when traffic stops.
  const flusher = setInterval(() => {
    ports.forEach((p) => p.pcap?.flush());
    lives.forEach((c) => c.writer.flush());
  }, 500);
  flusher.unref();
  log(`switch: ${cfg.ports.length} ports in ${cfg.socketDir} (${cfg.ports.map((p) => p.name).join(', ')}), control ${controlPath}, seed ${cfg.seed}${poller ? `, busy-poll ${cfg.busyPollUs} µs` : ''}`);

  function portReport(p: RunningPort) {
    const fastCounts = fast.counters(p.id);
    return {
      peer: p.transport instanceof UnixDgramPort ? p.transport.peer : p.transport instanceof MemifPort ? memifText(p.transport) : vxlanText(p.transport),
      switch: sw.counters(p.id),
      stations: sw.stations(p.id)?.map(formatMac) ?? 'open',
      socket: withNative(p.transport.counters, fastCounts),
      // Frames waiting in the switch for this port's ring or socket now (its egress queue).
      txQueued: p.transport instanceof MemifPort ? p.transport.txWaiting : p.transport instanceof UnixDgramPort ? p.transport.txQueued : 0,
      // Of those, what the native memif-to-memif path moved (null: not a memif server port).
      fastPath: fastCounts,
      // The injector's counts, and the drops and passes of loss applied in native code.
      faults: { tx: withNativeLoss(p.faults.counters('toStation'), fastCounts?.txLost, fastCounts?.txPassed), rx: withNativeLoss(p.faults.counters('toSwitch'), fastCounts?.rxLost, fastCounts?.rxPassed) },
      config: { tx: p.faults.config('toStation'), rx: p.faults.config('toSwitch') },
    };
  }

  function handle(raw: unknown): Record<string, unknown> {
    const parsed = ControlRequest.safeParse(raw);
    if (!parsed.success) return { ok: false, error: `bad request: ${z.prettifyError(parsed.error)}` };
    const req = parsed.data;
    if ('capture' in req && !req.capture) {
      const c = lives.get(req.id);
      if (!c) return { ok: false, error: `no capture ${req.id}` };
      lives.delete(req.id);
      for (const p of ports.values()) {
        p.live.delete(c);
        p.path.update();
      }
      c.writer.close();
      log(`switch: capture ${c.id} stopped, ${c.frames} frames in ${c.file}`);
      return { ok: true, id: c.id, file: c.file, frames: c.frames };
    }
    const port = req.port === undefined ? undefined : ports.get(req.port);
    if (req.port !== undefined && !port) return { ok: false, error: `no port "${req.port}"` };
    if ('capture' in req) {
      const id = nextCapture++;
      const file = join(cfg.socketDir, `capture-${id}.pcap`);
      const c: LiveCapture = { id, file, writer: new PcapWriter(file), frames: 0 };
      lives.set(id, c);
      const wanted = port ? [port] : [...ports.values()];
      for (const p of wanted) {
        p.live.add(c);
        p.path.update();
      }
      log(`switch: capture ${id} of ${port ? req.port : 'every port'} into ${file}`);
      return { ok: true, id, file, ports: wanted.map((p) => p.config.name) };
    }
    if ('set' in req) {
      port!.path.setFaults(req.set, req.dir && DIRECTION[req.dir]);
      log(`switch: ${req.port} ${req.dir ?? 'tx+rx'} faults ${JSON.stringify(req.set)}`);
      return { ok: true, port: req.port, config: portReport(port!).config };
    }
    if ('peer' in req) {
      if (!(port!.transport instanceof UnixDgramPort)) return { ok: false, error: `${req.port} is not a unix datagram port` };
      const problem = req.peer === null ? undefined : peerProblem(req.peer, dirname(cfg.socketDir));
      if (problem) return { ok: false, error: `peer ${JSON.stringify(req.peer)}: ${problem}` };
      port!.transport.setPeer(req.peer);
      log(`switch: ${req.port} peer ${req.peer}`);
      return { ok: true, port: req.port, peer: req.peer };
    }
    const wanted = port ? [port] : [...ports.values()];
    return { ok: true, ports: Object.fromEntries(wanted.map((p) => [p.config.name, portReport(p)])), macTable: sw.tableStats };
  }

  return {
    handle,
    async close() {
      clearInterval(flusher);
      poller?.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      removeStaleSocket(controlPath);
      sw.close(); // closes and unlinks every port socket
      for (const p of ports.values()) p.pcap?.close();
      for (const c of lives.values()) c.writer.close();
    },
  };
}

/**
 * Why a control request may not point a port at `path`: stations' sockets live in the lab's
 * socket tree (the switch's socket directory and its siblings), so a port is never aimed at
 * a socket elsewhere on the host; what is there already must be a socket, not a symlink.
 */
export function peerProblem(path: string, root: string): string | undefined {
  if (!isAbsolute(path) || resolve(path) !== path) return 'must be an absolute path without "." or ".." parts';
  if (!path.startsWith(`${resolve(root)}/`)) return `must lie under ${root}, where the lab's sockets are`;
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return undefined; // the station binds it later
  }
  return st.isSocket() ? undefined : 'is there but is not a socket';
}

/** A port's socket counters with the frames the native fast path moved through it (and the wake-ups it served) added. */
function withNative<C extends object>(c: C, n: NativeCounts | null): C {
  if (n === null) return c;
  const m = c as C & Pick<NativeCounts, 'rxFrames' | 'rxBytes' | 'txFrames' | 'txBytes' | 'txSignals'> & { rxSignals: number };
  return { ...c, rxFrames: m.rxFrames + n.rxFrames, rxBytes: m.rxBytes + n.rxBytes, txFrames: m.txFrames + n.txFrames, txBytes: m.txBytes + n.txBytes, txSignals: m.txSignals + n.txSignals, rxSignals: m.rxSignals + n.rxWakes };
}

function withNativeLoss(c: Readonly<FaultCounters>, lost = 0, passed = 0): FaultCounters {
  return { ...c, lost: c.lost + lost, passed: c.passed + passed };
}

/** "vxlan VNI LOCAL -> REMOTE", for counters and logs. */
function vxlanText(v: VxlanPort): string {
  const text = (e: VxlanEndpoint | null) => (e ? `${e.address}:${e.port}` : 'nowhere');
  return `vxlan ${v.vni} ${text(v.local)} -> ${text(v.remoteVtep)}`;
}

function memifText(m: MemifPort): string {
  return `memif ${m.role} ${m.socket} ${m.connected ? 'connected' : `not connected${m.error ? ` (${m.error})` : ''}`}`;
}

const COMMAND_LINE = {
  name: 'switch',
  usage: `usage: main.ts --port NAME[=memif[:server[:PATH]]|=memif:client:PATH] ... [--peer NAME=PATH] [--vlan NAME=access:VID|trunk:VIDS[:native=VID]]
               [--vxlan NAME=VNI,LADDR:LPORT,RADDR:RPORT] [--station NAME=MAC[,MAC]|learn:N|open] [--max-macs N]
               [--pcap-dir DIR] [--seed N] [--busy-poll US] [--socket-dir DIR]   (DIR defaults to $LAB_SOCKET_DIR)`,
};

async function main(): Promise<void> {
  exitOnHelp(COMMAND_LINE);
  let cfg: SwitchConfig;
  try {
    cfg = parseSwitchArgs(process.argv.slice(2));
  } catch (err) {
    usageError(COMMAND_LINE, (err as Error).message);
  }
  const running = await runSwitch(cfg);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    switchLog('info', `switch: ${signal}, shutting down`);
    running.close().then(
      () => process.exit(0),
      (err) => {
        switchLog('error', `switch: shutdown failed: ${(err as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
