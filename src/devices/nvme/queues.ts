// Submission and completion queues (NVMe 1.4 §4.1): ring state, phase tags,
// doorbell validation and the 16-byte completion entry. Queues are physically
// contiguous (CAP.CQR = 1) rings in host memory; the controller owns the
// fetching and the DMA, these classes own the arithmetic.
import type { Status } from './status.ts';

export const SQE_SIZE = 64;
export const CQE_SIZE = 16;

/** A completion as a command handler produces it (CQE DW0 and the status). */
export interface Completion {
  dw0: number;
  status: Status;
  /** Do Not Retry. */
  dnr: boolean;
}

/** Ring arithmetic shared by both queue kinds. */
abstract class Ring {
  head = 0;
  tail = 0;
  constructor(
    readonly id: number,
    /** Bus address of entry 0. */
    readonly base: number,
    /** Entries (1-based; the queue holds size - 1 at most). */
    readonly size: number,
  ) {}

  /** Entries from a to b going forward around the ring. */
  protected distance(from: number, to: number): number {
    return (to - from + this.size) % this.size;
  }
}

export class SubmissionQueue extends Ring {
  /** Commands fetched and not yet completed. */
  inFlight = 0;
  /** Set by Delete I/O SQ: no more fetching. */
  deleted = false;
  /** A fetch of new entries is under way (one at a time per queue keeps them in order). */
  fetching = false;
  /** With shadow doorbells: an MMIO doorbell came while fetching, so look at the shadow tail again. */
  kicked = false;
  /** With shadow doorbells: the event index last posted for this SQ (-1: none yet). */
  eventIdx = -1;
  /** With shadow doorbells: the value of the last MMIO doorbell, a hint only (-1: none). */
  hint = -1;
  private idleWaiters: (() => void)[] = [];

  constructor(id: number, base: number, size: number, readonly cq: CompletionQueue) {
    super(id, base, size);
  }

  /** Tail doorbell: false if the value is not a slot of this queue (the controller turns that fatal). */
  setTail(v: number): boolean {
    if (v >= this.size) return false;
    this.tail = v;
    return true;
  }

  /** The next run of entries to fetch without wrapping: [head, head + count). */
  nextRun(): { slot: number; count: number } | undefined {
    if (this.head === this.tail) return undefined;
    const end = this.tail > this.head ? this.tail : this.size;
    return { slot: this.head, count: end - this.head };
  }

  /** The entries from head up to `v` without wrapping, as nextRun() would give them if the tail were v. */
  runTo(v: number): { slot: number; count: number } | undefined {
    if (v >= this.size || v === this.head) return undefined;
    return { slot: this.head, count: (v > this.head ? v : this.size) - this.head };
  }

  /** Whether slot `v` lies between head and tail (going forward): the host has written every entry before it. */
  reaches(v: number): boolean {
    return this.distance(this.head, v) <= this.distance(this.head, this.tail);
  }

  consumed(count: number): void {
    this.head = (this.head + count) % this.size;
    this.inFlight += count;
  }

  completed(): void {
    this.inFlight--;
    if (this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Resolves when every fetched command has completed. */
  idle(): Promise<void> {
    return this.inFlight === 0 ? Promise.resolve() : new Promise((r) => this.idleWaiters.push(r));
  }
}

export class CompletionQueue extends Ring {
  /** Phase tag of the entry at `tail`; starts at 1 and flips at every wrap. */
  phase = 1;
  /** SQs that post here (a CQ with SQs cannot be deleted). */
  readonly sqs = new Set<number>();
  private spaceWaiters: (() => void)[] = [];

  constructor(
    id: number,
    base: number,
    size: number,
    /** MSI-X vector (IV), and whether to interrupt at all (IEN). */
    readonly vector: number,
    readonly interrupts: boolean,
  ) {
    super(id, base, size);
  }

  get full(): boolean {
    return this.distance(this.head, this.tail) === this.size - 1;
  }

  /** Posted entries the host has not consumed yet. */
  get pending(): number {
    return this.distance(this.head, this.tail);
  }

  /**
   * Head doorbell: the host consumed entries up to v. A value outside the
   * posted entries is an invalid doorbell write (false).
   */
  setHead(v: number): boolean {
    if (v >= this.size || this.distance(this.head, v) > this.distance(this.head, this.tail)) return false;
    this.head = v;
    for (const w of this.spaceWaiters.splice(0)) w();
    return true;
  }

  /**
   * Reserves the next slot: at once when the ring has room (no promise step on a completion's way),
   * else once the host has freed one. Returns its address and phase.
   */
  reserve(): CqSlot | Promise<CqSlot> {
    return this.full ? this.reserveWhenFree() : this.claim();
  }

  private async reserveWhenFree(): Promise<CqSlot> {
    while (this.full) await new Promise<void>((r) => this.spaceWaiters.push(r));
    return this.claim();
  }

  private claim(): CqSlot {
    const slot = { addr: this.base + this.tail * CQE_SIZE, phase: this.phase };
    this.tail = (this.tail + 1) % this.size;
    if (this.tail === 0) this.phase ^= 1;
    return slot;
  }

  /** Wakes anything waiting for space without space having appeared (queue torn down). */
  abandon(): void {
    for (const w of this.spaceWaiters.splice(0)) w();
  }
}

/** Where a completion goes: its entry's bus address and the phase tag it carries. */
export interface CqSlot {
  addr: number;
  phase: number;
}

/**
 * A completion queue entry. DW0 command specific, DW1 reserved, DW2 SQ head
 * and SQ id, DW3 CID, phase (bit 16), status (bits 31:17: SC, SCT, CRD, M, DNR).
 */
export function encodeCqe(c: Completion, sqHead: number, sqId: number, cid: number, phase: number): Uint8Array {
  const e = new Uint8Array(CQE_SIZE);
  const v = new DataView(e.buffer);
  v.setUint32(0, c.dw0 >>> 0, true);
  v.setUint16(8, sqHead, true);
  v.setUint16(10, sqId, true);
  v.setUint16(12, cid, true);
  v.setUint16(14, (phase & 1) | ((c.status & 0x7ff) << 1) | (c.dnr ? 0x8000 : 0), true);
  return e;
}

/** A submission queue entry, read in place (NVMe 1.4 §4.2). */
export class Sqe {
  private readonly v: DataView;
  constructor(readonly bytes: Uint8Array) {
    this.v = new DataView(bytes.buffer, bytes.byteOffset, SQE_SIZE);
  }
  get opcode(): number {
    return this.bytes[0]!;
  }
  /** FUSE (bits 9:8) and PSDT (bits 15:14) of CDW0. */
  get flags(): number {
    return this.bytes[1]!;
  }
  get cid(): number {
    return this.v.getUint16(2, true);
  }
  get nsid(): number {
    return this.v.getUint32(4, true);
  }
  get prp1(): number {
    return this.u64(24);
  }
  get prp2(): number {
    return this.u64(32);
  }
  /** Command dword 10-15. */
  dw(n: 10 | 11 | 12 | 13 | 14 | 15): number {
    return this.v.getUint32(4 * n, true);
  }
  /** CDW10 | CDW11 << 32 (Starting LBA and the like). */
  get dw10_11(): number {
    return this.u64(40);
  }
  private u64(at: number): number {
    return this.v.getUint32(at, true) + this.v.getUint32(at + 4, true) * 0x1_0000_0000;
  }
}
