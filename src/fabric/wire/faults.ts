/**
 * Link shaping and fault injection for one port, per direction, changeable
 * while running. Wraps a PortTransport and is one itself, so it sits between
 * any transport and the switch. Randomness comes from a seeded Rng so a
 * failing scenario replays exactly.
 */

import type { Clock } from '../clock.ts';
import type { Ingress, PortTransport } from './port.ts';
import type { Rng } from '../rng.ts';

export interface FaultConfig {
  /** Probability a frame is dropped. */
  loss: number;
  /** Probability a frame is delivered twice. */
  duplicate: number;
  /** Probability a frame is held back by `reorderDelay` so later frames overtake it. */
  reorder: number;
  reorderDelay: number;
  /** Probability one random bit of the frame is flipped (on a copy: the sender's buffer is untouched). */
  corrupt: number;
  /** Fixed one-way delay, ms (to the microsecond where the port has a FineTimer, as the switch's have). */
  latency: number;
  /** Extra uniformly random delay in [0, jitter) ms; frames overtake each other (the others keep wire order). */
  jitter: number;
  /** Serialisation rate in Gb/s; 0 means unlimited. */
  rateGbps: number;
  /** Link down: everything is dropped. */
  down: boolean;
}

export const NO_FAULTS: Readonly<FaultConfig> = {
  loss: 0, duplicate: 0, reorder: 0, reorderDelay: 0.1, corrupt: 0, latency: 0, jitter: 0, rateGbps: 0, down: false,
};

/** The settings that act on a frame; reorderDelay only says how long `reorder` holds one. */
const FAULT_KEYS = (Object.keys(NO_FAULTS) as (keyof FaultConfig)[]).filter((k) => k !== 'reorderDelay');

export interface FaultCounters {
  passed: number;
  lost: number;
  duplicated: number;
  reordered: number;
  corrupted: number;
  downDropped: number;
  /** Tail-dropped because the shaped wire's queue was full (see MAX_BACKLOG_MS, MAX_WIRE_FRAMES). */
  queueDropped: number;
}

/**
 * A shaped port's egress buffer, as a switch's is finite: a frame that would wait
 * longer than this for the rate, or find this many frames queued, is dropped.
 */
export const MAX_BACKLOG_MS = 100;
export const MAX_WIRE_FRAMES = 65536;

/** `toStation`: frames the switch sends out of the port; `toSwitch`: frames the station sends in. */
export type Direction = 'toStation' | 'toSwitch';

/**
 * A one-shot timer finer than the Clock's (the switch's: a timerfd, fine-timer.ts), for a wire
 * with latency: setting it again replaces what was set.
 */
export interface FineTimer {
  /** Shortest wait worth a wake-up, ms. */
  readonly resolution: number;
  set(ms: number, fn: () => void): void;
  close(): void;
}

class Shaper {
  cfg: FaultConfig = { ...NO_FAULTS };
  readonly counters: FaultCounters = { passed: 0, lost: 0, duplicated: 0, reordered: 0, corrupted: 0, downDropped: 0, queueDropped: 0 };
  private busyUntil = 0;
  /**
   * Frames delayed only by latency and rate: a wire delivers them in the order
   * sent, so they leave from this queue, in order, on one timer, rather than
   * each on its own (real timers round short delays differently from long
   * ones and would reorder them).
   */
  private readonly wire: { due: number; frame: Buffer; out: (frame: Buffer) => void }[] = [];
  private wireHead = 0;
  private wireArmed = false;
  /** What the armed wait may release early (half the resolution of the timer it is on). */
  private wireSlack = 0;
  private fine: FineTimer | null = null;
  private closed = false;
  /** Frames delayed on timers of their own (jitter, reorder): they may overtake, so they are not on the wire. */
  private loose = 0;
  private readonly releaseWire = () => this.release();

  constructor(
    private readonly clock: Clock,
    private readonly rng: Rng,
    private readonly fineTimer?: () => FineTimer,
    /** The last frame it held has left (see `holding`). */
    private readonly onSettled: () => void = () => {},
  ) {}

  /** Whether any frame is held back (on the wire or on a timer of its own). */
  get holding(): boolean {
    return this.loose > 0 || this.wireHead < this.wire.length;
  }

  /** Whether its settings do anything to a frame: any fault away from its NO_FAULTS value. */
  get faulty(): boolean {
    return FAULT_KEYS.some((k) => this.cfg[k] !== NO_FAULTS[k]);
  }

  /** Whether its settings, if any, only drop frames (loss): nothing held back, copied or changed. */
  get dropsOnly(): boolean {
    return FAULT_KEYS.every((k) => k === 'loss' || this.cfg[k] === NO_FAULTS[k]);
  }

  /** Closes the fine timer; a frame sent after this waits on the clock (no fd made for a closed port). */
  close(): void {
    this.closed = true;
    this.fine?.close();
    this.fine = null;
  }

