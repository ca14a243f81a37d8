/**
 * Short-lived byte buffers carved out of shared slabs. A 4 KiB TLP or frame
 * is above Node's Buffer pool size, so each would otherwise get an
 * ArrayBuffer of its own: a calloc, a backing store and external-memory
 * accounting that drives the garbage collector, per TLP, in every process a
 * TLP crosses. A buffer from here is a view that stays valid as long as it is
 * referenced (a replay buffer, a port queue); its slab is freed when none of
 * its views is. Never handed out twice, so callers may keep and write them.
 *
 * Slabs come and go at the fabric's byte rate (hundreds of MB/s), and V8
 * counts every ArrayBuffer against the old generation's limit until its
 * backing store is swept. That sweep normally runs on a background thread;
 * with the process pinned to a busy CPU (the lab's placements) the thread
 * barely runs, the count only grows, and the heap is marked and compacted
 * every 50-100 ms (fabric bench, memif, spread: 20-40 full collections a
 * second per endpoint, 10-20 % of its CPU). Sweeping on the main thread,
 * right after each scavenge that freed the slabs, costs a few free() calls
 * and keeps full collections to about one per run.
 */

import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--no-concurrent-array-buffer-sweeping');

export class Slab {
  private slab: Buffer;
  private used = 0;

  constructor(private readonly bytes: number) {
    this.slab = Buffer.allocUnsafe(bytes);
  }

  /** `size` bytes, uninitialised. */
  alloc(size: number): Buffer {
    if (size > this.bytes / 4) return Buffer.allocUnsafe(size);
    if (this.used + size > this.bytes) {
      this.slab = Buffer.allocUnsafe(this.bytes);
      this.used = 0;
    }
    const at = this.used;
    this.used = (at + size + 7) & ~7;
    return this.slab.subarray(at, at + size);
  }
}

/** The slab TLPs and frames of this process are encoded into. */
export const encodeSlab = new Slab(256 * 1024);

/** Where received bytes that outlive their transient frame (a memif ring slot) are copied. */
const keepSlab = new Slab(256 * 1024);

/** A copy of `bytes` that stays valid as long as it is referenced: what is kept of a transient frame. */
export function keptCopy(bytes: Uint8Array): Buffer {
  const copy = keepSlab.alloc(bytes.length);
  copy.set(bytes);
  return copy;
}
