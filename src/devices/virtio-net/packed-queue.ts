// The device side of a packed virtqueue (virtio spec v1.2 §2.8, VIRTIO_F_RING_PACKED), checked
// as a device must check what a driver hands it. Layout in driver memory:
//
//   descriptor ring (16-byte aligned), size entries of 16 B (size need not be a power of two):
//     0 addr le64 | 8 len le32 | 12 id le16 | 14 flags le16
//       (NEXT 1, WRITE 2, INDIRECT 4, AVAIL 1 << 7, USED 1 << 15)
//   driver area: driver event suppression (4-byte aligned), written by the driver:
//     0 off_wrap le16 (position | wrap counter << 15) | 2 flags le16 (ENABLE 0, DISABLE 1, DESC 2)
//   device area: device event suppression, the same layout, written by the device
//
// Why this layout: the device learns what is available from the descriptors themselves. A
// descriptor at ring position p is available when its AVAIL bit equals the wrap counter of p's
// lap (1 on the first lap, flipping each time the position wraps) and its USED bit does not;
// the device gives a buffer back by writing one used descriptor (its id and length, AVAIL and
// USED both equal to the wrap counter) at the next used position, which then moves on by the
// chain's length. So one read of the ring tells both which chains are there and where their
// buffers are: a transmit batch costs two dependent reads (ring, data) instead of the split
// ring's three (avail ring, descriptor table, data) — two round trips over PCIeOE, not three.
//
// A chain is consecutive descriptors linked by NEXT; its buffer id is in its last descriptor.
// The driver writes a chain's first flags last (§2.8.21), so an available head means the rest
// is written — as seen by the read that saw the head, or any read issued after it. A read
// shows a chain's head before the rest (ascending addresses); a chain across the ring's end
// is in two reads, whose order on the fabric is not fixed (a later PCIe read may pass an
// earlier one), so it is taken only when an earlier read saw its head available. A read that
// shows a head available and a later descriptor of its chain not is read again, and a driver
// that leaves it so is in error.
//
// The device reads a window of the ring (RING_WINDOW descriptors) from the first position it
// has not read, not the whole ring: over PCIeOE each transmit batch's ring read then moves
// 1 KiB instead of 4 KiB at 256 entries. A window that ends in an available chain yields the
// chains before it; the next read (the transmit pipeline issues it at once) goes on from there.
// The device's receive ring is read whole (net-device.ts). Positions are counted here from the
// ring's start without wrapping (a JS number holds 2^53 of them): lap = position / size,
// position mod size the slot.
//
// With VIRTIO_F_EVENT_IDX the suppression structures carry positions: the device asks for a
// doorbell at the first position it has not read (written before each ring read, as the split
// ring's avail_event: the driver writes its descriptors before it reads ours, one of the two
// sees the other), and the driver asks for an interrupt when the used descriptor at its
// off_wrap is written. The driver's structure is read beside each ring read (two reads out at
// once: no round trip of its own) so a publish can decide without one.
//
// Bad input throws VirtqueueError (the device sets DEVICE_NEEDS_RESET): a chain longer than the
// ring (NEXT all the way round: a loop), an INDIRECT descriptor (not offered), a buffer of the
// wrong direction, a buffer id beyond the queue size or one already in use, a head whose chain
// stays incomplete. Memory that is not there makes the DMA port throw, handled the same way.
import type { DmaPort } from '../../pci/function.ts';
import { addBuffer, type Chain, DescFlag, type DeviceQueue, type Eagerness, NEVER_EAGER, type QueueSetup, RingBase, VirtqueueError, type Wish } from './virtqueue.ts';

const DESC_SIZE = 16;
const AVAIL = 1 << 7;
const USED = 1 << 15;

export const enum EventFlag {
  Enable = 0,
  Disable = 1,
  Desc = 2,
}

/** Ring reads that show a head available and its chain not, before the driver is held in error. */
const TORN_RETRIES = 3;

/**
 * Descriptors a ring read covers from the first position not read: a transmit batch of
 * Linux's (a TSO packet is a descriptor for its headers and one per page fragment, at most
 * 18) and more, in 1 KiB instead of the whole ring's 4 KiB at 256 entries.
 */
