/**
 * Time as the fabric sees it. Everything that waits (replay, ACK delay,
 * heartbeats, fault-injected latency) goes through a Clock so tests can run
 * on simulated time, deterministically and far faster than real time.
 * Times are milliseconds, fractional.
 */

export interface TimerHandle {
  readonly __timer: unique symbol;
}

export interface Clock {
  now(): number;
  /**
   * Shortest wait that does not cost CPU, ms: a shorter timer may run early
   * or spin. Waiters that only need their average right (rate shaping) round
   * to it.
   */
  readonly resolution: number;
  setTimer(ms: number, fn: () => void): TimerHandle;
  clearTimer(handle: TimerHandle): void;
}

/**
 * Wall-clock time. Node timers have 1 ms granularity, so shorter delays run on
 * setImmediate: after the I/O of the current event-loop turn, which is what
 * the link layer wants from a "short" ACK delay (coalesce one turn's frames).
 */
export const realClock: Clock = {
  now: () => performance.now(),
  resolution: 1,
  setTimer(ms, fn) {
    const h = ms < 1 ? { immediate: setImmediate(fn) } : { timeout: setTimeout(fn, ms) };
    return h as unknown as TimerHandle;
  },
  clearTimer(handle) {
    const h = handle as unknown as { immediate?: NodeJS.Immediate; timeout?: NodeJS.Timeout };
    if (h.immediate) clearImmediate(h.immediate);
    if (h.timeout) clearTimeout(h.timeout);
  },
};

/**
 * Run `fn` once the frames that have already arrived are processed. Timers
 * fire before the event loop reads its sockets, so when this process was
 * not scheduled for a while (a busy CPU), a timeout would see silence that
 * is only unread input: a "dead" link whose heartbeats sit in the socket, a
 * "lost" window whose ACKs do. A zero timer runs after the I/O phase.
 */
export function afterPendingInput(clock: Clock, fn: () => void): TimerHandle {
  return clock.setTimer(0, fn);
}
