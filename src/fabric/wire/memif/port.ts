/**
 * A port over memif: the switch's end (`role: 'server'`, listening on a
 * control socket) or a station's end (`role: 'client'`, connecting to one and
 * owning the shared memory), speaking the protocol of VPP's memif and DPDK's
 * net_memif, so either end may be one of those.
 *
 * One ring each way (ring.ts), buffers in one sealed memfd region the client
 * builds; a peer's regions may be any number. Frames leave in batches: those
 * transmitted in one event-loop turn go into the ring together, and the
 * ring's eventfd is written once, and only when the consumer sleeps (MASK_INT
 * clear). The receiving side masks its interrupt while it drains, so a busy
 * consumer costs its producer no system call. A received frame is copied out
 * of the ring into a shared slab (as unix-dgram-port.ts) and handed on as a
 * view, so the slot goes back to the peer at once; a station checks a PCIeOE
 * frame's CRC in that same pass (checkCrc). An ingress attached `inPlace`
 * (one that copies only what it keeps) is handed the slot's own bytes
 * instead, as a transient frame: no copy per frame, and the slot is offered
 * again once the receive pass that delivered it returns (with checkCrc, the
 * CRCs of a pass's frames are checked first, in one native call). A PCIeOE frame given as header
 * and payload (transmitFrame) is encoded straight into its ring slot: one
 * copy of the TLP from the application to the peer's memory, no frame buffer
 * in between (fabric bench, spread, one memif link: source 3.3-4.0 -> 2.0-2.3 µs
 * of CPU per 4 KiB frame).
 *
 * With `pollUs`, a flush that sent frames opens a poll window (reply-poll.ts): the receive ring
 * is looked at once per event-loop turn with its interrupt masked, so a reply within the window
 * costs its sender no eventfd write and this side no wake-up from sleep.
 *
 * When the ring is full, frames wait here (up to txQueueFrames, then tail
 * drop, counted) and are retried whenever this side wakes and on a short
 * timer: memif has no "room again" signal.
 *
 * One peer at a time: a second client is told DISCONNECT "already connected";
 * a malformed control message or descriptor disconnects that peer only, with
 * the reason logged and sent. A client reconnects after its server goes away.
 */

import { fstatSync, readlinkSync } from 'node:fs';
import { removeStaleSocket } from '../../../common/socket-file.ts';
import { FileSeal, type Poll, PollEvent, native } from '../../../../native/index.ts';
import type { Ingress, PortTransport } from '../port.ts';
import { type OutgoingFrame, frameSize } from '../frame.ts';
import { MemifControl } from './control.ts';
import { MEMIF_MODE_ETHERNET, MEMIF_VERSION, type MemifMessage, MemifProtocolError } from './messages.ts';
import { MEMIF_COOKIE, MemifRing, ringBytes } from './ring.ts';
import { TRACING, trace } from '../../trace.ts';
import { Slab } from '../../slab.ts';
import { ReplyPoll } from './reply-poll.ts';

export interface MemifPortOptions {
  /** The control socket: where a server listens (a stale socket file is replaced), where a client connects. */
  socket: string;
  role: 'server' | 'client';
  /** Interface id on the socket (INIT). Default 0. */
  id?: number;
  /** Our name in HELLO / INIT / CONNECT(ED). Default "pcieoe". */
  name?: string;
  /** Client: slots per ring, log2 (the server may lower it). Default 10. */
  log2RingSize?: number;
  /** Client: bytes per buffer; longer frames are chained. Default 10 240 (a jumbo frame in one slot). */
  bufferBytes?: number;
  /** Frames held while the ring is full, before tail drop. Default 4096. */
  txQueueFrames?: number;
  /**
   * Check each received PCIeOE frame's CRC while copying it out of the ring, or in place all of a
   * receive pass's frames in one call (see Ingress), so
   * the channel it is for does not read it a second time. Default: on for a client (a station,
   * whose channel decodes every frame), off for a server (a switch forwards frames unread).
   */
  checkCrc?: boolean;
  /**
   * After a flush that sent frames, look for the reply this long (µs) with the receive interrupt
   * masked, once per event-loop turn (reply-poll.ts), before sleeping on the eventfd again.
   * 0 (the default): never; a station's links take PCIEOE_MEMIF_POLL_US (memifPollUs).
   */
  pollUs?: number;
  log?: (line: string) => void;
}

