/**
 * A one-shot timer to the microsecond for the switch's delay line: a timerfd watched on Node's
 * loop. Node's own timers count whole milliseconds, and a link's added latency of 10-200 µs
 * (issue 13's cases) would round to 0 or 1 ms on them. It fires on time, but the process still
 * has to wake up for it, which costs what any wake-up costs (docs/performance.md).
 */

import { native, type Poll, PollEvent } from '../../../native/index.ts';
import type { FineTimer } from './faults.ts';

export class TimerfdTimer implements FineTimer {
  /** Waits shorter than this go now: a wake-up costs more than what they would wait. */
  readonly resolution = 0.002;
  private readonly fd = native.timerfd();
  private readonly poll: Poll;
  private fn: (() => void) | null = null;

  constructor() {
    this.poll = new native.Poll(this.fd, () => this.fire());
    this.poll.start(PollEvent.Readable);
  }

  set(ms: number, fn: () => void): void {
    this.fn = fn;
    native.timerfdSet(this.fd, Math.max(0, ms) * 1000);
  }

  close(): void {
    this.fn = null;
    this.poll.close();
    native.close(this.fd);
  }

  private fire(): void {
    if (native.timerfdRead(this.fd) === null) return;
    const fn = this.fn;
    this.fn = null;
    fn?.();
  }
}
