// Physical Region Page lists (NVMe 1.4 §4.3): turn PRP1/PRP2 of a command into
// the host memory segments that hold its data.
//
//  - PRP1 may start anywhere in a page (dword aligned); it covers up to the end of that page.
//  - If the rest fits in one page, PRP2 points at it (page aligned).
//  - Otherwise PRP2 points at a PRP list. A list may start unaligned (Linux
//    allocates small lists from a 256-byte pool); it runs to the end of its
//    page, and when more entries are needed the last slot of the page points
//    to the next list page (chaining).
//  - Every data pointer after PRP1 must be page aligned: else PRP Offset Invalid.
// Physically adjacent pages are merged, so a contiguous buffer costs one DMA.
import { NvmeError, Status } from './status.ts';

export interface Segment {
  addr: number;
  len: number;
}

/** Reads host memory (the PRP list pages); rejects if the range is not the host's. */
export type ListReader = (addr: number, length: number) => Promise<Uint8Array>;

const u64 = (v: DataView, at: number): number => v.getUint32(at, true) + v.getUint32(at + 4, true) * 0x1_0000_0000;

function push(segs: Segment[], addr: number, len: number): void {
  const last = segs[segs.length - 1];
  if (last && last.addr + last.len === addr) last.len += len;
  else segs.push({ addr, len });
}

/**
 * The segments of a buffer PRP1 and PRP2 cover on their own (at most two pages' worth), found
 * without reading host memory; undefined when PRP2 points at a PRP list.
 */
export function directSegments(prp1: number, prp2: number, length: number, pageSize: number): Segment[] | undefined {
  if (length === 0) return [];
  if (prp1 & 3) throw new NvmeError(Status.PrpOffsetInvalid, `PRP1 0x${prp1.toString(16)} is not dword aligned`);
  const first = Math.min(length, pageSize - (prp1 % pageSize));
  const left = length - first;
  if (left > pageSize) return undefined;
  const segs: Segment[] = [{ addr: prp1, len: first }];
  if (left === 0) return segs;
  if (prp2 % pageSize !== 0) throw pageOffset(prp2, 'PRP2');
  push(segs, prp2, left);
  return segs;
}

export async function prpSegments(prp1: number, prp2: number, length: number, pageSize: number, readList: ListReader): Promise<Segment[]> {
  const direct = directSegments(prp1, prp2, length, pageSize);
  if (direct) return direct;
  const segs: Segment[] = [];
  const first = pageSize - (prp1 % pageSize);
  push(segs, prp1, first);
  let left = length - first;
  if (prp2 & 7) throw new NvmeError(Status.PrpOffsetInvalid, `PRP list pointer 0x${prp2.toString(16)} is not qword aligned`);
  let list = prp2;
  // A list that chains to itself through one-slot pages would never end.
  for (let pages = 0; left > 0; pages++) {
    if (pages > length / pageSize + 1) throw new NvmeError(Status.InvalidField, 'PRP list chains too often');
    const needed = Math.ceil(left / pageSize);
    const slots = (pageSize - (list % pageSize)) / 8;
    // All entries fit in this list page, or the last slot chains to the next one.
    const take = needed <= slots ? needed : slots;
    const bytes = await readOrFail(readList, list, take * 8);
    const entries = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const data = needed <= slots ? take : take - 1;
    for (let i = 0; i < data; i++) {
      const addr = u64(entries, 8 * i);
      // The entry's name is built only for the error: this loop runs once per page of every large transfer.
      if (addr % pageSize !== 0) throw pageOffset(addr, `PRP entry ${i} of list 0x${list.toString(16)}`);
      const len = Math.min(left, pageSize);
      push(segs, addr, len);
      left -= len;
    }
    if (left > 0) {
      list = u64(entries, 8 * (take - 1));
      if (list & 7) throw new NvmeError(Status.PrpOffsetInvalid, `chained PRP list pointer 0x${list.toString(16)} is not qword aligned`);
    }
  }
  return segs;
}