export interface MemifCounters {
  rxFrames: number;
  rxBytes: number;
  txFrames: number;
  txBytes: number;
  /** Frames transmitted while no peer was connected. */
  txNoPeer: number;
  txQueueDrops: number;
  /** Times the ring was full with frames waiting. */
  txDeferred: number;
  /** eventfd writes to wake the peer, and wake-ups received. */
  txSignals: number;
  rxSignals: number;
  /** Poll windows opened (a flush that sent frames while none was open), and passes that found frames in one. */
  pollWindows: number;
  pollHits: number;
  connects: number;
  disconnects: number;
  ingressErrors: number;
}

const MAX_LOG2_RING = 14;
const RECONNECT_MS = 100;
const HANDSHAKE_MS = 2000;
/** While frames wait for room, look again this often (ms); also a guard against a lost wake-up. */
const RETRY_MS = 1;
const SWEEP_MS = 50;
/** Frames taken per wake-up before yielding to the loop (the rest on setImmediate). */
const RX_PER_EVENT = 1024;
const SLAB_BYTES = 1 << 20;
const MAX_REGION_BYTES = 2 ** 31;

/** The rings and wake-ups of one established connection. */
interface Session {
  tx: MemifRing;
  rx: MemifRing;
  txEvent: number;
  rxEvent: number;
  rxPoll: Poll;
  mappings: ArrayBuffer[];
  fds: number[];
  /** Client: its buffers (region 0). */
  bufferAt: (slot: number, ring: 'tx' | 'rx') => number;
}

/** What a server learns during the handshake. */
interface Offer {
  regions: Buffer[];
  mappings: ArrayBuffer[];
  fds: number[];
  rings: { c2s?: { ring: MemifRing; fd: number }; s2c?: { ring: MemifRing; fd: number } };
  initDone: boolean;
}

export class MemifPort implements PortTransport {
  readonly counters: MemifCounters = {
    rxFrames: 0, rxBytes: 0, txFrames: 0, txBytes: 0, txNoPeer: 0, txQueueDrops: 0, txDeferred: 0,
    txSignals: 0, rxSignals: 0, pollWindows: 0, pollHits: 0, connects: 0, disconnects: 0, ingressErrors: 0,
  };
  readonly socket: string;
  readonly role: 'server' | 'client';
  private readonly id: number;
  private readonly name: string;
  private readonly log2: number;
  private readonly bufferBytes: number;
  private readonly txQueueFrames: number;
  private readonly checkCrc: boolean;
  private readonly log: (line: string) => void;

  private ingress: Ingress | null = null;
  private inPlace = false;
  private control: MemifControl | null = null;
  private session: Session | null = null;
  private listenFd = -1;
  private listenPoll: Poll | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly sweep: NodeJS.Timeout;
  private closed = false;
  private lastError: string | null = null;

  /** Frames waiting for the ring: encoded, or (transmitFrame) to be encoded into their slot. */
  private txQueue: (Buffer | OutgoingFrame)[] = [];
  private txHead = 0;
  private flushScheduled = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private rxScheduled = false;
  private readonly rxSlab = new Slab(SLAB_BYTES);
  private readonly poll: ReplyPoll | null;

  constructor(o: MemifPortOptions) {
    this.socket = o.socket;
    this.role = o.role;
    this.id = o.id ?? 0;
    this.name = o.name ?? 'pcieoe';
    this.log2 = Math.min(o.log2RingSize ?? 10, MAX_LOG2_RING);
    this.bufferBytes = o.bufferBytes ?? 10_240;
    this.txQueueFrames = o.txQueueFrames ?? 4096;
    this.checkCrc = o.checkCrc ?? this.role === 'client';
    this.log = o.log ?? (() => {});
    const pollUs = o.pollUs ?? 0;
    if (!(pollUs >= 0)) throw new RangeError(`memif poll window must be >= 0 µs, got ${pollUs}`);
    this.poll = pollUs > 0 ? new ReplyPoll(pollUs, this.pollLook, this.pollEnd) : null;
    native.retainFreedHeap();
    if (this.role === 'server') this.listen();
    else this.connect();
    // A frame whose signal went missing is taken within SWEEP_MS; not while a poll window looks every turn anyway.
    this.sweep = setInterval(() => this.poll?.open || this.wake(), SWEEP_MS);
    this.sweep.unref();
  }

