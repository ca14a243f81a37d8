// The device side of a split virtqueue (virtio spec v1.2 §2.7), checked as a
// device must check what a driver hands it. Layout in driver memory:
//
//   descriptor table (16-byte aligned), size entries of 16 B:
//     0 addr le64 | 8 len le32 | 12 flags le16 (NEXT 1, WRITE 2, INDIRECT 4) | 14 next le16
//   driver area "avail" (2-byte aligned):
//     0 flags le16 (NO_INTERRUPT 1) | 2 idx le16 | 4 ring[size] le16 | 4+2*size used_event le16
//   device area "used" (4-byte aligned):
//     0 flags le16 (NO_NOTIFY 1) | 2 idx le16 | 4 ring[size] {id le32, len le32} | 4+8*size avail_event le16
//
// A chain the driver got wrong (head or next beyond the table, more links than
// the table has entries — a loop —, an indirect descriptor that was not
// negotiated, a buffer of the wrong direction) throws VirtqueueError: the
// device then marks itself DEVICE_NEEDS_RESET. Memory that is not there makes
// the DMA port throw, which the device treats the same way.
import type { DmaPort } from '../../pci/function.ts';

export const enum DescFlag {
  Next = 1,
  Write = 2,
  Indirect = 4,
}

const enum AvailFlag {
  NoInterrupt = 1,
}

const DESC_SIZE = 16;

/** A driver error in a queue's set-up or in a chain: the device needs a reset. */
export class VirtqueueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VirtqueueError';
  }
}

/** One buffer of a chain: guest memory [addr, addr + len). */
export interface Segment {
  addr: number;
  len: number;
}

/** A descriptor chain taken from the avail ring: its head (the id given back in the used ring) and buffers. */
export interface Chain {
  head: number;
  /** Device-readable buffers, in order (the driver's data). */
  readable: Segment[];
  /** Device-writable buffers, in order (where the device writes). */
  writable: Segment[];
  readableBytes: number;
  writableBytes: number;
}

/** What the driver programmed through the common configuration structure. */
export interface QueueSetup {
  size: number;
  desc: number;
  driver: number;
  device: number;
}

export class SplitQueue {
  /** Next avail ring index to take (free-running, wraps at 2^16). */
  private lastAvail = 0;
  /** Heads read from the avail ring and not yet taken. */
  private heads: number[] = [];
  /** Next used ring index to fill (free-running). */
  private usedIdx = 0;
  /** usedIdx as last published to the driver. */
  private publishedUsed = 0;

  constructor(
    readonly setup: QueueSetup,
    private readonly mem: DmaPort,
  ) {
    const { size, desc, driver, device } = setup;
    if (!Number.isInteger(size) || size < 1 || size > 32768 || (size & (size - 1)) !== 0) throw new VirtqueueError(`queue size ${size} is not a power of two in 1..32768`);
    if (desc % 16 || driver % 2 || device % 4) throw new VirtqueueError(`misaligned ring: desc 0x${desc.toString(16)} (16), driver 0x${driver.toString(16)} (2), device 0x${device.toString(16)} (4)`);
  }

  /**
   * The next chain the driver made available, or undefined when there is none.
   * Reads the avail index only when the heads read before are used up.
   */
  async pop(): Promise<Chain | undefined> {
    if (this.heads.length === 0 && !(await this.refill())) return undefined;
    const head = this.heads.shift()!;
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    return this.walk(head);
  }

  /** Puts `head` in the used ring with `len` bytes written; visible to the driver after publish(). */
  async push(head: number, len: number): Promise<void> {
    const e = new Uint8Array(8);
    const v = new DataView(e.buffer);
    v.setUint32(0, head, true);
    v.setUint32(4, len, true);
    await this.mem.dmaWrite(this.setup.device + 4 + 8 * (this.usedIdx % this.setup.size), e);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
  }