export const RING_WINDOW = 64;

/** A window of the ring as read: one or two reads (the second from the ring's start), each with the position of its first descriptor. */
type Window = { from: number; view: DataView }[];

/** The wrap counter of position `p`'s lap: 1 on the first, flipping at each wrap. */
export const wrapOf = (p: number, size: number): number => (Math.floor(p / size) & 1) ^ 1;

/** A position as an off_wrap field: the slot, and the lap's wrap counter in bit 15. */
export const offWrap = (p: number, size: number): number => (p % size) | (wrapOf(p, size) << 15);

/** Whether descriptor flags at a position of wrap counter `wrap` make it available. */
export const isAvailable = (flags: number, wrap: number): boolean => ((flags & AVAIL) !== 0) === (wrap === 1) && ((flags & USED) !== 0) !== (wrap === 1);

/** The AVAIL/USED bits a driver (available) or device (used) writes in a lap of wrap counter `wrap`. */
export const availBits = (wrap: number): number => (wrap ? AVAIL : USED);
export const usedBits = (wrap: number): number => (wrap ? AVAIL | USED : 0);

/**
 * The position an off_wrap field names, taken next to `ref`: in ref's lap if the wrap counters
 * agree, else in the lap before (the driver's event lags the device's position; an event a lap
 * ahead then lies behind, as if passed, until the device reaches that lap).
 */
export function eventPosition(offWrapField: number, ref: number, size: number): number {
  const lap = Math.floor(ref / size);
  const w = offWrapField >> 15;
  return (w === wrapOf(ref, size) ? lap : lap - 1) * size + (offWrapField & 0x7fff);
}

export class PackedQueue extends RingBase implements DeviceQueue {
  /** The first position not read yet (past the chains held). */
  private nextAvail = 0;
  /** Chains read and not yet taken, in ring order. */
  private held: Chain[] = [];
  /** Buffer ids read and not yet published, with how many descriptors each chain took. */
  private readonly inUse = new Map<number, number>();
  /** Used descriptors not yet written: [id, len, descriptors] triples. */
  private pending: number[] = [];
  /** The next position a used descriptor goes to. */
  private nextUsed = 0;
  /** The device event structure last written (off_wrap | flags << 16). */
  private deviceEvent?: number;
  /** The driver's event structure as last read. */
  private seenFlags = EventFlag.Enable;
  private seenOffWrap = 0;
  /** A head position an earlier read saw available (its chain may then come from any later read). */
  private seenHead = -1;

  constructor(
    setup: QueueSetup,
    mem: DmaPort,
    eventIdx = false,
    eager: Readonly<Eagerness> = NEVER_EAGER,
    /** Descriptors a ring read covers (RING_WINDOW). */
    private readonly window = RING_WINDOW,
  ) {
    super(setup, mem, eventIdx, eager, { powerOfTwo: false, driverAlign: 4 });
    if (!Number.isInteger(window) || window < 1) throw new RangeError(`ring window ${window}: expected a positive integer`);
  }

  /**
   * The chains the driver made available (at most `max`), in ring order; none when there are
   * none. The ring is read only when the chains read before are used up (or a prefetch() is on
   * its way: its answer is awaited): one window of it (refill).
   */
  async popBatch(max = Infinity): Promise<Chain[]> {
    if (this.held.length === 0 && !(await this.prefetch())) return [];
    return this.held.splice(0, Math.min(max, this.held.length));
  }

  /** Chains read and not yet taken. */
  get cached(): number {
    return this.held.length;
  }

  /** Gives buffer `head` (its id) back with `len` bytes written; the driver sees it after publish(). */
  push(head: number, len: number): void {
    const n = this.inUse.get(head);
    if (n === undefined) throw new VirtqueueError(`buffer id ${head} given back but not in use`);
    this.inUse.delete(head);
    this.pending.push(head, len, n);
  }

