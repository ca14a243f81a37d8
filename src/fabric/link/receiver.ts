/**
 * The receive half of a channel: in-order, exactly-once delivery, the
 * cumulative ACK, NAKs for gaps, and the credits we grant.
 *
 * - Delivery is strictly in sequence order. Frames ahead of a gap are held
 *   (within the credit window, so holding them never needs memory beyond what
 *   was promised) and a NAK asks for the gap; this matters because frames of
 *   one channel take different links and so arrive out of order even when
 *   nothing is lost. Each link delivers in order, and every first
 *   transmission carries a sequence number at or above all sent before it (a
 *   TLP its own, other frames the next one), so once every live link has
 *   brought a frame numbered past the gap, the gap was lost: it is NAKed at
 *   once. Until then the frame may still be on a slower link, and the NAK
 *   waits up to `nakDelay` (a dead link that has not yet been noticed, or a
 *   switch that reorders).
 * - ACK and credits ride on every frame the channel sends; a standalone ACK
 *   goes out only when nothing was sent back within `ackDelay`, after every
 *   quarter window of TLPs, or at once when the peer is stalled on us: its
 *   AckNow frame used the last credit we advertised, or ended a replay. (A
 *   sender flags AckNow on the frame that uses its last known credit; under
 *   sustained load that is the end of every burst, and acknowledging each
 *   would shrink the bursts to a few frames and make ACKs a large share of
 *   the traffic.)
 * - Credits: the limit is a sequence number (one credit = one TLP, one
 *   receive slot), `rxSlots` beyond what the application has consumed.
 */

import type { Clock, TimerHandle } from '../clock.ts';
import { FrameFlags, FrameType } from '../wire/frame.ts';
import { seqAdd, seqDiff } from './seq.ts';

export interface ReceiverStats {
  txAck: number;
  txNak: number;
  rxDelivered: number;
  rxDuplicate: number;
  rxOutOfOrder: number;
  rxOutsideWindow: number;
  /** Probes not answered at once: the peer probed faster than maxProbeAnswersPerSecond. */
  probeAnswersWithheld: number;
}

export interface ReceiverOptions {
  clock: Clock;
  stats: ReceiverStats;
  /** Receive slots = credit window in TLPs; a power of two. */
  rxSlots: number;
  ackDelay: number;
  nakDelay: number;
  /** A NAK for the same gap is not repeated within this, ms. */
  replayTimeout: number;
  /** The application returns credits itself with release(). */
  manualRelease: boolean;
  /** In order; `transient`: as given to tlp(), a view valid only during this call. */
  deliver: (payload: Uint8Array, transient: boolean) => void;
  /** Send a standalone ACK or NAK; like every frame, it carries `ack` and `credits`. */
  transmit: (type: FrameType.Ack | FrameType.Nak, flags: number) => void;
  /** Whether every live link has brought a first transmission numbered past `seq`. */
  everyLiveLinkPassed: (seq: number) => boolean;
}

/**
 * Probe answers: 64 at once, 4 per ms after that. A lost tail is repaired one
 * TLP per probe round trip, and a round trip here is rarely under 0.25 ms, so
 * honest probing stays within it.
 */
const PROBE_ANSWER_BURST = 64;
const PROBE_ANSWERS_PER_MS = 4;

/** The smallest buffer a held frame is copied into: a 4 KiB TLP with its headers. */
const HELD_BYTES = 4096 + 64;

/** A token bucket on a clock's milliseconds. */
class TokenBucket {
  private tokens: number;
  private at = -Infinity;

  constructor(private readonly burst: number, private readonly perMs: number) {
    this.tokens = burst;
  }

  take(now: number): boolean {
    this.tokens = Math.min(this.burst, this.tokens + (now - this.at) * this.perMs);
    this.at = now;
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }
}

