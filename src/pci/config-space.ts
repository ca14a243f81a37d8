// Type-0 PCI configuration space with per-bit write semantics.
//
// Each byte has a writable mask (bits software may change) and a
// write-1-to-clear mask (status bits the device sets and software acks).
// Everything else is read-only. Devices build their space with the raw
// set*() methods, then seal() it: reset() returns to that sealed image.

/** Standard header offsets (PCI Local Bus 3.0, type 0). */
export const enum Cfg {
  VendorId = 0x00,
  DeviceId = 0x02,
  Command = 0x04,
  Status = 0x06,
  Revision = 0x08,
  ClassProgIf = 0x09,
  CacheLineSize = 0x0c,
  LatencyTimer = 0x0d,
  HeaderType = 0x0e,
  Bar0 = 0x10,
  SubsystemVendorId = 0x2c,
  SubsystemId = 0x2e,
  RomBar = 0x30,
  CapabilitiesPtr = 0x34,
  InterruptLine = 0x3c,
  InterruptPin = 0x3d,
  /** First byte after the standard header: capabilities go from here. */
  HeaderEnd = 0x40,
  /** Extended capabilities (PCI Express only) start here. */
  ExtendedStart = 0x100,
}

export const enum CommandBit {
  Io = 1 << 0,
  Memory = 1 << 1,
  BusMaster = 1 << 2,
  ParityErrorResponse = 1 << 6,
  Serr = 1 << 8,
  IntxDisable = 1 << 10,
}

export const enum StatusBit {
  InterruptStatus = 1 << 3,
  CapabilitiesList = 1 << 4,
}

/** Status bits software clears by writing 1: master/target aborts, SERR, parity. */
const STATUS_W1C = 0xf900;

export const enum CapId {
  PowerManagement = 0x01,
  Msi = 0x05,
  /** Vendor-specific: the body is the vendor's (virtio's PCI capabilities use it). */
  VendorSpecific = 0x09,
  PciExpress = 0x10,
  MsiX = 0x11,
}

export class ConfigSpace {
  readonly data: Uint8Array;
  readonly wmask: Uint8Array;
  readonly w1cmask: Uint8Array;
  private sealed?: Uint8Array;
  /** Offset of the next free dword for a capability. */
  private nextCap: number = Cfg.HeaderEnd;
  private lastCap = 0;

  /** 256 bytes: conventional PCI; 4096: PCI Express. */
  constructor(readonly size: 256 | 4096) {
    this.data = new Uint8Array(size);
    this.wmask = new Uint8Array(size);
    this.w1cmask = new Uint8Array(size);
    this.setMask16(Cfg.Command, CommandBit.Io | CommandBit.Memory | CommandBit.BusMaster | CommandBit.ParityErrorResponse | CommandBit.Serr | CommandBit.IntxDisable);
    this.setW1c16(Cfg.Status, STATUS_W1C);
    this.setMask8(Cfg.CacheLineSize, 0xff);
    this.setMask8(Cfg.InterruptLine, 0xff);
  }

  // ---- software (transport) access ----

  /** `length` bytes from `offset`; the caller checks bounds against `size`. */
  read(offset: number, length: number): Uint8Array {
    return this.data.slice(offset, offset + length);
  }

  write(offset: number, bytes: Uint8Array): void {
    for (let i = 0; i < bytes.length; i++) {
      const o = offset + i;
      const v = bytes[i]!;
      const w = this.wmask[o]!;
      let b = (this.data[o]! & ~w) | (v & w);
      b &= ~(v & this.w1cmask[o]!);
      this.data[o] = b;
    }
  }

  // ---- device-side raw access (no masks) ----

  get8(o: number): number {
    return this.data[o]!;
  }
  get16(o: number): number {
    return this.data[o]! | (this.data[o + 1]! << 8);
  }
  get32(o: number): number {
    return (this.get16(o) | (this.get16(o + 2) << 16)) >>> 0;
  }
  set8(o: number, v: number): void {
    this.data[o] = v & 0xff;
  }
  set16(o: number, v: number): void {
    this.set8(o, v);
    this.set8(o + 1, v >>> 8);
  }
  set32(o: number, v: number): void {
    this.set16(o, v & 0xffff);
    this.set16(o + 2, v >>> 16);
  }
  setMask8(o: number, m: number): void {
    this.wmask[o] = m & 0xff;
  }
  setMask16(o: number, m: number): void {
    this.setMask8(o, m);
    this.setMask8(o + 1, m >>> 8);
  }
  setMask32(o: number, m: number): void {
    this.setMask16(o, m & 0xffff);
    this.setMask16(o + 2, m >>> 16);
  }
  setW1c16(o: number, m: number): void {
    this.w1cmask[o] = m & 0xff;
    this.w1cmask[o + 1] = (m >>> 8) & 0xff;
  }

  /** Sets or clears device-owned (read-only) bits of a 16-bit register. */
  setBits16(o: number, bits: number, on: boolean): void {
    this.set16(o, on ? this.get16(o) | bits : this.get16(o) & ~bits);
  }

  /**
   * Appends a capability of `length` bytes to the list and returns its
   * offset. Bytes 0-1 (id, next) are filled in; the body is the caller's.
   */
  addCapability(id: CapId, length: number): number {
    const at = this.nextCap;
    if (at + length > 0x100) throw new Error(`no room for capability 0x${id.toString(16)} (${length} bytes at 0x${at.toString(16)})`);
    this.set8(at, id);
    this.set8(at + 1, 0);
    if (this.lastCap === 0) this.set8(Cfg.CapabilitiesPtr, at);
    else this.set8(this.lastCap + 1, at);
    this.setBits16(Cfg.Status, StatusBit.CapabilitiesList, true);
    this.lastCap = at;
    this.nextCap = (at + length + 3) & ~3;
    return at;
  }

  /** Offset of the first capability with `id`, walking the list as software does. */
  findCapability(id: CapId): number | undefined {
    const seen = new Set<number>();
    for (let at = this.get8(Cfg.CapabilitiesPtr) & ~3; at !== 0 && !seen.has(at); at = this.get8(at + 1) & ~3) {
      seen.add(at);
      if (this.get8(at) === id) return at;
    }
    return undefined;
  }

  /** Records the current image as the power-on/reset state. */
  seal(): void {
    this.sealed = this.data.slice();
  }

  /** Back to the sealed image (conventional or function-level reset). */
  reset(): void {
    if (!this.sealed) throw new Error('ConfigSpace.reset() before seal()');
    this.data.set(this.sealed);
  }
}
