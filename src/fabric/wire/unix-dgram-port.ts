/**
 * A port over unix datagram sockets, one Ethernet frame (no FCS) per
 * datagram, as QEMU's `-netdev dgram` with unix addresses speaks it. The same
 * class is the switch's end (bound at `<socket dir>/<port>.sock`) and a
 * station's end (a link endpoint bound at its own path, its peer the switch
 * port).
 *
 * One socket per end, bound at `path` and connected to the peer. Connecting
 * matters twice on Linux: a receiver's queue admits only
 * net.unix.max_dgram_qlen datagrams (10 here) from senders it is not itself
 * connected to, while a pair connected to each other is bounded only by the
 * sender's SO_SNDBUF (raised here); and only a connected sender can poll()
 * for room when the peer's queue is full. Two of these ports facing each other
 * form such a pair; a QEMU `-netdev dgram` peer sends unconnected, which the
 * exemption covers too (it applies to whoever the *receiver* is connected to).
 *
 * The peer is either fixed (`peer`, --peer in switch-main) or, without one,
 * learnt: the last sender whose datagram arrived while the port had no peer,
 * as a learning switch answers and QEMU's dgram peers expect. Once connected
 * the port hears only from its peer, so a peer that goes away is noticed: a
 * send reports ECONNREFUSED, and a periodic check of the peer's socket file
 * catches a peer that closed or was replaced by a new socket while this side
 * had nothing to send. Then a fixed peer is reconnected (with back-off) and a
 * learnt one is forgotten, so the port hears from anyone again.
 *
 * Receiving: one recvmmsg burst per readiness event (up to `rxBatch`
 * datagrams per system call, a few calls at most, so a busy port cannot starve
 * the others). Datagrams land in a shared slab and are handed on as views of
 * it: no copy in JS and no buffer per frame. Consumers may keep those views
 * (the link layer delivers payloads as views, the switch queues frames), so
 * slab memory is never reused; a fresh slab is taken when the current one has
 * too little room left, and the old one is freed by the GC once nothing
 * refers to it. The process heap keeps freed slabs (native.retainFreedHeap),
 * so a new slab is recycled memory rather than pages the kernel must fault in
 * on its first copy.
 *
 * Sending: frames queue here and go out in one sendmmsg per event-loop turn
 * (a microtask after whatever handler produced them), so a burst costs one
 * system call rather than one per frame. When the peer has no room the rest
 * waits, in order, until the socket polls writable; beyond `txQueueFrames` new
 * frames are dropped and counted, as a switch drops on a full egress queue
 * (the link layer's replay recovers them).
 */

import { TRACING, trace } from '../trace.ts';
import { lstatSync } from 'node:fs';
import { removeStaleSocket } from '../../common/socket-file.ts';
import { type NativeError, type Poll, PollEvent, isNativeError, native } from '../../../native/index.ts';
import { type Clock, realClock } from '../clock.ts';
import type { Ingress, PortTransport } from './port.ts';

export interface UnixDgramPortOptions {
  /** Where this end is bound. A stale socket file there is replaced; any other file is an error. */
  path: string;
  /** Where frames are sent; without it the port answers the last sender (see setPeer). */
  peer?: string;
  /** Longest frame accepted, bytes; longer datagrams are dropped and counted. Default 65 535. */
  maxFrame?: number;
  /** Datagrams read per system call, and frames sent per system call. Default 64. */
  rxBatch?: number;
  /** Frames held while the peer's queue is full, before tail drop. Default 4096. */
  txQueueFrames?: number;
  /** Bytes per receive slab (at least twice rxBatch full-size frames). Default 1 MiB. */
  slabBytes?: number;
  /** SO_SNDBUF to ask for: how much may be in flight to a peer connected back to us. Default 1 MiB. */
  sendBufferBytes?: number;
  /** Time for the reconnect back-off. Default realClock. */
  clock?: Clock;
}