export class Receiver {
  /** Next sequence number to deliver; also the cumulative ACK we send. */
  private expected = 0;
  /** Sequence number up to which the application has returned credits. */
  private consumed = 0;
  private readonly held: (Uint8Array | undefined)[];
  /** Per slot, the buffer of ours a held transient payload was copied into (then it is delivered as transient too). */
  private readonly heldMem: (Uint8Array | undefined)[];
  /**
   * Those buffers, free again once their frame was delivered: frames are held at the fabric's rate
   * (a third of a 64 KiB transfer's over two links), and a fresh copy each made external memory,
   * and with it V8's full collections, grow as fast.
   */
  private readonly spare: Uint8Array[] = [];
  private heldCount = 0;
  private ackOwed = false;
  private rxSinceAck = 0;
  /** The ACK carried by the last frame we sent. */
  private acked = 0;
  /** When the ACK now owed first became owed (clock ms). */
  private owedAt = 0;
  /** The credit limit carried by the last frame we sent: what the peer knows it may use. */
  private advertised = 0;
  /** The peer told us (AckNow) it is stalled at `advertised`; with manualRelease, the next release() answers at once. */
  private peerStalled = false;
  private ackTimer: TimerHandle | null = null;
  private nakTimer: TimerHandle | null = null;
  private nakSentFor = -1;
  private nakSentAt = -Infinity;
  private closed = false;
  private readonly probeTokens = new TokenBucket(PROBE_ANSWER_BURST, PROBE_ANSWERS_PER_MS);

  constructor(private readonly o: ReceiverOptions) {
    this.held = new Array(o.rxSlots);
    this.heldMem = new Array(o.rxSlots);
  }

  /** The cumulative ACK: the next sequence number we expect. */
  get ack(): number {
    return this.expected;
  }

  /** The credit limit: the peer may send sequence numbers before it. */
  get credits(): number {
    return seqAdd(this.consumed, this.o.rxSlots);
  }

  /** A frame left carrying `ack` and `credits`: nothing is owed, and the peer knows this limit. */
  sent(): void {
    this.acked = this.expected;
    this.advertised = this.credits;
    this.peerStalled = false;
    this.ackOwed = false;
    this.rxSinceAck = 0;
    if (this.ackTimer) {
      this.o.clock.clearTimer(this.ackTimer);
      this.ackTimer = null;
    }
  }

  /** Return `n` credits after delivered payloads were consumed (manualRelease only). */
  release(n: number): void {
    const room = seqDiff(this.expected, this.consumed);
    if (n > room) throw new RangeError(`releasing ${n} credits, only ${room} delivered and unreleased`);
    this.consumed = seqAdd(this.consumed, n);
    if (this.peerStalled) this.sendAck();
    else this.oweAck();
  }

  /**
   * A TLP frame arrived. False when it lies beyond the credit we granted (a confused or forged peer).
   * `transient`: the payload is valid only during this call (a ring slot); one held behind a gap is
   * copied into a buffer of ours, and delivered as transient in its turn.
   */
  tlp(seq: number, payload: Uint8Array, transient = false): boolean {
    const d = seqDiff(seq, this.expected);
    if (d < 0) {
      // A replay of something delivered: our ACK was lost or is late. Say so soon.
      this.o.stats.rxDuplicate++;
      this.oweAck();
      return true;
    }
    if (seqDiff(seq, this.credits) >= 0) {
      this.o.stats.rxOutsideWindow++;
      return false;
    }
    if (d > 0) {
      const slot = seq & (this.o.rxSlots - 1);
      if (this.held[slot]) {
        this.o.stats.rxDuplicate++;
      } else {
        if (transient) {
          const mem = this.spareFor(payload.length);
          mem.set(payload);
          this.heldMem[slot] = mem;
          this.held[slot] = mem.subarray(0, payload.length);
        } else this.held[slot] = payload;
        this.heldCount++;
        this.o.stats.rxOutOfOrder++;
      }
      return true;
    }
    this.deliver(payload, transient);
    while (this.heldCount > 0) {
      const slot = this.expected & (this.o.rxSlots - 1);
      const next = this.held[slot];
      if (!next) break;
      const mem = this.heldMem[slot];
      this.held[slot] = this.heldMem[slot] = undefined;
      this.heldCount--;
      this.deliver(next, mem !== undefined);
      if (mem) this.spare.push(mem);
    }
    // The application's answer, sent while it handled the TLP (a CplD for an MRd, a device's
    // DMA for a doorbell), left carrying the new ACK already: then nothing is owed, and a
    // standalone ACK would only cost the peer and the switch a wake-up.
    if (this.acked === this.expected) return true;
    this.rxSinceAck++;
    // Acknowledge at once when the peer has used a quarter of the window since our last ACK.
    if (this.rxSinceAck * 4 >= this.o.rxSlots) this.sendAck();
    else this.oweAck();
    return true;
  }

