/**
 * The memif ring in shared memory, and the four ways its two owners use it.
 *
 * Ring header and descriptors (little-endian, cache lines of 64 bytes):
 *
 *     0 u32 cookie    0x3E31F20, written by the client when it builds the ring
 *     4 u16 flags     bit 0 MASK_INT: the consumer polls, the producer need not signal
 *     6 u16 head      advanced by the client (frames in a client-to-server ring,
 *                     empty buffers in a server-to-client ring)
 *    64 u16 tail      advanced by the server (frames taken from a c2s ring,
 *                     filled buffers in an s2c ring)
 *   128 descriptors, 2^log2 of them, 16 bytes each:
 *          0 u16 flags  bit 0 NEXT: the frame continues in the next descriptor
 *          2 u16 region  4 u32 length  8 u32 offset  12 u32 metadata
 *
 * head and tail are free-running 16-bit counters; slot = counter & (size - 1).
 * The client owns the descriptors' buffers: it points every descriptor at a
 * buffer of its own when it builds the ring, and the server writes into those.
 *
 *   client → server (c2s): the client fills slots from head and publishes
 *     head; the server reads from its last head up to head and publishes tail
 *     so the client may reuse them.
 *   server → client (s2c): the client offers empty buffers up to head (each
 *     descriptor's length its buffer's size); the server fills from tail up to
 *     head, sets lengths and publishes tail; the client reads from its last
 *     tail up to tail, then offers those buffers again.
 *
 * The producer signals the ring's eventfd after publishing only while the
 * consumer has MASK_INT clear, i.e. while it sleeps.
 */

import { type OutgoingFrame, copyCheckedFrame, encodeFrame, frameSize, writeFrame } from '../frame.ts';
import type { Ingress } from '../port.ts';
import { framesCrcOk } from '../crc32.ts';

export const MEMIF_COOKIE = 0x3e31f20;
export const RING_HEADER_BYTES = 128;
export const DESCRIPTOR_BYTES = 16;
export const RING_FLAG_MASK_INT = 1;
export const DESC_FLAG_NEXT = 1;
/** The longest frame taken from a peer (as unix datagram ports); longer is a malformed ring. */
export const MAX_FRAME_BYTES = 65_535;

const COOKIE_OFF = 0;
const FLAGS_OFF = 4;
const HEAD_OFF = 6;
const TAIL_OFF = 64;

export function ringBytes(log2Size: number): number {
  return RING_HEADER_BYTES + DESCRIPTOR_BYTES * (1 << log2Size);
}

/** A frame the peer described wrongly (a descriptor outside its region, a chain longer than allowed). */
export class MemifDescriptorError extends Error {}

/** One ring mapped in this process; `regions` are every region of the connection, by index. */
export class MemifRing {
  readonly size: number;
  readonly mask: number;
  private readonly u16: Uint16Array;
  private readonly u32: Uint32Array;
  private readonly d16: number;
  private readonly d32: number;
  /** The consumer's own position (server: last head read of a c2s ring; client: last tail read of an s2c ring). */
  private cursor = 0;

  constructor(readonly regions: readonly Buffer[], region: number, offset: number, log2Size: number) {
    const r = regions[region];
    if (r === undefined) throw new MemifDescriptorError(`ring in region ${region}, which was not added`);
    if (offset % 8 !== 0 || offset + ringBytes(log2Size) > r.length) throw new MemifDescriptorError(`ring at ${offset} (${1 << log2Size} slots) does not fit region ${region} of ${r.length} bytes`);
    this.size = 1 << log2Size;
    this.mask = this.size - 1;
    const base = r.byteOffset + offset;
    this.u16 = new Uint16Array(r.buffer, base, ringBytes(log2Size) / 2);
    this.u32 = new Uint32Array(r.buffer, base, ringBytes(log2Size) / 4);
    this.d16 = RING_HEADER_BYTES / 2;
    this.d32 = RING_HEADER_BYTES / 4;
  }

  get cookie(): number {
    return this.u32[COOKIE_OFF / 4]!;
  }
  get head(): number {
    return Atomics.load(this.u16, HEAD_OFF / 2);
  }
  get tail(): number {
    return Atomics.load(this.u16, TAIL_OFF / 2);
  }
  private setHead(v: number): void {
    Atomics.store(this.u16, HEAD_OFF / 2, v & 0xffff);
  }
  private setTail(v: number): void {
    Atomics.store(this.u16, TAIL_OFF / 2, v & 0xffff);
  }
  /** The consumer sleeps (wants the eventfd) unless MASK_INT is set. */
  get consumerSleeps(): boolean {
    return (Atomics.load(this.u16, FLAGS_OFF / 2) & RING_FLAG_MASK_INT) === 0;
  }
  /** The consumer says whether it wants signals (false while it is draining or polling). */
  setWantSignals(want: boolean): void {
    Atomics.store(this.u16, FLAGS_OFF / 2, want ? 0 : RING_FLAG_MASK_INT);
  }

