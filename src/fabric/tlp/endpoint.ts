/**
 * One side of a PCIeOE channel at the transaction layer: sends TLPs into the
 * link-layer Channel, hands the peer's requests to the owner, and is the
 * requester for non-posted TLPs — tags, completion reassembly and completion
 * timeout (PCIe Base Spec §2.3.2, §2.8).
 *
 * Both the HI (config and BAR reads to the DI) and the DI (device DMA reads
 * to the HI) need exactly this, and it knows nothing of either: it is part
 * of the fabric so that the HI and DI never import each other.
 *
 * Tags are 8 bits (256 outstanding per endpoint; 10-bit tags need the
 * requester/completer capability negotiated, which the lab does not model).
 * A request that finds no free tag waits for one. A tag whose request timed
 * out stays out of use for one more timeout, so a completion arriving late
 * cannot be taken for the answer to a newer request.
 *
 * Every request has the same timeout, so the outstanding ones (kept in issue
 * order) are also in deadline order: one timer, armed for the oldest, sweeps
 * them, instead of a timer set and cleared per request (a 64 KiB DMA read is
 * 16 requests; their timers took ~5 % of the DI's busy time on 64 KiB writes).
 * A readMemory is one promise, not one per request.
 */

import { leadingDisabled, requestByteCount } from './byte-enables.ts';
import { checkTlp } from './check.ts';
import type { Clock, TimerHandle } from '../clock.ts';
import { LogLimiter } from '../../common/log-limiter.ts';
import { splitRead, splitWrite } from './split.ts';
import {
  CplStatus,
  type CompletionTlp,
  type ConfigReadTlp,
  type ConfigWriteTlp,
  type MemReadTlp,
  type NonPostedTlp,
  type Tlp,
  TlpType,
  decodeTlp,
  encodeTlp,
  encodeTlpInto,
  encodedSize,
  hasData,
  isCompletion,
  isConfigRequest,
  isNonPosted,
} from './tlp.ts';
import { urCompletionFor } from './completion.ts';
import { Slab } from '../slab.ts';
import { TagTable } from './tag-table.ts';

/** Where memory reads' data is assembled (readMemory). */
const readSlab = new Slab(256 * 1024);

/** How a non-posted request ended. `data`: a read's enabled bytes (a config read: the whole DW). */
export type Outcome =
  | { status: 'ok'; data: Uint8Array }
  | { status: 'ur' | 'ca' | 'crs' | 'timeout' | 'malformed' | 'closed'; detail?: string };

export type NonPostedRequest = Omit<MemReadTlp, 'tag'> | Omit<ConfigReadTlp, 'tag'> | Omit<ConfigWriteTlp, 'tag'>;

export interface TlpEndpointOptions {
  /** An encoded TLP for the peer (into Channel.send). */
  send(tlp: Uint8Array): void;
  /**
   * Memory to encode the next TLP in, handed to send() right after (Channel.reserve: reused
   * once the peer acknowledges it). Default: fresh memory from the encode slab.
   */
  reserve?(size: number): Uint8Array;
  /**
   * Requests and messages from the peer (completions are consumed here). `transient`: the TLP's
   * data is a view valid only during this call (a ring slot); whoever keeps it copies it.
   */
  onRequest(tlp: Tlp, transient: boolean): void;
  clock: Clock;
  /** Completion timeout in ms. */
  completionTimeoutMs: number;
  log?: (message: string) => void;
}

export interface TlpEndpointStats {
  txTlps: number;
  rxTlps: number;
  /** TLPs that do not decode, and requests that break a rule of checkTlp (a non-posted one gets UR). */
  rxMalformed: number;
  /** Completions for no outstanding request (late after a timeout, or forged). */
  rxUnexpectedCompletions: number;
  /** Poisoned TLPs with data (EP set): the data is never used; a poisoned request is not delivered (a non-posted one gets UR), a poisoned completion fails its request. */
  rxPoisoned: number;
  completionTimeouts: number;
  /** Requests that had to wait for a free tag. */
  tagWaits: number;
  /** Requests failed at once, or cut short, because the peer was unreachable. */
  peerDownFailures: number;
  /** Requests cut short because the channel started over (the peer restarted). */
  resetFailures: number;
}

