/**
 * The PCIeOE reliable link layer for one channel (one HI↔DI association),
 * spread over one or more Ethernet links. It plays the PCIe data link layer,
 * composed of three parts, each with its own file:
 *
 * - Sender (sender.ts): sequence numbers, the replay buffer, the adaptive
 *   replay timer and its probe, NAK-driven resends, the peer's credit limit.
 * - Receiver (receiver.ts): in-order exactly-once delivery, held frames
 *   behind a gap, ACK/NAK, the credits we grant.
 * - Liveness (liveness.ts): heartbeats, dead links, which link a frame takes.
 *
 * The channel decodes and checks each frame (channel id, MACs, VLAN, CRC),
 * hands its parts to the three, and encodes every frame they send: each
 * carries the receiver's cumulative ACK and credit limit.
 *
 * Transport-agnostic: frames leave through `send(link, frame)` and arrive
 * through `receive(link, frame)`; time comes from a Clock. `send` must not
 * modify a frame it is given (it stays in the replay buffer); delivered
 * payloads are views into the received frame.
 */

import type { Clock } from '../clock.ts';
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
import { Liveness, type LivenessStats } from './liveness.ts';
import { Receiver, type ReceiverStats } from './receiver.ts';
import { Sender, type SenderStats } from './sender.ts';
import { MAX_WINDOW } from './seq.ts';

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

/** The parts' counters, and the channel's own for frames it turns away. */
export interface ChannelStats extends SenderStats, ReceiverStats, LivenessStats {
  txControl: number;
  rxFrames: number;
  rxWrongChannel: number;
  rxWrongBinding: number;
  rxBadFrame: Record<FrameDecodeError, number>;
}

