/**
 * The PCIeOE reliable link layer for one channel (one HI↔DI association),
 * spread over one or more Ethernet links. It plays the PCIe data link layer:
 *
 * - Every TLP gets a 16-bit sequence number and stays in the replay buffer
 *   until the peer's cumulative ACK covers it. A replay timer and NAKs resend
 *   everything unacknowledged, oldest first (go-back-N). The timer follows
 *   the measured round trip (as TCP's RTO, RFC 6298, with Karn's rule), never
 *   below `replayTimeout`: under load the round trip includes whole queues of
 *   4 KiB frames in the switch and scheduling delays of busy CPUs, and a
 *   fixed short timer would replay the window into those queues again and
 *   again (congestion collapse). Even so a timeout is usually a late ACK,
 *   not a loss (a process that was not scheduled), so it resends only the
 *   oldest TLP, flagged AckNow, as a probe (after RFC 8985's tail loss
 *   probe). The peer answers it at once with an ACK flagged ProbeAnswer,
 *   which tells what is missing: while it stops short of what was sent
 *   before the probe, the oldest is resent and answered again; once it
 *   covers everything, the timeout has cost a few duplicates, not a window.
 * - The receiver delivers strictly in sequence order, exactly once. Frames
 *   ahead of a gap are held (within the credit window, so holding them never
 *   needs memory beyond what was promised) and a NAK asks for the gap; this
 *   matters because frames of one channel take different links and so arrive
 *   out of order even when nothing is lost. Each link delivers in order, and
 *   every first transmission carries a sequence number at or above all sent
 *   before it (a TLP its own, other frames the next one), so once every live
 *   link has brought a frame numbered past the gap, the gap was lost: it is
 *   NAKed at once. Until then the frame may still be on a slower link, and
 *   the NAK waits up to `nakDelay` (a dead link that has not yet been noticed,
 *   or a switch that reorders).
 * - ACK and credits ride on every frame; a standalone ACK goes out only when
 *   nothing was sent back within `ackDelay`, after every quarter window of
 *   TLPs, or at once when the peer is stalled on us: its AckNow frame used the
 *   last credit we advertised, or ended a replay. (A sender flags AckNow on the
 *   frame that uses its last known credit; under sustained load that is the
 *   end of every burst, and acknowledging each would shrink the bursts to a
 *   few frames and make ACKs a large share of the traffic.)
 * - Flow control: the credit limit is a sequence number (one credit = one TLP,
 *   one receive slot). The receiver grants `rxSlots` beyond what the
 *   application has consumed; the sender never sends past the limit, so a slow
 *   receiver slows the sender down instead of losing frames.
 * - Each link sends a heartbeat when idle; a link with nothing heard for
 *   `deadInterval` is taken out of the rotation and its unacknowledged
 *   frames are resent on the others. Any valid frame brings it back.
 *
 * Transport-agnostic: frames leave through `send(link, frame)` and arrive
 * through `receive(link, frame)`; time comes from a Clock. `send` must not
 * modify a frame it is given (it stays in the replay buffer); delivered
 * payloads are views into the received frame.
 */

import type { Clock, TimerHandle } from '../clock.ts';
import {
  type FrameDecodeError,
  FrameFlags,
  FrameType,
  PCIEOE_HEADER_BYTES,
  TAGGED_L2_BYTES,
  UNTAGGED_L2_BYTES,
  type VlanTag,
  decodeFrame,
  encodeFrame,
} from '../wire/frame.ts';
import type { Mac } from '../wire/mac.ts';
import { ReplayBuffer } from './replay-buffer.ts';
import { MAX_WINDOW, seqAdd, seqDiff } from './seq.ts';

export interface LinkBinding {
  localMac: Mac;
  peerMac: Mac;
  /** The tag frames carry on this link; null for untagged. */
  vlan: VlanTag | null;
}

