/**
 * Discrete-event simulated clock: timers fire in time order (ties in the order
 * they were set) only when the test advances time.
 */

import type { Clock, TimerHandle } from './clock.ts';

interface Event {
  at: number;
  order: number;
  fn: (() => void) | null;
}

export class SimClock implements Clock {
  readonly resolution = 0;
  private time = 0;
  private order = 0;
  /** Binary min-heap on (at, order). Cancelled events stay with fn = null. */
  private heap: Event[] = [];
  private live = 0;

  now(): number {
    return this.time;
  }

  setTimer(ms: number, fn: () => void): TimerHandle {
    const ev: Event = { at: this.time + Math.max(0, ms), order: this.order++, fn };
    this.push(ev);
    this.live++;
    return ev as unknown as TimerHandle;
  }

  clearTimer(handle: TimerHandle): void {
    const ev = handle as unknown as Event;
    if (ev.fn) {
      ev.fn = null;
      this.live--;
    }
  }

  /** Timers still pending. */
  get pending(): number {
    return this.live;
  }

  /** Run the next event; false when there is none or it lies beyond `limit`. */
  step(limit = Infinity): boolean {
    for (;;) {
      const ev = this.heap[0];
      if (!ev || ev.at > limit) return false;
      this.pop();
      if (!ev.fn) continue;
      const fn = ev.fn;
      ev.fn = null;
      this.live--;
      this.time = ev.at;
      fn();
      return true;
    }
  }

  /** Run events until `until()` holds or time would pass `deadline`. Returns until(). */
  runUntil(until: () => boolean, deadline: number): boolean {
    while (!until()) {
      if (!this.step(deadline)) {
        this.time = Math.max(this.time, deadline);
        return until();
      }
    }
    return true;
  }

  advance(ms: number): void {
    const end = this.time + ms;
    while (this.step(end));
    this.time = end;
  }

  private before(a: Event, b: Event): boolean {
    return a.at < b.at || (a.at === b.at && a.order < b.order);
  }

  private push(ev: Event): void {
    const h = this.heap;
    h.push(ev);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop()!;
    if (h.length === 0) return;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.before(h[l]!, h[m]!)) m = l;
      if (r < h.length && this.before(h[r]!, h[m]!)) m = r;
      if (m === i) return;
      [h[i], h[m]] = [h[m]!, h[i]!];
      i = m;
    }
  }
}
