/**
 * Cutting transfers into TLPs the way a requester must: writes at Max Payload
 * Size, reads at Max Read Request Size, and neither across a 4 KiB boundary.
 */

import { spanFor } from './byte-enables.ts';
import { type MemReadTlp, type MemWriteTlp, memReadType, memWriteType } from './tlp.ts';

export interface RequestFields {
  requesterId: number;
  tc?: number;
  attr?: number;
}

/** Legal PCIe sizes for MPS and MRRS. */
export function isPow2Size(n: number): boolean {
  return Number.isInteger(n) && n >= 128 && n <= 4096 && (n & (n - 1)) === 0;
}

/**
 * Bytes of a transfer's next piece: from address bits 11:0 `low` up to the next
 * naturally aligned `chunk` boundary, at most `left`. `chunk` divides 4096, so
 * no piece crosses a 4 KiB boundary. (A loop over this, not a generator of
 * [address, length] pairs: a 64 KiB DMA is 16 pieces, each once a generator
 * step, a pair and BigInt arithmetic.)
 */
function pieceLength(low: number, left: number, chunk: number): number {
  return Math.min(chunk - (low & (chunk - 1)), left);
}

/**
 * MWr TLPs writing `data` at byte `address`, each ≤ `maxPayload` bytes of DW
 * payload. Bytes outside `data` in the first and last DW are disabled and sent
 * as zero. A zero-length write yields nothing (there is nothing to order).
 * A TLP whose bytes are all `data`'s carries a view into it, not a copy.
 */
export function splitWrite(address: bigint, data: Uint8Array, maxPayload: number, fields: RequestFields, tag = 0): MemWriteTlp[] {
  if (!isPow2Size(maxPayload)) throw new RangeError(`max payload ${maxPayload} is not a power of two in 128-4096`);
  const out: MemWriteTlp[] = [];
  let low = Number(address & 0xfffn);
  for (let offset = 0; offset < data.length; ) {
    const n = pieceLength(low, data.length - offset, maxPayload);
    const span = spanFor(address + BigInt(offset), n);
    const head = low & 3;
    // Whole DWs are sent as they are (a view: encoding copies them once); a partial DW is zero-padded.
    const aligned = head === 0 && (n & 3) === 0;
    const payload = aligned ? data.subarray(offset, offset + n) : new Uint8Array(span.length * 4);
    if (!aligned) payload.set(data.subarray(offset, offset + n), head);
    out.push({
      type: memWriteType(span.address),
      tc: fields.tc ?? 0,
      attr: fields.attr ?? 0,
      poisoned: false,
      requesterId: fields.requesterId,
      tag,
      firstBe: span.firstBe,
      lastBe: span.lastBe,
      address: span.address,
      data: payload,
    });
    offset += n;
    low = (low + n) & 0xfff;
  }
  return out;
}

/**
 * MRd TLPs reading `byteLength` bytes at `address`, each ≤ `maxReadRequest`
 * bytes; `nextTag` hands out a tag per request (all outstanding at once).
 */
export function splitRead(
  address: bigint,
  byteLength: number,
  maxReadRequest: number,
  fields: RequestFields,
  nextTag: () => number,
): MemReadTlp[] {
  if (!isPow2Size(maxReadRequest)) throw new RangeError(`max read request ${maxReadRequest} is not a power of two in 128-4096`);
  const out: MemReadTlp[] = [];
  let low = Number(address & 0xfffn);
  for (let offset = 0; offset < byteLength; ) {
    const n = pieceLength(low, byteLength - offset, maxReadRequest);
    const span = spanFor(address + BigInt(offset), n);
    out.push({
      type: memReadType(span.address),
      tc: fields.tc ?? 0,
      attr: fields.attr ?? 0,
      poisoned: false,
      requesterId: fields.requesterId,
      tag: nextTag(),
      firstBe: span.firstBe,
      lastBe: span.lastBe,
      address: span.address,
      length: span.length,
    });
    offset += n;
    low = (low + n) & 0xfff;
  }
  return out;
}
