// The device side of a split virtqueue (virtio spec v1.2 §2.7), checked as a
// device must check what a driver hands it, and what it shares with the packed
// layout (packed-queue.ts): chains, the queue interface the device's workers use,
// one ring read at a time, the interrupt decision. Layout in driver memory:
//
//   descriptor table (16-byte aligned), size entries of 16 B:
//     0 addr le64 | 8 len le32 | 12 flags le16 (NEXT 1, WRITE 2, INDIRECT 4) | 14 next le16
//   driver area "avail" (2-byte aligned):
//     0 flags le16 (NO_INTERRUPT 1) | 2 idx le16 | 4 ring[size] le16 | 4+2*size used_event le16
//   device area "used" (4-byte aligned):
//     0 flags le16 (NO_NOTIFY 1) | 2 idx le16 | 4 ring[size] {id le32, len le32} | 4+8*size avail_event le16
//
// With VIRTIO_F_EVENT_IDX (§2.7.7, §2.7.10) the flags give way to indices: the driver
// wants an interrupt once the used index passes used_event, and the device wants a
// notification once the avail index passes avail_event. The device writes avail_event
// = the next entry it has not read before each read of the avail ring: while it works
// through a batch the driver's new entries do not ring the doorbell (the next read finds
// them), and once a read finds nothing new the next entry rings it. The write goes before
// the read (both DMA to the driver's memory, in order), and the driver writes its index
// before it reads avail_event: one of the two sees the other, so no entry waits unseen.
// A device that reads ahead (prefetch(), receive buffers) holds heads it has read and not
// taken: its reads start, and avail_event points, past them.
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

/**
 * publish()'s answer: interrupt the driver now, not at all, or as the wish read after the used
 * index decides (`quietMs`: how long the queue had not published before this).
 */
export type Wish = boolean | { later: Promise<boolean>; seen: Unasked; quietMs: number };

/**
 * When a publish interrupts at once, with the event index, on a driver event seen already
 * passed, instead of reading the driver's wish first (RingBase.decide). The device owns it
 * and may change it while its queues run.
 */
export interface Eagerness {
  /** Every time. */
  always: boolean;
  /** When the queue's previous publish was at least this long ago (ms; Infinity: never). */
  quietMs: number;
  /** The clock for quietMs (ms). */
  now(): number;
}

/** Never eager: the driver's wish is read whenever the last one seen did not ask. */
export const NEVER_EAGER: Readonly<Eagerness> = { always: false, quietMs: Infinity, now: () => 0 };

/**
 * Why the wish last seen did not ask for an interrupt: interrupts off (NO_INTERRUPT, DISABLE),
 * its event ahead of the entries published, or its event passed before them (eager interrupts).
 */
export type Unasked = 'off' | 'ahead' | 'passed';

/** What the driver programmed through the common configuration structure. */
export interface QueueSetup {
  size: number;
  desc: number;
  driver: number;
  device: number;
}

/**
 * vring_need_event: whether moving an index from `old` to `next` passes `event`
 * (all free-running 16-bit values) — the test both sides apply to the other's event index.
 */
export function needEvent(event: number, next: number, old: number): boolean {
  return ((next - event - 1) & 0xffff) < ((next - old) & 0xffff);
}

/**
 * What the device's queue workers use of a ring, split or packed: chains taken in ring order
 * (read ahead or on demand), given back with push(), published with publish().
 */
export interface DeviceQueue {
  readonly setup: QueueSetup;
  popBatch(max?: number): Promise<Chain[]>;
  pop(): Promise<Chain | undefined>;
  prefetch(): Promise<boolean>;
  readonly prefetching: boolean;
  readonly cached: number;
  push(head: number, len: number): void;
  publish(): Promise<Wish>;
}

/**
 * What both ring layouts share: one ring read at a time (prefetch), and the interrupt decision
 * after a publish from the driver's wish as last seen (decide). A layout supplies how to read
 * its ring (refill) and the driver's wish (readWish), and how to judge them (wants, passed).
 */
export abstract class RingBase {
  /** The ring read on its way (prefetch()), if one is. */
  private refilling?: Promise<boolean>;
  /** When the last publish decided (eager.now()). */
  private lastPublish = -Infinity;