export interface UnixDgramCounters {
  rxFrames: number;
  rxBytes: number;
  /** Datagrams longer than maxFrame: dropped. */
  rxOversize: number;
  txFrames: number;
  txBytes: number;
  /** Times a batch found the peer's queue full: the rest of the queue then waited for room. */
  txDeferred: number;
  /** Frames transmitted while there was no peer (none set or learnt, or its socket did not exist). */
  txNoPeer: number;
  /** Frames dropped because the wait queue was full. */
  txQueueDrops: number;
  /** Frames lost to a send error other than a full queue (the peer went away, ...). */
  txErrors: number;
  /** Exceptions thrown by the ingress handler; the frame is lost, the port carries on. */
  ingressErrors: number;
  /** sendmmsg / recvmmsg calls that moved at least one frame: frames per call = frames / calls. */
  txCalls: number;
  rxCalls: number;
}

/** After a failed connect to the peer, wait this long before the next attempt (ms). */
const RECONNECT_MS = 100;
/** How often a connected port checks that its peer's socket file is still the one it connected to (ms). */
const PEER_CHECK_MS = 1000;
/** recvmmsg calls per readiness event, at most: the loop gets back to other fds in between. */
const RX_CALLS_PER_EVENT = 4;

export class UnixDgramPort implements PortTransport {
  readonly path: string;
  readonly counters: UnixDgramCounters = {
    rxFrames: 0, rxBytes: 0, rxOversize: 0,
    txFrames: 0, txBytes: 0, txDeferred: 0, txNoPeer: 0, txQueueDrops: 0, txErrors: 0, ingressErrors: 0,
    txCalls: 0, rxCalls: 0,
  };

  private readonly rxBatch: number;
  private readonly txQueueFrames: number;
  private readonly slabBytes: number;
  /** Receive window per datagram: one more than maxFrame rounded to 8, so a datagram that does not fit is told apart. */
  private readonly slot: number;
  private readonly maxFrame: number;

  private readonly fd: number;
  private readonly poll: Poll;
  private pollEvents = 0;
  private ingress: Ingress | null = null;
  private slab: Buffer;
  private slabUsed = 0;
  private readonly meta: Int32Array;
  /** Senders of the last burst; filled only while the port has no connected peer. */
  private readonly senders: (string | null)[] = [];

  /** The configured peer (fixed), or null to learn it. */
  private fixedPeer: string | null;
  /** Where the socket is connected now, or null. */
  private connectedTo: string | null = null;
  /** Inode of the peer's socket file when we connected, to notice a replaced peer. */
  private peerIno = 0;
  private nextConnectAt = 0;
  private readonly clock: Clock;
  private readonly peerCheck: NodeJS.Timeout;

  /** Frames to send, in order, from txHead on. */
  private txQueue: Buffer[] = [];
  private txHead = 0;
  private flushScheduled = false;
  /** Waiting for the socket to poll writable. */
  private txBlocked = false;
  private closed = false;
  private lastError: string | null = null;

  constructor(options: UnixDgramPortOptions) {
    this.path = options.path;
    this.fixedPeer = options.peer ?? null;
    this.clock = options.clock ?? realClock;
    this.maxFrame = options.maxFrame ?? 65_535;
    this.rxBatch = Math.max(1, Math.min(options.rxBatch ?? 64, 256));
    this.txQueueFrames = options.txQueueFrames ?? 4096;
    this.slot = (this.maxFrame + 1 + 7) & ~7;
    // Slabs are freed by the GC all the time; without this each new one is fresh, faulting memory.
    native.retainFreedHeap();
    this.slabBytes = Math.max(options.slabBytes ?? 1 << 20, 2 * this.rxBatch * this.slot);
    this.slab = Buffer.allocUnsafe(this.slabBytes);
    this.meta = new Int32Array(2 * this.rxBatch);
    removeStaleSocket(this.path);
    this.fd = native.unixDgram(this.path);
    native.socketBuffers(this.fd, options.sendBufferBytes ?? 1 << 20);
    this.poll = new native.Poll(this.fd, (err, events) => this.onPoll(err, events));
    this.watch();
    // Early, so the peer sees a connected pair from the first frame; a peer not there yet is no reason to wait before the next try.
    this.connect();
    this.nextConnectAt = 0;
    this.peerCheck = setInterval(() => this.checkPeer(), PEER_CHECK_MS);
    this.peerCheck.unref();
  }

