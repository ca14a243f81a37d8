/**
 * A Clock whose timers of a millisecond or more share one timer of the clock beneath.
 *
 * A station's link layer arms and clears timers for nearly every frame (the ACK delay when a
 * frame arrives, cleared when an answer carries the ACK; the replay timer when a TLP leaves,
 * cleared when the peer acknowledges it) and almost never lets one run. On Node each arm or
 * clear costs 1-3 µs with the caches a wake-up finds (a Timeout object, a list per duration
 * made and dropped, the timer heap, the libuv timer): traced at queue depth 1 they were 5-8 µs
 * of each step of the HI and the DI, on the path of every I/O. Here a timer is an entry in a
 * heap and clearing it only marks it; the clock beneath is touched only when a timer is set
 * earlier than any pending one, and its one timer, when it fires, runs what is due and is set
 * again for the earliest timer left.
 *
 * Timers run as the clock beneath would run them: in time order (ties in the order they were
 * set), and a timer the clock beneath fires early (Node counts from the time its loop last
 * woke) runs with those due. Shorter waits (an immediate: "after this turn's I/O") go straight
 * to the clock beneath, whose handles clearTimer also takes.
 */

import type { Clock, TimerHandle } from './clock.ts';

class Entry {
  constructor(
    readonly at: number,
    readonly order: number,
    public fn: (() => void) | null,
  ) {}
}

/** Cancelled entries are dropped from the heap once they outnumber the live ones this many times (and 64). */
const COMPACT_RATIO = 3;

export class BatchedTimers implements Clock {
  readonly resolution: number;
  /** Binary min-heap on (at, order); cleared entries stay (fn null) until they reach the top or a compaction. */
  private heap: Entry[] = [];
  private order = 0;
  private live = 0;
  /** The timer of the clock beneath and the time it is set for (Infinity: none). */
  private armed: TimerHandle | null = null;
  private armedAt = Infinity;
  private readonly onFire = () => this.fire();

  constructor(private readonly base: Clock) {
    this.resolution = base.resolution;
  }

  now(): number {
    return this.base.now();
  }

  /** Timers pending (set, not cleared, not run); for tests. */
  get pending(): number {
    return this.live;
  }

  setTimer(ms: number, fn: () => void): TimerHandle {
    if (!(ms >= 1)) return this.base.setTimer(ms, fn);
    const e = new Entry(this.base.now() + ms, this.order++, fn);
    this.push(e);
    this.live++;
    if (e.at < this.armedAt) this.arm(e.at);
    return e as unknown as TimerHandle;
  }

  clearTimer(handle: TimerHandle): void {
    if (!(handle instanceof Entry)) return this.base.clearTimer(handle);
    if (handle.fn === null) return;
    handle.fn = null;
    this.live--;
    // Nothing left to wait for: the timer beneath must not hold a closing process's event loop open.
    if (this.live === 0) return this.disarm();
    if (this.heap.length > 64 && this.heap.length > COMPACT_RATIO * (this.live + 1)) this.compact();
  }

  /** The clock beneath fired: run what is due, then set it again for the earliest timer left. */
  private fire(): void {
    const firedFor = this.armedAt;
    this.armed = null;
    this.armedAt = Infinity;
    // What it was set for runs even if it fired a little early; timers set while these run wait for the next turn.
    const limit = Math.max(this.base.now(), firedFor);
    const setBefore = this.order;
    try {
      for (let top = this.heap[0]; top !== undefined; top = this.heap[0]) {
        if (top.fn === null) {
          this.pop();
          continue;
        }
        if (top.at > limit || top.order >= setBefore) break;
        this.pop();
        const fn = top.fn;
        top.fn = null;
        this.live--;
        fn();
      }
    } finally {
      while (this.heap.length > 0 && this.heap[0]!.fn === null) this.pop();
      const next = this.heap[0];
      if (next && next.at < this.armedAt) this.arm(next.at);
    }
  }

  private disarm(): void {
    if (this.armed) this.base.clearTimer(this.armed);
    this.armed = null;
    this.armedAt = Infinity;
    this.heap.length = 0;
  }

  private arm(at: number): void {
    if (this.armed) this.base.clearTimer(this.armed);
    // Never below the resolution: a shorter wait is an immediate beneath (it would run before due, and spin).
    this.armed = this.base.setTimer(Math.max(at - this.base.now(), this.base.resolution, 0), this.onFire);
    this.armedAt = at;
  }

  /** Drop the cleared entries: the live ones, sorted, are a heap. */
  private compact(): void {
    const kept = this.heap.filter((e) => e.fn !== null);
    kept.sort((a, b) => a.at - b.at || a.order - b.order);
    this.heap = kept;
  }

  private push(e: Entry): void {
    const h = this.heap;
    let i = h.length;
    h.push(e);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(e, h[p]!)) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = e;
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop()!;
    if (h.length === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const c = r < h.length && before(h[r]!, h[l]!) ? r : l;
      if (!before(h[c]!, last)) break;
      h[i] = h[c]!;
      i = c;
    }
    h[i] = last;
  }
}

function before(a: Entry, b: Entry): boolean {
  return a.at < b.at || (a.at === b.at && a.order < b.order);
}
