/**
 * CRC-32 (IEEE 802.3 polynomial, reflected, as zlib and Ethernet use it).
 * zlib.crc32 is native (Node ≥ 20.15); older Node gets a table-driven
 * fallback with the same results.
 */

import * as zlib from 'node:zlib';

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

const native = (zlib as { crc32?: Crc32 }).crc32;

/** CRC-32 of `data`, continuing from `initial` (the CRC of the bytes before it). */
export const crc32: Crc32 = native ?? crc32Table;