  /**
   * Writes the pending used descriptors and says whether the driver wants an interrupt for
   * them (decide()). The first one's flags land last: the driver reads used descriptors in
   * order and stops at the first whose flags do not say used, so it sees the batch whole or
   * not at all. A run of adjacent descriptors goes in one write (a write's dwords land in
   * ascending order: each descriptor's len before its id and flags).
   */
  async publish(): Promise<Wish> {
    const n = this.pending.length / 3;
    if (n === 0) return false;
    const { size, desc } = this.setup;
    const p = this.pending;
    this.pending = [];
    const old = this.nextUsed;
    const at: number[] = [];
    for (let k = 0, pos = old; k < n; pos += p[3 * k + 2]!, k++) at.push(pos);
    this.nextUsed = at[n - 1]! + p[3 * n - 1]!;
    const elem = (k: number, out: DataView, o: number) => {
      const len = p[3 * k + 1]!;
      out.setUint32(o + 8, len, true);
      out.setUint16(o + 12, p[3 * k]!, true);
      out.setUint16(o + 14, usedBits(wrapOf(at[k]!, size)) | (len ? DescFlag.Write : 0), true);
    };
    // Descriptors 1..n-1 in runs of adjacent slots, then descriptor 0 (len, then id and flags).
    for (let k = 1; k < n; ) {
      let e = k + 1;
      while (e < n && at[e] === at[e - 1]! + 1 && at[e]! % size !== 0) e++;
      const run = new Uint8Array(DESC_SIZE * (e - k));
      const v = new DataView(run.buffer);
      for (let j = k; j < e; j++) elem(j, v, DESC_SIZE * (j - k));
      // The address field is unused in a used descriptor: the run starts at the first length.
      await this.mem.dmaWrite(desc + DESC_SIZE * (at[k]! % size) + 8, run.subarray(8));
      k = e;
    }
    const first = new Uint8Array(DESC_SIZE);
    elem(0, new DataView(first.buffer), 0);
    await this.mem.dmaWrite(desc + DESC_SIZE * (old % size) + 8, first.subarray(8));
    return this.decide(old, this.nextUsed);
  }

  protected passed(old: number): boolean {
    return this.seenFlags === EventFlag.Desc && eventPosition(this.seenOffWrap, old, this.setup.size) < old;
  }

  protected off(): boolean {
    return this.seenFlags === EventFlag.Disable;
  }

  protected wants(old: number, now: number): boolean {
    if (this.seenFlags === EventFlag.Disable) return false;
    if (this.seenFlags !== EventFlag.Desc || !this.eventIdx) return true;
    return passesEvent(this.seenOffWrap, now, old, this.setup.size);
  }

  protected async readWish(): Promise<void> {
    this.seeWish(await this.mem.dmaRead(this.setup.driver, 4));
  }

  private seeWish(b: Uint8Array): void {
    this.seenOffWrap = b[0]! | (b[1]! << 8);
    this.seenFlags = b[2]! | (b[3]! << 8);
  }

  /**
   * Reads a window of the ring from the first position not read (and beside it the driver's
   * event structure) for chains past those held; false when none are new. A window that
   * ends inside a chain yields the chains before it (the next refill starts at that chain);
   * one that holds no whole chain is read again from its head (twice as long if the chain ran
   * past its end).
   */
  protected async refill(): Promise<boolean> {
    const { size, driver, device } = this.setup;
    // Ring me for the first position this read does not see (see the header); without the
    // event index, always (ENABLE: a driver's memory need not start zeroed).
    const event = this.eventIdx ? offWrap(this.nextAvail, size) | (EventFlag.Desc << 16) : EventFlag.Enable << 16;
    if (this.deviceEvent !== event) {
      this.deviceEvent = event;
      await this.mem.dmaWrite(device, Uint8Array.of(event & 0xff, (event >> 8) & 0xff, event >> 16, 0));
    }
    let window = this.window;
    for (let torn = 0; ; ) {
      // The driver may only reuse positions the device has given back: at most `size` past the next used one.
      const span = Math.min(window, this.nextUsed + size - this.nextAvail);
      if (span <= 0) return false;
      const [reads, wish] = await Promise.all([this.readWindow(this.nextAvail, span), this.mem.dmaRead(driver, 4)]);
      this.seeWish(wish);
      const before = this.held.length;
      const stop = this.parse(reads);
      if (this.held.length > before) return true;
      if (stop === 'empty') return false;
      if (stop === 'torn' && ++torn > TORN_RETRIES) throw new VirtqueueError(`descriptor chain at ${this.nextAvail % size}: its head is available, a later descriptor of it not`);
      // The head at nextAvail was seen available: a read issued from now on sees its whole chain.
      this.seenHead = this.nextAvail;
      if (stop === 'window') window = 2 * span;
    }
  }