  /** The ring's header and descriptors as bytes, for the switch's native forwarding (switch/memif-forward.ts). */
  get bytes(): Uint8Array {
    return new Uint8Array(this.u16.buffer, this.u16.byteOffset, this.u16.byteLength);
  }
  /** The consumer's own position (cursor): native forwarding reads it and moves it past the frames it took. */
  get position(): number {
    return this.cursor;
  }
  set position(at: number) {
    this.cursor = at & 0xffff;
  }

  /** The client builds a ring: cookie, empty, every descriptor pointing at its buffer (`bufferAt(slot)`). */
  initialise(bufferRegion: number, bufferAt: (slot: number) => number, bufferBytes: number): void {
    this.u32[COOKIE_OFF / 4] = MEMIF_COOKIE;
    Atomics.store(this.u16, FLAGS_OFF / 2, 0);
    this.setHead(0);
    this.setTail(0);
    for (let s = 0; s < this.size; s++) this.setDescriptor(s, 0, bufferRegion, bufferBytes, bufferAt(s));
    this.cursor = 0;
  }

  private setDescriptor(slot: number, flags: number, region: number, length: number, offset: number): void {
    this.u16[this.d16 + slot * 8] = flags;
    this.u16[this.d16 + slot * 8 + 1] = region;
    this.u32[this.d32 + slot * 4 + 1] = length;
    this.u32[this.d32 + slot * 4 + 2] = offset;
  }

  // ---- descriptors ----

  private flags(slot: number): number {
    return this.u16[this.d16 + slot * 8]!;
  }
  private region(slot: number): number {
    return this.u16[this.d16 + slot * 8 + 1]!;
  }
  private length(slot: number): number {
    return this.u32[this.d32 + slot * 4 + 1]!;
  }
  private offset(slot: number): number {
    return this.u32[this.d32 + slot * 4 + 2]!;
  }

  /** Where a descriptor's `length` bytes start in its region (checked against it); the region is bytesOf(slot). */
  private at(slot: number, length: number): number {
    const r = this.regions[this.region(slot)];
    const off = this.offset(slot);
    if (r === undefined || off + length > r.length) throw new MemifDescriptorError(`descriptor ${slot}: ${length} bytes at ${off} of region ${this.region(slot)} are outside it`);
    return off;
  }

  /** A slot's region as a plain Uint8Array: its subarrays are cheap views (a Buffer's go through Buffer's constructor). */
  private bytesOf(slot: number): Uint8Array {
    return this.regionBytes(this.region(slot));
  }
  private regionBytes(i: number): Uint8Array {
    let u8 = this.u8[i];
    if (u8 === undefined) {
      const r = this.regions[i]!;
      u8 = this.u8[i] = new Uint8Array(r.buffer, r.byteOffset, r.length);
    }
    return u8;
  }
  private readonly u8: Uint8Array[] = [];

  /**
   * Copy `frame` into the slots from `at` on, chaining with NEXT where it
   * does not fit one buffer; a slot's buffer holds `room` bytes (the
   * client's own, all alike) or, with room < 0, what its descriptor says
   * (buffers the client offered). Returns the slots used, or 0 if fewer than
   * `free` slots would not do. One copy per slot, straight into the region.
   */
  private put(out: Uint8Array | OutgoingFrame, at: number, free: number, room: number): number {
    let frame: Uint8Array;
    if (out instanceof Uint8Array) frame = out;
    else {
      // Encoded straight into the slot when it fits one; a frame to be chained is encoded first.
      const slot = at & this.mask;
      const bytes = frameSize(out.vlan, out.payload.length);
      if (free > 0 && bytes <= (room < 0 ? this.length(slot) : room)) {
        writeFrame(this.bytesOf(slot), this.at(slot, bytes), out, out.payload);
        this.u32[this.d32 + slot * 4 + 1] = bytes;
        this.u16[this.d16 + slot * 8] = 0;
        return 1;
      }
      frame = encodeFrame(out, out.payload);
    }
    let done = 0;
    let used = 0;
    while (true) {
      if (used >= free) return 0;
      const slot = (at + used) & this.mask;
      const n = Math.min(room < 0 ? this.length(slot) : room, frame.length - done);
      if (n === 0 && frame.length > 0) throw new MemifDescriptorError(`descriptor ${slot} offers no room`);
      const off = this.at(slot, n);
      this.bytesOf(slot).set(n === frame.length ? frame : frame.subarray(done, done + n), off);
      done += n;
      used++;
      this.u32[this.d32 + slot * 4 + 1] = n;
      const last = done >= frame.length;
      this.u16[this.d16 + slot * 8] = last ? 0 : DESC_FLAG_NEXT;
      if (last) return used;
    }
  }