  /**
   * Server: given the receive ring before each pass copies frames out of it, takes (and moves the
   * ring's position past) what it forwards itself, at most `max` frames, leaving the rest in order
   * to the pass: the switch's native fast path (switch/memif-forward.ts). Returns frames taken.
   */
  rxBypass: ((ring: MemifRing, max: number) => number) | null = null;

  /**
   * Server: makes each session's poll on the receive eventfd in place of a plain Poll (the
   * switch's native fast path serves wake-ups itself and calls `onReadable` only for what it
   * leaves; closing it is the session's end, before its rings are unmapped).
   */
  rxPoller: ((eventfd: number, onReadable: () => void) => Poll) | null = null;

  /** The session's transmit ring and its eventfd (null, -1 without a peer), and the frames waiting here for it. */
  get txRing(): MemifRing | null {
    return this.session?.tx ?? null;
  }
  get txEventFd(): number {
    return this.session?.txEvent ?? -1;
  }
  get txWaiting(): number {
    return this.txQueue.length - this.txHead;
  }

  /** Connected to a peer, rings in place. */
  get connected(): boolean {
    return this.session !== null;
  }

  /** Why the last peer went, or the last failure. */
  get error(): string | null {
    return this.lastError;
  }

  attach(ingress: Ingress, inPlace = false): void {
    this.ingress = ingress;
    this.inPlace = inPlace;
  }

  transmit(frame: Buffer): void {
    this.enqueue(frame);
  }

  /** Encoded straight into its ring slot when the queue is flushed: the frame's one copy. */
  transmitFrame(frame: OutgoingFrame): void {
    this.enqueue(frame);
  }

  private enqueue(frame: Buffer | OutgoingFrame): void {
    if (this.closed) return;
    if (this.session === null) {
      this.counters.txNoPeer++;
      return;
    }
    if (this.txQueue.length - this.txHead >= this.txQueueFrames) {
      this.counters.txQueueDrops++;
      return;
    }
    if (TRACING) trace('tx', frame instanceof Uint8Array ? frame : undefined);
    this.txQueue.push(frame);
    if (!this.flushScheduled && this.retryTimer === null) {
      this.flushScheduled = true;
      queueMicrotask(this.flushTask);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweep);
    if (this.timer) clearTimeout(this.timer);
    this.control?.disconnect('interface closed');
    this.endSession();
    if (this.listenPoll) this.listenPoll.close();
    if (this.listenFd >= 0) {
      native.close(this.listenFd);
      try {
        removeStaleSocket(this.socket);
      } catch {
        // Another file there now: not ours.
      }
    }
  }

  // ---- server: listen, one peer at a time ----

  private listen(): void {
    removeStaleSocket(this.socket);
    this.listenFd = native.unixListen(this.socket, 16, 'seqpacket');
    this.listenPoll = new native.Poll(this.listenFd, () => this.accept());
    this.listenPoll.start(PollEvent.Readable);
  }

  private accept(): void {
    for (;;) {
      let fd: number;
      try {
        fd = native.unixAccept(this.listenFd);
      } catch (err) {
        // EMFILE and the like: this connection waits (the listener polls readable again); the port carries on.
        this.lastError = `accept on ${this.socket}: ${(err as Error).message}`;
        return;
      }
      if (fd < 0) return;
      if (this.control !== null) {
        // Our one peer stays; the newcomer is told why, as DPDK tells a second client.
        new MemifControl(fd, () => {}, () => {}).disconnect('already connected');
        continue;
      }
      const offer: Offer = { regions: [], mappings: [], fds: [], rings: {}, initDone: false };
      const control = new MemifControl(fd, (m, mfd) => this.serverMessage(control, offer, m, mfd), (reason) => this.peerGone(control, reason, offer));
      this.control = control;
      this.startHandshakeTimer(control);
      control.send({ type: 'hello', name: this.name, minVersion: MEMIF_VERSION, maxVersion: MEMIF_VERSION, maxRegion: 15, maxS2cRing: 0, maxC2sRing: 0, maxLog2RingSize: MAX_LOG2_RING });
    }
  }

