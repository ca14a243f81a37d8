/**
 * Memory for the TLPs a channel sends, reused in the order the peer acknowledges them.
 *
 * A TLP is encoded once and kept, unchanged, until the peer's cumulative ACK covers it (the
 * replay buffer resends it from there). Encoded into a fresh slab (slab.ts), every 4 KiB TLP
 * touches memory the process has not used before: page faults and cache misses that cost more
 * than the copy itself, and external memory that drives the collector. TLPs are encoded,
 * sent and acknowledged in one order, so their memory can be a ring: reserved at its head,
 * given back at its tail as ACKs arrive, and the same few MiB serve every TLP.
 *
 * Rules for the caller: what is reserved is handed to the sender (which keeps it until it is
 * acknowledged) in the order it was reserved, and released in that order. Something reserved
 * and never sent is only skipped over (its room comes back when a later one is released).
 *
 * A frame still waiting to leave may hold a view of memory whose TLP was acknowledged (a replay
 * queued before the ACK of the original came in) and that a later TLP has since reused: its
 * sequence number is one the peer has already received, so it is dropped there as a duplicate
 * whatever it carries.
 */

import { encodeSlab } from '../slab.ts';

export class ReplayArena {
  private memory: ArrayBuffer | null = null;
  /** Next byte to reserve. */
  private head = 0;
  /** First byte still in use (when head === tail and not wrapped: nothing is). */
  private tail = 0;
  /** The head has wrapped to the start while the tail has not: the free room is [head, tail). */
  private wrapped = false;

  constructor(readonly bytes: number) {}

  /**
   * `size` bytes at the ring's head, or, when the ring has no room (more unacknowledged than it
   * holds), from the encode slab; either way not shared with anything else.
   */
  reserve(size: number): Uint8Array {
    const room = (size + 7) & ~7;
    let at: number;
    if (!this.wrapped) {
      if (this.head === this.tail) this.head = this.tail = 0; // empty: start over where the memory is warm
      if (this.head + room <= this.bytes) at = this.head;
      else if (room <= this.tail) {
        at = 0;
        this.wrapped = true;
      } else return encodeSlab.alloc(size);
    } else if (this.head + room <= this.tail) at = this.head;
    else return encodeSlab.alloc(size);
    this.head = at + room;
    this.memory ??= new ArrayBuffer(this.bytes);
    return new Uint8Array(this.memory, at, size);
  }

  /** `view` was acknowledged (views are released in the order they were reserved; others are ignored). */
  release(view: Uint8Array): void {
    if (view.buffer !== this.memory) return;
    const at = view.byteOffset;
    if (this.wrapped && at < this.tail) this.wrapped = false; // the tail follows the head to the start
    this.tail = at + ((view.length + 7) & ~7);
  }

  /** Bytes in use (reserved and not yet released, skipped ones included). */
  get used(): number {
    return this.wrapped ? this.bytes - this.tail + this.head : this.head - this.tail;
  }
}
