/**
 * A port over unix datagram sockets, one Ethernet frame (no FCS) per
 * datagram, as QEMU's `-netdev dgram` with unix addresses speaks it. The same
 * class is the switch's end (bound at `<socket dir>/<port>.sock`) and a
 * station's end (a link endpoint bound at its own path, its peer the switch
 * port): both receive on a bound socket and send to a peer path.
 *
 * Receiving: one read burst per readiness event, up to `rxBatch` datagrams, so
 * a busy port cannot starve the others on the event loop. Datagrams are read
 * straight into a shared slab and handed on as views of it: no copy and no
 * buffer allocation per frame. Consumers may keep those views (the link layer
 * delivers payloads as views, the switch queues frames), so a slab is never
 * reused; a fresh one is taken when the current one has too little room left
 * and the old one is freed by the GC once nothing refers to it.
 *
 * Sending: frames go out through a second socket, unbound and connected to
 * the peer. The connection is what makes back-pressure workable: a unix
 * receiver queues at most net.unix.max_dgram_qlen datagrams (10 by default),
 * and only a *connected* sender can wait for room with poll(); an unconnected
 * one sees "writable" at once and would have to spin. So when the peer's
 * queue is full, frames wait in a bounded FIFO here until the socket polls
 * writable, and beyond that bound they are dropped and counted, as a switch
 * drops on a full egress queue (the link layer's replay recovers them).
 *
 * Replies go to a configured peer path, not to the sender of the last
 * datagram: the native addon has recv() but no recvfrom(), so the sender's
 * address is unknown here. A port with no peer yet counts and drops what it
 * would transmit.
 */

import { lstatSync, unlinkSync } from 'node:fs';
import { type NativeError, type Poll, PollEvent, isNativeError, native } from '../../native/index.ts';
import type { PortTransport } from './port.ts';

export interface UnixDgramPortOptions {
  /** Where this end is bound. A stale socket file there is replaced; any other file is an error. */
  path: string;
  /** Where frames are sent; can be set later with setPeer(). */
  peer?: string;
  /** Longest frame accepted, bytes; longer datagrams are dropped and counted. Default 65 535. */
  maxFrame?: number;
  /** Datagrams read per readiness event. Default 64. */
  rxBatch?: number;
  /** Frames held while the peer's queue is full, before tail drop. Default 4096. */
  txQueueFrames?: number;
  /** Bytes per receive slab. Default 1 MiB. */
  slabBytes?: number;
}

export interface UnixDgramCounters {
  rxFrames: number;
  rxBytes: number;
  /** Datagrams longer than maxFrame (their tail was cut off by the read): dropped. */
  rxOversize: number;
  txFrames: number;
  txBytes: number;
  /** Frames that had to wait for room in the peer's queue. */
  txDeferred: number;
  /** Frames transmitted while no peer was set or the peer's socket did not exist. */
  txNoPeer: number;
  /** Frames dropped because the wait queue was full. */
  txQueueDrops: number;
  /** Frames lost to a send error other than a full queue (the peer went away, ...). */
  txErrors: number;
  /** Exceptions thrown by the ingress handler; the frame is lost, the port carries on. */
  ingressErrors: number;
}

/** After a failed connect to the peer, wait this long before the next attempt (ms). */
const RECONNECT_MS = 100;

export class UnixDgramPort implements PortTransport {
  readonly path: string;
  readonly counters: UnixDgramCounters = {
    rxFrames: 0, rxBytes: 0, rxOversize: 0,
    txFrames: 0, txBytes: 0, txDeferred: 0, txNoPeer: 0, txQueueDrops: 0, txErrors: 0, ingressErrors: 0,
  };

  private readonly maxFrame: number;
  private readonly rxBatch: number;
  private readonly txQueueFrames: number;
  private readonly slabBytes: number;

  private readonly rxFd: number;
  private readonly rxPoll: Poll;
  private ingress: ((frame: Buffer) => void) | null = null;
  private slab: Buffer;
  private slabUsed = 0;

  private peerPath: string | null;
  private txFd = -1;
  private txPoll: Poll | null = null;
  private nextConnectAt = 0;
  /** Frames waiting for room in the peer's queue: a ring, head at txHead. */
  private txQueue: Buffer[] = [];
  private txHead = 0;
  private closed = false;
  private lastError: string | null = null;

  constructor(options: UnixDgramPortOptions) {
    this.path = options.path;
    this.peerPath = options.peer ?? null;
    this.maxFrame = options.maxFrame ?? 65_535;
    this.rxBatch = options.rxBatch ?? 64;
    this.txQueueFrames = options.txQueueFrames ?? 4096;
    this.slabBytes = Math.max(options.slabBytes ?? 1 << 20, 4 * (this.maxFrame + 1));
    this.slab = Buffer.allocUnsafe(this.slabBytes);
    removeStaleSocket(this.path);
    this.rxFd = native.unixDgram(this.path);
    this.rxPoll = new native.Poll(this.rxFd, (err) => (err ? this.fail(this.rxPoll, err) : this.readBurst()));
    this.rxPoll.start(PollEvent.Readable);
  }

  get peer(): string | null {
    return this.peerPath;
  }

  /** The last send or poll error, for diagnostics (counters say how often). */
  get error(): string | null {
    return this.lastError;
  }

  /** Frames waiting for room in the peer's queue. */
  get txQueued(): number {
    return this.txQueue.length - this.txHead;
  }

