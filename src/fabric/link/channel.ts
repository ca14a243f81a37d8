// src/fabric/link — the PCIeOE data-link layer: one channel over one or more Ethernet links
// (this file: sender, receiver, liveness) and the node that joins channels to ports. It may
// import src/common, src/fabric/wire and src/fabric's own files (clock).

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
 * The channel checks each frame where it lies (channel id, MACs, VLAN, CRC;
 * its fields are read in place, nothing is decoded into objects), hands its
 * parts to the three, and encodes every frame they send: each carries the
 * receiver's cumulative ACK and credit limit.
 *
 * Epochs: each channel end draws a random epoch when it starts and every
 * frame carries it, with the peer's epoch as last heard (0 before). Sequence
 * numbers, ACKs and credits mean something only between those two
 * incarnations, so:
 *   - a frame naming an earlier epoch of ours was meant for an incarnation
 *     that no longer exists (we were cut off and started over): dropped;
 *   - a frame with a peer epoch other than the one we know means the peer
 *     restarted (a killed DI started again): our sender and receiver start
 *     over (what was unacknowledged or queued is dropped, never delivered to
 *     the new peer) and onPeerReset tells the application, which fails its
 *     requests in flight and programs the peer again; traffic then resumes
 *     from sequence number 0. Frames of an epoch we replaced are dropped.
 * The first epoch heard is simply adopted: both ends are new to each other.
 *
 * Bounded misbehaviour: an ACK or NAK beyond what was sent and a TLP outside
 * the window are ignored and counted; a peer that sends more than
 * `maxBadFramesPerSecond` such frames (or undecodable ones from its own MAC)
 * is cut off: the channel starts over under a new epoch of ours (the peer
 * sees it and starts over too) and ignores the peer for a second, while the
 * node's other channels run on.
 *
 * Transport-agnostic: frames leave through `send(link, frame)` (or, encoded
 * by the transport, `sendFrame`) and arrive through `receive(link, frame)`;
 * time comes from a Clock. The replay buffer keeps each TLP as the
 * application gave it, not the frame that carried it: a replay encodes it
 * again, and frames need not outlive their transmission. An application that
 * encodes its TLPs where reserve() says has them in memory reused in ACK
 * order (replay-arena.ts), not fresh memory per TLP. Delivered payloads are
 * views into the received frame.
 *
 * Receive in place: a frame given `transient` (a view of a memif ring slot,
 * valid only during receive()) is decoded and its CRC checked where it lies.
 * What outlives the call is copied once: a TLP held behind a gap, a control
 * frame's payload, and, unless `deliverTransient` says the application copies
 * what it keeps, each delivered payload.
 */

import type { Clock } from '../clock.ts';
import {
  type FrameDecodeError,
  FrameFlags,
  FrameType,
  type OutgoingFrame,
  type VlanTag,
  checkFrame,
  encodeFrame,
  frameAck,
  frameChannel,
  frameCredits,
  frameDst,
  frameEpoch,
  frameError,
  frameFlags,
  framePayload,
  framePeerEpoch,
  frameSeq,
  frameSrc,
  frameType,
  frameVid,
} from '../wire/frame.ts';
import { randomInt } from 'node:crypto';
import { type Mac, readMac } from '../wire/mac.ts';
import { Liveness, type LivenessStats } from './liveness.ts';
import { Receiver, type ReceiverStats } from './receiver.ts';
import { Sender, type SenderStats } from './sender.ts';
import { MAX_WINDOW } from './seq.ts';
import { keptCopy } from '../slab.ts';

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
  /**
   * Frames leave through this instead of `send` when given: as header and payload, for the
   * transport to encode where it sends them (wire/port.ts transmitFrame: memif writes them
   * straight into its ring, the frame's only copy).
   */
  sendFrame?: (link: number, frame: OutgoingFrame) => void;
  /**
   * In-order TLP payloads. With `manualRelease`, each holds a credit until release().
   * `transient` (only with deliverTransient): the payload is a view of the frame as the
   * transport has it (a memif ring slot), valid only during this call.
   */
  deliver: (payload: Uint8Array, transient: boolean) => void;
  /**
   * `deliver` copies whatever it keeps of a payload past the call, so it may be given
   * transient payloads (no copy per TLP). Default false: a transient payload is copied
   * before deliver sees it, and `transient` is always false.
   */
  deliverTransient?: boolean;
  clock: Clock;
  /**
   * Receive slots = credit window in TLPs; a power of two. Default 1024
   * (4 MiB of 4 KiB writes): through a switch process a 256-TLP window left
   * one link window-bound (fabric bench, spread: 2.3–2.9 against 3.2–3.6 Gb/s).
   */
  rxSlots?: number;
  /** Replay buffer entries; a power of two. Default 2048. */
  replayCapacity?: number;
  /**
   * Bytes of memory reused in ACK order for TLPs encoded where reserve() says (replay-arena.ts).
   * Default 4 MiB: the default credit window of 4 KiB TLPs. Allocated at the first reserve().
   */
  replayArenaBytes?: number;
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
  /** Silence on every link after which the peer counts as gone (onPeerState). Default deadInterval. */
  peerDeadInterval?: number;
  /** The application returns credits itself with release(). */
  manualRelease?: boolean;
  onLinkState?: (link: number, up: boolean) => void;
  onPeerState?: (alive: boolean) => void;
  /** Discovery and management frames (not sequenced, not reliable). */
  onControl?: (type: FrameType.Discovery | FrameType.Management, payload: Uint8Array, link: number) => void;
  /** Called when queued TLPs have all been sent after a credit stall. */
  onDrain?: () => void;
  /**
   * The channel started over (the peer restarted, or was cut off): TLPs sent
   * and not acknowledged, and those queued, were dropped; requests waiting on
   * them must be failed. Sequence numbers start again from 0.
   */
  onReset?: (reason: ResetReason) => void;
  /** This end's epoch, non-zero. Default: random. */
  epoch?: number;
  /** Protocol violations per second beyond which the peer is cut off. Default 1000. */
  maxBadFramesPerSecond?: number;
  /** How long a cut-off peer is ignored, ms. Default 1000. */
  cutOffMs?: number;
}

