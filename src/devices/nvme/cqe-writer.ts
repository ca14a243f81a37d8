// Completion entries out to host memory, a cache line at a time where they come together.
//
// Commands that finish together (a fetched run of SQEs, each read answered from the page cache
// in the same turn) post to adjacent slots of their CQ. Those within one 64-byte line go out as
// one write, as controllers post CQEs by the cache line: over PCIeOE one MWr, one frame to send,
// forward and land, for up to four completions instead of one each. The line lands dword by dword
// in ascending order (DmaPort), so each entry's DW3, with its phase tag, still shows after its
// DW0-2. An entry waits only for the microtasks already queued (the completions of its wave) and
// never across an event-loop turn: a lone completion (queue depth 1) leaves at once.

import { CQE_SIZE } from './queues.ts';

const LINE = 64;

interface Run {
  cq: number;
  addr: number;
  bytes: Uint8Array;
  count: number;
  done: Promise<void>;
  settle: (written: Promise<void>) => void;
}

export class CqeWriter {
  /** Per CQ id, the entries gathered and not yet written. */
  private readonly runs = new Map<number, Run>();
  private scheduled = false;
  /** Entries posted, and writes they went out in (for the benchmark and tests). */
  readonly stats = { entries: 0, writes: 0 };

  constructor(private readonly write: (addr: number, data: Uint8Array) => Promise<void>) {}

  /**
   * Posts `entry` (16 bytes) at `addr` in CQ `cq`; settles when the write carrying it has been
   * issued (as a posted write does), rejects if that write fails.
   */
  post(cq: number, addr: number, entry: Uint8Array): Promise<void> {
    this.stats.entries++;
    let run = this.runs.get(cq);
    if (run && (run.addr + run.count * CQE_SIZE !== addr || Math.floor(run.addr / LINE) !== Math.floor(addr / LINE))) {
      this.issue(run);
      run = undefined;
    }
    if (!run) {
      let settle!: (written: Promise<void>) => void;
      const done = new Promise<void>((r) => (settle = r));
      run = { cq, addr, bytes: new Uint8Array(LINE - (addr % LINE)), count: 0, done, settle };
      this.runs.set(cq, run);
    }
    run.bytes.set(entry, run.count * CQE_SIZE);
    run.count++;
    if (run.count * CQE_SIZE === run.bytes.length) this.issue(run);
    else if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(this.flush);
    }
    return run.done;
  }

  /** Drops what is gathered, unwritten (controller reset: the queues are gone); its posters go on, and find the reset. */
  reset(): void {
    for (const run of this.runs.values()) run.settle(Promise.resolve());
    this.runs.clear();
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    // issue() deletes the entry being visited, which a Map's iteration allows.
    for (const run of this.runs.values()) this.issue(run);
  };

  private issue(run: Run): void {
    this.runs.delete(run.cq);
    this.stats.writes++;
    run.settle(this.write(run.addr, run.bytes.subarray(0, run.count * CQE_SIZE)));
  }
}