/** One outstanding (or tag-waiting) request. */
interface Pending {
  /** The request; its tag is set when it gets one. */
  tlp: NonPostedTlp;
  requesterId: number;
  /** Expected bytes in total (a memory read's byte count; 4 for a config read; 0 for a config write). */
  total: number;
  received: number;
  /** Lower address (bits 6:0) of the next byte due. */
  nextLower: number;
  /** Where the data goes: `total` bytes from `at`. */
  buf: Uint8Array;
  at: number;
  /** clock.now() past which it has timed out. */
  deadline: number;
  /** The readMemory it is part of, or (a single request) its promise's resolve. */
  read: MemoryRead | undefined;
  resolve: ((o: Outcome) => void) | undefined;
}

const TAGS = 256;

/** A deadline this close counts as passed (timers are not exact in fractional ms). */
const DEADLINE_SLACK_MS = 1e-3;

/** The requests of one readMemory: settles once all have, with the data or the first failure. */
class MemoryRead {
  private left: number;
  private failure: Outcome | undefined;

  constructor(
    count: number,
    private readonly address: bigint,
    private readonly out: Uint8Array,
    private readonly resolve: (data: Uint8Array) => void,
    private readonly reject: (err: Error) => void,
  ) {
    this.left = count;
  }

  settle(o: Outcome): void {
    if (o.status !== 'ok' && !this.failure) this.failure = o;
    if (--this.left > 0) return;
    if (this.failure) this.reject(new FabricRequestError(this.failure, `memory read of 0x${this.address.toString(16)}+${this.out.length}`));
    else this.resolve(this.out);
  }
}

export class FabricRequestError extends Error {
  constructor(readonly outcome: Outcome, what: string) {
    super(`${what}: ${outcome.status}${'detail' in outcome && outcome.detail ? ` (${outcome.detail})` : ''}`);
    this.name = 'FabricRequestError';
  }
}

export class TlpEndpoint {
  readonly stats: TlpEndpointStats = { txTlps: 0, rxTlps: 0, rxMalformed: 0, rxUnexpectedCompletions: 0, rxPoisoned: 0, completionTimeouts: 0, tagWaits: 0, peerDownFailures: 0, resetFailures: 0 };
  /** Outstanding requests by tag, in issue order (so in deadline order). */
  private readonly pending = new TagTable<Pending>(TAGS);
  private readonly freeTags: number[] = Array.from({ length: TAGS }, (_, i) => TAGS - 1 - i);
  /** Requests waiting for a free tag, oldest first. */
  private readonly tagWaiters: Pending[] = [];
  /** The one completion-timeout timer, armed while any request may be outstanding. */
  private sweepTimer: TimerHandle | undefined;
  private closed = false;
  private peerAlive = true;
  /** A peer decides how many malformed TLPs it sends: the count is in the stats, the log keeps a few. */
  private readonly malformedLog = new LogLimiter((m) => this.o.log?.(m), { now: () => this.o.clock.now() });
  private readonly sweep = (): void => this.expire();

  constructor(private readonly o: TlpEndpointOptions) {}

  /**
   * What the link layer knows of the peer (all links silent = unreachable).
   * While it is unreachable, non-posted requests fail at once with 'timeout'
   * instead of waiting out the completion timeout, and those outstanding when
   * it goes are cut short — as a PCIe port whose link went down answers at
   * once (surprise down) rather than letting every request time out. A host
   * driver tearing down a dead device makes many reads in a row; each costing
   * a full completion timeout would stretch the teardown by seconds. Their
   * tags stay quarantined for a timeout, as after a real one.
   */
  setPeerAlive(alive: boolean): void {
    this.peerAlive = alive;
    if (alive || this.closed) return;
    this.stats.peerDownFailures += this.failOutstanding('peer unreachable');
  }

  /**
   * The link layer started over (the peer restarted, or was cut off): the
   * requests in flight will never be answered, so they end now, as after a
   * completion timeout (the HI answers QEMU's reads all-ones, as PCIe answers
   * a timed-out read with UR). Their tags stay quarantined for a timeout: a
   * completion of the old incarnation must not match a new request.
   */
  peerReset(): void {
    if (!this.closed) this.stats.resetFailures += this.failOutstanding('channel reset');
  }

  private failOutstanding(detail: string): number {
    const n = this.pending.size;
    for (const [tag, p] of this.pending) {
      this.pending.delete(tag);
      this.quarantine(tag);
      settle(p, { status: 'timeout', detail });
    }
    return n;
  }

  /** Keep `tag` out of use for a timeout: a completion still on its way must find nothing. */
  private quarantine(tag: number): void {
    this.o.clock.setTimer(this.o.completionTimeoutMs, () => this.giveTag(tag));
  }