  /** The peer flagged frame `seq` AckNow: it ended a replay (`replay`) or may have used our last credit. */
  ackNow(seq: number, replay: boolean): void {
    if (!replay && seqAdd(seq, 1) !== this.advertised) return;
    // Holding frames behind a gap, the cumulative ACK would look like loss of what is held; the NAK asks for the gap.
    if (replay) {
      // Each probe costs a frame back: at a bounded rate, so a peer probing in a loop cannot make us
      // answer in one. A withheld answer is owed (the ACK timer sends a plain one); the prober's timer retries.
      if (!this.probeTokens.take(this.o.clock.now())) {
        this.o.stats.probeAnswersWithheld++;
        this.oweAck();
        return;
      }
      this.sendAck(this.heldCount === 0 ? FrameFlags.ProbeAnswer : 0);
    }
    else if (seqDiff(this.credits, this.advertised) > 0) this.sendAck();
    else this.peerStalled = true; // nothing new to grant until the application releases credits
  }

  /** After each received frame: frames held behind a gap, and any frame may be the one that shows every link has passed it. */
  checkGap(): void {
    if (this.heldCount > 0) this.scheduleNak();
  }

  close(): void {
    this.closed = true;
    for (const t of [this.ackTimer, this.nakTimer]) if (t) this.o.clock.clearTimer(t);
    this.ackTimer = this.nakTimer = null;
  }

  /** A free buffer of at least `n` bytes (a 4 KiB TLP's frame fits the smallest made). */
  private spareFor(n: number): Uint8Array {
    const b = this.spare.pop();
    return b && b.length >= n ? b : new Uint8Array(Math.max(n, HELD_BYTES));
  }

  private deliver(payload: Uint8Array, transient: boolean): void {
    this.expected = seqAdd(this.expected, 1);
    if (!this.o.manualRelease) this.consumed = this.expected;
    this.o.stats.rxDelivered++;
    this.o.deliver(payload, transient);
  }

  private oweAck(): void {
    if (!this.ackOwed) this.owedAt = this.o.clock.now();
    this.ackOwed = true;
    if (this.ackTimer || this.closed) return;
    this.ackTimer = this.o.clock.setTimer(this.o.ackDelay, this.ackTimeout);
  }

  /**
   * The ACK delay ran out, or seems to: Node's timers count whole ms of a time read when the
   * event loop last woke, so a 1 ms timer can fire µs after it was set. Early, it waits for the
   * rest (at least the clock's resolution: a shorter timer would spin), so an ACK is not sent
   * while the answer that would carry it is still on its way.
   */
  private readonly ackTimeout = (): void => {
    this.ackTimer = null;
    if (!this.ackOwed || this.closed) return;
    const left = this.owedAt + this.o.ackDelay - this.o.clock.now();
    if (left > 0) this.ackTimer = this.o.clock.setTimer(Math.max(left, this.o.clock.resolution), this.ackTimeout);
    else this.sendAck();
  };

  private sendAck(flags = 0): void {
    this.o.stats.txAck++;
    this.o.transmit(FrameType.Ack, flags);
  }

  private scheduleNak(): void {
    if (this.closed) return;
    if (this.nakSentFor === this.expected && this.o.clock.now() - this.nakSentAt < this.o.replayTimeout) return;
    if (this.o.everyLiveLinkPassed(this.expected)) {
      this.sendNak(); // every live link has passed the gap: it is lost, not late
      return;
    }
    this.nakTimer ??= this.o.clock.setTimer(this.o.nakDelay, () => {
      this.nakTimer = null;
      if (this.heldCount > 0) this.sendNak(); // else the gap filled while we waited
    });
  }

  private sendNak(): void {
    if (this.nakTimer) this.o.clock.clearTimer(this.nakTimer);
    this.nakTimer = null;
    this.nakSentFor = this.expected;
    this.nakSentAt = this.o.clock.now();
    this.o.stats.txNak++;
    this.o.transmit(FrameType.Nak, 0);
  }
}