  /** Send to `path` from now on (null: nowhere). Frames still queued for the old peer are dropped. */
  setPeer(path: string | null): void {
    if (path === this.peerPath) return;
    this.peerPath = path;
    this.dropQueue();
    this.disconnect();
    this.nextConnectAt = 0;
  }

  attach(ingress: (frame: Buffer) => void): void {
    this.ingress = ingress;
  }

  /** Send one frame. Never throws and never blocks; the frame must not change until it is sent. */
  transmit(frame: Buffer): void {
    if (this.closed) return;
    if (this.txQueued > 0) {
      this.enqueue(frame);
      return;
    }
    if (this.txFd < 0 && !this.connect()) {
      this.counters.txNoPeer++;
      return;
    }
    const r = this.trySend(frame);
    if (r === 'full') {
      this.enqueue(frame);
      this.txPoll!.start(PollEvent.Writable);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.rxPoll.close();
    native.close(this.rxFd);
    this.disconnect();
    this.dropQueue();
    try {
      removeStaleSocket(this.path);
    } catch {
      // Someone put another file there meanwhile: not ours to delete.
    }
  }

  // ---- receive ----

  private readBurst(): void {
    const c = this.counters;
    const need = this.maxFrame + 1;
    for (let i = 0; i < this.rxBatch && !this.closed; i++) {
      if (this.slab.length - this.slabUsed < need) {
        this.slab = Buffer.allocUnsafe(this.slabBytes);
        this.slabUsed = 0;
      }
      const start = this.slabUsed;
      // The read window is one byte longer than the largest frame, so a datagram that fills it was cut short.
      const n = native.recv(this.rxFd, this.slab.subarray(start, start + need));
      if (n < 0) return;
      if (n === need) {
        c.rxOversize++;
        continue;
      }
      // Keep the next frame 8-byte aligned: cheap, and typed-array views of it stay possible.
      this.slabUsed = start + ((n + 7) & ~7);
      c.rxFrames++;
      c.rxBytes += n;
      try {
        this.ingress?.(this.slab.subarray(start, start + n));
      } catch (err) {
        c.ingressErrors++;
        this.lastError = `ingress: ${(err as Error).message}`;
      }
    }
  }

  // ---- transmit ----

  /** Connect the send socket to the peer; false when there is no peer (yet). */
  private connect(): boolean {
    if (this.peerPath === null) return false;
    const now = performance.now();
    if (now < this.nextConnectAt) return false;
    try {
      this.txFd = native.unixConnect(this.peerPath, 'dgram');
    } catch (err) {
      // ENOENT / ECONNREFUSED: the peer has not bound its socket yet, or is gone.
      this.lastError = `connect ${this.peerPath}: ${(err as Error).message}`;
      this.nextConnectAt = now + RECONNECT_MS;
      return false;
    }
    const poll = new native.Poll(this.txFd, (err) => (err ? this.fail(poll, err) : this.drain()));
    this.txPoll = poll;
    return true;
  }

  private disconnect(): void {
    this.txPoll?.close();
    this.txPoll = null;
    if (this.txFd >= 0) native.close(this.txFd);
    this.txFd = -1;
  }

  /** One send attempt; 'full' when the peer's queue has no room. */
  private trySend(frame: Buffer): 'sent' | 'full' | 'lost' {
    let n: number;
    try {
      n = native.sendmsg(this.txFd, frame);
    } catch (err) {
      // ECONNREFUSED / ENOTCONN: the peer closed its socket. Reconnect on the next frame; it may come back.
      this.counters.txErrors++;
      this.lastError = `send to ${this.peerPath}: ${(err as Error).message}`;
      this.disconnect();
      return 'lost';
    }
    if (n < 0) return 'full';
    this.counters.txFrames++;
    this.counters.txBytes += frame.length;
    return 'sent';
  }

  private enqueue(frame: Buffer): void {
    if (this.txQueued >= this.txQueueFrames) {
      this.counters.txQueueDrops++;
      return;
    }
    this.counters.txDeferred++;
    if (this.txHead > 1024 && this.txHead * 2 > this.txQueue.length) {
      this.txQueue = this.txQueue.slice(this.txHead);
      this.txHead = 0;
    }
    this.txQueue.push(frame);
  }

  /** The peer's queue has room again: send what waited, in order. */
  private drain(): void {
    while (this.txQueued > 0 && this.txFd >= 0) {
      const r = this.trySend(this.txQueue[this.txHead]!);
      if (r === 'full') return; // still polling for writable
      this.txQueue[this.txHead++] = EMPTY;
    }
    // Done, or the connection failed (what is left is dropped: the peer is gone).
    this.dropQueue();
    this.txPoll?.stop();
  }

  private dropQueue(): void {
    this.counters.txErrors += this.txQueued;
    this.txQueue = [];
    this.txHead = 0;
  }

  private fail(poll: Poll, err: NativeError): void {
    // poll() errors are not expected on sockets; record and stop watching rather than spin or crash the switch.
    this.lastError = `poll: ${err.message}`;
    poll.stop();
  }
}

const EMPTY = Buffer.alloc(0);

/** Remove a socket file left behind at `path`; refuse to delete anything else. */
function removeStaleSocket(path: string): void {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (err) {
    if (isNativeError(err, 'ENOENT')) return;
    throw err;
  }
  if (!isSocket) throw new Error(`${path} exists and is not a socket`);
  unlinkSync(path);
}
