/**
 * The transmit half of a channel: sequence numbers, the replay buffer, the
 * peer's credit limit, the replay timer and its probe.
 *
 * Every TLP gets a 16-bit sequence number and stays in the replay buffer
 * until the peer's cumulative ACK covers it. The replay timer follows the
 * measured round trip (as TCP's RTO, RFC 6298, with Karn's rule), never below
 * `replayTimeout`: under load the round trip includes whole queues of 4 KiB
 * frames in the switch and scheduling delays of busy CPUs, and a fixed short
 * timer would replay the window into those queues again and again
 * (congestion collapse). Even so a timeout is usually a late ACK, not a loss
 * (a process that was not scheduled), so it resends only the oldest TLP,
 * flagged AckNow, as a probe (after RFC 8985's tail loss probe). The peer
 * answers it at once with an ACK flagged ProbeAnswer, which tells what is
 * missing: while it stops short of what was sent before the probe, the oldest
 * is resent and answered again; once it covers everything, the timeout has
 * cost a few duplicates, not a window. A NAK resends the gap it names.
 *
 * Flow control: the sender never sends at or past the peer's credit limit (a
 * sequence number); what has to wait is queued and sent as credit comes.
 */

import { type Clock, type TimerHandle, afterPendingInput } from '../clock.ts';
import { FrameFlags } from '../wire/frame.ts';
import { ReplayBuffer } from './replay-buffer.ts';
import { seqAdd, seqDiff } from './seq.ts';

export interface SenderStats {
  txTlp: number;
  txReplay: number;
  rxNak: number;
  replayTimeouts: number;
  /** ACKs for sequence numbers never sent: ignored. */
  rxAckBeyondSent: number;
  /** NAKs for sequence numbers never sent: ignored. */
  rxNakBeyondSent: number;
}

export interface SenderOptions {
  clock: Clock;
  stats: SenderStats;
  /** Replay buffer entries; a power of two. */
  replayCapacity: number;
  /** Bytes of the replay buffer's arena for TLPs encoded by reserve(); 0: none. */
  replayArenaBytes?: number;
  /** Least replay timeout, ms. */
  replayTimeout: number;
  /** Upper bound of the adaptive replay timeout, ms. */
  maxReplayTimeout: number;
  /**
   * Send a TLP frame (sequence number, FrameFlags, payload) on the next link.
   * The replay buffer keeps the payload itself (callers do not change a TLP
   * once sent, as for one queued for credit), so a retransmission encodes it
   * again and the frame sent need not outlive its transmission.
   */
  transmit: (seq: number, flags: number, payload: Uint8Array) => void;
  /** Called when queued TLPs have all been sent after a credit stall. */
  onDrain?: () => void;
}

const EMPTY = new Uint8Array(0);
/** Replay timeout grows up to this factor while nothing is acknowledged. */
const MAX_BACKOFF = 8;

export class Sender {
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
  /** The oldest TLP when a probe answer last made us resend it; a second answer that finds it unchanged waits for the timer. */
  private probeResentAt = -1;
  /** Round-trip estimate (ms) for the replay timer; -1 until the first sample. */
  private srtt = -1;
  private rttvar = 0;
  /** The one TLP being timed: its sequence number (-1: none) and send time. Replays cancel it (Karn). */
  private timedSeq = -1;
  private timedAt = 0;

  constructor(private readonly o: SenderOptions) {
    this.replay = new ReplayBuffer(o.replayCapacity, o.replayArenaBytes);
  }

  /** Memory to encode the next TLP in, to be given to send() before anything else is reserved (ReplayArena). */
  reserve(size: number): Uint8Array {
    return this.replay.reserve(size);
  }

  /** The sequence number the next new TLP gets; frames that are not TLPs carry it. */
  get next(): number {
    return this.replay.next;
  }

  /** TLPs waiting for credit or replay room. */
  get queued(): number {
    return this.pending.length - this.pendingHead;
  }

  /** TLPs sent and not yet acknowledged. */
  get unacknowledged(): number {
    return this.replay.size;
  }

  /** Send a TLP now if credit allows, else queue it. Returns whether it went out now. */
  send(payload: Uint8Array): boolean {
    if (this.queued === 0 && this.canSendNew()) {
      this.transmitNew(payload);
      return true;
    }
    this.pending.push(payload);
    return false;
  }

