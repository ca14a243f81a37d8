/**
 * A PCIeOE port: one end of one channel (one HI↔DI association), as the HI
 * and the DI each see it. It owns
 *   - the link-layer Channel (reliable, in order, over the node's links);
 *   - the TLP endpoint on it (tags, splitting, completions, timeouts), told
 *     at once when the link layer finds the peer unreachable;
 *   - the ordered request queue: the peer's requests reach the handler
 *     strictly in arrival order, a handler that answers asynchronously holding
 *     back the ones after it (a later MRd must not pass an earlier MWr);
 *     completions bypass it (a handler may be waiting for its own reads);
 *   - the memory-read completer: CplD(s) for an MRd, from bytes the owner reads.
 * When the channel starts over (the peer restarted: a new epoch), requests in
 * flight fail, requests of the old peer not yet handled are dropped, and the
 * owner is told (onReset) so it can bring the peer back to the state it needs.
 * Frames reach the channel by one lookup of their channel id (FabricNode), and
 * the channel delivers straight into this port's endpoint.
 */

import type { Logger } from '../common/logger.ts';
import { OrderedQueue } from '../common/ordered-queue.ts';
import type { Channel, ChannelStats, ResetReason } from './link/channel.ts';
import type { FabricNode } from './link/node.ts';
import type { Mac } from './wire/mac.ts';
import { leadingDisabled, requestByteCount } from './tlp/byte-enables.ts';
import { completionsForRead } from './tlp/completion.ts';
import { TlpEndpoint, type TlpEndpointStats } from './tlp/endpoint.ts';
import { type MemReadTlp, type Tlp, hasData } from './tlp/tlp.ts';
import { keptCopy } from './slab.ts';

/** The common Logger (a port's log lines name its channel). */
export type PortLog = Logger;

/** Handles one request from the peer; a returned promise holds later requests back until it settles. */
export type RequestHandler = (tlp: Tlp) => void | Promise<void>;

export interface ServeOptions {
  /**
   * The handler uses a request's data only before it returns, copying whatever it keeps (the HI:
   * a DMA write lands in guest memory, an MSI is read, at once). Its requests then carry their
   * data as the link delivered it, a ring slot's view, while nothing waits ahead of them, rather
   * than a copy made for a handler that might hold it across an await.
   */
  dataInCall?: boolean;
}

export interface PcieoePortOptions {
  /** The channel id. */
  id: number;
  /** The peer's MAC on each of its links, in link order. */
  peerMacs: readonly Mac[];
  /** Completion timeout of this end's non-posted requests, ms. */
  completionTimeoutMs: number;
  /** What the peer is, in log lines ("DI", "host"). */
  peerName: string;
  log?: PortLog;
}

/** How to answer one memory read (see PcieoePort.completeRead). */
export interface ReadCompletion {
  /** Completer id the CplDs carry. */
  completerId: number;
  /** Largest CplD payload, bytes. */
  maxPayload: number;
  /** The enabled bytes: `count` of them, from byte `first` of the request's DW-aligned span. */
  read(first: number, count: number): Uint8Array | Promise<Uint8Array>;
  /** `read` threw or rejected: answer (UR, CA) and count it. */
  fail(err: unknown): void;
}

/** Read Completion Boundary of both ends as completers (a root complex's, 64 bytes). */
const RCB = 64;

export interface PortStats {
  tlp: TlpEndpointStats;
  link: ChannelStats;
  peerAlive: boolean;
}

export class PcieoePort {
  readonly id: number;
  readonly channel: Channel;
  readonly endpoint: TlpEndpoint;
  private readonly requests: OrderedQueue<Tlp>;
  private handler: RequestHandler | undefined;
  private dataInCall = false;
  private resetListeners: ((reason: ResetReason) => void)[] = [];
  private peerListeners: ((alive: boolean) => void)[] = [];

