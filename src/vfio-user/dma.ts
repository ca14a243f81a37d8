// The DMA map table: which client (guest) IOVA ranges the device may access,
// and how. A region mapped with an fd (memfd-backed guest RAM) is mmapped
// once and accessed directly; a region without one is reached through
// DMA_READ/DMA_WRITE messages to the client (slow, but QEMU sends no fd for
// non-shared memory and never for the BIOS flash).
//
// A mapping must not be able to kill the process: an access to a page beyond
// the end of the fd's file raises SIGBUS. So DMA_MAP refuses a range beyond
// the file's size, and mmaps only a file its owner cannot shrink any more
// (F_SEAL_SHRINK, as QEMU seals its memory-backend-memfd). Any other file is
// kept open and accessed with pread/pwrite, which report a truncated file as
// a short count (a DmaError) instead of a fault.
import { fstatSync, readSync, writeSync } from 'node:fs';
import { FileSeal, native } from '../../native/index.ts';
import { DmaFlag, Errno, ProtocolError, type DmaMapArgs } from './protocol.ts';
import { copyInOrder } from './ordered-copy.ts';

export interface DmaRegion {
  iova: number;
  size: number;
  /** DmaFlag bits: what the client allows the device to do. */
  prot: number;
  /** Guest memory, when the client passed an fd its owner cannot shrink. */
  mem?: Uint8Array;
  /** The client's fd and the region's offset in it, when it could still shrink. */
  file?: { fd: number; offset: number };
}

/** One piece of an access that lies in one region. */
interface Piece {
  iova: number;
  length: number;
  /** Where in the caller's buffer. */
  at: number;
  mem?: Uint8Array;
  /** Position in `file.fd`, for an unsealed file. */
  file?: { fd: number; position: number };
}

/** Sends DMA_READ/DMA_WRITE to the client; provided by the session. */
export interface DmaMessenger {
  read(iova: number, length: number): Promise<Uint8Array>;
  write(iova: number, data: Uint8Array): Promise<void>;
  /** Largest transfer the client accepts in one message. */
  readonly maxTransfer: number;
}

/** Maps of unsealed files a client may hold: each keeps an fd open in the server. */
export const MAX_FILE_REGIONS = 64;

export class DmaError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DmaError';
  }
}

export class DmaTable {
  /** Sorted by iova, non-overlapping. */
  private regions: DmaRegion[] = [];

  constructor(private readonly maxRegions: number, private messenger?: DmaMessenger) {}

  setMessenger(m: DmaMessenger | undefined): void {
    this.messenger = m;
  }

  get count(): number {
    return this.regions.length;
  }

  list(): readonly DmaRegion[] {
    return this.regions;
  }

  /**
   * DMA_MAP. Takes ownership of `fd` (closed once mapped or on failure, kept while pread/pwrite
   * need it). Returns how the region will be reached.
   */
  map(args: DmaMapArgs, fd: number | undefined): 'mmap' | 'pread' | 'messages' {
    let keepFd = false;
    try {
      const { iova, size } = args;
      if (size === 0) throw new ProtocolError(Errno.EINVAL, 'DMA_MAP of size 0');
      if (!Number.isSafeInteger(iova + size)) throw new ProtocolError(Errno.EINVAL, `DMA_MAP 0x${iova.toString(16)}+0x${size.toString(16)} overflows`);
      if ((args.flags & ~(DmaFlag.Read | DmaFlag.Write)) !== 0) throw new ProtocolError(Errno.EINVAL, `DMA_MAP flags 0x${args.flags.toString(16)} unknown`);
      if (this.regions.length >= this.maxRegions) throw new ProtocolError(Errno.ENOSPC, `DMA_MAP: already ${this.regions.length} regions`);
      const i = this.insertionIndex(iova);
      const prev = this.regions[i - 1];
      const next = this.regions[i];
      if ((prev && prev.iova + prev.size > iova) || (next && iova + size > next.iova)) {
        throw new ProtocolError(Errno.EEXIST, `DMA_MAP 0x${iova.toString(16)}+0x${size.toString(16)} overlaps an existing mapping`);
      }
      const region: DmaRegion = { iova, size, prot: args.flags };
      if (fd !== undefined) {
        checkFileRange(fd, args.offset, size);
        if (native.fdSeals(fd) & FileSeal.Shrink) {
          try {
            region.mem = new Uint8Array(native.mmap(fd, args.offset, size, (args.flags & DmaFlag.Write) !== 0));
          } catch (err) {
            throw new ProtocolError(Errno.EINVAL, `DMA_MAP: mmap of fd offset 0x${args.offset.toString(16)} size 0x${size.toString(16)} failed: ${(err as Error).message}`);
          }
        } else {
          const files = this.regions.filter((r) => r.file).length;
          if (files >= MAX_FILE_REGIONS) throw new ProtocolError(Errno.ENOSPC, `DMA_MAP: already ${files} maps of unsealed files (each keeps its fd open); seal guest RAM against shrinking`);
          region.file = { fd, offset: args.offset };
          keepFd = true;
        }
      }
      this.regions.splice(i, 0, region);
      return region.mem ? 'mmap' : region.file ? 'pread' : 'messages';
    } finally {
      // A mapping keeps the memory alive; the fd itself is needed only for pread/pwrite.
      if (fd !== undefined && !keepFd) native.close(fd);
    }
  }

