/**
 * Transmit replay buffer: the payloads sent but not yet acknowledged, indexed
 * by sequence number, oldest first. A power-of-two ring so lookup by 16-bit
 * sequence number is a mask. Payloads encoded in its arena (reserve) give
 * their memory back as they are acknowledged.
 */

import { ReplayArena } from './replay-arena.ts';
import { MAX_WINDOW, seqAdd, seqDiff } from './seq.ts';

export class ReplayBuffer {
  private readonly slots: (Uint8Array | undefined)[];
  private readonly mask: number;
  /** Sequence number of the oldest unacknowledged entry. */
  private first = 0;
  private count = 0;

  private readonly arena: ReplayArena;

  constructor(readonly capacity: number, arenaBytes = 0) {
    if (capacity < 1 || capacity > MAX_WINDOW || (capacity & (capacity - 1)) !== 0) {
      throw new RangeError(`replay buffer capacity ${capacity} must be a power of two below 2^15`);
    }
    this.slots = new Array(capacity);
    this.mask = capacity - 1;
    this.arena = new ReplayArena(arenaBytes);
  }

  /** Memory for a payload to be pushed (after those reserved before it): see ReplayArena. */
  reserve(size: number): Uint8Array {
    return this.arena.reserve(size);
  }

  get size(): number {
    return this.count;
  }

  get full(): boolean {
    return this.count === this.capacity;
  }

  /** Sequence number of the oldest entry (the next expected ACK point). */
  get oldest(): number {
    return this.first;
  }

  /** Sequence number the next pushed entry gets. */
  get next(): number {
    return seqAdd(this.first, this.count);
  }

  push(payload: Uint8Array): number {
    if (this.full) throw new RangeError('replay buffer full');
    const seq = this.next;
    this.slots[seq & this.mask] = payload;
    this.count++;
    return seq;
  }

  get(seq: number): Uint8Array | undefined {
    const d = seqDiff(seq, this.first);
    return d >= 0 && d < this.count ? this.slots[seq & this.mask] : undefined;
  }

  /**
   * Drop everything before `ack` (a cumulative ACK: the next sequence number
   * the peer expects). Returns how many entries were released; an ACK outside
   * the buffer's range releases nothing and returns -1.
   */
  acknowledge(ack: number): number {
    const n = seqDiff(ack, this.first);
    if (n < 0 || n > this.count) return -1;
    for (let i = 0; i < n; i++) {
      const slot = (this.first + i) & this.mask;
      this.arena.release(this.slots[slot]!);
      this.slots[slot] = undefined;
    }
    this.first = ack;
    this.count -= n;
    return n;
  }
}