  get outstanding(): number {
    return this.pending.size;
  }

  /** A posted TLP (MWr, Msg) or a completion. Dropped silently once closed. */
  post(tlp: Tlp): void {
    if (this.closed) return;
    this.stats.txTlps++;
    this.o.send(this.encode(tlp));
  }

  private encode(tlp: Tlp): Uint8Array {
    if (!this.o.reserve) return encodeTlp(tlp);
    const buf = this.o.reserve(encodedSize(tlp));
    encodeTlpInto(tlp, buf, 0);
    return buf;
  }

  /**
   * A non-posted request; resolves with its outcome, never rejects. With a
   * free tag the TLP leaves synchronously, so it keeps its place among the
   * posted TLPs sent around it; one that must wait for a tag may be passed by
   * later posted writes, which PCIe ordering allows.
   */
  request(req: NonPostedRequest): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      const p = pendingFor({ ...req, tag: 0 } as NonPostedTlp, undefined, 0);
      p.resolve = resolve;
      this.start(p);
    });
  }

  /** Issue `p` now if a tag is free, else queue it for one; ends it at once when closed or the peer is gone. */
  private start(p: Pending): void {
    if (this.closed) return settle(p, { status: 'closed' });
    if (!this.peerAlive) {
      this.stats.peerDownFailures++;
      return settle(p, { status: 'timeout', detail: 'peer unreachable' });
    }
    const tag = this.freeTags.pop();
    if (tag !== undefined) {
      this.issue(p, tag);
      return;
    }
    this.stats.tagWaits++;
    this.tagWaiters.push(p);
  }

  /** Send `p` with `tag`; false (the tag unused) when the peer went away while it waited for one. */
  private issue(p: Pending, tag: number): boolean {
    if (!this.peerAlive) {
      this.stats.peerDownFailures++;
      settle(p, { status: 'timeout', detail: 'peer unreachable' });
      return false;
    }
    p.tlp.tag = tag;
    p.deadline = this.o.clock.now() + this.o.completionTimeoutMs;
    this.pending.set(tag, p);
    if (this.sweepTimer === undefined) this.sweepTimer = this.o.clock.setTimer(this.o.completionTimeoutMs, this.sweep);
    this.stats.txTlps++;
    this.o.send(this.encode(p.tlp));
    return true;
  }

  /** The sweep: requests past their deadline time out (oldest first); the timer is armed again for the oldest left. */
  private expire(): void {
    this.sweepTimer = undefined;
    const now = this.o.clock.now();
    for (const [tag, p] of this.pending) {
      if (p.deadline > now + DEADLINE_SLACK_MS) {
        this.sweepTimer = this.o.clock.setTimer(p.deadline - now, this.sweep);
        return;
      }
      this.stats.completionTimeouts++;
      this.pending.delete(tag);
      this.quarantine(tag);
      settle(p, { status: 'timeout', detail: `no completion within ${this.o.completionTimeoutMs} ms` });
    }
  }

  /**
   * Read `length` bytes of the peer's memory: MRds cut at `maxReadRequest`,
   * all outstanding at once. Rejects with FabricRequestError if any fails.
   */
  readMemory(address: bigint, length: number, requesterId: number, maxReadRequest: number): Promise<Uint8Array> {
    // The tags are issue()'s to choose; splitRead's placeholder is overwritten there.
    const reqs = splitRead(address, length, maxReadRequest, { requesterId }, () => 0);
    // Each request's completions land in their place in `out` directly; it is carved from a slab (a DMA
    // read of data takes 4 KiB at a time, and an ArrayBuffer each is a calloc and external memory for the
    // GC): every byte is written by a completion before `out` is handed out, a failed read hands out none.
    const out = readSlab.alloc(length);
    return new Promise<Uint8Array>((resolve, reject) => {
      if (reqs.length === 0) return resolve(out);
      const read = new MemoryRead(reqs.length, address, out, resolve, reject);
      this.startRead(reqs, read, out, 0);
    });
  }

  /**
   * Read a scatter list of the peer's memory (`segments`, bus addresses below 2^53) into `into`,
   * back to back: every MRd of every segment outstanding at once, each completion's data straight
   * into its place, one promise for all (a device's DMA of a whole page list: a 64 KiB NVMe write
   * is 16 pages). Resolves with `into` once all have completed, rejects with FabricRequestError
   * once all have settled and any failed: either way no request of it is outstanding any more, so
   * the caller may reuse `into`.
   */
  readMemoryInto(segments: readonly { addr: number; len: number }[], into: Uint8Array, requesterId: number, maxReadRequest: number): Promise<Uint8Array> {
    const all: MemReadTlp[][] = [];
    let count = 0;
    let length = 0;
    for (const s of segments) {
      const reqs = splitRead(BigInt(s.addr), s.len, maxReadRequest, { requesterId }, () => 0);
      all.push(reqs);
      count += reqs.length;
      length += s.len;
    }
    if (length !== into.length) return Promise.reject(new RangeError(`segments of ${length} bytes into a buffer of ${into.length}`));
    return new Promise<Uint8Array>((resolve, reject) => {
      if (count === 0) return resolve(into);
      const read = new MemoryRead(count, BigInt(segments[0]!.addr), into, resolve, reject);
      let at = 0;
      for (const reqs of all) at = this.startRead(reqs, read, into, at);
    });
  }

  /** Issue (or queue for tags) the requests of one read, their data into `out` from byte `at`; returns where the next ones go. */
  private startRead(reqs: readonly MemReadTlp[], read: MemoryRead, out: Uint8Array, at: number): number {
    for (const r of reqs) {
      const p = pendingFor(r, out, at);
      p.read = read;
      at += p.total;
      this.start(p);
    }
    return at;
  }

  /** Posted MWrs writing `data` at `address`, cut at `maxPayload`. */
  writeMemory(address: bigint, data: Uint8Array, requesterId: number, maxPayload: number): void {
    for (const tlp of splitWrite(address, data, maxPayload, { requesterId })) this.post(tlp);
  }

  /**
   * An encoded TLP from the peer (a Channel's deliver). Never throws on bad input.
   * `transient`: the payload is valid only during this call (a memif ring slot, see
   * ChannelOptions.deliverTransient). A completion's data then goes from it straight into
   * the read's buffer; a request is handed on with it, marked transient (onRequest).
   */
  receive(payload: Uint8Array, transient = false): void {
    if (this.closed) return;
    const r = decodeTlp(payload);
    if (!r.ok) {
      this.stats.rxMalformed++;
      this.malformedLog.line(() => `dropping malformed TLP: ${r.error}: ${r.detail} (${this.stats.rxMalformed} so far)`);
      return;
    }
    this.stats.rxTlps++;
    const tlp = r.value;
    if (isCompletion(tlp)) return this.complete(tlp);
    // A request breaking a spec rule (4 KiB crossing, byte enables, config TC/Last BE, ...) is a
    // Malformed TLP (§2.2): it never reaches the owner; a non-posted one gets UR so its requester
    // is not left to time out. Completions are checked against their request in complete().
    const problems = checkTlp(tlp);
    if (problems.length > 0) {
      this.stats.rxMalformed++;
      this.malformedLog.line(() => `${isNonPosted(tlp) ? 'UR for' : 'dropping'} malformed TLP type 0x${tlp.type.toString(16)}: ${problems.join('; ')} (${this.stats.rxMalformed} so far)`);
      if (isNonPosted(tlp)) this.post(urCompletionFor(tlp, isConfigRequest(tlp) ? tlp.completerId : 0));
      return;
    }
    if (tlp.poisoned && hasData(tlp)) {
      // Poisoned data must not reach a register or memory (§2.7.2.2): a write is dropped, a config write gets UR.
      this.stats.rxPoisoned++;
      this.malformedLog.line(() => `dropping poisoned TLP type 0x${tlp.type.toString(16)} (${this.stats.rxPoisoned} so far)`);
      if (isNonPosted(tlp)) this.post(urCompletionFor(tlp, tlp.completerId));
      return;
    }
    this.o.onRequest(tlp, transient && hasData(tlp));
  }

  /** Every outstanding request ends with 'closed'; later requests too. */
  close(): void {
    this.closed = true;
    if (this.sweepTimer !== undefined) this.o.clock.clearTimer(this.sweepTimer);
    this.sweepTimer = undefined;
    const ended = Array.from(this.pending, ([, p]) => p).concat(this.tagWaiters.splice(0));
    this.pending.clear();
    for (const p of ended) settle(p, { status: 'closed' });
  }

  private complete(c: CompletionTlp): void {
    const p = this.pending.get(c.tag);
    if (!p || p.requesterId !== c.requesterId) {
      this.stats.rxUnexpectedCompletions++;
      return;
    }
    if (c.poisoned && c.type === TlpType.CplD) {
      this.stats.rxPoisoned++;
      this.finish(c.tag, p, { status: 'malformed', detail: `poisoned completion from ${c.completerId.toString(16)}` });
      return;
    }
    if (c.status !== CplStatus.SC) {
      const status = c.status === CplStatus.UR ? 'ur' : c.status === CplStatus.CRS ? 'crs' : 'ca';
      this.finish(c.tag, p, { status, detail: `completer ${c.completerId.toString(16)}` });
      return;
    }
    if (p.total === 0) {
      // A config write's completion carries no data.
      this.finish(c.tag, p, c.type === TlpType.Cpl ? { status: 'ok', data: p.buf.subarray(p.at, p.at) } : { status: 'malformed', detail: 'CplD for a write' });
      return;
    }
    // Completions of one request arrive in address order; each says how many bytes remain.
    const remaining = p.total - p.received;
    if (c.type !== TlpType.CplD || c.byteCount !== remaining || c.lowerAddress !== p.nextLower) {
      this.finish(c.tag, p, { status: 'malformed', detail: `byte count ${c.byteCount}/lower address ${c.lowerAddress}, expected ${remaining}/${p.nextLower}` });
      return;
    }
    const skip = c.lowerAddress & 3;
    const n = Math.min(remaining, c.data.length - skip);
    if (n <= 0) {
      this.finish(c.tag, p, { status: 'malformed', detail: 'completion without payload bytes' });
      return;
    }
    p.buf.set(skip === 0 && n === c.data.length ? c.data : c.data.subarray(skip, skip + n), p.at + p.received);
    p.received += n;
    p.nextLower = (p.nextLower + n) & 0x7f;
    if (p.received === p.total) this.finish(c.tag, p, { status: 'ok', data: p.buf.subarray(p.at, p.at + p.total) });
  }

  private finish(tag: number, p: Pending, o: Outcome): void {
    this.pending.delete(tag);
    this.giveTag(tag);
    settle(p, o);
  }

  /** `tag` is free: the oldest request waiting for one takes it. */
  private giveTag(tag: number): void {
    if (this.closed) return;
    for (let p = this.tagWaiters.shift(); p; p = this.tagWaiters.shift()) if (this.issue(p, tag)) return;
    this.freeTags.push(tag);
  }
}

