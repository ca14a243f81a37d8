// PCIeOE fabric through the switch as a separate process, every party its
// own Node process on real unix datagram sockets, for two CPU placements:
//   one CPU — every process pinned to CPU 0 (taskset -c 0);
//   spread  — switch on CPU 1, endpoints on CPU 0: every hop wakes the other CPU
//             (raw baselines: one process on each CPU).
// Measured in one run:
//   * TLP payload throughput (MWr, 4 KiB data each) from endpoint A to B, one link
//     and one channel over two links, against raw 4 KiB datagrams one way;
//   * read round trip (MRd 1 DW -> CplD) A -> B -> A through the switch, against a
//     raw ping-pong between two processes (unix datagrams; memif, also through the switch);
//   * standalone ACK frames as a share of all frames under bidirectional load.
// A throughput is the median of the rates in FABRIC_BENCH_WINDOWS (5) equal parts of one case's
// measuring window; CPU per frame is over the whole window.
//
//   npm run bench -- fabric
//   FABRIC_BENCH_SECONDS=5 FABRIC_BENCH_PROF=/tmp/prof npm run bench -- fabric   (--cpu-prof every process)
//   FABRIC_BENCH_NODE_ARGS=--trace-gc npm run bench -- fabric                 (more node options for every process)
//   FABRIC_BENCH_PLACEMENTS=spread,spread+poll npm run bench -- fabric        (only these placements; --quick's choice)
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { native, PollEvent } from '../native/index.ts';
import type { ChannelStats } from '../src/fabric/link/channel.ts';
import { completionFor } from '../src/fabric/tlp/completion.ts';
import { FrameType, PCIEOE_HEADER_BYTES, TAGGED_L2_BYTES, encodeFrame } from '../src/fabric/wire/frame.ts';
import type { Mac } from '../src/fabric/wire/mac.ts';
import { TlpType, decodeTlp, encodeTlp } from '../src/fabric/tlp/tlp.ts';
import { MemifPort } from '../src/fabric/wire/memif/port.ts';
import { type SwitchProcess, VLAN, endpoint, macA, macB, peerArgs, startSwitch } from '../src/fabric/switch/switch-process.ts';
import { record, recordSettings } from './lib/results.ts';
import { ROUND_TRIPS } from './report/markdown.ts';

const SECONDS = Number(process.env.FABRIC_BENCH_SECONDS ?? 3);
const WARMUP = 0.5;
/**
 * Warm-up of the memif cases through the switch: their rate still climbs for about a second
 * after the start (the same with a larger young generation), and a 1 s window (--quick) after
 * 0.5 s measured mostly that climb. Their endpoints start alongside the switch (a memif client
 * retries its connection); that and a shorter LINGER pay for it, so a run takes no longer.
 */
