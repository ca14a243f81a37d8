/**
 * Byte-enable arithmetic for memory requests (PCIe Base Spec §2.2.5 and the
 * "Calculating Byte Count from Length and Byte Enables" table of §2.3.1.1).
 * A BE nibble has bit n set when byte n of the DW is enabled.
 */

/** Offset of the lowest enabled byte (0 when none is enabled). */
export function leadingDisabled(be: number): number {
  if (be & 1) return 0;
  if (be & 2) return 1;
  if (be & 4) return 2;
  if (be & 8) return 3;
  return 0;
}

/** Disabled bytes above the highest enabled one (0 when none is enabled). */
export function trailingDisabled(be: number): number {
  if (be & 8) return 0;
  if (be & 4) return 1;
  if (be & 2) return 2;
  if (be & 1) return 3;
  return 0;
}

/** True when the enabled bytes form one run (0 counts as contiguous). */
export function isContiguous(be: number): boolean {
  if (be === 0) return true;
  const low = be & -be;
  return ((be + low) & be) === 0;
}

/**
 * Byte Count a completer reports for a whole memory read request. A request
 * with no byte enabled (length 1, firstBe 0) still returns one DW and counts 1.
 */
export function requestByteCount(length: number, firstBe: number, lastBe: number): number {
  if (length === 1) {
    if (firstBe === 0) return 1;
    return 4 - leadingDisabled(firstBe) - trailingDisabled(firstBe);
  }
  return length * 4 - leadingDisabled(firstBe) - trailingDisabled(lastBe);
}

/** Lower Address (bits 6:0) of the first byte a completion for the request returns. */
export function requestLowerAddress(address: bigint, firstBe: number): number {
  return (Number(address & 0x7cn) | leadingDisabled(firstBe)) & 0x7f;
}

export interface DwSpan {
  /** DW-aligned start address. */
  address: bigint;
  /** Length in DW, at least 1. */
  length: number;
  firstBe: number;
  lastBe: number;
}

/**
 * The DW span and byte enables covering `byteLength` bytes at `address`.
 * Zero bytes is the spec's zero-length request: one DW, no byte enabled.
 */
export function spanFor(address: bigint, byteLength: number): DwSpan {
  const dwAddress = address & ~3n;
  const head = Number(address & 3n);
  if (byteLength === 0) return { address: dwAddress, length: 1, firstBe: 0, lastBe: 0 };
  const length = (head + byteLength + 3) >>> 2;
  const tail = length * 4 - head - byteLength;
  const firstMask = (0xf << head) & 0xf;
  const lastMask = 0xf >>> tail;
  return length === 1
    ? { address: dwAddress, length, firstBe: firstMask & lastMask, lastBe: 0 }
    : { address: dwAddress, length, firstBe: firstMask, lastBe: lastMask };
}