const EMPTY = new Uint8Array(0);

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

  private readonly o: ChannelOptions;
  private readonly clock: Clock;
  private readonly bindings: readonly LinkBinding[];
  private readonly sender: Sender;
  private readonly receiver: Receiver;
  private readonly liveness: Liveness;
  private closed = false;

  constructor(options: ChannelOptions) {
    const heartbeatInterval = options.heartbeatInterval ?? 50;
    const rxSlots = options.rxSlots ?? 1024;
    const replayTimeout = options.replayTimeout ?? 5;
    if (!isPow2(rxSlots) || rxSlots > MAX_WINDOW) throw new RangeError('rxSlots must be a power of two below 2^15');
    if (options.links.length === 0) throw new RangeError('a channel needs at least one link');
    this.o = options;
    this.clock = options.clock;
    this.bindings = options.links;
    const { clock, stats } = this;
    this.sender = new Sender({
      clock,
      stats,
      replayCapacity: options.replayCapacity ?? 2048,
      replayTimeout,
      maxReplayTimeout: options.maxReplayTimeout ?? replayTimeout * 10,
      transmit: (seq, flags, payload) => this.transmitTlp(seq, flags, payload),
      onDrain: options.onDrain,
    });
    this.receiver = new Receiver({
      clock,
      stats,
      rxSlots,
      ackDelay: options.ackDelay ?? 1,
      nakDelay: options.nakDelay ?? heartbeatInterval,
      replayTimeout,
      manualRelease: options.manualRelease ?? false,
      deliver: options.deliver,
      transmit: (type, flags) => this.transmit(this.liveness.pickLink(), type, this.sender.next, flags, EMPTY),
      everyLiveLinkPassed: (seq) => this.liveness.everyLiveLinkPassed(seq),
    });
    this.liveness = new Liveness({
      clock,
      stats,
      links: options.links.length,
      heartbeatInterval,
      deadInterval: options.deadInterval ?? heartbeatInterval * 3.5,
      sendHeartbeat: (link) => this.transmit(link, FrameType.Heartbeat, this.sender.next, 0, EMPTY),
      onLinksLost: () => {
        if (this.sender.unacknowledged > 0) this.sender.replayAll();
      },
      onLinkState: options.onLinkState,
      onPeerState: options.onPeerState,
    });
    // Announce our credits at once: the peer may not send until it hears them.
    for (let i = 0; i < this.bindings.length; i++) this.transmit(i, FrameType.Heartbeat, this.sender.next, 0, EMPTY);
    this.liveness.start();
  }

  /** TLPs waiting for credit or replay room. */
  get queued(): number {
    return this.sender.queued;
  }

  /** TLPs sent and not yet acknowledged. */
  get unacknowledged(): number {
    return this.sender.unacknowledged;
  }

  get linkStates(): readonly boolean[] {
    return this.liveness.states;
  }

  get isPeerAlive(): boolean {
    return this.liveness.isPeerAlive;
  }

  /**
   * Queue a TLP (its encoded bytes) for in-order, exactly-once delivery.
   * Returns false when it had to wait for credit (it is still sent later).
   */
  send(payload: Uint8Array): boolean {
    if (this.closed) throw new Error('channel closed');
    return this.sender.send(payload);
  }

  /** Send a discovery or management frame on one link (unsequenced). */
  sendControl(type: FrameType.Discovery | FrameType.Management, payload: Uint8Array, link = this.liveness.pickLink()): void {
    this.stats.txControl++;
    this.transmit(link, type, this.sender.next, 0, payload);
  }

  /** Return `n` credits after delivered payloads were consumed (manualRelease only). */
  release(n = 1): void {
    this.receiver.release(n);
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
    const b = this.bindings[link];
    if (!b || f.src !== b.peerMac || f.dst !== b.localMac || !sameVlan(f.vlan, b.vlan)) {
      this.stats.rxWrongBinding++;
      return;
    }
    this.stats.rxFrames++;
    const replay = (f.flags & FrameFlags.Replay) !== 0;
    this.liveness.heard(link, f.seq, !replay);
    this.sender.takeAck(f.ack, f.type === FrameType.Ack && (f.flags & FrameFlags.ProbeAnswer) !== 0);
    this.sender.takeCredits(f.credits);
    switch (f.type) {
      case FrameType.Tlp:
        this.receiver.tlp(f.seq, f.payload);
        break;
      case FrameType.Nak:
        this.sender.takeNak(f.ack);
        break;
      case FrameType.Discovery:
      case FrameType.Management:
        this.o.onControl?.(f.type, f.payload, link);
        break;
      default:
        break; // ACK and heartbeat carry nothing beyond ack and credits
    }
    if (f.flags & FrameFlags.AckNow) this.receiver.ackNow(f.seq, replay);
    this.receiver.checkGap();
    this.sender.flushPending();
  }

  close(): void {
    this.closed = true;
    this.sender.close();
    this.receiver.close();
    this.liveness.close();
  }

  /** Send a TLP frame on the next link; returns the payload's bytes inside the frame (the replay buffer keeps them). */
  private transmitTlp(seq: number, flags: number, payload: Uint8Array): Uint8Array {
    const link = this.liveness.pickLink();
    const frame = this.transmit(link, FrameType.Tlp, seq, flags, payload);
    const at = (this.bindings[link]!.vlan ? TAGGED_L2_BYTES : UNTAGGED_L2_BYTES) + PCIEOE_HEADER_BYTES;
    return frame.subarray(at, at + payload.length);
  }

  /** Build and send one frame; every frame carries our current ACK and credit limit. */
  private transmit(link: number, type: FrameType, seq: number, flags: number, payload: Uint8Array): Buffer {
    const b = this.bindings[link]!;
    const frame = encodeFrame(
      {
        dst: b.peerMac,
        src: b.localMac,
        vlan: b.vlan,
        type,
        flags,
        channel: this.o.channel,
        seq,
        ack: this.receiver.ack,
        credits: this.receiver.credits,
      },
      payload,
    );
    this.receiver.sent();
    this.liveness.sent(link);
    this.o.send(link, frame);
    return frame;
  }
}

function sameVlan(a: VlanTag | null, b: VlanTag | null): boolean {
  return a === null || b === null ? a === b : a.vid === b.vid;
}
