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
 * Byte ranges [start, end) of a transfer cut at naturally aligned `chunk`
 * boundaries. `chunk` divides 4096, so no piece crosses a 4 KiB boundary.
 */
function* pieces(address: bigint, byteLength: number, chunk: number): Generator<[bigint, number]> {
  const mask = BigInt(chunk - 1);
  let at = address;
  let left = byteLength;
  while (left > 0) {
    const room = Number(BigInt(chunk) - (at & mask));
    const n = Math.min(room, left);
    yield [at, n];
    at += BigInt(n);
    left -= n;
  }
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
  let offset = 0;
  for (const [at, n] of pieces(address, data.length, maxPayload)) {
    const span = spanFor(at, n);
    const head = Number(at & 3n);
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
  for (const [at, n] of pieces(address, byteLength, maxReadRequest)) {
    const span = spanFor(at, n);
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
  }
  return out;
}