export interface ChannelOptions {
  channel: number;
  links: readonly LinkBinding[];
  send: (link: number, frame: Buffer) => void;
  /** In-order TLP payloads. With `manualRelease`, each holds a credit until release(). */
  deliver: (payload: Uint8Array) => void;
  clock: Clock;
  /**
   * Receive slots = credit window in TLPs; a power of two. Default 1024
   * (4 MiB of 4 KiB writes): through a switch process a 256-TLP window left
   * one link window-bound (fabric bench, spread: 2.3–2.9 against 3.2–3.6 Gb/s).
   */
  rxSlots?: number;
  /** Replay buffer entries; a power of two. Default 2048. */
  replayCapacity?: number;
  /** Least time before unacknowledged TLPs are resent, ms; more when the measured round trip is longer. Default 5. */
  replayTimeout?: number;
  /** Upper bound of the adaptive replay timeout, ms. Default 10 × replayTimeout. */
  maxReplayTimeout?: number;
  /**
   * Standalone ACK after this long with nothing to piggyback on, ms. Default 1:
   * a one-way stream is acknowledged every quarter window regardless, and a
   * lone TLP's ACK only frees a replay slot, so waiting costs nothing while an
   * ACK per read burst (what a next-turn ACK amounts to) costs a frame per few
   * TLPs. Keep it well below replayTimeout.
   */
  ackDelay?: number;
  /**
   * How long a gap may stay open before it is NAKed while some live link has
   * not yet passed it, ms. Default heartbeatInterval: within that every live
   * link carries a frame, so only a link that died unnoticed or a reordering
   * path needs it; the replay timer's probe, which follows the round trip
   * and so the links' skew, usually repairs such a gap first.
   */
  nakDelay?: number;
  /**
   * Idle time after which a link sends a heartbeat, ms. Default 50: on these
   * hosts (nested virtualization) an idle vCPU can take 10–60 ms to wake for a
   * datagram, and a dead interval of a few heartbeats must outlast that or a
   * busy fabric sees false link-downs (each one resends the window).
   */
  heartbeatInterval?: number;
  /** Silence after which a link counts as dead. Default 3.5 heartbeat intervals. */
  deadInterval?: number;
  /** The application returns credits itself with release(). */
  manualRelease?: boolean;
  onLinkState?: (link: number, up: boolean) => void;
  onPeerState?: (alive: boolean) => void;
  /** Discovery and management frames (not sequenced, not reliable). */
  onControl?: (type: FrameType.Discovery | FrameType.Management, payload: Uint8Array, link: number) => void;
  /** Called when queued TLPs have all been sent after a credit stall. */
  onDrain?: () => void;
}

export interface ChannelStats {
  txTlp: number;
  txReplay: number;
  txAck: number;
  txNak: number;
  txHeartbeat: number;
  txControl: number;
  rxFrames: number;
  rxDelivered: number;
  rxDuplicate: number;
  rxOutOfOrder: number;
  rxOutsideWindow: number;
  rxWrongChannel: number;
  rxWrongBinding: number;
  rxBadFrame: Record<FrameDecodeError, number>;
  rxNak: number;
  replayTimeouts: number;
  linkDown: number;
  linkUp: number;
}

interface LinkState {
  readonly binding: LinkBinding;
  up: boolean;
  lastRx: number;
  lastTx: number;
  /** Every TLP numbered below this was sent before the latest first transmission that arrived here. */
  passed: number;
}

const EMPTY = new Uint8Array(0);
/** Replay timeout grows up to this factor while nothing is acknowledged. */
const MAX_BACKOFF = 8;