  constructor(
    readonly setup: QueueSetup,
    protected readonly mem: DmaPort,
    /** VIRTIO_F_EVENT_IDX was negotiated: event indices instead of the flags alone. */
    readonly eventIdx: boolean,
    /**
     * With the event index: when the event last seen lies behind the entries being
     * published (it asked for an interrupt at an entry already given), whether to interrupt
     * at once instead of reading it again (see decide()).
     */
    private readonly eager: Readonly<Eagerness>,
    /** The layout's rules: split rings are a power of two long, their driver area 2-byte aligned; packed ones any length, 4. */
    layout: { powerOfTwo: boolean; driverAlign: number },
  ) {
    const { size, desc, driver, device } = setup;
    if (!Number.isInteger(size) || size < 1 || size > 32768 || (layout.powerOfTwo && (size & (size - 1)) !== 0)) {
      throw new VirtqueueError(`queue size ${size} is not ${layout.powerOfTwo ? 'a power of two ' : ''}in 1..32768`);
    }
    if (desc % 16 || driver % layout.driverAlign || device % 4) {
      throw new VirtqueueError(`misaligned ring: desc 0x${desc.toString(16)} (16), driver 0x${driver.toString(16)} (${layout.driverAlign}), device 0x${device.toString(16)} (4)`);
    }
  }

  abstract popBatch(max?: number): Promise<Chain[]>;
  /** Reads the ring past the chains held; false when it has none new. */
  protected abstract refill(): Promise<boolean>;
  /** Reads the driver's interrupt wish into the state wants() and passed() judge. */
  protected abstract readWish(): Promise<void>;
  /** Whether the driver, as last seen, wants an interrupt for the used entries from `old` up to `now`. */
  protected abstract wants(old: number, now: number): boolean;
  /** Whether the driver's event, as last seen, lies before `old`, an entry published already. */
  protected abstract passed(old: number): boolean;
  /** Whether the driver, as last seen, had its interrupts off (not an event it waits for). */
  protected abstract off(): boolean;

  /**
   * Reads the ring (and what it points to) ahead of popBatch(), keeping the chains already
   * read: a receive queue's buffers are then at hand when a frame comes, written with posted
   * writes and no read. One read at a time: a call while one is on its way gets its answer
   * (true: new chains).
   */
  prefetch(): Promise<boolean> {
    if (this.refilling) return this.refilling;
    const p = this.refill().finally(() => {
      this.refilling = undefined;
    });
    this.refilling = p;
    return p;
  }

  /** Whether a ring read is on its way. */
  get prefetching(): boolean {
    return this.refilling !== undefined;
  }

  /** The next available chain, or undefined. */
  async pop(): Promise<Chain | undefined> {
    return (await this.popBatch(1))[0];
  }

  /**
   * Whether the driver wants an interrupt for the used entries just published, from `old` up to
   * `now` (its used index written already). When the last ring read already saw the driver
   * asking, that answers at once (the driver only withdraws a wish on its own, and an interrupt
   * it no longer wanted is harmless: spec §2.7.7.2, "SHOULD NOT"); otherwise the answer is
   * `later`, from the wish read after the index is written: a driver that re-enables interrupts
   * and then checks the used index either sees the new index or has asked for the interrupt
   * before we read — no lost wake-up. Over PCIeOE that read is a round trip, which the common
   * case skips and which the caller need not wait for before it goes on with the queue.
   *
   * Eager (with the event index): when the event last seen lies before `old`, the driver asked
   * for the interrupt that went (or would have gone) then, and has not been seen since. It may
   * be in its poll, which an interrupt does not disturb, or have asked again at its last used
   * entry, which this publish passes: an interrupt is then due, and waiting for a read to tell
   * only delays it. The spec says a device SHOULD NOT interrupt when not asked (§2.7.10); one
   * the driver did not need costs it a look at the used index, while the read costs every
   * needed interrupt a round trip. Eager always, or only when the queue had been quiet (no
   * publish for eager.quietMs): a driver that was given nothing for a while has most likely
   * finished its poll and asked again (Linux re-arms its event at its last used entry when
   * its poll ends), while one given entries moments ago is most likely still polling.
   */
  protected decide(old: number, now: number): Wish {
    const at = this.eager.now();
    const quietMs = at - this.lastPublish;
    this.lastPublish = at;
    if ((this.eager.always || quietMs >= this.eager.quietMs) && this.eventIdx && this.passed(old)) return true;
    const wish = this.readWish();
    if (this.wants(old, now)) {
      // Read anyway, not awaited: the next publish decides on what the driver wants now.
      wish.catch(() => {});
      return true;
    }
    return { later: wish.then(() => this.wants(old, now)), seen: this.off() ? 'off' : this.passed(old) ? 'passed' : 'ahead', quietMs };
  }
}