export type ResetReason = 'peer-restarted' | 'peer-cut-off';

/** The parts' counters, and the channel's own for frames it turns away. */
export interface ChannelStats extends SenderStats, ReceiverStats, LivenessStats {
  txControl: number;
  rxFrames: number;
  rxWrongChannel: number;
  rxWrongBinding: number;
  rxBadFrame: Record<FrameDecodeError, number>;
  /** Frames for an earlier incarnation of ours, or from one of the peer's we replaced. */
  rxStaleEpoch: number;
  /** Frames from the peer carrying no epoch (0). */
  rxNoEpoch: number;
  /** The peer came back with a new epoch: the channel started over. */
  peerRestarts: number;
  /** The peer sent too many bad frames: the channel started over under a new epoch of ours. */
  cutOffs: number;
  /** Frames ignored while the peer was cut off. */
  rxWhileCutOff: number;
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
    rxAckBeyondSent: 0, rxNakBeyondSent: 0, probeAnswersWithheld: 0,
    rxStaleEpoch: 0, rxNoEpoch: 0, peerRestarts: 0, cutOffs: 0, rxWhileCutOff: 0,
  };

  private readonly o: ChannelOptions;
  private readonly clock: Clock;
  private readonly bindings: readonly LinkBinding[];
  private sender: Sender;
  private receiver: Receiver;
  private readonly liveness: Liveness;
  private closed = false;
  private ownEpoch: number;
  /** The peer's epoch; 0 until it is first heard. */
  private peerEpoch = 0;
  /** Epochs we no longer answer to (ours) or accept (the peer's), newest last. */
  private readonly retired: number[] = [];
  private badFrames = 0;
  private badSince = -Infinity;
  private cutOffUntil = -Infinity;

  constructor(options: ChannelOptions) {
    const heartbeatInterval = options.heartbeatInterval ?? 50;
    const deadInterval = options.deadInterval ?? heartbeatInterval * 3.5;
    const rxSlots = options.rxSlots ?? 1024;
    const replayTimeout = options.replayTimeout ?? 5;
    if (!isPow2(rxSlots) || rxSlots > MAX_WINDOW) throw new RangeError('rxSlots must be a power of two below 2^15');
    if (options.links.length === 0) throw new RangeError('a channel needs at least one link');
    this.o = options;
    this.clock = options.clock;
    this.bindings = options.links;
    if (options.epoch !== undefined && !(Number.isInteger(options.epoch) && options.epoch > 0 && options.epoch < 2 ** 32)) throw new RangeError(`epoch ${options.epoch}: expected 1 to 2^32-1`);
    this.ownEpoch = options.epoch ?? newEpoch();
    const { clock, stats } = this;
    this.newSender = () => new Sender({
      clock,
      stats,
      replayCapacity: options.replayCapacity ?? 2048,
      replayArenaBytes: options.replayArenaBytes ?? 4 * 1024 * 1024,
      replayTimeout,
      maxReplayTimeout: options.maxReplayTimeout ?? replayTimeout * 10,
      transmit: (seq, flags, payload) => this.transmitTlp(seq, flags, payload),
      onDrain: options.onDrain,
    });
    this.newReceiver = () => new Receiver({
      clock,
      stats,
      rxSlots,
      ackDelay: options.ackDelay ?? 1,
      nakDelay: options.nakDelay ?? heartbeatInterval,
      replayTimeout,
      manualRelease: options.manualRelease ?? false,
      deliver: options.deliverTransient ? options.deliver : (payload, transient) => options.deliver(transient ? keptCopy(payload) : payload, false),
      transmit: (type, flags) => this.transmit(this.liveness.pickLink(), type, this.sender.next, flags, EMPTY),
      everyLiveLinkPassed: (seq) => this.liveness.everyLiveLinkPassed(seq),
    });
    this.sender = this.newSender();
    this.receiver = this.newReceiver();
    this.liveness = new Liveness({
      clock,
      stats,
      links: options.links.length,
      heartbeatInterval,
      deadInterval,
      peerDeadInterval: options.peerDeadInterval ?? deadInterval,
      sendHeartbeat: (link) => this.transmit(link, FrameType.Heartbeat, this.sender.next, 0, EMPTY),
      onLinksLost: () => {
        if (this.sender.unacknowledged > 0) this.sender.replayAll();
      },
      onLinkState: options.onLinkState,
      onPeerState: options.onPeerState,
    });
    this.announce();
    this.liveness.start();
  }

  private readonly newSender: () => Sender;
  private readonly newReceiver: () => Receiver;

  /** This end's epoch (changes when it cuts the peer off). */
  get epoch(): number {
    return this.ownEpoch;
  }

  /** The peer's epoch as last heard; 0 before. */
  get peerEpochHeard(): number {
    return this.peerEpoch;
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
   * The bytes are kept, not copied, until the peer acknowledges them (they
   * are resent from there): they must not change after this call.
   */
  send(payload: Uint8Array): boolean {
    if (this.closed) throw new Error('channel closed');
    return this.sender.send(payload);
  }

  /**
   * Memory for a TLP about to be sent: fill it and give it to send() before reserving more
   * (reserved memory is reused once the peer acknowledges what was sent in it).
   */
  reserve(size: number): Uint8Array {
    return this.sender.reserve(size);
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

  /**
   * Feed a frame that arrived on `link` (`crcChecked`, `transient`: see wire/port.ts Ingress;
   * a transient frame is used only during this call). Bad frames are counted and dropped.
   */
  receive(link: number, frame: Uint8Array, crcChecked = false, transient = false): void {
    if (this.closed) return;
    const b = this.bindings[link];
    // The clock is read only while a cut-off may be running: per frame it was 3 % of a sink's time (profile, 4 KiB TLPs).
    if (this.cutOffUntil !== -Infinity) {
      if (this.clock.now() >= this.cutOffUntil) this.cutOffUntil = -Infinity;
      else if (b && frame.length >= 12 && readMac(frame, 6) === b.peerMac) {
        this.stats.rxWhileCutOff++;
        return;
      }
    }
    // Checked and read where it lies: no decoded object, and no payload view for frames without one.
    const hdr = checkFrame(frame, crcChecked);
    if (hdr < 0) {
      this.stats.rxBadFrame[frameError(hdr)]++;
      // Undecodable frames from the peer's own address (port security vouches for it) count against it.
      if (b && frame.length >= 12 && readMac(frame, 6) === b.peerMac) this.bad();
      return;
    }
    if (frameChannel(frame, hdr) !== this.o.channel) {
      this.stats.rxWrongChannel++;
      return;
    }
    if (!b || frameSrc(frame) !== b.peerMac || frameDst(frame) !== b.localMac || !sameVlan(frameVid(frame, hdr), b.vlan)) {
      this.stats.rxWrongBinding++;
      return;
    }
    if (!this.checkEpochs(frameEpoch(frame, hdr), framePeerEpoch(frame, hdr))) return;
    this.stats.rxFrames++;
    const type = frameType(frame, hdr);
    const flags = frameFlags(frame, hdr);
    const seq = frameSeq(frame, hdr);
    const replay = (flags & FrameFlags.Replay) !== 0;
    this.liveness.heard(link, seq, !replay);
    // A violation that cuts the peer off ends this frame: the state it referred to is gone.
    if (!this.sender.takeAck(frameAck(frame, hdr), type === FrameType.Ack && (flags & FrameFlags.ProbeAnswer) !== 0) && this.bad()) return;
    this.sender.takeCredits(frameCredits(frame, hdr));
    switch (type) {
      case FrameType.Tlp:
        if (!this.receiver.tlp(seq, framePayload(frame, hdr), transient) && this.bad()) return;
        break;
      case FrameType.Nak:
        if (!this.sender.takeNak(frameAck(frame, hdr)) && this.bad()) return;
        break;
      case FrameType.Discovery:
      case FrameType.Management: {
        const payload = framePayload(frame, hdr);
        this.o.onControl?.(type, transient ? keptCopy(payload) : payload, link);
        break;
      }
      default:
        break; // ACK and heartbeat carry nothing beyond ack and credits
    }
    if (flags & FrameFlags.AckNow) this.receiver.ackNow(seq, replay);
    this.receiver.checkGap();
    this.sender.flushPending();
  }

  close(): void {
    this.closed = true;
    this.sender.close();
    this.receiver.close();
    this.liveness.close();
  }

  /** Whether a frame from the peer with these epochs belongs to the current pair of incarnations; adopts and resets as needed. */
  private checkEpochs(epoch: number, mine: number): boolean {
    if (mine !== 0 && mine !== this.ownEpoch) {
      this.stats.rxStaleEpoch++; // for an earlier incarnation of ours
      return false;
    }
    if (epoch === 0) {
      this.stats.rxNoEpoch++;
      this.bad();
      return false;
    }
    if (epoch === this.peerEpoch) return true;
    if (this.retired.includes(epoch)) {
      this.stats.rxStaleEpoch++; // in flight from before the peer restarted
      return false;
    }
    if (this.peerEpoch === 0) {
      this.peerEpoch = epoch; // first contact
      return true;
    }
    this.retire(this.peerEpoch);
    this.peerEpoch = epoch;
    this.stats.peerRestarts++;
    this.startOver('peer-restarted');
    return true;
  }

  private retire(epoch: number): void {
    this.retired.push(epoch);
    if (this.retired.length > 8) this.retired.shift();
  }

  /** A protocol violation by the peer; too many in a second cut it off (returns true then). */
  private bad(): boolean {
    const now = this.clock.now();
    if (now - this.badSince >= 1000) {
      this.badSince = now;
      this.badFrames = 0;
    }
    if (++this.badFrames <= (this.o.maxBadFramesPerSecond ?? 1000)) return false;
    this.stats.cutOffs++;
    this.badFrames = 0;
    this.cutOffUntil = now + (this.o.cutOffMs ?? 1000);
    // A new epoch of ours makes the peer start over too; what it sent to the old one is dropped as stale.
    this.retire(this.ownEpoch);
    this.ownEpoch = newEpoch();
    this.startOver('peer-cut-off');
    return true;
  }

  /** Sender and receiver begin again from sequence number 0; the peer hears our credits at once. */
  private startOver(reason: ResetReason): void {
    this.sender.close();
    this.receiver.close();
    this.sender = this.newSender();
    this.receiver = this.newReceiver();
    this.liveness.restart();
    this.o.onReset?.(reason);
    if (!this.closed) this.announce();
  }

  /** A heartbeat on every link: the peer may not send until it hears our credits (and epoch). */
  private announce(): void {
    for (let i = 0; i < this.bindings.length; i++) this.transmit(i, FrameType.Heartbeat, this.sender.next, 0, EMPTY);
  }

  /** Send a TLP frame on the next link. */
  private transmitTlp(seq: number, flags: number, payload: Uint8Array): void {
    this.transmit(this.liveness.pickLink(), FrameType.Tlp, seq, flags, payload);
  }

  /** Build and send one frame; every frame carries our current ACK and credit limit. */
  private transmit(link: number, type: FrameType, seq: number, flags: number, payload: Uint8Array): void {
    const b = this.bindings[link]!;
    const frame: OutgoingFrame = {
      dst: b.peerMac,
      src: b.localMac,
      vlan: b.vlan,
      type,
      flags,
      channel: this.o.channel,
      seq,
      ack: this.receiver.ack,
      credits: this.receiver.credits,
      epoch: this.ownEpoch,
      peerEpoch: this.peerEpoch,
      payload,
    };
    this.receiver.sent();
    this.liveness.sent(link);
    if (this.o.sendFrame) this.o.sendFrame(link, frame);
    else this.o.send(link, encodeFrame(frame, payload));
  }
}

/** A random non-zero 32-bit epoch. */
function newEpoch(): number {
  return randomInt(1, 2 ** 32 - 1);
}

/** A frame's VLAN id (-1: untagged) against a binding's tag. */
function sameVlan(vid: number, b: VlanTag | null): boolean {
  return b === null ? vid < 0 : vid === b.vid;
}
