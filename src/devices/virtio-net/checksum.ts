// The Internet checksum (RFC 1071) as the virtio-net checksum offloads need it (virtio spec
// v1.2 §5.1.6.2, §5.1.6.4):
// - transmit, VIRTIO_NET_F_CSUM: a packet with NEEDS_CSUM in its header carries a partial
//   checksum — the driver summed the pseudo-header into the checksum field — and the device
//   completes it over [csum_start, end) and stores it at csum_start + csum_offset;
// - receive, VIRTIO_NET_F_GUEST_CSUM: the device checks a TCP or UDP over IPv4 packet
//   and marks it DATA_VALID, so the driver's stack does not check it again.
//
// Frames are Ethernet II, optionally with one 802.1Q tag:
//   0 dst[6] | 6 src[6] | 12 type be16 (0x8100: 14 tci be16, 16 type be16) | IPv4 header
//   IPv4: 0 ver/ihl | 2 total length be16 | 6 flags/fragment be16 | 9 protocol | 12 src[4] | 16 dst[4]

const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/** The 16-bit ones' complement sum of `data` (big-endian words, an odd last byte padded), added to `sum`, not folded. */
export function onesSum(data: Uint8Array, sum = 0): number {
  let i = 0;
  // Every byte of a TSO packet and of each received frame goes through here: whole aligned dwords
  // at a time when the data is at an even address (RFC 1071 §2: the sum does not depend on the
  // byte order, and a 32-bit word is two 16-bit ones, as 2^16 = 1 modulo 0xffff).
  if (LITTLE_ENDIAN && data.length >= 64 && !(data.byteOffset & 1)) {
    if (data.byteOffset & 2) {
      sum += (data[0]! << 8) | data[1]!;
      i = 2;
    }
    const words = (data.length - i) >> 2;
    sum += swapped(dwordSum(new Uint32Array(data.buffer, data.byteOffset + i, words)));
    i += words * 4;
  }
  const n = data.length & ~1;
  for (; i < n; i += 2) sum += (data[i]! << 8) | data[i + 1]!;
  if (data.length & 1) sum += data[n]! << 8;
  return sum;
}

/** The little-endian dwords of `w` summed (exact below 2^53: up to 2^21 dwords). */
function dwordSum(w: Uint32Array): number {
  let sum = 0;
  for (let k = 0; k < w.length; k++) sum += w[k]!;
  return sum;
}

/** A ones' complement sum of words read in the host's order (little-endian), as the big-endian one: folded, bytes swapped. */
function swapped(sum: number): number {
  const f = fold(sum);
  return ((f & 0xff) << 8) | (f >> 8);
}

/** Folds a sum to 16 bits (end-around carry). */
export function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/**
 * Completes a partial checksum in place: the complement of the sum over frame[start, end),
 * written big-endian at start + offset (0 goes out as 0xffff: the same in ones' complement,
 * and a UDP checksum of 0 would mean "none"). False when the field lies outside the frame.
 */
export function completeChecksum(frame: Uint8Array, start: number, offset: number): boolean {
  const at = start + offset;
  if (start >= frame.length || at + 2 > frame.length) return false;
  const c = ~fold(onesSum(frame.subarray(start))) & 0xffff || 0xffff;
  frame[at] = c >> 8;
  frame[at + 1] = c & 0xff;
  return true;
}

const IPV4 = 0x0800;
const VLAN = 0x8100;
const TCP = 6;
const UDP = 17;

/** Where the IPv4 header of an Ethernet frame starts, if it carries one. */
export function ipv4At(frame: Uint8Array): number | undefined {
  let ip = 14;
  let type = (frame[12]! << 8) | frame[13]!;
  if (type === VLAN) {
    type = (frame[16]! << 8) | frame[17]!;
    ip = 18;
  }
  return type === IPV4 && frame.length >= ip + 20 && frame[ip]! >> 4 === 4 ? ip : undefined;
}

/**
 * Whether `frame` is a TCP or UDP packet over IPv4, not a fragment, whose checksum is right
 * (a UDP packet without checksum is not: nothing was checked). Anything else is false: the
 * driver's stack then checks it itself.
 */
export function l4ChecksumValid(frame: Uint8Array): boolean {
  const ip = ipv4At(frame);
  if (ip === undefined) return false;
  const ihl = (frame[ip]! & 0xf) * 4;
  const total = (frame[ip + 2]! << 8) | frame[ip + 3]!;
  const fragment = ((frame[ip + 6]! << 8) | frame[ip + 7]!) & 0x3fff; // MF and the offset
  const proto = frame[ip + 9]!;
  if (ihl < 20 || total < ihl || ip + total > frame.length || fragment || (proto !== TCP && proto !== UDP)) return false;
  const l4 = frame.subarray(ip + ihl, ip + total);
  if (proto === UDP && (l4.length < 8 || (l4[6] === 0 && l4[7] === 0))) return false;
  if (proto === TCP && l4.length < 20) return false;
  // Pseudo-header: source and destination addresses, protocol, L4 length.
  const pseudo = onesSum(frame.subarray(ip + 12, ip + 20), proto + l4.length);
  return fold(onesSum(l4, pseudo)) === 0xffff;
}