/** Adds one descriptor's buffer to a chain being walked: readable ones first, then writable ones. */
export function addBuffer(chain: Chain, addr: number, len: number, flags: number, where: string): void {
  if (flags & DescFlag.Indirect) throw new VirtqueueError(`${where}: INDIRECT was not negotiated`);
  if (flags & DescFlag.Write) {
    chain.writable.push({ addr, len });
    chain.writableBytes += len;
  } else {
    if (chain.writable.length) throw new VirtqueueError(`${where}: a readable buffer after a writable one`);
    chain.readable.push({ addr, len });
    chain.readableBytes += len;
  }
}

export class SplitQueue extends RingBase implements DeviceQueue {
  /** Next avail ring index to take (free-running, wraps at 2^16). */
  private lastAvail = 0;
  /** Heads read from the avail ring and not yet taken: ring entries lastAvail, lastAvail + 1, ... */
  private heads: number[] = [];
  /**
   * The descriptor table as read right after the avail ring: it holds every
   * chain of the heads above (the driver writes a chain before it publishes
   * its head, and may not touch it again until the device gives it back; so a
   * later read of the table holds the chains of the heads read before, too).
   */
  private table?: DataView;
  /** Used elements not yet written: [head, len] pairs. */
  private pending: number[] = [];
  /** Next used ring index to publish (free-running). */
  private usedIdx = 0;
  /** The avail_event last written (event index only): not written again while it holds. */
  private availEvent?: number;
  /**
   * The driver's interrupt wish as the last avail ring read saw it: its flags, and
   * used_event (which lies right behind the ring, so the same read carries it).
   */
  private seenFlags = 0;
  private seenUsedEvent = 0;

  constructor(setup: QueueSetup, mem: DmaPort, eventIdx = false, eager: Readonly<Eagerness> = NEVER_EAGER) {
    super(setup, mem, eventIdx, eager, { powerOfTwo: true, driverAlign: 2 });
  }

  /**
   * The chains the driver made available (at most `max`), in ring order; none
   * when there are none. Memory is read only when the heads read before are
   * used up (or a prefetch() is on its way: its answer is awaited): the avail
   * ring in one read and the descriptor table in another, so a batch costs two
   * reads however many chains it holds (two round trips over PCIeOE, instead of
   * several per packet).
   */
  async popBatch(max = Infinity): Promise<Chain[]> {
    if (this.heads.length === 0 && !(await this.prefetch())) return [];
    const take = this.heads.splice(0, Math.min(max, this.heads.length));
    this.lastAvail = (this.lastAvail + take.length) & 0xffff;
    return take.map((h) => this.walk(h));
  }

  /** Heads read from the avail ring and not yet taken. */
  get cached(): number {
    return this.heads.length;
  }

  /** Gives `head` back with `len` bytes written; the driver sees it after publish(). */
  push(head: number, len: number): void {
    this.pending.push(head, len);
  }

  /**
   * Writes the pending used elements (one write per contiguous run) and then
   * the used index, and says whether the driver wants an interrupt for them
   * (decide()): NO_INTERRUPT clear, or with the event index, the used index passed
   * used_event (the avail ring read carries both: it lies right behind the ring).
   */
  async publish(): Promise<Wish> {
    const n = this.pending.length / 2;
    if (n === 0) return false;
    const { size, device } = this.setup;
    const elems = new Uint8Array(8 * n);
    const v = new DataView(elems.buffer);
    for (let i = 0; i < n; i++) {
      v.setUint32(8 * i, this.pending[2 * i]!, true);
      v.setUint32(8 * i + 4, this.pending[2 * i + 1]!, true);
    }
    this.pending = [];
    const first = this.usedIdx % size;
    const run1 = Math.min(n, size - first);
    await this.mem.dmaWrite(device + 4 + 8 * first, elems.subarray(0, 8 * run1));
    if (run1 < n) await this.mem.dmaWrite(device + 4, elems.subarray(8 * run1));
    const old = this.usedIdx;
    const now = (this.usedIdx = (this.usedIdx + n) & 0xffff);
    await this.mem.dmaWrite(device + 2, le16(now));
    return this.decide(old, now);
  }

  protected passed(old: number): boolean {
    return this.eventIdx && ((old - 1 - this.seenUsedEvent) & 0xffff) < 0x8000;
  }

  protected off(): boolean {
    return !this.eventIdx && (this.seenFlags & AvailFlag.NoInterrupt) !== 0;
  }

  protected wants(old: number, now: number): boolean {
    return this.eventIdx ? needEvent(this.seenUsedEvent, now, old) : (this.seenFlags & AvailFlag.NoInterrupt) === 0;
  }