  /** Bytes of the frame walk found last. */
  private walked = 0;

  /**
   * The descriptors of the frame starting at slot `at` (published up to `end`), each checked to
   * lie inside its region, up to the one without NEXT: returns how many, the frame's bytes in
   * `walked`. Throws on a chain past `end`, longer than MAX_FRAME_BYTES or through the whole ring.
   */
  private walk(at: number, end: number): number {
    let bytes = 0;
    let used = 0;
    while (true) {
      if (((end - (at + used)) & 0xffff) === 0) throw new MemifDescriptorError(`frame chained past the last published slot`);
      const slot = (at + used) & this.mask;
      const len = this.length(slot);
      bytes += len;
      if (bytes > MAX_FRAME_BYTES) throw new MemifDescriptorError(`a frame of more than ${MAX_FRAME_BYTES} bytes (descriptor ${slot})`);
      this.at(slot, len);
      used++;
      if ((this.flags(slot) & DESC_FLAG_NEXT) === 0) break;
      if (used >= this.size) throw new MemifDescriptorError('a frame chained through the whole ring');
    }
    this.walked = bytes;
    return used;
  }

  /** Slots the frame at `at` took (set by take). */
  private taken = 0;
  /** Whether take found the frame's PCIeOE CRC good as it copied it (only when asked to check). */
  private crcChecked = false;
  /** Whether take returned the slot's own bytes (inPlace) rather than a copy. */
  private inSlot = false;
  /** Whether checkAhead found the PCIeOE CRC of the frame take is about to take good. */
  private checkedAhead = false;
  /** checkAhead's frames, as start and end in their region (u32 pairs), and their results. */
  private aheadSpans = new Uint32Array(0);
  private aheadOk = new Uint8Array(0);

  /**
   * Check the PCIeOE CRCs of the frames from the cursor up to `end` (at most `max`) in one
   * native call, before a receive pass hands them over in place: result i is the i-th frame's
   * (0 for a chained one, one in another region than the first, or one that is not PCIeOE or
   * damaged: the channel then checks it itself, as decodeFrame). Per frame, a native call cost
   * more than the CRC of 4 KiB. The producer does not touch a slot between publishing it and
   * having it back, so the bytes checked are the bytes the pass hands over. Returns how many.
   */
  private checkAhead(end: number, max: number): number {
    if (this.aheadOk.length < this.size) {
      this.aheadSpans = new Uint32Array(2 * this.size);
      this.aheadOk = new Uint8Array(this.size);
    }
    const spans = this.aheadSpans;
    let region = -1;
    let at = this.cursor;
    let k = 0;
    while (at !== end && k < max && k < this.size) {
      const slot = at & this.mask;
      spans[2 * k] = spans[2 * k + 1] = 0;
      if ((this.flags(slot) & DESC_FLAG_NEXT) !== 0) {
        // A chain: on past it (take copies the frame and checks that). A malformed one ends the
        // look-ahead there; take throws when the pass reaches it.
        try {
          at = (at + this.walk(at, end) - 1) & 0xffff;
        } catch {
          break;
        }
      } else {
        if (region < 0 && this.regions[this.region(slot)] !== undefined) region = this.region(slot);
        if (this.region(slot) === region) {
          spans[2 * k] = this.offset(slot);
          spans[2 * k + 1] = this.offset(slot) + this.length(slot);
        }
      }
      at = (at + 1) & 0xffff;
      k++;
    }
    if (region >= 0) framesCrcOk(this.regionBytes(region), new Uint8Array(spans.buffer), k, this.aheadOk);
    else this.aheadOk.fill(0, 0, k);
    return k;
  }

  /**
   * The frame starting at slot `at` (up to `end`), copied into `alloc(bytes)`:
   * the chain is walked and checked first, then each slot copied once. With
   * `check`, a frame in one slot has its PCIeOE CRC checked in the same pass.
   * With `inPlace`, a frame in one slot is not copied: the slot's own bytes,
   * valid until the slot goes back to the producer (the end of the receive call).
   */
  private take(at: number, end: number, alloc: (bytes: number) => Buffer, check: boolean, inPlace: boolean): Buffer {
    const used = this.walk(at, end);
    const bytes = this.walked;
    this.taken = used;
    this.inSlot = inPlace && used === 1;
    this.crcChecked = this.inSlot && this.checkedAhead;
    if (this.inSlot) {
      const off = this.offset(at & this.mask);
      return this.regions[this.region(at & this.mask)]!.subarray(off, off + bytes);
    }
    const out = alloc(bytes);
    if (check && used === 1) {
      const off = this.offset(at & this.mask);
      this.crcChecked = copyCheckedFrame(out, this.bytesOf(at & this.mask), off, off + bytes);
      return out;
    }
    let o = 0;
    for (let i = 0; i < used; i++) {
      const slot = (at + i) & this.mask;
      const len = this.length(slot);
      const off = this.offset(slot);
      out.set(this.bytesOf(slot).subarray(off, off + len), o);
      o += len;
    }
    return out;
  }