/** The error for a data pointer that must be page aligned and is not. */
function pageOffset(addr: number, what: string): NvmeError {
  return new NvmeError(Status.PrpOffsetInvalid, `${what} 0x${addr.toString(16)} has a page offset`);
}

async function readOrFail(read: ListReader, addr: number, len: number): Promise<Uint8Array> {
  try {
    return await read(addr, len);
  } catch (err) {
    throw new NvmeError(Status.DataTransferError, `PRP list at 0x${addr.toString(16)}: ${(err as Error).message}`);
  }
}

/** Host memory as a command's data moves through it. */
export interface HostMemory {
  dmaRead(addr: number, length: number): Promise<Uint8Array>;
  dmaWrite(addr: number, data: Uint8Array): Promise<void>;
  /** Optional: the segments read into `into` at once (DmaPort.dmaReadInto); undefined when the transport cannot. */
  dmaReadInto?(segments: readonly Segment[], into: Uint8Array): Promise<unknown> | undefined;
}

/** Buffers a command's data may be read into, and given back when their bytes are no longer needed (Namespace). */
export interface BufferPool {
  take(length: number): Uint8Array;
  recycle(buf: Uint8Array): void;
}

/** A command's data buffer in host memory: PRP1, PRP2 and the memory page size (CC.MPS). */
export interface PrpBuffer {
  prp1: number;
  prp2: number;
  pageSize: number;
}

function dataError(err: unknown, what: string): NvmeError {
  return err instanceof NvmeError ? err : new NvmeError(Status.DataTransferError, `${what}: ${(err as Error)?.message ?? err}`);
}

/**
 * Copies `length` bytes out of the host buffer: into one buffer from `into` when the memory reads
 * scatter lists (over PCIeOE every page's MRds at once, the data landing in place, one promise for
 * the lot instead of one per page), else one piece per contiguous segment.
 */
export async function readFromHost(mem: HostMemory, buf: PrpBuffer, length: number, pool?: BufferPool): Promise<Uint8Array[]> {
  const segs = await prpSegments(buf.prp1, buf.prp2, length, buf.pageSize, (a, l) => mem.dmaRead(a, l));
  try {
    // One segment too (a guest's 64 KiB buffer is often contiguous): fresh memory per write would
    // churn the process's ArrayBuffers at the write rate, and V8 answers that with full collections.
    if (pool) {
      const out = pool.take(length);
      const read = mem.dmaReadInto?.(segs, out);
      if (read) {
        await read;
        return [out];
      }
      pool.recycle(out);
    }
    return await Promise.all(segs.map((s) => mem.dmaRead(s.addr, s.len)));
  } catch (err) {
    throw dataError(err, 'reading host data');
  }
}

/**
 * Copies `data` into the host buffer. A buffer PRP1 and PRP2 describe alone (up to two pages: a
 * 4 KiB read at queue depth 1) is written at once, with no PRP list to wait for: every promise
 * step costs CPU when a command is the only work of a wake-up.
 */
export function writeToHost(mem: HostMemory, buf: PrpBuffer, data: Uint8Array): Promise<void> {
  let segs: Segment[] | undefined;
  try {
    segs = directSegments(buf.prp1, buf.prp2, data.length, buf.pageSize);
    if (segs?.length === 1) return mem.dmaWrite(segs[0]!.addr, data).catch(writeError);
  } catch (err) {
    return Promise.reject(dataError(err, 'writing host data'));
  }
  return writeSegments(mem, segs ?? prpSegments(buf.prp1, buf.prp2, data.length, buf.pageSize, (a, l) => mem.dmaRead(a, l)), data);
}

const writeError = (err: unknown): never => {
  throw dataError(err, 'writing host data');
};

async function writeSegments(mem: HostMemory, found: Segment[] | Promise<Segment[]>, data: Uint8Array): Promise<void> {
  const segs = await found;
  let at = 0;
  try {
    await Promise.all(
      segs.map((s) => {
        const piece = data.subarray(at, at + s.len);
        at += s.len;
        return mem.dmaWrite(s.addr, piece);
      }),
    );
  } catch (err) {
    writeError(err);
  }
}