  private serverMessage(control: MemifControl, offer: Offer, m: MemifMessage, fd: number): void {
    if (!offer.initDone && m.type !== 'init') throw new MemifProtocolError(`${m.type} before INIT`);
    if (this.session !== null) throw new MemifProtocolError(`${m.type} after CONNECT`);
    switch (m.type) {
      case 'init':
        if (offer.initDone) throw new MemifProtocolError('INIT twice');
        if (m.version !== MEMIF_VERSION) throw new MemifProtocolError(`incompatible memif version ${m.version >> 8}.${m.version & 0xff}, this side speaks 2.0`);
        if (m.mode !== MEMIF_MODE_ETHERNET) throw new MemifProtocolError(`interface mode ${m.mode}: only Ethernet (0) is carried here`);
        if (m.id !== this.id) throw new MemifProtocolError(`no interface with id ${m.id} on this socket (id ${this.id})`);
        offer.initDone = true;
        control.send({ type: 'ack' });
        return;
      case 'add-region': {
        if (fd < 0) throw new MemifProtocolError('ADD_REGION without a memfd');
        if (m.index !== offer.regions.length || m.index > 15) throw new MemifProtocolError(`ADD_REGION index ${m.index}, expected ${offer.regions.length}`);
        const size = Number(m.size);
        if (size <= 0 || size > MAX_REGION_BYTES) throw new MemifProtocolError(`ADD_REGION of ${m.size} bytes (1 B - 2 GiB accepted)`);
        // A region the peer could shrink would SIGBUS this process on the next access.
        if ((native.fdSeals(fd) & FileSeal.Shrink) === 0) throw new MemifProtocolError('ADD_REGION memfd is not sealed against shrinking (F_SEAL_SHRINK)');
        if (fstatSync(fd).size < size) throw new MemifProtocolError(`ADD_REGION of ${size} bytes, its file has ${fstatSync(fd).size}`);
        const mapping = native.mmap(fd, 0, size, true);
        offer.mappings.push(mapping);
        offer.regions.push(Buffer.from(mapping));
        offer.fds.push(fd);
        control.send({ type: 'ack' });
        return;
      }
      case 'add-ring': {
        if (fd < 0) throw new MemifProtocolError('ADD_RING without an eventfd');
        // Its wake-ups are written and read on the hot path: anything but an eventfd there is refused now.
        if (readlinkSync(`/proc/self/fd/${fd}`) !== 'anon_inode:[eventfd]') throw new MemifProtocolError('ADD_RING fd is not an eventfd');
        if (m.index !== 0) throw new MemifProtocolError(`ADD_RING index ${m.index}: one ring each way is offered`);
        if (m.log2RingSize > MAX_LOG2_RING) throw new MemifProtocolError(`ADD_RING of 2^${m.log2RingSize} slots, at most 2^${MAX_LOG2_RING}`);
        const key = m.c2s ? 'c2s' : 's2c';
        if (offer.rings[key]) throw new MemifProtocolError(`ADD_RING ${key} ring 0 twice`);
        if (m.privateHeaderSize !== 0) throw new MemifProtocolError(`ADD_RING private header of ${m.privateHeaderSize} bytes: not supported`);
        const ring = new MemifRing(offer.regions, m.region, m.offset, m.log2RingSize);
        offer.rings[key] = { ring, fd };
        control.send({ type: 'ack' });
        return;
      }
      case 'connect': {
        const { c2s, s2c } = offer.rings;
        if (!c2s || !s2c) throw new MemifProtocolError('CONNECT before a ring each way was added');
        for (const r of [c2s.ring, s2c.ring]) if (r.cookie !== MEMIF_COOKIE) throw new MemifProtocolError(`ring cookie 0x${r.cookie.toString(16)}, expected 0x${MEMIF_COOKIE.toString(16)}`);
        this.startSession({ tx: s2c.ring, rx: c2s.ring, txEvent: s2c.fd, rxEvent: c2s.fd, mappings: offer.mappings, fds: [...offer.fds, c2s.fd, s2c.fd], bufferAt: () => 0 });
        offer.fds = [];
        offer.mappings = [];
        offer.rings = {};
        control.send({ type: 'connected', interfaceName: this.name });
        this.log(`memif ${this.socket}: client "${m.interfaceName}" connected`);
        return;
      }
      default:
        throw new MemifProtocolError(`unexpected ${m.type.toUpperCase()} from a client`);
    }
  }