function isPow2(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

export class Channel {
  readonly stats: ChannelStats = {
    txTlp: 0, txReplay: 0, txAck: 0, txNak: 0, txHeartbeat: 0, txControl: 0,
    rxFrames: 0, rxDelivered: 0, rxDuplicate: 0, rxOutOfOrder: 0, rxOutsideWindow: 0,
    rxWrongChannel: 0, rxWrongBinding: 0,
    rxBadFrame: { truncated: 0, 'bad-ethertype': 0, 'bad-version': 0, 'bad-crc': 0, 'unknown-type': 0 },
    rxNak: 0, replayTimeouts: 0, linkDown: 0, linkUp: 0,
  };

  private readonly o: Required<Pick<ChannelOptions, 'rxSlots' | 'replayTimeout' | 'ackDelay' | 'nakDelay' | 'heartbeatInterval' | 'deadInterval'>> & ChannelOptions;
  private readonly clock: Clock;
  private readonly links: LinkState[];
  private rr = 0;
  private closed = false;
  private peerAlive = true;

  // Transmit side.
  private readonly replay: ReplayBuffer;
  /** The peer's credit limit: we may send sequence numbers before it. Unknown (0) until the peer speaks. */
  private peerLimit = 0;
  private pending: Uint8Array[] = [];
  private pendingHead = 0;
  private replayTimer: TimerHandle | null = null;
  private backoff = 1;
  private lastReplayFrom = -1;
  /** After a timeout's probe: replay.next when it was sent (TLPs before it were sent before the probe); -1: none. */
  private probeEnd = -1;
  private lastReplayAt = -Infinity;
  /** Round-trip estimate (ms) for the replay timer; -1 until the first sample. */
  private srtt = -1;
  private rttvar = 0;
  /** The one TLP being timed: its sequence number (-1: none) and send time. Replays cancel it (Karn). */
  private timedSeq = -1;
  private timedAt = 0;

  // Receive side.
  /** Next sequence number to deliver; also the cumulative ACK we send. */
  private expected = 0;
  /** Sequence number up to which the application has returned credits. */
  private consumed = 0;
  private readonly held: (Uint8Array | undefined)[];
  private heldCount = 0;
  private ackOwed = false;
  private rxSinceAck = 0;
  /** The credit limit carried by the last frame we sent: what the peer knows it may use. */
  private advertised = 0;
  /** The peer told us (AckNow) it is stalled at `advertised`; with manualRelease, the next release() answers at once. */
  private peerStalled = false;
  private ackTimer: TimerHandle | null = null;
  private nakTimer: TimerHandle | null = null;
  private nakSentFor = -1;
  private nakSentAt = -Infinity;
  private tickTimer: TimerHandle | null = null;

  constructor(options: ChannelOptions) {
    const heartbeatInterval = options.heartbeatInterval ?? 50;
    this.o = {
      rxSlots: 1024,
      replayTimeout: 5,
      ackDelay: 1,
      nakDelay: heartbeatInterval,
      deadInterval: heartbeatInterval * 3.5,
      ...options,
      heartbeatInterval,
    };
    if (!isPow2(this.o.rxSlots) || this.o.rxSlots > MAX_WINDOW) throw new RangeError('rxSlots must be a power of two below 2^15');
    if (options.links.length === 0) throw new RangeError('a channel needs at least one link');
    this.clock = options.clock;
    this.replay = new ReplayBuffer(options.replayCapacity ?? 2048);
    this.held = new Array(this.o.rxSlots);
    const now = this.clock.now();
    this.links = options.links.map((binding) => ({ binding, up: true, lastRx: now, lastTx: -Infinity, passed: 0 }));
    // Announce our credits at once: the peer may not send until it hears them.
    for (let i = 0; i < this.links.length; i++) this.transmit(i, FrameType.Heartbeat, this.replay.next, 0, EMPTY);
    this.armTick();
  }

  /** TLPs waiting for credit or replay room. */
  get queued(): number {
    return this.pending.length - this.pendingHead;
  }

  /** TLPs sent and not yet acknowledged. */
  get unacknowledged(): number {
    return this.replay.size;
  }

  get linkStates(): readonly boolean[] {
    return this.links.map((l) => l.up);
  }

  get isPeerAlive(): boolean {
    return this.peerAlive;
  }

  /**
   * Queue a TLP (its encoded bytes) for in-order, exactly-once delivery.
   * Returns false when it had to wait for credit (it is still sent later).
   */
  send(payload: Uint8Array): boolean {
    if (this.closed) throw new Error('channel closed');
    if (this.queued === 0 && this.canSendNew()) {
      this.transmitNew(payload);
      return true;
    }
    this.pending.push(payload);
    return false;
  }

  /** Send a discovery or management frame on one link (unsequenced). */
  sendControl(type: FrameType.Discovery | FrameType.Management, payload: Uint8Array, link = this.pickLink()): void {
    this.stats.txControl++;
    this.transmit(link, type, this.replay.next, 0, payload);
  }

  /** Return `n` credits after delivered payloads were consumed (manualRelease only). */
  release(n = 1): void {
    const room = seqDiff(this.expected, this.consumed);
    if (n > room) throw new RangeError(`releasing ${n} credits, only ${room} delivered and unreleased`);
    this.consumed = seqAdd(this.consumed, n);
    if (this.peerStalled) this.sendAck();
    else this.oweAck();
  }

  /** Feed a frame that arrived on `link`. Bad frames are counted and dropped. */
  receive(link: number, frame: Uint8Array): void {
    if (this.closed) return;
    const r = decodeFrame(frame);
    if (!r.ok) {
      this.stats.rxBadFrame[r.error]++;
      return;
    }
    const f = r.value;
    if (f.channel !== this.o.channel) {
      this.stats.rxWrongChannel++;
      return;
    }
    const l = this.links[link];
    if (!l || f.src !== l.binding.peerMac || f.dst !== l.binding.localMac || !sameVlan(f.vlan, l.binding.vlan)) {
      this.stats.rxWrongBinding++;
      return;
    }
    this.stats.rxFrames++;
    l.lastRx = this.clock.now();
    if (!(f.flags & FrameFlags.Replay) && seqDiff(f.seq, l.passed) > 0) l.passed = f.seq;
    if (!l.up) this.setLink(link, true);
    this.takeAck(f.ack, f.type === FrameType.Ack && (f.flags & FrameFlags.ProbeAnswer) !== 0);
    if (seqDiff(f.credits, this.peerLimit) > 0) this.peerLimit = f.credits;
    switch (f.type) {
      case FrameType.Tlp:
        this.receiveTlp(f.seq, f.payload);
        break;
      case FrameType.Nak:
        this.stats.rxNak++;
        this.onNak(f.ack);
        break;
      case FrameType.Discovery:
      case FrameType.Management:
        this.o.onControl?.(f.type, f.payload, link);
        break;
      default:
        break; // ACK and heartbeat carry nothing beyond ack and credits
    }
    if (f.flags & FrameFlags.AckNow && (f.flags & FrameFlags.Replay || seqAdd(f.seq, 1) === this.advertised)) {
      // Holding frames behind a gap, the cumulative ACK would look like loss of what is held; the NAK asks for the gap.
      if (f.flags & FrameFlags.Replay) this.sendAck(this.heldCount === 0 ? FrameFlags.ProbeAnswer : 0);
      else if (seqDiff(this.creditLimit(), this.advertised) > 0) this.sendAck();
      else this.peerStalled = true; // nothing new to grant until the application releases credits
    }
    // Frames held behind a gap: any frame may be the one that shows every link has passed it.
    if (this.heldCount > 0) this.scheduleNak();
    this.flushPending();
  }

  close(): void {
    this.closed = true;
    for (const t of [this.replayTimer, this.ackTimer, this.nakTimer, this.tickTimer]) if (t) this.clock.clearTimer(t);
    this.replayTimer = this.ackTimer = this.nakTimer = this.tickTimer = null;
  }

  // ---- transmit ----

  private canSendNew(): boolean {
    return !this.replay.full && seqDiff(this.replay.next, this.peerLimit) < 0;
  }

  private transmitNew(payload: Uint8Array): void {
    const seq = this.replay.next;
    // This frame uses our last credit or replay slot: ask for an ACK at once rather than stalling for ackDelay.
    const tight = seqDiff(this.peerLimit, seq) === 1 || this.replay.size + 1 === this.replay.capacity;
    const link = this.pickLink();
    const frame = this.transmit(link, FrameType.Tlp, seq, tight ? FrameFlags.AckNow : 0, payload);
    // Keep the copy inside the frame for replays: no second copy of the TLP.
    const at = (this.links[link]!.binding.vlan ? TAGGED_L2_BYTES : UNTAGGED_L2_BYTES) + PCIEOE_HEADER_BYTES;
    this.replay.push(frame.subarray(at, at + payload.length));
    this.stats.txTlp++;
    if (this.timedSeq < 0) {
      this.timedSeq = seq;
      this.timedAt = this.clock.now();
    }
    if (!this.replayTimer) this.armReplay();
  }

  private flushPending(): void {
    if (this.queued === 0) return;
    while (this.queued > 0 && this.canSendNew()) {
      const p = this.pending[this.pendingHead]!;
      this.pending[this.pendingHead++] = EMPTY;
      this.transmitNew(p);
    }
    if (this.pendingHead > 1024 && this.pendingHead * 2 > this.pending.length) {
      this.pending = this.pending.slice(this.pendingHead);
      this.pendingHead = 0;
    }
    if (this.queued === 0) this.o.onDrain?.();
  }

  /** Build and send one frame; every frame carries our current ACK and credit limit. */
  private transmit(link: number, type: FrameType, seq: number, flags: number, payload: Uint8Array): Buffer {
    const l = this.links[link]!;
    const frame = encodeFrame(
      {
        dst: l.binding.peerMac,
        src: l.binding.localMac,
        vlan: l.binding.vlan,
        type,
        flags,
        channel: this.o.channel,
        seq,
        ack: this.expected,
        credits: this.creditLimit(),
      },
      payload,
    );
    this.advertised = this.creditLimit();
    this.peerStalled = false;
    l.lastTx = this.clock.now();
    this.ackOwed = false;
    this.rxSinceAck = 0;
    if (this.ackTimer) {
      this.clock.clearTimer(this.ackTimer);
      this.ackTimer = null;
    }
    this.o.send(link, frame);
    return frame;
  }

  private pickLink(): number {
    const n = this.links.length;
    for (let i = 0; i < n; i++) {
      const k = (this.rr + i) % n;
      if (this.links[k]!.up) {
        this.rr = (k + 1) % n;
        return k;
      }
    }
    // Every link looks dead: keep trying them in turn, one may be back.
    this.rr = (this.rr + 1) % n;
    return this.rr;
  }

  private takeAck(ack: number, probeAnswer: boolean): void {
    // Acks older than our oldest entry come from reordered frames; harmless.
    const freed = this.replay.acknowledge(ack);
    // A timeout's probe is answered: done once the answer covers all that was sent before the probe.
    if (probeAnswer && this.probeEnd >= 0 && this.replay.size > 0) {
      const missing = seqDiff(this.probeEnd, this.replay.oldest);
      if (missing <= 0) this.probeEnd = -1;
      else {
        // Resend the oldest only, and its answer tells again: a lost tail costs a round trip per TLP,
        // a late one (on a slower link, or behind a stalled process) a duplicate per trip, never a window.
        this.replayRange(1);
        return;
      }
    }
    if (freed > 0) {
      // Karn: a backed-off timer stays backed off until a TLP sent after the replay is acknowledged, so a
      // timeout that was only a long queue does not recur at once when the original frames' ACKs arrive.
      if (this.timedSeq >= 0 && seqDiff(ack, this.timedSeq) > 0) {
        this.rttSample(this.clock.now() - this.timedAt);
        this.backoff = 1;
      }
      if (this.replay.size > 0) this.armReplay();
      else {
        this.backoff = 1;
        this.disarmReplay();
        this.probeEnd = -1;
      }
    }
  }

  private onNak(from: number): void {
    if (this.replay.size === 0 || from !== this.replay.oldest) return;
    // Several NAKs for one gap (one per held frame, or duplicated on the wire) cause one replay.
    if (this.lastReplayFrom === from && this.clock.now() - this.lastReplayAt < this.o.replayTimeout / 2) return;
    // The receiver holds what arrived after the gap (within its window), so the gap is all it needs;
    // resending the whole window would put up to rxSlots frames of duplicates in front of the
    // next TLPs. A further gap gets its own NAK once this one is filled; the timer remains the backstop.
    this.replayRange(1);
  }

  /** RFC 6298 smoothing: SRTT gains 1/8 of the error, RTTVAR 1/4. */
  private rttSample(rtt: number): void {
    this.timedSeq = -1;
    if (this.srtt < 0) {
      this.srtt = rtt;
      this.rttvar = rtt / 2;
    } else {
      this.rttvar += (Math.abs(this.srtt - rtt) - this.rttvar) / 4;
      this.srtt += (rtt - this.srtt) / 8;
    }
  }

  /** The replay timeout before backoff: the measured round trip with margin, within the configured bounds. */
  private get rto(): number {
    const measured = this.srtt < 0 ? 0 : this.srtt + 4 * this.rttvar;
    return Math.min(Math.max(this.o.replayTimeout, measured), this.o.maxReplayTimeout ?? this.o.replayTimeout * 10);
  }

  private replayAll(): void {
    this.replayRange(this.replay.size);
  }

  /** Resend the `count` oldest unacknowledged TLPs; the last asks for an ACK at once. */
  private replayRange(count: number): void {
    this.timedSeq = -1; // Karn: an ACK after a replay cannot tell which copy it answers
    const first = this.replay.oldest;
    const n = Math.min(count, this.replay.size);
    for (let i = 0; i < n; i++) {
      const seq = seqAdd(first, i);
      const flags = FrameFlags.Replay | (i === n - 1 ? FrameFlags.AckNow : 0);
      this.transmit(this.pickLink(), FrameType.Tlp, seq, flags, this.replay.get(seq)!);
      this.stats.txReplay++;
    }
    this.lastReplayFrom = first;
    this.lastReplayAt = this.clock.now();
    this.armReplay();
  }

  private armReplay(): void {
    this.disarmReplay();
    this.replayTimer = this.clock.setTimer(this.rto * this.backoff, () => {
      this.replayTimer = this.afterPendingInput(() => {
        this.replayTimer = null;
        if (this.replay.size === 0) return;
        this.stats.replayTimeouts++;
        this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF);
        this.replayRange(1);
        // A second timeout before the first probe's answer keeps the first mark: that answer may still come.
        if (this.probeEnd < 0) this.probeEnd = this.replay.next;
      });
    });
  }

  private disarmReplay(): void {
    if (this.replayTimer) this.clock.clearTimer(this.replayTimer);
    this.replayTimer = null;
  }

  // ---- receive ----

  private creditLimit(): number {
    return seqAdd(this.consumed, this.o.rxSlots);
  }

  private receiveTlp(seq: number, payload: Uint8Array): void {
    const d = seqDiff(seq, this.expected);
    if (d < 0) {
      // A replay of something delivered: our ACK was lost or is late. Say so soon.
      this.stats.rxDuplicate++;
      this.oweAck();
      return;
    }
    if (seqDiff(seq, this.creditLimit()) >= 0) {
      this.stats.rxOutsideWindow++;
      return;
    }
    if (d > 0) {
      const slot = seq & (this.o.rxSlots - 1);
      if (this.held[slot]) {
        this.stats.rxDuplicate++;
      } else {
        this.held[slot] = payload;
        this.heldCount++;
        this.stats.rxOutOfOrder++;
      }
      return;
    }
    this.deliver(payload);
    while (this.heldCount > 0) {
      const slot = this.expected & (this.o.rxSlots - 1);
      const next = this.held[slot];
      if (!next) break;
      this.held[slot] = undefined;
      this.heldCount--;
      this.deliver(next);
    }
    this.rxSinceAck++;
    // Acknowledge at once when the peer has used a quarter of the window since our last ACK.
    if (this.rxSinceAck * 4 >= this.o.rxSlots) this.sendAck();
    else this.oweAck();
  }

  private deliver(payload: Uint8Array): void {
    this.expected = seqAdd(this.expected, 1);
    if (!this.o.manualRelease) this.consumed = this.expected;
    this.stats.rxDelivered++;
    this.o.deliver(payload);
  }

  private oweAck(): void {
    this.ackOwed = true;
    if (this.ackTimer || this.closed) return;
    this.ackTimer = this.clock.setTimer(this.o.ackDelay, () => {
      this.ackTimer = null;
      if (this.ackOwed) this.sendAck();
    });
  }

  private sendAck(flags = 0): void {
    this.stats.txAck++;
    this.transmit(this.pickLink(), FrameType.Ack, this.replay.next, flags, EMPTY);
  }

  private scheduleNak(): void {
    if (this.closed) return;
    if (this.nakSentFor === this.expected && this.clock.now() - this.nakSentAt < this.o.replayTimeout) return;
    if (this.links.every((l) => !l.up || seqDiff(l.passed, this.expected) > 0)) {
      this.sendNak(); // every live link has passed the gap: it is lost, not late
      return;
    }
    this.nakTimer ??= this.clock.setTimer(this.o.nakDelay, () => {
      this.nakTimer = null;
      if (this.heldCount > 0) this.sendNak(); // else the gap filled while we waited
    });
  }

  private sendNak(): void {
    if (this.nakTimer) this.clock.clearTimer(this.nakTimer);
    this.nakTimer = null;
    this.nakSentFor = this.expected;
    this.nakSentAt = this.clock.now();
    this.stats.txNak++;
    this.transmit(this.pickLink(), FrameType.Nak, this.replay.next, 0, EMPTY);
  }

  // ---- liveness ----

  private armTick(): void {
    this.tickTimer = this.clock.setTimer(this.o.heartbeatInterval / 2, () => {
      this.tickTimer = this.afterPendingInput(() => this.tick());
    });
  }

  /**
   * Run `fn` once the frames that have already arrived are processed. Timers
   * fire before the event loop reads its sockets, so when this process was
   * not scheduled for a while (a busy CPU), a timeout would see silence that
   * is only unread input: a "dead" link whose heartbeats sit in the socket, a
   * "lost" window whose ACKs do. A zero timer runs after the I/O phase.
   */
  private afterPendingInput(fn: () => void): TimerHandle {
    return this.clock.setTimer(0, fn);
  }

  private tick(): void {
    const now = this.clock.now();
    let lost = false;
    this.links.forEach((l, i) => {
      if (l.up && now - l.lastRx > this.o.deadInterval) {
        this.setLink(i, false);
        lost = true;
      }
    });
    // Frames in flight on a link that died are gone: resend on the survivors now rather than at timeout.
    if (lost && this.replay.size > 0 && this.links.some((l) => l.up)) this.replayAll();
    this.links.forEach((l, i) => {
      if (now - l.lastTx >= this.o.heartbeatInterval) {
        this.stats.txHeartbeat++;
        this.transmit(i, FrameType.Heartbeat, this.replay.next, 0, EMPTY);
      }
    });
    if (!this.closed) this.armTick();
  }

  private setLink(link: number, up: boolean): void {
    this.links[link]!.up = up;
    if (up) this.stats.linkUp++;
    else this.stats.linkDown++;
    this.o.onLinkState?.(link, up);
    const alive = this.links.some((l) => l.up);
    if (alive !== this.peerAlive) {
      this.peerAlive = alive;
      this.o.onPeerState?.(alive);
    }
  }
}

function sameVlan(a: VlanTag | null, b: VlanTag | null): boolean {
  return a === null || b === null ? a === b : a.vid === b.vid;
}
