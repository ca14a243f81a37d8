/**
 * Short-lived byte buffers carved out of shared slabs. A 4 KiB TLP or frame
 * is above Node's Buffer pool size, so each would otherwise get an
 * ArrayBuffer of its own: a calloc, a backing store and external-memory
 * accounting that drives the garbage collector, per TLP, in every process a
 * TLP crosses. A buffer from here is a view that stays valid as long as it is
 * referenced (a replay buffer, a port queue); its slab is freed when none of
 * its views is. Never handed out twice, so callers may keep and write them.
 */

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