  /**
   * Writes the used index if it moved, and says whether the driver wants an
   * interrupt for it. The flags are read after the index is written: a driver
   * that re-enables interrupts and then checks the used index either sees the
   * new index or has cleared the flag before we read it — no lost wake-up.
   */
  async publish(): Promise<boolean> {
    if (this.usedIdx === this.publishedUsed) return false;
    const idx = new Uint8Array(2);
    new DataView(idx.buffer).setUint16(0, this.usedIdx, true);
    await this.mem.dmaWrite(this.setup.device + 2, idx);
    this.publishedUsed = this.usedIdx;
    const flags = await this.mem.dmaRead(this.setup.driver, 2);
    return (flags[0]! & AvailFlag.NoInterrupt) === 0;
  }

  /** Reads the avail index and the ring entries since lastAvail; false when none are new. */
  private async refill(): Promise<boolean> {
    const { size, driver } = this.setup;
    const raw = await this.mem.dmaRead(driver + 2, 2);
    const idx = raw[0]! | (raw[1]! << 8);
    const n = (idx - this.lastAvail) & 0xffff;
    if (n === 0) return false;
    if (n > size) throw new VirtqueueError(`avail index ${idx} is ${n} ahead of ${this.lastAvail}, more than the queue size ${size}`);
    const first = this.lastAvail % size;
    const run1 = Math.min(n, size - first);
    const parts = [await this.mem.dmaRead(driver + 4 + 2 * first, 2 * run1)];
    if (run1 < n) parts.push(await this.mem.dmaRead(driver + 4, 2 * (n - run1)));
    for (const p of parts) for (let i = 0; i < p.length; i += 2) this.heads.push(p[i]! | (p[i + 1]! << 8));
    return true;
  }

  private async walk(head: number): Promise<Chain> {
    const size = this.setup.size;
    const chain: Chain = { head, readable: [], writable: [], readableBytes: 0, writableBytes: 0 };
    let i = head;
    for (let links = 0; ; links++) {
      if (i >= size) throw new VirtqueueError(`descriptor ${i} beyond the queue size ${size} (chain from ${head})`);
      if (links >= size) throw new VirtqueueError(`descriptor chain from ${head} has more than ${size} links (a loop)`);
      const d = await this.mem.dmaRead(this.setup.desc + DESC_SIZE * i, DESC_SIZE);
      const v = new DataView(d.buffer, d.byteOffset, DESC_SIZE);
      const addr = v.getUint32(0, true) + v.getUint32(4, true) * 2 ** 32;
      const len = v.getUint32(8, true);
      const flags = v.getUint16(12, true);
      if (flags & DescFlag.Indirect) throw new VirtqueueError(`descriptor ${i}: INDIRECT was not negotiated`);
      if (flags & DescFlag.Write) {
        chain.writable.push({ addr, len });
        chain.writableBytes += len;
      } else {
        if (chain.writable.length) throw new VirtqueueError(`descriptor ${i}: a readable buffer after a writable one (chain from ${head})`);
        chain.readable.push({ addr, len });
        chain.readableBytes += len;
      }
      if (!(flags & DescFlag.Next)) return chain;
      i = v.getUint16(14, true);
    }
  }
}

/** Gathers the readable buffers of a chain into one byte array. */
export async function gather(mem: DmaPort, segs: readonly Segment[], total: number): Promise<Uint8Array> {
  if (segs.length === 1) return mem.dmaRead(segs[0]!.addr, segs[0]!.len);
  const out = new Uint8Array(total);
  let at = 0;
  for (const s of segs) {
    if (s.len === 0) continue;
    out.set(await mem.dmaRead(s.addr, s.len), at);
    at += s.len;
  }
  return out;
}

/** Scatters `data` over writable buffers (which must hold it), in order; returns the bytes written. */
export async function scatter(mem: DmaPort, segs: readonly Segment[], data: Uint8Array): Promise<number> {
  let at = 0;
  for (const s of segs) {
    if (at >= data.length) break;
    const n = Math.min(s.len, data.length - at);
    if (n === 0) continue;
    await mem.dmaWrite(s.addr, data.subarray(at, at + n));
    at += n;
  }
  return at;
}