  /** Where frames go: the fixed peer, else the learnt one (null: none yet). */
  get peer(): string | null {
    return this.fixedPeer ?? this.connectedTo;
  }

  /** The last send or poll error, for diagnostics (counters say how often). */
  get error(): string | null {
    return this.lastError;
  }

  /** Frames waiting to be sent (this turn's batch and what waits for room). */
  get txQueued(): number {
    return this.txQueue.length - this.txHead;
  }

  /**
   * Send to `path` from now on; null: no fixed peer, answer the next sender.
   * Frames still queued for the old peer are dropped.
   */
  setPeer(path: string | null): void {
    if (path === this.fixedPeer) return;
    this.fixedPeer = path;
    this.dropQueue();
    this.disconnect();
    this.nextConnectAt = 0;
    this.connect();
  }

  attach(ingress: Ingress): void {
    this.ingress = ingress;
  }

  /** Send one frame (this turn, batched). Never throws and never blocks; the frame must not change until it is sent. */
  transmit(frame: Buffer): void {
    if (this.closed) return;
    if (this.connectedTo === null && !this.connect()) {
      this.counters.txNoPeer++;
      return;
    }
    if (this.txQueued >= this.txQueueFrames) {
      this.counters.txQueueDrops++;
      return;
    }
    if (TRACING) trace('tx', frame);
    this.txQueue.push(frame);
    if (!this.flushScheduled && !this.txBlocked) {
      this.flushScheduled = true;
      queueMicrotask(this.flushTask);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.peerCheck);
    this.poll.close();
    native.close(this.fd);
    this.txQueue = [];
    this.txHead = 0;
    try {
      removeStaleSocket(this.path);
    } catch {
      // Someone put another file there meanwhile: not ours to delete.
    }
  }

  private onPoll(err: NativeError | null, events: number): void {
    if (err) {
      // poll() errors are not expected on sockets; record and stop watching rather than spin or crash the switch.
      this.lastError = `poll: ${err.message}`;
      this.poll.stop();
      return;
    }
    if (events & PollEvent.Writable) {
      this.txBlocked = false;
      this.flush();
    }
    if (events & PollEvent.Readable) {
      if (TRACING) trace('wake');
      this.readBurst();
    }
  }

  /** Poll for readable always, for writable only while frames wait for room. */
  private watch(): void {
    const want = PollEvent.Readable | (this.txBlocked ? PollEvent.Writable : 0);
    if (want !== this.pollEvents && !this.closed) {
      this.poll.start(want);
      this.pollEvents = want;
    }
  }

  // ---- receive ----

  private readBurst(): void {
    const c = this.counters;
    const learning = this.connectedTo === null;
    for (let call = 0; call < RX_CALLS_PER_EVENT && !this.closed; call++) {
      if (this.slab.length - this.slabUsed < this.rxBatch * this.slot) {
        this.slab = Buffer.allocUnsafe(this.slabBytes);
        this.slabUsed = 0;
      }
      const slab = this.slab;
      const n = native.recvmmsg(this.fd, slab, this.slabUsed, this.slot, this.rxBatch, this.meta, learning ? this.senders : undefined);
      if (n < 0) break;
      c.rxCalls++;
      // Before delivery, so a reply the consumer sends at once already has somewhere to go.
      if (learning) this.learn(n);
      const meta = this.meta;
      for (let i = 0; i < n; i++) {
        const start = meta[2 * i]!;
        const len = meta[2 * i + 1]!;
        if (len > this.maxFrame) {
          c.rxOversize++;
          continue;
        }
        this.slabUsed = start + ((len + 7) & ~7);
        c.rxFrames++;
        c.rxBytes += len;
        try {
          if (TRACING) trace('rx', slab.subarray(start, start + len));
          this.ingress?.(slab.subarray(start, start + len));
        } catch (err) {
          c.ingressErrors++;
          this.lastError = `ingress: ${(err as Error).message}`;
        }
        if (this.closed) return;
      }
      if (n < this.rxBatch) break;
    }
  }