  // ---- client: connect, build the memory, lock-step handshake ----

  private connect(): void {
    this.timer = null;
    if (this.closed) return;
    let fd: number;
    try {
      fd = native.unixConnect(this.socket, 'seqpacket');
    } catch (err) {
      this.lastError = `connect ${this.socket}: ${(err as Error).message}`;
      this.timer = setTimeout(() => this.connect(), RECONNECT_MS);
      return;
    }
    let pending: { m: MemifMessage; fd?: number }[] | null = null;
    let built: ClientMemory | null = null;
    const control = new MemifControl(
      fd,
      (m) => {
        if (this.session !== null) throw new MemifProtocolError(`${m.type} after CONNECTED`);
        if (m.type === 'hello') {
          if (pending !== null) throw new MemifProtocolError('HELLO twice');
          if (m.minVersion > MEMIF_VERSION || m.maxVersion < MEMIF_VERSION) throw new MemifProtocolError(`server speaks memif ${m.minVersion >> 8}.x-${m.maxVersion >> 8}.x, this side 2.0`);
          built = buildClientMemory(Math.min(this.log2, m.maxLog2RingSize), this.bufferBytes);
          pending = [
            { m: { type: 'init', version: MEMIF_VERSION, id: this.id, mode: MEMIF_MODE_ETHERNET, secret: '', name: this.name } },
            { m: { type: 'add-region', index: 0, size: BigInt(built.size) }, fd: built.memfd },
            { m: { type: 'add-ring', c2s: true, index: 0, region: 0, offset: built.c2sOffset, log2RingSize: built.log2, privateHeaderSize: 0 }, fd: built.c2sEvent },
            { m: { type: 'add-ring', c2s: false, index: 0, region: 0, offset: built.s2cOffset, log2RingSize: built.log2, privateHeaderSize: 0 }, fd: built.s2cEvent },
            { m: { type: 'connect', interfaceName: this.name } },
          ];
        } else if (m.type === 'ack') {
          if (pending === null || pending.length === 0) throw new MemifProtocolError('ACK with nothing to acknowledge');
        } else if (m.type === 'connected') {
          if (built === null || pending === null || pending.length > 0) throw new MemifProtocolError('CONNECTED before CONNECT');
          const b: ClientMemory = built;
          built = null;
          this.startSession({ tx: b.c2s, rx: b.s2c, txEvent: b.c2sEvent, rxEvent: b.s2cEvent, mappings: [b.mapping], fds: [b.memfd, b.c2sEvent, b.s2cEvent], bufferAt: b.bufferAt });
          this.log(`memif ${this.socket}: connected to "${m.interfaceName}"`);
          return;
        } else {
          throw new MemifProtocolError(`unexpected ${m.type.toUpperCase()} from a server`);
        }
        const next = pending.shift()!;
        control.send(next.m, next.fd);
      },
      (reason) => {
        if (built !== null) releaseClientMemory(built);
        built = null;
        this.peerGone(control, reason, null);
        if (!this.closed) this.timer = setTimeout(() => this.connect(), RECONNECT_MS);
      },
    );
    this.control = control;
    this.startHandshakeTimer(control);
  }

  // ---- both: the session ----

  private startHandshakeTimer(control: MemifControl): void {
    const t = setTimeout(() => {
      if (this.control === control && this.session === null) control.disconnect(`handshake not done within ${HANDSHAKE_MS} ms`);
    }, HANDSHAKE_MS);
    t.unref();
  }

  private startSession(s: Omit<Session, 'rxPoll'>): void {
    const drain = () => this.drainSignal(session);
    const onReadable = () => {
      this.counters.rxSignals++;
      if (TRACING) trace('wake');
      // Frames first, the eventfd after: replies queued while taking them leave (their flush is a
      // microtask queued before this one) without waiting for a read() that wakes nobody.
      this.wake();
      queueMicrotask(drain);
    };
    const rxPoll = this.rxPoller?.(s.rxEvent, onReadable) ?? new native.Poll(s.rxEvent, onReadable);
    const session: Session = { ...s, rxPoll };
    this.session = session;
    this.counters.connects++;
    if (this.role === 'client') s.rx.refill(this.bufferBytes, (slot) => s.bufferAt(slot, 'rx'), 0);
    s.rx.setWantSignals(true);
    rxPoll.start(PollEvent.Readable);
    this.lastError = null;
  }