  // ---- producer sides ----

  /** Client, c2s ring: queue frames from head; returns how many fit. The client's buffers are all `bufferBytes`. */
  clientSend(frames: readonly (Buffer | OutgoingFrame)[], start: number, count: number, bufferBytes: number): number {
    let head = this.head;
    const free = this.size - ((head - this.tail) & 0xffff);
    let used = 0;
    let sent = 0;
    for (; sent < count; sent++) {
      const n = this.put(frames[start + sent]!, head + used, free - used, bufferBytes);
      if (n === 0) break;
      used += n;
    }
    head += used;
    if (used > 0) this.setHead(head);
    return sent;
  }

  /** Server, s2c ring: fill the buffers the client offered, from tail; returns how many frames fit. */
  serverSend(frames: readonly (Buffer | OutgoingFrame)[], start: number, count: number): number {
    const tail = this.tail;
    const free = (this.head - tail) & 0xffff;
    if (free > this.size) throw new MemifDescriptorError(`head ${this.head} is ${free} slots past tail ${tail} in a ring of ${this.size}`);
    let used = 0;
    let sent = 0;
    for (; sent < count; sent++) {
      const n = this.put(frames[start + sent]!, tail + used, free - used, -1);
      if (n === 0) break;
      used += n;
    }
    if (used > 0) this.setTail(tail + used);
    return sent;
  }

  // ---- consumer sides ----

  /**
   * Server, c2s ring: every frame published since last time (each copied into
   * `alloc(bytes)`, or with `inPlace` the slot itself, and delivered), then tail
   * so the client may reuse the slots.
   */
  serverReceive(deliver: Ingress, alloc: (bytes: number) => Buffer, max: number, check: boolean, inPlace = false): number {
    const end = this.head;
    if (((end - this.cursor) & 0xffff) > this.size) throw new MemifDescriptorError(`head ${end} is more than a ring past tail ${this.cursor}`);
    const n = this.takeUpTo(end, deliver, alloc, max, check, inPlace);
    this.setTail(this.cursor);
    return n;
  }

  /** Client, s2c ring: every frame the server filled since last time (as serverReceive), then offer all free buffers again. */
  clientReceive(deliver: Ingress, alloc: (bytes: number) => Buffer, max: number, check: boolean, bufferBytes: number, bufferAt: (slot: number) => number, bufferRegion: number, inPlace = false): number {
    const n = this.takeUpTo(this.tail, deliver, alloc, max, check, inPlace);
    this.refill(bufferBytes, bufferAt, bufferRegion);
    return n;
  }

  /** Deliver the frames from the cursor up to `end`, at most `max`; the cursor follows. */
  private takeUpTo(end: number, deliver: Ingress, alloc: (bytes: number) => Buffer, max: number, check: boolean, inPlace: boolean): number {
    const ahead = check && inPlace ? this.checkAhead(end, max) : 0;
    let n = 0;
    while (this.cursor !== end && n < max) {
      this.checkedAhead = n < ahead && this.aheadOk[n] === 1;
      const frame = this.take(this.cursor, end, alloc, check, inPlace);
      this.cursor = (this.cursor + this.taken) & 0xffff;
      n++;
      deliver(frame, this.crcChecked, this.inSlot);
    }
    return n;
  }

  /** Client, s2c ring: offer every slot the server has handed back (head up to cursor + size). */
  refill(bufferBytes: number, bufferAt: (slot: number) => number, bufferRegion: number): void {
    let head = this.head;
    const target = (this.cursor + this.size) & 0xffff;
    if (head === target) return;
    while (head !== target) {
      const slot = head & this.mask;
      this.setDescriptor(slot, 0, bufferRegion, bufferBytes, bufferAt(slot));
      head = (head + 1) & 0xffff;
    }
    this.setHead(head);
  }

  /** Anything published for the consumer since its last read? */
  pending(consumerIsServer: boolean): boolean {
    return (consumerIsServer ? this.head : this.tail) !== this.cursor;
  }
}