  /** Unconnected: connect to the fixed peer if it just spoke, else adopt the last named sender. */
  private learn(n: number): void {
    for (let i = n - 1; i >= 0 && this.connectedTo === null; i--) {
      const sender = this.senders[i];
      if (sender == null) continue;
      if (this.fixedPeer === null || sender === this.fixedPeer) {
        this.nextConnectAt = 0;
        this.connect(sender);
      }
      break;
    }
    this.senders.length = 0;
  }

  // ---- transmit ----

  /** Connect to the fixed peer, or to `learnt`; false when there is none (yet) or it is not there. */
  private connect(learnt?: string): boolean {
    const target = this.fixedPeer ?? learnt ?? null;
    if (target === null || this.closed) return false;
    const now = this.clock.now();
    if (now < this.nextConnectAt) return false;
    try {
      native.dgramConnect(this.fd, target);
      this.peerIno = lstatSync(target).ino;
    } catch (err) {
      // ENOENT / ECONNREFUSED: the peer has not bound its socket yet, or is gone.
      this.lastError = `connect ${target}: ${(err as Error).message}`;
      this.nextConnectAt = now + RECONNECT_MS;
      this.disconnect();
      return false;
    }
    this.connectedTo = target;
    return true;
  }

  /** Hear from anyone again (and learn a new peer unless one is fixed). */
  private disconnect(): void {
    if (this.closed) return;
    if (this.connectedTo !== null) native.dgramConnect(this.fd, null);
    this.connectedTo = null;
    this.txBlocked = false;
    this.watch();
  }

  private readonly flushTask = (): void => {
    this.flushScheduled = false;
    if (!this.txBlocked) this.flush();
  };

  /** Send what is queued, in batches, until done or the peer has no room. */
  private flush(): void {
    const c = this.counters;
    while (this.txQueued > 0 && !this.closed) {
      if (this.connectedTo === null) {
        // The peer went away with frames queued: they are lost with it.
        this.dropQueue();
        break;
      }
      let n: number;
      try {
        n = native.sendmmsg(this.fd, this.txQueue, this.txHead, Math.min(this.txQueued, 256));
      } catch (err) {
        // ECONNREFUSED: the peer closed its socket (the kernel has dissolved the association). Lose one frame, not the queue.
        c.txErrors++;
        this.lastError = `send to ${this.connectedTo}: ${(err as Error).message}`;
        this.txQueue[this.txHead++] = EMPTY;
        if (isNativeError(err, 'ECONNREFUSED') || isNativeError(err, 'ENOTCONN')) this.peerGone();
        continue;
      }
      if (n < 0) {
        c.txDeferred += this.txQueued;
        this.txBlocked = true;
        break;
      }
      c.txCalls++;
      for (let i = 0; i < n; i++) {
        c.txBytes += this.txQueue[this.txHead]!.length;
        if (TRACING) trace('out', this.txQueue[this.txHead]!);
        this.txQueue[this.txHead++] = EMPTY;
      }
      c.txFrames += n;
    }
    if (this.txQueued === 0) {
      this.txQueue = [];
      this.txHead = 0;
    } else if (this.txHead > 1024 && this.txHead * 2 > this.txQueue.length) {
      this.txQueue = this.txQueue.slice(this.txHead);
      this.txHead = 0;
    }
    this.watch();
  }

  /** The connected peer no longer exists: retry a fixed peer after a pause, forget a learnt one. */
  private peerGone(): void {
    this.disconnect();
    this.nextConnectAt = this.clock.now() + RECONNECT_MS;
    if (this.fixedPeer !== null) this.connect();
  }

  /** A connected peer whose socket file vanished or now belongs to a new socket is gone, even if we had nothing to send. */
  private checkPeer(): void {
    if (this.closed) return;
    if (this.connectedTo === null) {
      if (this.fixedPeer !== null) this.connect();
      return;
    }
    let ino = -1;
    try {
      ino = lstatSync(this.connectedTo).ino;
    } catch {
      // Gone.
    }
    if (ino === this.peerIno) return;
    this.lastError = `peer ${this.connectedTo} went away`;
    this.dropQueue();
    this.peerGone();
  }

  private dropQueue(): void {
    this.counters.txErrors += this.txQueued;
    this.txQueue = [];
    this.txHead = 0;
  }
}

const EMPTY = Buffer.alloc(0);
