// When a completion becomes an MSI-X message. Completions posted in one
// event-loop turn share one interrupt per vector (the driver reaps the whole
// CQ after an interrupt anyway). A completion with no other command in flight
// that could share the interrupt (queue depth 1) signals at once: waiting for
// the turn's end would only send the MSI apart from the completion's writes
// (over PCIeOE a flush, and a wake-up of the host's side, of its own). With
// Interrupt Coalescing (Set Features 08h)
// a vector also waits until THR + 1 completions have gathered or TIME has
// passed since the first one held, whichever comes first (NVMe 1.4 §5.21.1.8);
// the admin vector and vectors with Coalescing Disable set are never held
// (the admin CQ is never coalesced; an I/O CQ sharing its vector is not either).

/** How long and for how many completions a vector may be held; undefined: not coalesced. */
export interface Aggregation {
  /** Completions that fire at once (THR + 1). */
  threshold: number;
  /** Longest hold, ms: TIME is in 100 µs units, Node's timers in whole ms, so rounded up. */
  delayMs: number;
}

/** Feature 08h's CDW11 as an Aggregation; THR = TIME = 0 (the default) means no coalescing. */
export function aggregation(dw11: number): Aggregation | undefined {
  const thr = dw11 & 0xff;
  const time = (dw11 >>> 8) & 0xff;
  // With TIME 0 a held interrupt could wait forever for its threshold: only both together coalesce.
  if (thr === 0 || time === 0) return undefined;
  return { threshold: thr + 1, delayMs: Math.ceil(time / 10) };
}

export class InterruptCoalescer {
  /** Vectors to signal at the end of this event-loop turn. */
  private readonly due = new Set<number>();
  private scheduled = false;
  /** Per held vector: completions gathered and the timer that bounds the hold. */
  private readonly held = new Map<number, { count: number; timer: NodeJS.Timeout }>();
  /** Interrupts sent, and completions they covered (for the benchmark and tests). */
  readonly stats = { interrupts: 0, completions: 0 };

  constructor(
    private readonly send: (vector: number) => void,
    private readonly policy: (vector: number) => Aggregation | undefined,
  ) {}

  /** True while some vector holds completions back. */
  get holding(): boolean {
    return this.held.size > 0;
  }

  /**
   * A completion was posted to a CQ that interrupts on `vector`; `alone`: no
   * other command is in flight whose completion could share its interrupt.
   */
  completion(vector: number, alone = false): void {
    this.stats.completions++;
    if (this.due.has(vector)) return; // the interrupt about to go covers this one too
    const agg = this.policy(vector);
    if (agg) {
      const h = this.held.get(vector);
      if (!h) {
        if (agg.threshold > 1) {
          this.held.set(vector, { count: 1, timer: setTimeout(() => this.fire(vector), agg.delayMs) });
          return;
        }
      } else if (++h.count < agg.threshold) return;
    }
    if (alone && !this.held.has(vector)) {
      this.stats.interrupts++;
      this.send(vector);
      return;
    }
    this.fire(vector);
  }

  /** Signals `vector` now, held or not (the interrupt mode changed with completions unconsumed). */
  resend(vector: number): void {
    this.fire(vector);
  }

  /** Forgets everything held (controller reset: the queues are gone). */
  reset(): void {
    for (const h of this.held.values()) clearTimeout(h.timer);
    this.held.clear();
    this.due.clear();
  }

  private fire(vector: number): void {
    const h = this.held.get(vector);
    if (h) {
      clearTimeout(h.timer);
      this.held.delete(vector);
    }
    this.due.add(vector);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      for (const v of this.due) {
        this.stats.interrupts++;
        this.send(v);
      }
      this.due.clear();
    });
  }
}
