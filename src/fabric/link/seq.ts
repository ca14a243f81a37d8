/**
 * 16-bit sequence number arithmetic (serial number arithmetic as in RFC 1982):
 * comparisons are meaningful while the numbers compared are less than 2^15
 * apart, which the link layer guarantees by bounding its window.
 */

export const SEQ_MOD = 0x10000;
export const SEQ_MASK = 0xffff;
/** Largest window the comparison stays unambiguous for. */
export const MAX_WINDOW = 0x8000 - 1;

/** a - b as a signed distance in [-2^15, 2^15). */
export function seqDiff(a: number, b: number): number {
  return (((a - b) & SEQ_MASK) ^ 0x8000) - 0x8000;
}

export function seqAdd(a: number, n: number): number {
  return (a + n) & SEQ_MASK;
}