  /**
   * The peer's cumulative ACK (the next sequence number it expects); `probeAnswer` when it answers a probe.
   * False when it acknowledges what was never sent (ignored: a confused or forged peer).
   */
  takeAck(ack: number, probeAnswer: boolean): boolean {
    if (seqDiff(ack, this.replay.next) > 0) {
      this.o.stats.rxAckBeyondSent++;
      return false;
    }
    // Acks older than our oldest entry come from reordered frames; harmless.
    const freed = this.replay.acknowledge(ack);
    // A timeout's probe is answered: done once the answer covers all that was sent before the probe.
    if (probeAnswer && this.probeEnd >= 0 && this.replay.size > 0) {
      const missing = seqDiff(this.probeEnd, this.replay.oldest);
      if (missing <= 0) this.probeEnd = this.probeResentAt = -1;
      else {
        // Resend the oldest only, and its answer tells again: a lost tail costs a round trip per TLP,
        // a late one (on a slower link, or behind a stalled process) a duplicate per trip, never a window.
        // Only while answers make progress: one that finds the oldest where the last resend left it
        // (that copy lost, or a peer that answers without taking it) leaves it to the replay timer,
        // so no pair of ends can resend to each other at the speed of the round trip for ever.
        if (this.replay.oldest !== this.probeResentAt) {
          this.probeResentAt = this.replay.oldest;
          this.replayRange(1);
        }
        return true;
      }
    }
    if (freed > 0) {
      // Karn: a backed-off timer stays backed off until a TLP sent after the replay is acknowledged, so a
      // timeout that was only a long queue does not recur at once when the original frames' ACKs arrive.
      if (this.timedSeq >= 0 && seqDiff(ack, this.timedSeq) > 0) {
        this.rttSample(this.o.clock.now() - this.timedAt);
        this.backoff = 1;
      }
      if (this.replay.size > 0) this.armReplay();
      else {
        this.backoff = 1;
        this.disarmReplay();
        this.probeEnd = this.probeResentAt = -1;
      }
    }
    return true;
  }

  /** The peer's credit limit as a frame carried it (limits only grow). */
  takeCredits(limit: number): void {
    if (seqDiff(limit, this.peerLimit) > 0) this.peerLimit = limit;
  }

  /** The peer NAKed: it has everything before `from` and holds what came after the gap. False: `from` was never sent. */
  takeNak(from: number): boolean {
    this.o.stats.rxNak++;
    if (seqDiff(from, this.replay.next) > 0) {
      this.o.stats.rxNakBeyondSent++;
      return false;
    }
    if (this.replay.size === 0 || from !== this.replay.oldest) return true;
    // Several NAKs for one gap (one per held frame, or duplicated on the wire) cause one replay.
    if (this.lastReplayFrom === from && this.o.clock.now() - this.lastReplayAt < this.o.replayTimeout / 2) return true;
    // The receiver holds what arrived after the gap (within its window), so the gap is all it needs;
    // resending the whole window would put up to rxSlots frames of duplicates in front of the
    // next TLPs. A further gap gets its own NAK once this one is filled; the timer remains the backstop.
    this.replayRange(1);
    return true;
  }

  /** Resend everything unacknowledged (a link died with frames in flight). */
  replayAll(): void {
    this.replayRange(this.replay.size);
  }

  /** Send what waited for credit, as far as credit now allows. */
  flushPending(): void {
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

  close(): void {
    this.disarmReplay();
  }

  private canSendNew(): boolean {
    return !this.replay.full && seqDiff(this.replay.next, this.peerLimit) < 0;
  }

  private transmitNew(payload: Uint8Array): void {
    const seq = this.replay.next;
    // This frame uses our last credit or replay slot: ask for an ACK at once rather than stalling for ackDelay.
    const tight = seqDiff(this.peerLimit, seq) === 1 || this.replay.size + 1 === this.replay.capacity;
    this.o.transmit(seq, tight ? FrameFlags.AckNow : 0, payload);
    this.replay.push(payload);
    this.o.stats.txTlp++;
    if (this.timedSeq < 0) {
      this.timedSeq = seq;
      this.timedAt = this.o.clock.now();
    }
    if (!this.replayTimer) this.armReplay();
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
    return Math.min(Math.max(this.o.replayTimeout, measured), this.o.maxReplayTimeout);
  }

  /** Resend the `count` oldest unacknowledged TLPs; the last asks for an ACK at once. */
  private replayRange(count: number): void {
    this.timedSeq = -1; // Karn: an ACK after a replay cannot tell which copy it answers
    const first = this.replay.oldest;
    const n = Math.min(count, this.replay.size);
    for (let i = 0; i < n; i++) {
      const seq = seqAdd(first, i);
      const flags = FrameFlags.Replay | (i === n - 1 ? FrameFlags.AckNow : 0);
      this.o.transmit(seq, flags, this.replay.get(seq)!);
      this.o.stats.txReplay++;
    }
    this.lastReplayFrom = first;
    this.lastReplayAt = this.o.clock.now();
    this.armReplay();
  }

  private armReplay(): void {
    this.disarmReplay();
    this.replayTimer = this.o.clock.setTimer(this.rto * this.backoff, () => {
      this.replayTimer = afterPendingInput(this.o.clock, () => {
        this.replayTimer = null;
        if (this.replay.size === 0) return;
        this.o.stats.replayTimeouts++;
        this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF);
        this.probeResentAt = -1;
        this.replayRange(1);
        // A second timeout before the first probe's answer keeps the first mark: that answer may still come.
        if (this.probeEnd < 0) this.probeEnd = this.replay.next;
      });
    });
  }

  private disarmReplay(): void {
    if (this.replayTimer) this.o.clock.clearTimer(this.replayTimer);
    this.replayTimer = null;
  }
}
