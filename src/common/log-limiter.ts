/**
 * Rate-limited logging for events a peer can cause at will (rejected frames,
 * forged requests): logs live in RAM under /run, so a line per event would let
 * a hostile station fill memory. Counters carry the totals; the log keeps the
 * first few lines of each interval and says how many it left out.
 */

import type { LogLevel, Logger } from './logger.ts';

export interface LogLimiterOptions {
  /** Lines let through per interval. Default 5. */
  lines?: number;
  /** Default 1000 ms. */
  intervalMs?: number;
  /** Milliseconds, monotonic. Default performance.now. */
  now?: () => number;
}

export class LogLimiter {
  private readonly lines: number;
  private readonly intervalMs: number;
  private readonly now: () => number;
  private windowStart = -Infinity;
  private used = 0;
  private suppressed = 0;

  constructor(
    private readonly log: (line: string) => void,
    o: LogLimiterOptions = {},
  ) {
    this.lines = o.lines ?? 5;
    this.intervalMs = o.intervalMs ?? 1000;
    this.now = o.now ?? (() => performance.now());
  }

  /** Log `line` unless this interval's lines are used up. `line` may be a thunk, built only when logged. */
  line(line: string | (() => string)): void {
    const now = this.now();
    if (now - this.windowStart >= this.intervalMs) {
      if (this.suppressed > 0) this.log(`(${this.suppressed} more like the above left out)`);
      this.windowStart = now;
      this.used = 0;
      this.suppressed = 0;
    }
    if (this.used >= this.lines) {
      this.suppressed++;
      return;
    }
    this.used++;
    this.log(typeof line === 'string' ? line : line());
  }
}

/**
 * `log` rate-limited per level (a LogLimiter each): for a component whose every line a peer can
 * cause, such as a device model driven by a hostile host. Each level keeps its own budget, so a
 * flood of warnings does not hide the next error.
 */
export function limitedLogger(log: Logger, o: LogLimiterOptions = {}): Logger {
  const limiters = new Map<LogLevel, LogLimiter>();
  return (level, message) => {
    let l = limiters.get(level);
    if (!l) limiters.set(level, (l = new LogLimiter((m) => log(level, m), o)));
    l.line(message);
  };
}