  private peerGone(control: MemifControl, reason: string, offer: Offer | null): void {
    if (this.control !== control) return;
    this.control = null;
    this.lastError = reason;
    if (offer) {
      for (const m of offer.mappings) native.munmap(m);
      for (const fd of offer.fds) native.close(fd);
      for (const r of Object.values(offer.rings)) native.close(r.fd);
    }
    if (this.session !== null) {
      this.counters.disconnects++;
      this.log(`memif ${this.socket}: peer gone: ${reason}`);
    }
    this.endSession();
  }

  private endSession(): void {
    const s = this.session;
    this.session = null;
    this.txQueue = [];
    this.txHead = 0;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.poll?.stop();
    if (s === null) return;
    s.rxPoll.close();
    for (const m of s.mappings) native.munmap(m);
    for (const fd of s.fds) native.close(fd);
  }

  /**
   * Reset the wake-up counter, then look at the ring again: a frame published after receive()
   * last looked signalled this eventfd, and that signal is gone once read, so the frame is taken
   * now (later ones find the interrupt wanted and signal again). Not after the session ended:
   * its fd may be closed and its number reused.
   */
  private drainSignal(s: Session): void {
    if (this.session !== s) return;
    native.eventfdRead(s.rxEvent);
    if (!this.rxScheduled && s.rx.pending(this.role === 'server')) this.receive();
  }

  /** Something may have moved: take what arrived, send what waits. */
  private wake(): void {
    if (this.session === null) return;
    this.receive();
    if (this.txQueue.length > this.txHead && !this.flushScheduled) this.flush();
  }

  private receive(): void {
    const s = this.session;
    if (s === null) return;
    const server = this.role === 'server';
    const deliver = this.deliver;
    let taken = 0;
    try {
      s.rx.setWantSignals(false);
      for (;;) {
        if (server && this.rxBypass !== null) taken += this.rxBypass(s.rx, RX_PER_EVENT - taken);
        const n = server
          ? s.rx.serverReceive(deliver, this.copyOut, RX_PER_EVENT - taken, this.checkCrc, this.inPlace)
          : s.rx.clientReceive(deliver, this.copyOut, RX_PER_EVENT - taken, this.checkCrc, this.bufferBytes, (slot) => s.bufferAt(slot, 'rx'), 0, this.inPlace);
        taken += n;
        if (this.session !== s) return;
        if (taken >= RX_PER_EVENT) {
          // Stay awake (signals masked) and come back after the loop has served others.
          if (!this.rxScheduled) {
            this.rxScheduled = true;
            setImmediate(() => {
              this.rxScheduled = false;
              this.receive();
            });
          }
          return;
        }
        // Polling: stay masked, the poll looks again next turn (and asks for signals when its window ends).
        if (this.poll?.open) return;
        // About to sleep: ask for a signal, then look once more, so a frame published meanwhile is not left waiting.
        s.rx.setWantSignals(true);
        if (!s.rx.pending(server)) return;
        s.rx.setWantSignals(false);
      }
    } catch (err) {
      this.control?.disconnect(`bad descriptor from the peer: ${(err as Error).message}`);
    }
  }

  private readonly deliver = (frame: Buffer, crcChecked?: boolean, transient?: boolean): void => {
    this.counters.rxFrames++;
    this.counters.rxBytes += frame.length;
    if (TRACING) trace('rx', frame);
    try {
      this.ingress?.(frame, crcChecked, transient);
    } catch (err) {
      this.counters.ingressErrors++;
      this.lastError = `ingress: ${(err as Error).message}`;
    }
  };

  /** Room for a received frame in the slab: the ring's bytes are copied straight in, and the slot is the peer's again right after. */
  private readonly copyOut = (bytes: number): Buffer => this.rxSlab.alloc(bytes);