  apply(frame: Buffer, out: (frame: Buffer) => void): void {
    const c = this.cfg;
    const k = this.counters;
    if (c.down) {
      k.downDropped++;
      return;
    }
    if (c.loss > 0 && this.rng() < c.loss) {
      k.lost++;
      return;
    }
    let f = frame;
    if (c.corrupt > 0 && this.rng() < c.corrupt && f.length > 0) {
      f = Buffer.from(frame);
      const bit = Math.floor(this.rng() * f.length * 8);
      f[bit >> 3]! ^= 1 << (bit & 7);
      k.corrupted++;
    }
    const copies = c.duplicate > 0 && this.rng() < c.duplicate ? 2 : 1;
    if (copies === 2) k.duplicated++;
    for (let i = 0; i < copies; i++) {
      let delay = c.latency;
      let inOrder = true;
      if (c.jitter > 0) {
        delay += this.rng() * c.jitter;
        inOrder = false;
      }
      if (c.reorder > 0 && this.rng() < c.reorder) {
        delay += c.reorderDelay;
        inOrder = false;
        k.reordered++;
      }
      if (this.wire.length - this.wireHead >= MAX_WIRE_FRAMES) {
        k.queueDropped++;
        continue;
      }
      if (c.rateGbps > 0) {
        const now = this.clock.now();
        if (this.busyUntil - now > MAX_BACKLOG_MS) {
          k.queueDropped++;
          continue;
        }
        this.busyUntil = Math.max(now, this.busyUntil) + (f.length * 8) / (c.rateGbps * 1e6);
        delay += this.busyUntil - now;
      }
      k.passed++;
      if (!inOrder) {
        this.loose++;
        this.clock.setTimer(delay, () => {
          this.loose--;
          out(f);
          if (!this.holding) this.onSettled();
        });
      }
      else if (delay > 0 || this.wireHead < this.wire.length) this.onWire(delay, f, out);
      else out(f);
    }
  }

  private onWire(delay: number, frame: Buffer, out: (frame: Buffer) => void): void {
    const last = this.wire[this.wire.length - 1];
    const due = Math.max(this.clock.now() + delay, this.wireHead < this.wire.length ? last!.due : 0);
    this.wire.push({ due, frame, out });
    if (!this.wireArmed) this.armWire();
  }

  /**
   * The wire's one timer, for its head frame. Latency goes on the fine timer when there is one;
   * rate alone on the clock, whose coarser waits release a burst at a time (its average is right).
   */
  private armWire(): void {
    const fine = this.cfg.latency > 0 && this.fineTimer && !this.closed ? (this.fine ??= this.fineTimer()) : null;
    const resolution = fine ? fine.resolution : this.clock.resolution;
    // Below the resolution a wait would spin (and on a shared CPU starve the stations): release
    // what is due within half of it now and wait at least all of it otherwise, right on average.
    this.wireSlack = resolution / 2;
    const wait = this.wire[this.wireHead]!.due - this.clock.now();
    const ms = wait <= this.wireSlack ? 0 : Math.max(wait, resolution);
    this.wireArmed = true;
    if (fine) fine.set(ms, this.releaseWire);
    else this.clock.setTimer(ms, this.releaseWire);
  }

  private release(): void {
    this.wireArmed = false;
    const now = this.clock.now() + this.wireSlack;
    while (this.wireHead < this.wire.length && this.wire[this.wireHead]!.due <= now) {
      const w = this.wire[this.wireHead]!;
      this.wire[this.wireHead++] = undefined as never;
      w.out(w.frame);
    }
    if (this.wireHead === this.wire.length) {
      this.wire.length = 0;
      this.wireHead = 0;
      if (!this.holding) this.onSettled();
      return;
    }
    if (this.wireHead > 1024 && this.wireHead * 2 > this.wire.length) {
      this.wire.splice(0, this.wireHead); // a queue that never empties (sustained shaping) stays bounded
      this.wireHead = 0;
    }
    this.armWire();
  }
}

export class FaultyPort implements PortTransport {
  private readonly shapers: Record<Direction, Shaper>;
  private ingress: Ingress | null = null;
  /** Called when the last frame held back in either direction has left. */
  onSettled: (() => void) | null = null;

  /** `fineTimer`: makes the timer a direction's latency waits on, when it first has latency (else the clock's). */
  constructor(private readonly inner: PortTransport, clock: Clock, rng: Rng, fineTimer?: () => FineTimer) {
    const settled = () => {
      if (!this.holding) this.onSettled?.();
    };
    this.shapers = { toStation: new Shaper(clock, rng, fineTimer, settled), toSwitch: new Shaper(clock, rng, fineTimer, settled) };
    inner.attach((frame) => this.shapers.toSwitch.apply(frame, (f) => this.ingress?.(f)));
  }

  /** Change one direction's faults (merged into the current settings), or both when `direction` is omitted. */
  set(faults: Partial<FaultConfig>, direction?: Direction): void {
    for (const d of direction ? [direction] : (['toStation', 'toSwitch'] as const)) {
      this.shapers[d].cfg = { ...this.shapers[d].cfg, ...faults };
    }
  }

  config(direction: Direction): Readonly<FaultConfig> {
    return this.shapers[direction].cfg;
  }

  /** Whether a frame is held back in either direction (latency, rate, jitter, reorder). */
  get holding(): boolean {
    return this.shapers.toStation.holding || this.shapers.toSwitch.holding;
  }

  /** Whether the settings of either direction do anything to a frame. */
  get faulty(): boolean {
    return this.shapers.toStation.faulty || this.shapers.toSwitch.faulty;
  }

  /**
   * Whether both directions' settings, if any, only drop frames (loss) and nothing is held: a
   * frame then either goes at once or not at all, so another path may apply the same loss
   * (the switch's native forward) without reordering anything.
   */
  get dropsOnly(): boolean {
    return !this.holding && this.shapers.toStation.dropsOnly && this.shapers.toSwitch.dropsOnly;
  }

  counters(direction: Direction): Readonly<FaultCounters> {
    return this.shapers[direction].counters;
  }

  transmit(frame: Buffer): void {
    this.shapers.toStation.apply(frame, (f) => this.inner.transmit(f));
  }

  attach(ingress: Ingress): void {
    this.ingress = ingress;
  }

  close(): void {
    this.shapers.toStation.close();
    this.shapers.toSwitch.close();
    this.inner.close();
  }
}
