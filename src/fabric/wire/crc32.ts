/**
 * CRC-32 (IEEE 802.3 polynomial, reflected, as zlib and Ethernet use it).
 * The fabric computes it over every frame twice (sender and receiver), so it
 * comes from the native addon, which folds with PCLMULQDQ (~4x zlib.crc32 in
 * this Node, which is bytewise-braided C). crc32Table is the plain reference
 * the property tests hold both against.
 */

import { native } from '../../../native/index.ts';

type Crc32 = (data: Uint8Array, initial?: number) => number;

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32Table(data: Uint8Array, initial = 0): number {
  let c = ~initial >>> 0;
  for (let i = 0; i < data.length; i++) c = TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** CRC-32 of `data`, continuing from `initial` (the CRC of the bytes before it). */
export const crc32: Crc32 = (data, initial = 0) => native.crc32(data, initial);

/** CRC-32 of data[start, end), continuing from `initial`: no subarray needed. With `zeroAt`, the 4 bytes there count as zero. */
export const crc32Range: (data: Uint8Array, initial: number, start: number, end: number, zeroAt?: number) => number = native.crc32;

/** Copy src[start, end) to dst at `offset` and return the CRC-32 of src[crcStart, crcEnd), the 4 bytes at `zeroAt` as zero: one pass. */
export const copyCrc32: (dst: Uint8Array, offset: number, src: Uint8Array, start: number, end: number, crcStart: number, crcEnd: number, zeroAt: number) => number = native.copyCrc32;

/** Copy `payload` behind the 24-byte PCIeOE header at buf[hdr] and write the CRC of both into the header's CRC field: one pass, one call. */
export const sealFrame: (buf: Uint8Array, hdr: number, payload: Uint8Array) => number = native.sealFrame;

/** For each frame region[start, end) (u32 pairs in `spans`), whether it is a PCIeOE frame with a good CRC (ok[i] 1 or 0): one call for many frames. */
export const framesCrcOk: (region: Uint8Array, spans: Uint8Array, count: number, ok: Uint8Array) => void = native.framesCrcOk;