  constructor(node: FabricNode, o: PcieoePortOptions) {
    const log = o.log ?? (() => {});
    this.id = o.id;
    this.requests = new OrderedQueue((tlp) => this.handle(tlp));
    this.endpoint = new TlpEndpoint({
      send: (tlp) => this.channel.send(tlp),
      reserve: (size) => this.channel.reserve(size),
      clock: node.clock,
      completionTimeoutMs: o.completionTimeoutMs,
      onRequest: (tlp, transient) => this.request(tlp, transient),
      log: (m) => log('warn', `channel ${o.id}: ${m}`),
    });
    // The endpoint copies what it keeps of a TLP, and request() what waits or a handler may keep, so payloads may be ring slots.
    this.channel = node.addChannel(o.id, o.peerMacs, (p, transient) => this.endpoint.receive(p, transient), {
      deliverTransient: true,
      onPeerState: (alive) => {
        log(alive ? 'info' : 'warn', `channel ${o.id}: ${o.peerName} ${alive ? 'reachable' : 'unreachable (all links silent)'}`);
        this.endpoint.setPeerAlive(alive);
        for (const l of this.peerListeners) l(alive);
      },
      onReset: (reason) => {
        const why = reason === 'peer-restarted' ? 'restarted (new epoch)' : 'cut off (too many bad frames)';
        log('warn', `channel ${o.id}: ${o.peerName} ${why}: channel reset, ${this.endpoint.outstanding} request(s) in flight failed`);
        this.requests.clear();
        this.endpoint.peerReset();
        for (const l of this.resetListeners) l(reason);
      },
    });
  }

  /** Call `listener` each time the channel starts over (after requests in flight have failed). */
  onReset(listener: (reason: ResetReason) => void): void {
    this.resetListeners.push(listener);
  }

  /** Call `listener` each time the peer becomes reachable (`alive`) or silent on every link. */
  onPeerState(listener: (alive: boolean) => void): void {
    this.peerListeners.push(listener);
  }

  /** Hand the peer's requests (not completions) to `handler`, in arrival order. */
  serve(handler: RequestHandler, o: ServeOptions = {}): void {
    this.handler = handler;
    this.dataInCall = o.dataInCall ?? false;
  }

  /** A request from the endpoint; `transient`: its data is valid only during this call. */
  private request(tlp: Tlp, transient: boolean): void {
    // Handled now with the view (queue idle, a handler that keeps nothing), or copied to wait or be kept.
    if (transient && hasData(tlp) && !(this.dataInCall && this.handler && this.requests.idle)) tlp.data = keptCopy(tlp.data);
    this.requests.push(tlp);
  }

  get stats(): PortStats {
    return { tlp: this.endpoint.stats, link: this.channel.stats, peerAlive: this.channel.isPeerAlive };
  }

  /**
   * Answer memory read `tlp` with CplD(s) carrying what `c.read` returns,
   * cut at the RCB and `c.maxPayload`. A zero-length read (no byte enabled)
   * only orders, so nothing is read. Returns a promise while the read is
   * asynchronous, for a handler that must hold later requests back.
   */
  completeRead(tlp: MemReadTlp, c: ReadCompletion): void | Promise<void> {
    if (tlp.firstBe === 0 && tlp.length === 1) return this.reply(tlp, c, new Uint8Array(4));
    const first = leadingDisabled(tlp.firstBe);
    const count = requestByteCount(tlp.length, tlp.firstBe, tlp.lastBe);
    let r: Uint8Array | Promise<Uint8Array>;
    try {
      r = c.read(first, count);
    } catch (err) {
      return c.fail(err);
    }
    if (!(r instanceof Promise)) {
      // Every byte of the span enabled (a DMA read of whole DWs): the bytes read are the span, copied
      // once, into the completions as they are encoded right here.
      if (first === 0 && count === tlp.length * 4 && r.length === count) return this.reply(tlp, c, r);
      return this.reply(tlp, c, spanOf(tlp, r, first));
    }
    return r.then(
      (bytes) => this.reply(tlp, c, spanOf(tlp, bytes, first)),
      (err) => c.fail(err),
    );
  }

  /** The CplD(s) of `tlp` carrying `span`, its whole DW span (a method, not a closure per read: the lab's loader names every function made). */
  private reply(tlp: MemReadTlp, c: ReadCompletion, span: Uint8Array): void {
    for (const cpl of completionsForRead(tlp, c.completerId, span, { rcb: RCB, maxPayload: c.maxPayload })) this.endpoint.post(cpl);
  }

  close(): void {
    this.requests.clear();
    this.endpoint.close();
    this.channel.close();
  }

  private handle(tlp: Tlp): void | Promise<void> {
    if (this.handler) return this.handler(tlp);
  }
}

/** A read's whole DW span: the enabled bytes read, from byte `first`, disabled ones zero. */
function spanOf(tlp: MemReadTlp, bytes: Uint8Array, first: number): Uint8Array {
  const span = new Uint8Array(tlp.length * 4);
  span.set(bytes, first);
  return span;
}
