/**
 * Link liveness for one channel: which of its links are up, and which link
 * the next frame takes. Each link sends a heartbeat when idle; a link with
 * nothing heard for `deadInterval` is taken out of the rotation (the channel
 * then resends its unacknowledged frames on the others). Any valid frame
 * brings it back. The peer counts as gone only once every link has been
 * silent for `peerDeadInterval`: what follows from that (requests failed at
 * once, a slot shown removed) must not follow a stall the replay rides out.
 *
 * Frames are dealt to links by the turn: a turn's frames keep to the link
 * that has carried fewest frames so far (up to TURN_BURST, then the next
 * least loaded), so a turn wakes the switch and the peer once, and the links'
 * loads even out over turns of any sizes.
 *
 * It also remembers, per link, the highest first-transmission sequence number
 * heard: links are FIFO, so once every live link has passed a gap the gap
 * was lost, not late (the receiver's NAK rule).
 */

import { type Clock, type TimerHandle, afterPendingInput } from '../clock.ts';
import { seqDiff } from './seq.ts';

/**
 * Frames of one turn that keep to one link before the least loaded other takes over: a 64 KiB
 * transfer's sixteen TLPs and its command's frames, a few times over (what a busy turn of the
 * NVMe path sends), well inside a memif ring's 1024 slots. Only a turn larger than this is
 * spread over links within the turn.
 */
const TURN_BURST = 64;

export interface LivenessStats {
  txHeartbeat: number;
  linkDown: number;
  linkUp: number;
}

export interface LivenessOptions {
  clock: Clock;
  stats: LivenessStats;
  /** How many links the channel has. */
  links: number;
  heartbeatInterval: number;
  deadInterval: number;
  /** Silence on every link after which the peer counts as gone (at least deadInterval). */
  peerDeadInterval: number;
  /** Send a heartbeat (a frame carrying only ACK and credits) on `link`. */
  sendHeartbeat: (link: number) => void;
  /** Links just died while others are up: what was in flight on them is gone. */
  onLinksLost: () => void;
  onLinkState?: (link: number, up: boolean) => void;
  onPeerState?: (alive: boolean) => void;
}

interface LinkState {
  up: boolean;
  lastRx: number;
  lastTx: number;
  /** Every TLP numbered below this was sent before the latest first transmission that arrived here. */
  passed: number;
}

export class Liveness {
  private readonly links: LinkState[];
  private rr = 0;
  /** The link the current burst keeps to, and how many more frames it may take this turn. */
  private burstLink = 0;
  private burstLeft = 0;
  /** Frames given to each link since the links last changed state: a new burst takes the fewest. */
  private readonly dealt: number[];
  private turnTimer: TimerHandle | null = null;
  private peerAlive = true;
  private closed = false;
  private tickTimer: TimerHandle | null = null;

  constructor(private readonly o: LivenessOptions) {
    const now = o.clock.now();
    this.links = Array.from({ length: o.links }, () => ({ up: true, lastRx: now, lastTx: -Infinity, passed: 0 }));
    this.dealt = new Array<number>(o.links).fill(0);
  }

  get states(): readonly boolean[] {
    return this.links.map((l) => l.up);
  }

  get isPeerAlive(): boolean {
    return this.peerAlive;
  }

  /** Start the heartbeat and dead-link checks. */
  start(): void {
    this.armTick();
  }

  /** A valid frame arrived on `link`; `seq` counts toward `passed` when it is a first transmission. */
  heard(link: number, seq: number, firstTransmission: boolean): void {
    const l = this.links[link]!;
    l.lastRx = this.o.clock.now();
    if (firstTransmission && seqDiff(seq, l.passed) > 0) l.passed = seq;
    if (!l.up) this.setLink(link, true);
  }

  /** The channel started over at sequence number 0: what each link passed refers to the old numbering. */
  restart(): void {
    for (const l of this.links) l.passed = 0;
  }