const WARMUP_MEMIF = 1;
/** Parts of each measuring window; a throughput is the median of theirs (see windowCounter). */
const WINDOWS = Number(process.env.FABRIC_BENCH_WINDOWS ?? 5);
/** Senders keep going this long past the window (see workerMain). */
const LINGER = 0.15;
const PROF = process.env.FABRIC_BENCH_PROF;
/** FABRIC_BENCH_NODE_ARGS="--trace-gc ...": more node options for every process of a case (V8 flags NODE_OPTIONS refuses). */
const EXTRA_NODE_ARGS = (process.env.FABRIC_BENCH_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
const DATA = 4096;
/** 4 KiB of data in an MWr64 TLP in a tagged PCIeOE frame: the datagram size for the raw baseline too. */
const FRAME_BYTES = TAGGED_L2_BYTES + PCIEOE_HEADER_BYTES + 16 + DATA;
const self = fileURLToPath(import.meta.url);

type Role = 'raw-ping' | 'raw-echo' | 'raw-source' | 'raw-sink' | 'tlp-source' | 'tlp-sink' | 'tlp-both' | 'tlp-requester' | 'tlp-completer';

interface WorkerConfig {
  role: Role;
  dir: string;
  /** 'a' or 'b': socket names and MACs. */
  name: 'a' | 'b';
  links: number;
  /** Raw roles only: the datagrams are tagged Ethernet frames that cross the switch (port a0 -> b0). */
  viaSwitch?: boolean;
  /** Links are memif ports (the switch's --port NAME=memif) instead of unix datagram sockets; raw roles: one memif connection, no switch (with viaSwitch: each side a client of its switch port). */
  memif?: boolean;
  /** Seconds from the start to the measuring window. */
  warmup: number;
}

interface WorkerResult {
  /** TLP data or datagram bytes received in the measuring window, per second: the median of its WINDOWS parts. */
  rxBytesPerSec?: number;
  /** The same in each part of the window, in order. */
  rxPartsBytesPerSec?: number[];
  /** Round trips completed in the window. */
  roundTrips?: number;
  medianRttUs?: number;
  meanRttUs?: number;
  stats?: ChannelStats;
  /** CPU time (user + system) this process used in the window, ms, and the window's length. */
  cpuMs: number;
  windowMs: number;
  /** Frames this process received in the window (TLPs for a sink, datagrams raw). */
  rxFrames: number;
  /** Minor page faults and context switches (voluntary: it slept) in the window. */
  faults: number;
  sleeps: number;
  preempted: number;
}

// ---------------------------------------------------------------- worker side

interface Activity {
  /** Settles once the activity can take frames from its peer (a memif client connected); the worker is ready after it. */
  ready?: Promise<void>;
  start(): void;
  /** Called at the start of the measuring window, between its parts, and at its end. */
  mark(phase: 'begin' | 'split' | 'end'): void;
  result(): Omit<WorkerResult, 'cpuMs' | 'windowMs' | 'faults' | 'sleeps' | 'preempted'>;
  close(): void;
}

/** Resolves once `cond()` holds (looked at every millisecond). */
const until = (cond: () => boolean): Promise<void> =>
  new Promise((resolve) => {
    const look = () => (cond() ? resolve() : void setTimeout(look, 1));
    look();
  });

/** The read of the round-trip cases: one DW. */
const MRD_1DW = encodeTlp({ type: TlpType.MRd64, tc: 0, attr: 0, poisoned: false, requesterId: 0x0100, tag: 1, firstBe: 0xf, lastBe: 0, address: 0x1_0000_0000n, length: 1 });

/** A tagged PCIeOE frame from `src` to `dst` carrying `tlp`: what a raw station sends through the switch. */
const switchFrame = (src: Mac, dst: Mac, tlp: Uint8Array): Buffer => encodeFrame({ dst, src, vlan: VLAN, type: FrameType.Tlp, flags: 0, channel: 1, seq: 0, ack: 0, credits: 0 }, tlp);

function mwr(i: number): Buffer {
  return encodeTlp({
    type: TlpType.MWr64, tc: 0, attr: 0, poisoned: false, requesterId: 0x0100, tag: i & 0xff, firstBe: 0xf, lastBe: 0xf,
    address: 0x1_0000_0000n + BigInt(i) * 0x1000n, data: Buffer.alloc(DATA, i),
  });
}

/**
 * Byte counting over the measuring window, cut into WINDOWS equal parts: the rate is the median
 * of the parts' rates, so a stall of the shared machine in one part (another process's burst, a
 * GC) does not decide the figure; the frame count (for CPU per frame) is the whole window's.
 */
function windowCounter() {
  let bytes = 0;
  let frames = 0;
  let framesAtBegin = 0;
  let framesIn = 0;
  let partBytes = 0;
  let partT0 = 0;
  const parts: number[] = [];
  return {
    add(n: number) {
      bytes += n;
      frames++;
    },
    mark(phase: 'begin' | 'split' | 'end') {
      const now = performance.now();
      if (phase === 'begin') framesAtBegin = frames;
      else parts.push(((bytes - partBytes) * 1000) / (now - partT0));
      if (phase === 'end') framesIn = frames - framesAtBegin;
      [partBytes, partT0] = [bytes, now];
    },
    /** Bytes per second: the median of the parts' rates. */
    get rate() {
      return median(parts);
    },
    /** Each part's rate, bytes per second. */
    get parts() {
      return parts;
    },
    get frames() {
      return framesIn;
    },
  };
}

function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length === 0 ? NaN : sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Round-trip timing: `sent()` before each request, `answered()` on its reply. */
function rttCounter() {
  const samples: number[] = [];
  let sentAt = 0;
  let measuring = false;
  return {
    sent() {
      sentAt = performance.now();
    },
    answered() {
      if (measuring) samples.push(performance.now() - sentAt);
    },
    mark(phase: 'begin' | 'split' | 'end') {
      if (phase !== 'split') measuring = phase === 'begin';
    },
    result() {
      const sorted = [...samples].sort((x, y) => x - y);
      return {
        rxFrames: samples.length,
        roundTrips: samples.length,
        medianRttUs: (sorted[sorted.length >> 1] ?? NaN) * 1000,
        meanRttUs: (samples.reduce((s, x) => s + x, 0) / samples.length) * 1000,
      };
    },
  };
}

/**
 * What a raw station measures, by its role: a sink the bytes it receives, a ping its round
 * trips; the roles' handling of each frame (`take`) is the same over either transport.
 */
function rawMeter(role: WorkerConfig['role']) {
  const bytes = windowCounter();
  const rtt = rttCounter();
  return {
    /** A frame arrived: echo it, count it, or answer the ping with `msg`. */
    take(frame: Buffer, send: (data: Buffer) => void, msg: Buffer, running: boolean, echo = send) {
      if (role === 'raw-echo') echo(frame);
      else if (role === 'raw-sink') bytes.add(frame.length);
      else if (role === 'raw-ping' && running) {
        rtt.answered();
        rtt.sent();
        send(msg);
      }
    },
    /** The first ping. */
    ping(send: (data: Buffer) => void, msg: Buffer) {
      rtt.sent();
      send(msg);
    },
    mark(phase: 'begin' | 'split' | 'end') {
      bytes.mark(phase);
      rtt.mark(phase);
    },
    result: () => (role === 'raw-sink' ? { rxBytesPerSec: bytes.rate, rxPartsBytesPerSec: bytes.parts, rxFrames: bytes.frames } : role === 'raw-ping' ? rtt.result() : { rxFrames: 0 }),
  };
}

function rawActivity(cfg: WorkerConfig): Activity {
  // Through the switch, each side is the station of its port 0 and, as a UnixDgramPort, connected to it.
  const me = path.join(cfg.dir, cfg.viaSwitch ? `${cfg.name}0-station.sock` : `raw-${cfg.name}.sock`);
  const peer = path.join(cfg.dir, cfg.viaSwitch ? `${cfg.name}0.sock` : `raw-${cfg.name === 'a' ? 'b' : 'a'}.sock`);
  const fd = native.unixDgram(me);
  if (cfg.viaSwitch) {
    native.dgramConnect(fd, peer);
    native.socketBuffers(fd, 1 << 20);
  }
  const buf = Buffer.alloc(65536);
  const msg =
    cfg.role !== 'raw-source'
      ? Buffer.alloc(64)
      : cfg.viaSwitch
        ? switchFrame(macA(0), macB(0), mwr(0))
        : Buffer.alloc(FRAME_BYTES);
  const meter = rawMeter(cfg.role);
  let txFd = -1;
  let txPoll: ReturnType<typeof pollOf> | null = null;
  let running = false;
  const pollOf = (f: number, fn: () => void) => new native.Poll(f, (err) => (err ? console.error(err) : fn()));
  /** A datagram to the peer; once the peer has finished and closed its socket, sending stops quietly. */
  const sendToPeer = (data: Uint8Array) => {
    try {
      native.sendTo(fd, data, peer);
    } catch {
      running = false;
    }
  };
  const rx = pollOf(fd, () => {
    for (let n; (n = native.recv(fd, buf)) >= 0; ) meter.take(buf.subarray(0, n), sendToPeer, msg, running);
  });
  rx.start(PollEvent.Readable);
  // A connected sender, so a full receiver queue can be waited for (see unix-dgram-port.ts).
  const pump = () => {
    try {
      while (running && native.sendmsg(txFd, msg) >= 0);
    } catch {
      running = false; // the sink finished first and closed its socket
    }
    if (running) txPoll!.start(PollEvent.Writable);
    else txPoll!.stop();
  };
  return {
    start() {
      running = true;
      if (cfg.role === 'raw-ping') meter.ping(sendToPeer, msg);
      else if (cfg.role === 'raw-source') {
        txFd = cfg.viaSwitch ? native.dup(fd) : native.unixConnect(peer, 'dgram'); // one Poll per fd
        txPoll = pollOf(txFd, pump);
        pump();
      }
    },
    mark: meter.mark,
    result: meter.result,
    close() {
      running = false;
      rx.close();
      txPoll?.close();
      native.close(fd);
      if (txFd >= 0) native.close(txFd);
    },
  };
}

/**
 * Raw frames over one memif connection, no switch: B (started first) is the memif server at
 * `<dir>/raw.memif`, A its client. The memif counterpart of the raw unix dgram baselines.
 * `viaSwitch` (ping-pong only): each side a memif client of its switch port, the frames tagged
 * and addressed to the other side (B answers with its own frame, so the switch sends it back).
 */
function memifRawActivity(cfg: WorkerConfig): Activity {
  const port = cfg.viaSwitch
    ? new MemifPort({ socket: path.join(cfg.dir, `${cfg.name}0.memif`), role: 'client' })
    : new MemifPort({ socket: path.join(cfg.dir, 'raw.memif'), role: cfg.name === 'b' ? 'server' : 'client' });
  const [me, peer] = cfg.name === 'a' ? [macA(0), macB(0)] : [macB(0), macA(0)];
  const msg = cfg.viaSwitch ? switchFrame(me, peer, MRD_1DW) : Buffer.alloc(cfg.role === 'raw-source' ? FRAME_BYTES : 64);
  const meter = rawMeter(cfg.role);
  const send = (data: Buffer) => port.transmit(data);
  const echo = cfg.viaSwitch ? () => port.transmit(msg) : (frame: Buffer) => port.transmit(Buffer.from(frame));
  let running = false;
  port.attach((frame) => meter.take(frame, send, msg, running, echo));
  // A turn's worth of frames at a time, so the loop still serves the port's wake-ups.
  const pump = () => {
    if (!running) return;
    for (let i = 0; i < 64; i++) port.transmit(msg);
    setImmediate(pump);
  };
  const connected = until(() => port.connected);
  return {
    // Through the switch the first ping is flooded to whoever is connected then, and one ping is all
    // there is: both sides connect before either is ready.
    ready: cfg.viaSwitch ? connected : undefined,
    start() {
      running = true;
      void connected.then(() => {
        if (cfg.role === 'raw-ping') meter.ping(send, msg);
        else if (cfg.role === 'raw-source') pump();
      });
    },
    mark: meter.mark,
    result: meter.result,
    close() {
      running = false;
      port.close();
    },
  };
}

function tlpActivity(cfg: WorkerConfig): Activity {
  const bytes = windowCounter();
  const rtt = rttCounter();
  const sends = cfg.role === 'tlp-source' || cfg.role === 'tlp-both';
  const word = Buffer.from([1, 2, 3, 4]);
  const tlps = Array.from({ length: 16 }, (_, i) => mwr(i));
  let running = false;
  let next = 0;
  const deliver = (p: Uint8Array) => {
    switch (cfg.role) {
      case 'tlp-sink':
      case 'tlp-both':
        bytes.add(p.length - 16); // the data of a 4-DW-header MWr
        break;
      case 'tlp-requester':
        if (!running) return;
        rtt.answered();
        rtt.sent();
        ep.channel.send(MRD_1DW);
        break;
      case 'tlp-completer': {
        const r = decodeTlp(p);
        if (r.ok && r.value.type === TlpType.MRd64) ep.channel.send(encodeTlp(completionFor(r.value, 0x0200, word)));
        break;
      }
      default:
        break;
    }
  };
  // Keep the channel's queue short but never empty: onDrain refills after a credit stall,
  // setImmediate while credit lasts (one turn's worth at a time, so received ACKs get in).
  const pump = () => {
    if (!running) return;
    for (let i = 0; i < 64 && ep.channel.queued < 32; i++) ep.channel.send(tlps[next++ & 15]!);
    if (ep.channel.queued === 0) setImmediate(pump);
  };
  const ep = endpoint({
    dir: cfg.dir,
    name: cfg.name,
    links: cfg.links,
    mac: cfg.name === 'a' ? macA : macB,
    peerMac: cfg.name === 'a' ? macB : macA,
    vlan: VLAN,
    memif: cfg.memif,
    // deliver keeps nothing of a payload past the call: it may be the ring slot itself.
    channel: { deliver, deliverTransient: true, onDrain: sends ? pump : undefined },
  });
  return {
    start() {
      running = true;
      if (sends) pump();
      if (cfg.role === 'tlp-requester') {
        rtt.sent();
        ep.channel.send(MRD_1DW);
      }
    },
    mark(phase) {
      bytes.mark(phase);
      rtt.mark(phase);
    },
    result: () => ({ ...(cfg.role === 'tlp-requester' ? rtt.result() : { rxBytesPerSec: bytes.rate, rxPartsBytesPerSec: bytes.parts, rxFrames: bytes.frames }), stats: ep.channel.stats }),
    close() {
      running = false;
      ep.close();
    },
  };
}

async function workerMain(cfg: WorkerConfig): Promise<void> {
  process.env.PCIEOE_TRACE_NAME ??= `${cfg.role}-${cfg.name}`; // src/fabric/trace.ts: which process a trace is
  const act = cfg.role.startsWith('raw-') ? (cfg.memif ? memifRawActivity(cfg) : rawActivity(cfg)) : tlpActivity(cfg);
  await act.ready;
  process.send!({ type: 'ready' });
  await new Promise((resolve) => process.once('message', resolve));
  act.start();
  let cpu0 = process.cpuUsage();
  let ru0 = process.resourceUsage();
  let t0 = 0;
  let window = { cpuMs: 0, windowMs: 0, faults: 0, sleeps: 0, preempted: 0 };
  const warmup = cfg.warmup;
  setTimeout(() => {
    act.mark('begin');
    [cpu0, ru0, t0] = [process.cpuUsage(), process.resourceUsage(), performance.now()];
  }, warmup * 1000);
  for (let k = 1; k < WINDOWS; k++) setTimeout(() => act.mark('split'), (warmup + (SECONDS * k) / WINDOWS) * 1000);
  setTimeout(() => {
    act.mark('end');
    const cpu = process.cpuUsage(cpu0);
    const ru = process.resourceUsage();
    window = {
      cpuMs: (cpu.user + cpu.system) / 1000,
      windowMs: performance.now() - t0,
      faults: ru.minorPageFault - ru0.minorPageFault,
      sleeps: ru.voluntaryContextSwitches - ru0.voluntaryContextSwitches,
      preempted: ru.involuntaryContextSwitches - ru0.involuntaryContextSwitches,
    };
  }, (warmup + SECONDS) * 1000);
  // Everyone keeps going a little past the window, so no sender stops while a receiver still measures.
  setTimeout(() => {
    const result: WorkerResult = { ...act.result(), ...window };
    act.close();
    process.send!({ type: 'result', result }, () => process.disconnect());
  }, (warmup + SECONDS + LINGER) * 1000);
}

// ---------------------------------------------------------- orchestrator side

/**
 * --cpu-prof into a folder per process of a case, `PROF/<what>.<time>/`, under Node's own file
 * names: each thread (tsx's loader thread too) writes its own profile there, where one
 * --cpu-prof-name would have the loader thread's overwrite the main thread's.
 */
function profArgs(what: string): string[] {
  return [...EXTRA_NODE_ARGS, ...(PROF ? ['--cpu-prof', '--cpu-prof-dir', path.join(PROF, `${what}.${Date.now()}`)] : [])];
}

interface Worker {
  proc: ChildProcess;
  ready: Promise<void>;
  result: Promise<WorkerResult>;
}

function startWorker(cfg: WorkerConfig, cpu: string): Worker {
  const prof = profArgs(`${cfg.role}-${cfg.name}-cpu${cpu}`);
  const proc = spawn('taskset', ['-c', cpu, process.execPath, ...prof, '--import', 'tsx', self, 'worker', JSON.stringify(cfg)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const messages: Promise<{ type: string; result?: WorkerResult }>[] = [];
  const resolvers: ((m: { type: string; result?: WorkerResult }) => void)[] = [];
  for (let i = 0; i < 2; i++) messages.push(new Promise((r) => resolvers.push(r)));
  let k = 0;
  proc.on('message', (m) => resolvers[k++]?.(m as { type: string }));
  const died = new Promise<never>((_, reject) => proc.once('exit', (code) => reject(new Error(`${cfg.role} worker exited with ${code}`))));
  return {
    proc,
    ready: Promise.race([messages[0]!, died]).then(() => undefined),
    result: Promise.race([messages[1]!, died]).then((m) => m.result!),
  };
}

interface Placement {
  name: string;
  /** CPUs for endpoint A, the switch and endpoint B; raw baselines use A's and B's. */
  a: string;
  sw: string;
  b: string;
  rawB: string;
  /** Extra switch-main arguments. */
  switchArgs?: string[];
}

const PLACEMENTS: Placement[] = [
  { name: 'one CPU', a: '0', sw: '0', b: '0', rawB: '0' },
  { name: 'spread', a: '0', sw: '1', b: '0', rawB: '1' },
  // The switch owns CPU 1 and polls it rather than sleeping between bursts (switch-main --busy-poll).
  { name: 'spread+poll', a: '0', sw: '1', b: '0', rawB: '1', switchArgs: ['--busy-poll', '500'] },
];
const POLLING = PLACEMENTS[2]!;

/** The placements this run measures (FABRIC_BENCH_PLACEMENTS, comma-separated names; default all). */
function chosenPlacements(): Placement[] {
  const names = process.env.FABRIC_BENCH_PLACEMENTS?.split(',').map((n) => n.trim()).filter((n) => n !== '');
  if (!names?.length) return PLACEMENTS;
  const unknown = names.filter((n) => !PLACEMENTS.some((p) => p.name === n));
  if (unknown.length) throw new Error(`FABRIC_BENCH_PLACEMENTS: no placement ${unknown.map((n) => `"${n}"`).join(', ')} (have: ${PLACEMENTS.map((p) => p.name).join(', ')})`);
  return PLACEMENTS.filter((p) => names.includes(p.name));
}

/** Per-link rate for the shaped cases: links slower than the machine, as Ethernet links are slower than a CPU's memory. */
const SHAPED_GBPS = 0.5;

interface CaseOptions {
  links?: number;
  /** Raw roles: cross the switch rather than go straight to the peer. */
  viaSwitch?: boolean;
  /** Shape every switch port towards B to this rate (Gb/s). */
  shapeGbps?: number;
  /** Links over memif rather than unix datagram sockets. */
  memif?: boolean;
}

/** Run roles for A and B (and a switch with `links` ports per side unless raw) for one measuring window. */
/** utime + stime of a process, ms (clock ticks of 10 ms). */
function cpuMsOf(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

interface Measured {
  a: WorkerResult;
  b: WorkerResult;
  /** The switch's CPU time in the window, ms (0 for raw cases). */
  swCpuMs: number;
}

async function measure(pl: Placement, roleA: Role, roleB: Role, opts: CaseOptions = {}): Promise<Measured> {
  const { links = 1, viaSwitch = false, memif = false } = opts;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fabric-bench-'));
  const raw = roleA.startsWith('raw-');
  const ports = ['a', 'b'].flatMap((s) => Array.from({ length: links }, (_, i) => `${s}${i}`));
  const switched = !raw || viaSwitch;
  // Memif endpoints may start before the switch: their clients connect once it listens.
  const early = switched && memif;
  const warmup = early ? WARMUP_MEMIF : WARMUP;
  let workers: [Worker, Worker] | null = null;
  const startWorkers = () =>
    (workers = [
      // B first: a sink or completer should be listening before A starts.
      startWorker({ role: roleB, dir, name: 'b', links, viaSwitch, memif, warmup }, switched ? pl.b : pl.rawB),
      startWorker({ role: roleA, dir, name: 'a', links, viaSwitch, memif, warmup }, pl.a),
    ]);
  if (early) startWorkers();
  let sw: SwitchProcess | null = null;
  try {
    sw = !switched
      ? null
      : await startSwitch({
          dir,
          ports: memif ? [] : ports,
          cpu: pl.sw,
          nodeArgs: profArgs(`switch-${roleA}-${links}-cpu${pl.sw}`),
          args: [
            ...(memif ? ports.flatMap((p) => ['--port', `${p}=memif`]) : [...peerArgs(dir, 'a', links), ...peerArgs(dir, 'b', links)]),
            ...ports.flatMap((p) => ['--vlan', `${p}=trunk:${VLAN.vid}`]),
            ...(pl.switchArgs ?? []),
          ],
        });
    if (opts.shapeGbps) for (let i = 0; i < links; i++) await sw!.control.must({ port: `b${i}`, dir: 'tx', set: { rateGbps: opts.shapeGbps } });
    const [b, a] = workers ?? startWorkers();
    await Promise.all([a.ready, b.ready]);
    for (const w of [b, a]) w.proc.send({ type: 'go' });
    let swCpuMs = 0;
    if (sw) {
      const pid = sw.proc.pid!;
      setTimeout(() => (swCpuMs = -cpuMsOf(pid)), warmup * 1000);
      setTimeout(() => (swCpuMs += cpuMsOf(pid)), (warmup + SECONDS) * 1000);
    }
    const [ra, rb] = await Promise.all([a.result, b.result]);
    workers = null; // done: they exit on their own (a --cpu-prof profile is written at exit)
    if (process.env.FABRIC_BENCH_DEBUG) console.log(JSON.stringify({ a: ra.stats, b: rb.stats, sw: await sw?.control.must({ counters: true }) }));
    return { a: ra, b: rb, swCpuMs };
  } finally {
    // Workers left waiting (the switch did not come up, the other worker failed) go too.
    for (const w of (workers as [Worker, Worker] | null) ?? []) if (w.proc.exitCode === null) w.proc.kill('SIGKILL');
    const code = await sw?.stop();
    if (sw && code !== 0) console.error(`switch exited with ${code}: ${sw.output()}`);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const gbps = (bytesPerSec: number) => (bytesPerSec * 8) / 1e9;
const framesOf = (s: ChannelStats) => s.txTlp + s.txReplay + s.txAck + s.txNak + s.txHeartbeat + s.txControl;
const line = (pl: Placement, what: string, value: string) => console.log(`${pl.name.padEnd(11)} ${what.padEnd(46)} ${value}`);
/** Into the run's report (bench/lib/results.ts): B's received rate, and A's round trips. */
const recordRate = (pl: Placement, transport: string, m: Measured, links = 1, shapedGbps?: number) =>
  record({ kind: 'throughput', bench: 'fabric', placement: pl.name, transport, links, shapedGbps, gbps: gbps(m.b.rxBytesPerSec!) });
/** A case's round trips; one that completed none is left unrecorded (the report says missing) rather than failing the run. */
function recordRtt(pl: Placement, what: string, transport: string, m: Measured): void {
  if (!m.a.roundTrips) return line(pl, `${what}, ${transport}`, "no round trip completed in the window");
  record({ kind: 'round-trip', bench: 'fabric', placement: pl.name, what, transport, medianUs: m.a.medianRttUs!, meanUs: m.a.meanRttUs! });
}

/**
 * Where the CPU went, per frame received by B, and what that CPU cost would allow if the
 * processes had their CPUs to themselves: on a shared, busy machine wall-clock rates say as
 * much about the neighbours as about the fabric.
 */
function cpuLine(pl: Placement, m: Measured, unitBytes: number): void {
  const n = m.b.rxFrames;
  if (n === 0) return;
  const us = (ms: number) => (ms * 1000) / n;
  const [a, sw, b] = [us(m.a.cpuMs), us(m.swCpuMs), us(m.b.cpuMs)];
  const busy = (r: WorkerResult) => `${Math.round((100 * r.cpuMs) / r.windowMs)} %`;
  // CPU-bound ceiling: one CPU runs everything; spread runs A and B on one CPU, the switch on the other.
  const perFrame = pl.sw === pl.a ? a + sw + b : Math.max(a + b, sw);
  line(pl, '  CPU per frame (A / switch / B), busy A, B', `${a.toFixed(1)} / ${sw.toFixed(1)} / ${b.toFixed(1)} µs; ${busy(m.a)}, ${busy(m.b)} -> CPU-bound ceiling ${((unitBytes * 8) / perFrame / 1000).toFixed(2)} Gb/s`);
  // Sleeps (voluntary context switches) per frame tell batching from wake-ups; page faults, fresh memory per frame.
  const per = (x: number) => (x / n).toFixed(3);
  line(pl, '  per frame A / B: sleeps, preempted, page faults', `${per(m.a.sleeps)} / ${per(m.b.sleeps)}, ${per(m.a.preempted)} / ${per(m.b.preempted)}, ${per(m.a.faults)} / ${per(m.b.faults)}`);
}

async function orchestrate(): Promise<void> {
  const only = process.env.FABRIC_BENCH_ONLY; // "PLACEMENT:ROLE_A:ROLE_B[:LINKS[:SHAPE_GBPS[:memif]]]", for profiling one case
  if (only) {
    const [p, ra, rb, links, shape, transport] = only.split(':');
    const r = await measure(PLACEMENTS.find((x) => x.name === p) ?? PLACEMENTS[0]!, ra as Role, rb as Role, { links: Number(links ?? 1), shapeGbps: Number(shape ?? 0), memif: transport === 'memif' });
    console.log(JSON.stringify(r, null, 1));
    return;
  }
  if (os.cpus().length < 2) console.log('(only one CPU: "spread" runs on one CPU too)');
  console.log(`fabric: ${SECONDS} s per case after ${WARMUP} s warm-up (memif through the switch: ${WARMUP_MEMIF} s; rates: median of ${WINDOWS} parts), Node ${process.version}, load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  console.log('placements: one CPU = all on CPU 0; spread = switch on CPU 1, endpoints on CPU 0 (raw direct: one process per CPU);');
  console.log(`            ${POLLING.name} = spread, and the switch busy-polls CPU 1 (${POLLING.switchArgs!.join(' ')})\n`);
  const placements = chosenPlacements();
  recordSettings('fabric', { secondsPerCase: SECONDS, windowsPerCase: WINDOWS, warmupSeconds: WARMUP, memifWarmupSeconds: WARMUP_MEMIF, payloadBytes: DATA, shapedGbps: SHAPED_GBPS, placements: placements.map((p) => p.name).join(', '), loadAverage: os.loadavg()[0]!.toFixed(1) });
  const summary: string[] = [];
  for (const pl of placements) {
    const raw = await measure(pl, 'raw-source', 'raw-sink');
    line(pl, `raw unix dgram, ${FRAME_BYTES} B one way`, `${gbps(raw.b.rxBytesPerSec!).toFixed(2)} Gb/s`);
    cpuLine(pl, raw, FRAME_BYTES);
    recordRate(pl, 'raw unix dgram', raw);
    const relay = await measure(pl, 'raw-source', 'raw-sink', { viaSwitch: true });
    line(pl, `raw ${FRAME_BYTES} B frames through the switch`, `${gbps(relay.b.rxBytesPerSec!).toFixed(2)} Gb/s  (no link layer: the fabric's ceiling)`);
    cpuLine(pl, relay, FRAME_BYTES);
    recordRate(pl, 'raw via switch', relay);
    const one = await measure(pl, 'tlp-source', 'tlp-sink');
    line(pl, 'TLP payload A->B, one link, MPS 4 KiB', `${gbps(one.b.rxBytesPerSec!).toFixed(2)} Gb/s  (replays ${one.a.stats!.txReplay})`);
    cpuLine(pl, one, DATA);
    recordRate(pl, 'unix dgram', one);
    const oneMemif = await measure(pl, 'tlp-source', 'tlp-sink', { memif: true });
    line(pl, 'TLP payload A->B, one memif link, MPS 4 KiB', `${gbps(oneMemif.b.rxBytesPerSec!).toFixed(2)} Gb/s  (parts ${oneMemif.b.rxPartsBytesPerSec!.map((r) => gbps(r).toFixed(1)).join(' ')}; replays ${oneMemif.a.stats!.txReplay})`);
    cpuLine(pl, oneMemif, DATA);
    recordRate(pl, 'memif', oneMemif);
    const rdMemif = await measure(pl, 'tlp-requester', 'tlp-completer', { memif: true });
    recordRtt(pl, ROUND_TRIPS.read, 'memif', rdMemif);
    const rawMemifRtt = await measure(pl, 'raw-ping', 'raw-echo', { memif: true });
    recordRtt(pl, ROUND_TRIPS.raw, 'raw memif', rawMemifRtt);
    const memifRttRatio = rdMemif.a.medianRttUs! / rawMemifRtt.a.medianRttUs!;
    line(pl, 'raw memif ping-pong, 64 B', `${rawMemifRtt.a.medianRttUs!.toFixed(1)} µs median, ${rawMemifRtt.a.meanRttUs!.toFixed(1)} µs mean`);
    line(pl, 'MRd 1 DW -> CplD via switch, memif', `${rdMemif.a.medianRttUs!.toFixed(1)} µs median, ${rdMemif.a.meanRttUs!.toFixed(1)} µs mean (${memifRttRatio.toFixed(2)}x raw memif)`);
    // The same ping-pong through the switch: the read's path without its link layer and TLP handling.
    const rawMemifSwitchedRtt = await measure(pl, 'raw-ping', 'raw-echo', { memif: true, viaSwitch: true });
    recordRtt(pl, ROUND_TRIPS.rawSwitched, 'raw memif', rawMemifSwitchedRtt);
    line(pl, 'raw memif ping-pong via switch, 64 B', `${rawMemifSwitchedRtt.a.medianRttUs!.toFixed(1)} µs median, ${rawMemifSwitchedRtt.a.meanRttUs!.toFixed(1)} µs mean (the read ${(rdMemif.a.medianRttUs! / rawMemifSwitchedRtt.a.medianRttUs!).toFixed(2)}x)`);
    const rawMemif = await measure(pl, 'raw-source', 'raw-sink', { memif: true });
    line(pl, `raw memif, ${FRAME_BYTES} B one way`, `${gbps(rawMemif.b.rxBytesPerSec!).toFixed(2)} Gb/s`);
    recordRate(pl, 'raw memif', rawMemif);
    const twoMemif = await measure(pl, 'tlp-source', 'tlp-sink', { memif: true, links: 2 });
    line(pl, 'TLP payload A->B, two memif links, MPS 4 KiB', `${gbps(twoMemif.b.rxBytesPerSec!).toFixed(2)} Gb/s  (${(twoMemif.b.rxBytesPerSec! / oneMemif.b.rxBytesPerSec!).toFixed(2)}x one link)`);
    recordRate(pl, 'memif', twoMemif, 2);
    const oneMemifShaped = await measure(pl, 'tlp-source', 'tlp-sink', { memif: true, shapeGbps: SHAPED_GBPS });
    const twoMemifShaped = await measure(pl, 'tlp-source', 'tlp-sink', { memif: true, links: 2, shapeGbps: SHAPED_GBPS });
    line(pl, `memif links shaped to ${SHAPED_GBPS} Gb/s: one, two`, `${gbps(oneMemifShaped.b.rxBytesPerSec!).toFixed(2)}, ${gbps(twoMemifShaped.b.rxBytesPerSec!).toFixed(2)} Gb/s  (${(twoMemifShaped.b.rxBytesPerSec! / oneMemifShaped.b.rxBytesPerSec!).toFixed(2)}x)`);
    recordRate(pl, 'memif', oneMemifShaped, 1, SHAPED_GBPS);
    recordRate(pl, 'memif', twoMemifShaped, 2, SHAPED_GBPS);
    const two = await measure(pl, 'tlp-source', 'tlp-sink', { links: 2 });
    const ratio2 = two.b.rxBytesPerSec! / one.b.rxBytesPerSec!;
    line(pl, 'TLP payload A->B, two links, MPS 4 KiB', `${gbps(two.b.rxBytesPerSec!).toFixed(2)} Gb/s  (${ratio2.toFixed(2)}x one link)`);
    cpuLine(pl, two, DATA);
    recordRate(pl, 'unix dgram', two, 2);
    const rawRtt = await measure(pl, 'raw-ping', 'raw-echo');
    recordRtt(pl, ROUND_TRIPS.raw, 'raw unix dgram', rawRtt);
    line(pl, 'raw unix dgram ping-pong, 64 B', `${rawRtt.a.medianRttUs!.toFixed(1)} µs median, ${rawRtt.a.meanRttUs!.toFixed(1)} µs mean`);
    // Links slower than the machine: load balancing must then add up their rates.
    const oneShaped = await measure(pl, 'tlp-source', 'tlp-sink', { shapeGbps: SHAPED_GBPS });
    const twoShaped = await measure(pl, 'tlp-source', 'tlp-sink', { links: 2, shapeGbps: SHAPED_GBPS });
    const ratioShaped = twoShaped.b.rxBytesPerSec! / oneShaped.b.rxBytesPerSec!;
    recordRate(pl, 'unix dgram', oneShaped, 1, SHAPED_GBPS);
    recordRate(pl, 'unix dgram', twoShaped, 2, SHAPED_GBPS);
    line(pl, `links shaped to ${SHAPED_GBPS} Gb/s: one, two links`, `${gbps(oneShaped.b.rxBytesPerSec!).toFixed(2)}, ${gbps(twoShaped.b.rxBytesPerSec!).toFixed(2)} Gb/s  (${ratioShaped.toFixed(2)}x)`);
    const rd = await measure(pl, 'tlp-requester', 'tlp-completer');
    const rttRatio = rd.a.medianRttUs! / rawRtt.a.medianRttUs!;
    recordRtt(pl, ROUND_TRIPS.read, 'unix dgram', rd);
    line(pl, 'MRd 1 DW -> CplD via switch', `${rd.a.medianRttUs!.toFixed(1)} µs median, ${rd.a.meanRttUs!.toFixed(1)} µs mean (${rttRatio.toFixed(2)}x raw)`);
    const bi = await measure(pl, 'tlp-both', 'tlp-both');
    const acks = bi.a.stats!.txAck + bi.b.stats!.txAck;
    const frames = framesOf(bi.a.stats!) + framesOf(bi.b.stats!);
    const ackShare = acks / frames;
    record({ kind: 'value', bench: 'fabric', name: `${pl.name}: standalone ACK frames, bidirectional 4 KiB`, value: ackShare * 100, unit: '%' });
    line(pl, 'bidirectional 4 KiB: standalone ACK frames', `${(ackShare * 100).toFixed(2)} % of ${frames} frames (A->B ${gbps(bi.b.rxBytesPerSec!).toFixed(2)}, B->A ${gbps(bi.a.rxBytesPerSec!).toFixed(2)} Gb/s)`);
    const ok = (b: boolean) => (b ? 'met' : 'MISSED');
    summary.push(
      `${pl.name}: one link ${gbps(one.b.rxBytesPerSec!).toFixed(2)} Gb/s unix dgram, ${gbps(oneMemif.b.rxBytesPerSec!).toFixed(2)} Gb/s memif (target >= 10: ${ok(gbps(oneMemif.b.rxBytesPerSec!) >= 10)}), ` +
        `two links ${ratio2.toFixed(2)}x (>= 1.8: ${ok(ratio2 >= 1.8)}; shaped ${ratioShaped.toFixed(2)}x: ${ok(ratioShaped >= 1.8)}), read RTT ${rttRatio.toFixed(2)}x raw (<= 3: ${ok(rttRatio <= 3)}), ` +
        `standalone ACKs ${(ackShare * 100).toFixed(2)} % (<= 5 %: ${ok(ackShare <= 0.05)})`,
    );
    console.log('');
  }
  console.log(`targets\n  ${summary.join('\n  ')}`);
}

if (process.argv[2] === 'worker') await workerMain(JSON.parse(process.argv[3]!) as WorkerConfig);
else await orchestrate();