  /** Reads the driver's interrupt wish (flags, or used_event with the event index) into seenFlags/seenUsedEvent. */
  protected async readWish(): Promise<void> {
    const { driver, size } = this.setup;
    const at = this.eventIdx ? driver + 4 + 2 * size : driver;
    const b = await this.mem.dmaRead(at, 2);
    if (this.eventIdx) this.seenUsedEvent = b[0]! | (b[1]! << 8);
    else this.seenFlags = b[0]! | (b[1]! << 8);
  }

  /** Reads the avail ring past the heads held and, if it has new heads, the descriptor table; false when none are new. */
  protected async refill(): Promise<boolean> {
    const { size, driver, desc, device } = this.setup;
    // The first entry not read yet: popBatch() may take held heads meanwhile, which moves
    // lastAvail and empties heads by as much, so this stays the entry the read starts at.
    const from = (this.lastAvail + this.heads.length) & 0xffff;
    if (this.eventIdx && this.availEvent !== from) {
      // Ring me for the first entry this read does not see (see the header).
      this.availEvent = from;
      await this.mem.dmaWrite(device + 4 + 8 * size, le16(from));
    }
    const avail = await this.mem.dmaRead(driver, 6 + 2 * size);
    const av = new DataView(avail.buffer, avail.byteOffset, avail.byteLength);
    this.seenFlags = av.getUint16(0, true);
    this.seenUsedEvent = av.getUint16(4 + 2 * size, true);
    const idx = av.getUint16(2, true);
    const n = (idx - from) & 0xffff;
    if (n === 0) return false;
    const ahead = (idx - this.lastAvail) & 0xffff;
    if (ahead > size) throw new VirtqueueError(`avail index ${idx} is ${ahead} ahead of ${this.lastAvail}, more than the queue size ${size}`);
    const table = await this.mem.dmaRead(desc, DESC_SIZE * size);
    this.table = new DataView(table.buffer, table.byteOffset, table.byteLength);
    for (let k = 0; k < n; k++) this.heads.push(av.getUint16(4 + 2 * ((from + k) % size), true));
    return true;
  }

  private walk(head: number): Chain {
    const size = this.setup.size;
    const t = this.table!;
    const chain: Chain = { head, readable: [], writable: [], readableBytes: 0, writableBytes: 0 };
    let i = head;
    for (let links = 0; ; links++) {
      if (i >= size) throw new VirtqueueError(`descriptor ${i} beyond the queue size ${size} (chain from ${head})`);
      if (links >= size) throw new VirtqueueError(`descriptor chain from ${head} has more than ${size} links (a loop)`);
      const at = DESC_SIZE * i;
      const addr = t.getUint32(at, true) + t.getUint32(at + 4, true) * 2 ** 32;
      const len = t.getUint32(at + 8, true);
      const flags = t.getUint16(at + 12, true);
      addBuffer(chain, addr, len, flags, `descriptor ${i} (chain from ${head})`);
      if (!(flags & DescFlag.Next)) return chain;
      i = t.getUint16(at + 14, true);
    }
  }
}

function le16(v: number): Uint8Array {
  return Uint8Array.of(v & 0xff, v >> 8);
}

/** A transport's scatter read (DmaPort.dmaReadInto), or undefined when it has none. */
export type ReadInto = (segments: readonly Segment[], into: Uint8Array) => Promise<unknown> | undefined;

/**
 * Gathers the readable buffers of a chain into one byte array. The reads of all
 * buffers are in flight at once: over PCIeOE a chain (a packet's headers in one
 * buffer, its payload in page fragments after) costs one round trip, not one a buffer.
 */
export async function gather(mem: DmaPort, segs: readonly Segment[], total: number, readInto?: ReadInto, buffer?: Uint8Array): Promise<Uint8Array> {
  if (segs.length === 1) return mem.dmaRead(segs[0]!.addr, segs[0]!.len);
  // Where the transport reads a scatter list into one array (over PCIeOE: each completion's data
  // lands in place, one promise for all), no array per buffer is made to be copied from. Into the
  // caller's buffer if it gave one (of at least `total` bytes), else a new one; every byte is read into it.
  const out = buffer ? buffer.subarray(0, total) : new Uint8Array(total);
  const into = readInto?.(segs.some((s) => !s.len) ? segs.filter((s) => s.len) : segs, out);
  if (into) {
    await into;
    return out;
  }
  const parts = await Promise.all(segs.map((s) => (s.len ? mem.dmaRead(s.addr, s.len) : new Uint8Array(0))));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
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