/** A request not yet issued; a read's data goes to `into` from byte `at` (a new buffer when none is given). */
function pendingFor(tlp: NonPostedTlp, into: Uint8Array | undefined, at: number): Pending {
  let total: number;
  let nextLower = 0;
  if (tlp.type === TlpType.MRd32 || tlp.type === TlpType.MRd64) {
    total = requestByteCount(tlp.length, tlp.firstBe, tlp.lastBe);
    nextLower = (Number(tlp.address & 0x7cn) | leadingDisabled(tlp.firstBe)) & 0x7f;
  } else {
    total = tlp.type === TlpType.CfgRd0 || tlp.type === TlpType.CfgRd1 ? 4 : 0;
  }
  return { tlp, requesterId: tlp.requesterId, total, received: 0, nextLower, buf: into ?? new Uint8Array(total), at: into ? at : 0, deadline: 0, read: undefined, resolve: undefined };
}

function settle(p: Pending, o: Outcome): void {
  if (p.read) p.read.settle(o);
  else p.resolve!(o);
}

/**
 * Runs [start, length) of enabled bytes in a request's DW span. Byte enables
 * may have holes only when the request is 1 or 2 DW (§2.2.5). Every DW between
 * the first and the last is whole, so only those two are looked at bit by bit
 * (a 4 KiB write is one run, found without walking its bytes: this runs for
 * every DMA write the HI lands).
 */
export function enabledRuns(firstBe: number, lastBe: number, lengthDw: number): [number, number][] {
  const runs: [number, number][] = [];
  let start = -1;
  const bit = (at: number, on: boolean): void => {
    if (on && start < 0) start = at;
    else if (!on && start >= 0) {
      runs.push([start, at - start]);
      start = -1;
    }
  };
  for (let i = 0; i < 4; i++) bit(i, (firstBe & (1 << i)) !== 0);
  if (lengthDw > 1) {
    if (lengthDw > 2) bit(4, true);
    const last = (lengthDw - 1) * 4;
    for (let i = 0; i < 4; i++) bit(last + i, (lastBe & (1 << i)) !== 0);
  }
  bit(lengthDw * 4, false);
  return runs;
}