  /**
   * Reads `n` descriptors from position `from`: one read up to the ring's end and, if the
   * window wraps, one from its start, both on their way at once (no round trip added).
   */
  private async readWindow(from: number, n: number): Promise<Window> {
    const { size, desc } = this.setup;
    const slot = from % size;
    const first = Math.min(n, size - slot);
    const reads = [this.mem.dmaRead(desc + DESC_SIZE * slot, DESC_SIZE * first)];
    if (first < n) reads.push(this.mem.dmaRead(desc, DESC_SIZE * (n - first)));
    return (await Promise.all(reads)).map((b, k) => ({ from: k ? from + first : from, view: new DataView(b.buffer, b.byteOffset, b.byteLength) }));
  }

  /**
   * Takes the available chains from a window of the ring, from nextAvail on, and says why it
   * stopped: 'empty' at a position not available; 'torn' at a head whose chain the window
   * shows incomplete; 'window' at the window's end (in a chain, or past the last one);
   * 'order' at a chain across the window's two reads whose head no earlier read saw available
   * (two reads on their way at once may be served in either order: the later positions could
   * be older than the head, and a driver writes a chain's other flags before their addresses).
   */
  private parse(reads: Window): 'empty' | 'torn' | 'window' | 'order' {
    const size = this.setup.size;
    const limit = this.nextUsed + size;
    const end = reads.at(-1)!.from + reads.at(-1)!.view.byteLength / DESC_SIZE;
    const part = (q: number) => (reads.length > 1 && q >= reads[1]!.from ? 1 : 0);
    const at = (q: number) => reads[part(q)]!.view;
    const off = (q: number) => DESC_SIZE * (q - reads[part(q)]!.from);
    let p = this.nextAvail;
    for (;;) {
      if (p >= end) return 'window';
      if (!isAvailable(at(p).getUint16(off(p) + 14, true), wrapOf(p, size))) return 'empty';
      const chain: Chain = { head: 0, readable: [], writable: [], readableBytes: 0, writableBytes: 0 };
      let q = p;
      let flags: number;
      do {
        if (q >= limit) throw new VirtqueueError(`descriptor chain at ${p % size} runs past the ${size} descriptors the ring holds (a loop)`);
        if (q >= end) return 'window';
        if (part(q) !== part(p) && this.seenHead !== p) return 'order';
        const v = at(q);
        const o = off(q);
        flags = v.getUint16(o + 14, true);
        if (q > p && !isAvailable(flags, wrapOf(q, size))) return 'torn';
        addBuffer(chain, v.getUint32(o, true) + v.getUint32(o + 4, true) * 2 ** 32, v.getUint32(o + 8, true), flags, `descriptor ${q % size} (chain at ${p % size})`);
        q++;
      } while (flags & DescFlag.Next);
      const id = at(q - 1).getUint16(off(q - 1) + 12, true);
      if (id >= size) throw new VirtqueueError(`buffer id ${id} beyond the queue size ${size} (chain at ${p % size})`);
      if (this.inUse.has(id)) throw new VirtqueueError(`buffer id ${id} made available again while in use (chain at ${p % size})`);
      this.inUse.set(id, q - p);
      chain.head = id;
      this.held.push(chain);
      p = q;
      this.nextAvail = p;
    }
  }
}

/**
 * Whether moving a position from `old` to `next` passes the event an off_wrap field names: the
 * test the device applies to the driver's event and a driver to the device's (soft driver).
 */
export function passesEvent(offWrapField: number, next: number, old: number, size: number): boolean {
  const e = eventPosition(offWrapField, next, size);
  return e >= old && e < next;
}