  /** One poll turn: take what arrived (true if anything had). */
  private readonly pollLook = (): boolean => {
    const s = this.session;
    if (s === null || !s.rx.pending(this.role === 'server')) return false;
    this.counters.pollHits++;
    this.receive();
    return true;
  };

  /** The window closed: ask for signals again, then look once more (as receive does before sleeping). */
  private readonly pollEnd = (): void => {
    const s = this.session;
    if (s === null || this.rxScheduled) return;
    s.rx.setWantSignals(true);
    if (s.rx.pending(this.role === 'server')) this.receive();
  };

  private readonly flushTask = (): void => {
    this.flushScheduled = false;
    this.flush();
  };

  private flush(): void {
    const s = this.session;
    if (s === null) return;
    const c = this.counters;
    const waiting = this.txQueue.length - this.txHead;
    let n: number;
    try {
      n = this.role === 'server' ? s.tx.serverSend(this.txQueue, this.txHead, waiting) : s.tx.clientSend(this.txQueue, this.txHead, waiting, this.bufferBytes);
    } catch (err) {
      this.control?.disconnect(`bad descriptor from the peer: ${(err as Error).message}`);
      return;
    }
    const signal = n > 0 && s.tx.consumerSleeps;
    let bytes = 0;
    for (let i = 0; i < n; i++) {
      const f = this.txQueue[this.txHead]!;
      bytes += f instanceof Uint8Array ? f.length : frameSize(f.vlan, f.payload.length);
      if (TRACING) trace(signal ? 'out!' : 'out', f instanceof Uint8Array ? f : undefined);
      this.txQueue[this.txHead++] = EMPTY;
    }
    c.txFrames += n;
    c.txBytes += bytes;
    if (signal) {
      native.eventfdWrite(s.txEvent);
      c.txSignals++;
    }
    if (n > 0 && this.poll?.wants(n, bytes)) {
      // A request (or a reply that draws the next request) just left: mask before the peer can answer.
      if (!this.poll.open) {
        s.rx.setWantSignals(false);
        c.pollWindows++;
      }
      this.poll.extend(n, bytes);
    }
    if (this.txHead === this.txQueue.length) {
      this.txQueue = [];
      this.txHead = 0;
      return;
    }
    c.txDeferred++;
    if (this.retryTimer === null) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        this.flush();
      }, RETRY_MS);
    }
  }
}

const EMPTY = Buffer.alloc(0);

/** The client's shared memory: one sealed memfd, the c2s ring, the s2c ring, then each ring's buffers. */
interface ClientMemory {
  memfd: number;
  mapping: ArrayBuffer;
  size: number;
  log2: number;
  c2sOffset: number;
  s2cOffset: number;
  c2s: MemifRing;
  s2c: MemifRing;
  c2sEvent: number;
  s2cEvent: number;
  bufferAt: (slot: number, ring: 'tx' | 'rx') => number;
}

function buildClientMemory(log2: number, bufferBytes: number): ClientMemory {
  const slots = 1 << log2;
  const ring = (ringBytes(log2) + 63) & ~63;
  const buffers = (2 * ring + 4095) & ~4095;
  const stride = (bufferBytes + 63) & ~63;
  const size = (buffers + 2 * slots * stride + 4095) & ~4095;
  const memfd = native.sealedMemfd('memif-region', size);
  const mapping = native.mmap(memfd, 0, size, true);
  const regions = [Buffer.from(mapping)];
  const bufferAt = (slot: number, which: 'tx' | 'rx') => buffers + ((which === 'tx' ? 0 : slots) + slot) * stride;
  const c2s = new MemifRing(regions, 0, 0, log2);
  const s2c = new MemifRing(regions, 0, ring, log2);
  c2s.initialise(0, (slot) => bufferAt(slot, 'tx'), bufferBytes);
  s2c.initialise(0, (slot) => bufferAt(slot, 'rx'), bufferBytes);
  return { memfd, mapping, size, log2, c2sOffset: 0, s2cOffset: ring, c2s, s2c, c2sEvent: native.eventfd(), s2cEvent: native.eventfd(), bufferAt };
}

function releaseClientMemory(m: ClientMemory): void {
  native.munmap(m.mapping);
  for (const fd of [m.memfd, m.c2sEvent, m.s2cEvent]) native.close(fd);
}