  /** A frame left on `link`. */
  sent(link: number): void {
    this.links[link]!.lastTx = this.o.clock.now();
  }

  /** Whether every live link has brought a first transmission numbered past `seq`. */
  everyLiveLinkPassed(seq: number): boolean {
    return this.links.every((l) => !l.up || seqDiff(l.passed, seq) > 0);
  }

  /**
   * The link for the next frame: the frames sent in one event-loop turn keep to one live link,
   * TURN_BURST at a time, and each burst starts on the live link given fewest frames (ties round
   * robin). A turn's burst (a 64 KiB transfer's TLPs, a queue-depth-1 request and its answer)
   * then wakes the switch and the peer once, not once per link it was dealt over, and turns of
   * uneven sizes (a transfer's TLPs, then a lone completion) still load the links evenly.
   */
  pickLink(): number {
    if (this.burstLeft > 0 && this.links[this.burstLink]!.up) {
      this.burstLeft--;
      this.dealt[this.burstLink]!++;
      return this.burstLink;
    }
    this.burstLink = this.leastLoadedLink();
    this.burstLeft = TURN_BURST - 1;
    this.dealt[this.burstLink]!++;
    if (!this.turnTimer && this.links.length > 1) {
      this.turnTimer = this.o.clock.setTimer(0, () => {
        this.turnTimer = null;
        this.burstLeft = 0;
      });
    }
    return this.burstLink;
  }

  /** The live link given fewest frames, round robin among equals; round robin over all when none is live. */
  private leastLoadedLink(): number {
    const n = this.links.length;
    let best = -1;
    for (let i = 0; i < n; i++) {
      const k = (this.rr + i) % n;
      if (this.links[k]!.up && (best < 0 || this.dealt[k]! < this.dealt[best]!)) best = k;
    }
    // Every link looks dead: keep trying them in turn, one may be back.
    if (best < 0) best = this.rr;
    this.rr = (best + 1) % n;
    return best;
  }

  close(): void {
    this.closed = true;
    if (this.tickTimer) this.o.clock.clearTimer(this.tickTimer);
    if (this.turnTimer) this.o.clock.clearTimer(this.turnTimer);
    this.tickTimer = this.turnTimer = null;
  }

  private armTick(): void {
    this.tickTimer = this.o.clock.setTimer(this.o.heartbeatInterval / 2, () => {
      this.tickTimer = afterPendingInput(this.o.clock, () => this.tick());
    });
  }

  private tick(): void {
    const now = this.o.clock.now();
    let lost = false;
    let lastHeard = -Infinity;
    this.links.forEach((l, i) => {
      if (l.up && now - l.lastRx > this.o.deadInterval) {
        this.setLink(i, false);
        lost = true;
      }
      lastHeard = Math.max(lastHeard, l.lastRx);
    });
    // Frames in flight on a link that died are gone: resend on the survivors now rather than at timeout.
    if (lost && this.links.some((l) => l.up)) this.o.onLinksLost();
    if (this.peerAlive && now - lastHeard > Math.max(this.o.peerDeadInterval, this.o.deadInterval)) this.setPeer(false);
    this.links.forEach((l, i) => {
      if (now - l.lastTx >= this.o.heartbeatInterval) {
        this.o.stats.txHeartbeat++;
        this.o.sendHeartbeat(i);
      }
    });
    if (!this.closed) this.armTick();
  }

  private setLink(link: number, up: boolean): void {
    this.links[link]!.up = up;
    // A link back from the dead would otherwise take every burst until its count caught up.
    this.dealt.fill(0);
    if (up) this.o.stats.linkUp++;
    else this.o.stats.linkDown++;
    this.o.onLinkState?.(link, up);
    if (up && !this.peerAlive) this.setPeer(true);
  }

  private setPeer(alive: boolean): void {
    this.peerAlive = alive;
    this.o.onPeerState?.(alive);
  }
}