  /** DMA_UNMAP: removes the mappings inside [iova, iova+size); all with `all`. */
  unmap(iova: number, size: number, all: boolean): void {
    if (all) {
      if (iova !== 0 || size !== 0) throw new ProtocolError(Errno.EINVAL, 'DMA_UNMAP all needs iova 0 and size 0');
      this.clear();
      return;
    }
    const end = iova + size;
    const inside = this.regions.filter((r) => r.iova >= iova && r.iova + r.size <= end);
    const straddling = this.regions.some((r) => r.iova < end && r.iova + r.size > iova && !inside.includes(r));
    // As VFIO: unmapping part of a mapping is refused, and so is unmapping nothing.
    if (straddling) throw new ProtocolError(Errno.EINVAL, `DMA_UNMAP 0x${iova.toString(16)}+0x${size.toString(16)} cuts a mapping`);
    if (inside.length === 0) throw new ProtocolError(Errno.ENOENT, `DMA_UNMAP 0x${iova.toString(16)}+0x${size.toString(16)}: nothing mapped there`);
    for (const r of inside) release(r);
    this.regions = this.regions.filter((r) => !inside.includes(r));
  }

  clear(): void {
    for (const r of this.regions) release(r);
    this.regions = [];
  }

  /**
   * Direct access to guest memory for [iova, iova+length) when one mmapped
   * region covers it all; otherwise undefined. The view aliases guest RAM.
   */
  translate(iova: number, length: number, write: boolean): Uint8Array | undefined {
    const r = this.find(iova);
    if (!r || !r.mem || iova + length > r.iova + r.size) return undefined;
    if (!(r.prot & (write ? DmaFlag.Write : DmaFlag.Read))) return undefined;
    return r.mem.subarray(iova - r.iova, iova - r.iova + length);
  }

  /** Device reads guest memory. Rejects with DmaError on an unmapped or forbidden range. */
  async read(iova: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    await this.readAt(iova, out, undefined);
    return out;
  }

  /**
   * Device reads the scatter list `segments` of guest memory back to back into `into` (a model's
   * pooled buffer: a 64 KiB NVMe write is then no fresh 64 KiB, or sixteen fresh pages, and no
   * promise per page). Settles once nothing writes into `into` any more; rejects as read() does.
   */
  readInto(segments: readonly { addr: number; len: number }[], into: Uint8Array): Promise<Uint8Array> {
    let chain: Promise<void> | undefined;
    try {
      const total = segments.reduce((n, s) => n + s.len, 0);
      if (total !== into.length) throw new RangeError(`segments of ${total} bytes into a buffer of ${into.length}`);
      let at = 0;
      for (const s of segments) {
        chain = this.readAt(s.addr, into.subarray(at, at + s.len), chain);
        at += s.len;
      }
      return chain ? chain.then(() => into) : Promise.resolve(into);
    } catch (err) {
      // A later segment is unmapped: reads by message already under way end before the caller may reuse `into`.
      const fail = () => Promise.reject(err);
      return chain ? chain.then(fail, fail) : fail();
    }
  }

  /**
   * Guest memory at `iova` into `out`: mapped and file pieces now, pieces that take DMA_READ messages
   * one after another on `chain` (returned; undefined while there are none). A failed message ends
   * the chain, so nothing lands in `out` after it has settled.
   */
  private readAt(iova: number, out: Uint8Array, chain: Promise<void> | undefined): Promise<void> | undefined {
    for (const piece of this.pieces(iova, out.length, DmaFlag.Read)) {
      const dst = out.subarray(piece.at, piece.at + piece.length);
      if (piece.mem) dst.set(piece.mem);
      else if (piece.file) fileAccess(piece, dst, false);
      else chain = (chain ?? Promise.resolve()).then(() => this.viaMessages(piece.iova, piece.length, undefined)).then((d) => dst.set(d));
    }
    return chain;
  }

