// Bus/Device/Function ids: the 16-bit number PCI Express carries as
// requester and completer id (bus 8 bits, device 5, function 3), and its
// text form bb:dd.f as lspci and the lab's command lines write it; and the
// vendor:device pair as lspci -n writes it.

const hex = (n: number, w: number) => n.toString(16).padStart(w, '0');

export function bdf(bus: number, device: number, fn: number): number {
  return ((bus & 0xff) << 8) | ((device & 0x1f) << 3) | (fn & 0x7);
}

/** A BDF number → `bb:dd.f`. */
export function formatBdf(id: number): string {
  return `${hex(id >> 8, 2)}:${hex((id >> 3) & 0x1f, 2)}.${id & 7}`;
}

/** `bb:dd.f` → a BDF number. */
export function parseBdf(text: string): number {
  const m = /^([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$/.exec(text);
  if (!m) throw new Error(`bad BDF "${text}" (expected bb:dd.f)`);
  const dev = parseInt(m[2]!, 16);
  if (dev > 31) throw new Error(`bad BDF "${text}": device ${dev} > 31`);
  return bdf(parseInt(m[1]!, 16), dev, Number(m[3]));
}

/** Vendor and device id → `vvvv:dddd`. */
export function formatPciId(vendorId: number, deviceId: number): string {
  return `${hex(vendorId, 4)}:${hex(deviceId, 4)}`;
}
