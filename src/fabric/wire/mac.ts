/**
 * MAC addresses as 48-bit integers: exact in a JS number, cheap to compare
 * and to use as map keys on the switch's hot path.
 */

export type Mac = number;

export const BROADCAST_MAC: Mac = 0xffff_ffff_ffff;

export function parseMac(text: string): Mac {
  const parts = text.split(/[:-]/);
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{1,2}$/.test(p))) throw new SyntaxError(`bad MAC address "${text}"`);
  return parts.reduce((acc, p) => acc * 256 + parseInt(p, 16), 0);
}

export function formatMac(mac: Mac): string {
  return mac.toString(16).padStart(12, '0').replace(/(..)(?!$)/g, '$1:');
}

export function readMac(buf: Uint8Array, offset: number): Mac {
  return (buf[offset]! * 0x100_0000_0000) + (((buf[offset + 1]! << 24) | (buf[offset + 2]! << 16) | (buf[offset + 3]! << 8) | buf[offset + 4]!) >>> 0) * 256 + buf[offset + 5]!;
}

export function writeMac(buf: Uint8Array, offset: number, mac: Mac): void {
  const hi = Math.floor(mac / 0x1_0000_0000);
  const lo = mac >>> 0;
  buf[offset] = hi >>> 8;
  buf[offset + 1] = hi & 0xff;
  buf[offset + 2] = lo >>> 24;
  buf[offset + 3] = (lo >>> 16) & 0xff;
  buf[offset + 4] = (lo >>> 8) & 0xff;
  buf[offset + 5] = lo & 0xff;
}

/** Group bit (I/G) of the first octet: broadcast and multicast. */
export function isMulticast(mac: Mac): boolean {
  return (Math.floor(mac / 0x100_0000_0000) & 1) === 1;
}