  /** Device writes guest memory. */
  async write(iova: number, data: Uint8Array): Promise<void> {
    for (const piece of this.pieces(iova, data.length, DmaFlag.Write)) {
      const src = data.subarray(piece.at, piece.at + piece.length);
      if (piece.mem) copyInOrder(piece.mem, src);
      else if (piece.file) fileAccess(piece, src, true);
      else await this.viaMessages(piece.iova, piece.length, src);
    }
  }

  /** Splits an access at region boundaries; throws if any byte is unmapped. */
  private pieces(iova: number, length: number, need: DmaFlag): Piece[] {
    const out: Piece[] = [];
    let at = 0;
    while (at < length) {
      const addr = iova + at;
      const r = this.find(addr);
      if (!r) throw new DmaError(`DMA ${need === DmaFlag.Read ? 'read' : 'write'} of 0x${addr.toString(16)}: not mapped`);
      if (!(r.prot & need)) throw new DmaError(`DMA ${need === DmaFlag.Read ? 'read' : 'write'} of 0x${addr.toString(16)}: mapping forbids it`);
      const n = Math.min(length - at, r.iova + r.size - addr);
      const into = addr - r.iova;
      out.push({ iova: addr, length: n, at, mem: r.mem?.subarray(into, into + n), file: r.file && { fd: r.file.fd, position: r.file.offset + into } });
      at += n;
    }
    return out;
  }

  private async viaMessages(iova: number, length: number, data: Uint8Array | undefined): Promise<Uint8Array> {
    const m = this.messenger;
    if (!m) throw new DmaError(`DMA to 0x${iova.toString(16)} needs DMA_READ/WRITE messages but no client is connected`);
    const out = data ? data : new Uint8Array(length);
    for (let at = 0; at < length; at += m.maxTransfer) {
      const n = Math.min(m.maxTransfer, length - at);
      if (data) await m.write(iova + at, data.subarray(at, at + n));
      else out.set(await m.read(iova + at, n), at);
    }
    return out;
  }

  private find(iova: number): DmaRegion | undefined {
    const i = this.insertionIndex(iova) - 1;
    const r = this.regions[i];
    return r && iova < r.iova + r.size ? r : undefined;
  }

  /** Index of the first region with r.iova > iova. */
  private insertionIndex(iova: number): number {
    let lo = 0;
    let hi = this.regions.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.regions[mid]!.iova <= iova) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

function release(r: DmaRegion): void {
  if (r.mem) native.munmap(r.mem.buffer as ArrayBuffer);
  if (r.file) native.close(r.file.fd);
}

/** DMA_MAP's fd must be a file (a memfd is one) at least offset + size long. */
function checkFileRange(fd: number, offset: number, size: number): void {
  const st = fstatSync(fd);
  if (!st.isFile()) throw new ProtocolError(Errno.EINVAL, 'DMA_MAP: the fd is not a regular file or memfd');
  if (!Number.isSafeInteger(offset + size) || offset + size > st.size) {
    throw new ProtocolError(Errno.EINVAL, `DMA_MAP: fd offset 0x${offset.toString(16)} + size 0x${size.toString(16)} is beyond the file's 0x${st.size.toString(16)} bytes`);
  }
}

/**
 * pread/pwrite of one piece in an unsealed file. The file may have shrunk
 * since DMA_MAP: a short read, or a write past its end (which would grow
 * it), fails the access instead.
 */
function fileAccess(piece: Piece, buf: Uint8Array, write: boolean): void {
  const { fd, position } = piece.file!;
  const what = `DMA ${write ? 'write' : 'read'} of 0x${piece.iova.toString(16)}+${piece.length}`;
  let n: number;
  try {
    if (write && position + buf.length > fstatSync(fd).size) throw new Error('the guest memory file shrank below the mapping');
    n = write ? writeSync(fd, buf, 0, buf.length, position) : readSync(fd, buf, 0, buf.length, position);
  } catch (err) {
    throw new DmaError(`${what}: ${(err as Error).message}`);
  }
  if (n !== buf.length) throw new DmaError(`${what}: the guest memory file shrank below the mapping (${n} of ${buf.length} bytes)`);
}
