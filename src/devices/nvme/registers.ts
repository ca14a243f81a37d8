// NVMe controller registers, BAR0 offsets 0x00-0xfff (NVMe 1.4 §3.1), and the
// fixed values this model advertises. The register file only stores and masks
// bytes; what a write *does* (enable, reset, shutdown) is the controller's.
//
// Linux reads the 64-bit registers (CAP, ASQ, ACQ) as two 32-bit halves, QEMU
// may forward any size: every access is taken apart into the dwords it touches.

export const enum Reg {
  Cap = 0x00,
  Vs = 0x08,
  Intms = 0x0c,
  Intmc = 0x10,
  Cc = 0x14,
  Csts = 0x1c,
  Nssr = 0x20,
  Aqa = 0x24,
  Asq = 0x28,
  Acq = 0x30,
  /** End of the register block we model; 0x38-0xfff read 0 (no CMB, PMR, boot partitions). */
  End = 0x38,
  /** First doorbell; with CAP.DSTRD = 0 SQ y tail is at 0x1000 + 8y, CQ y head at 0x1004 + 8y. */
  Doorbells = 0x1000,
}

export const enum CcBit {
  Enable = 1 << 0,
}
/** CC fields (bit positions / masks). */
export const CC = {
  cssShift: 4,
  cssMask: 0x7,
  mpsShift: 7,
  mpsMask: 0xf,
  amsShift: 11,
  amsMask: 0x7,
  shnShift: 14,
  shnMask: 0x3,
  iosqesShift: 16,
  iocqesShift: 20,
  entrySizeMask: 0xf,
} as const;

export const enum CstsBit {
  Ready = 1 << 0,
  Fatal = 1 << 1,
  /** SHST, 2 bits: 0 normal, 1 shutdown processing, 2 shutdown complete. */
  ShstShift = 2,
  ShstMask = 3 << 2,
  NssrOccurred = 1 << 4,
}

export const enum Shst {
  Normal = 0,
  Processing = 1,
  Complete = 2,
}

/** The model's capabilities, chosen for the Linux 6.1 driver (design notes §5). */
export const LIMITS = {
  /** CAP.MQES, 0-based: queues of up to 2048 entries. */
  mqes: 0x7ff,
  /** CAP.TO in 500 ms units: 7.5 s for CSTS.RDY to follow CC.EN. */
  timeout: 0xf,
  /** I/O queue pairs the controller offers (Set Features 07h answers at most this). */
  ioQueues: 16,
  /** MDTS as a power of two of the minimum page size: 2^5 * 4 KiB = 128 KiB. */
  mdts: 5,
  /** 64-byte SQ entries, 16-byte CQ entries (as log2, CC.IOSQES / IOCQES). */
  sqes: 6,
  cqes: 4,
  /** NVMe 1.4.0. */
  version: 0x0001_0400,
} as const;

/** CAP as two dwords: MQES, CQR=1, AMS=0, TO, DSTRD=0, NSSRS=0, CSS=NVM only, MPSMIN=MPSMAX=0 (4 KiB). */
export function capValue(): [lo: number, hi: number] {
  const cqr = 1 << 16; // queues must be physically contiguous: no PRP-list queues to walk
  const lo = LIMITS.mqes | cqr | (LIMITS.timeout << 24);
  const cssNvm = 1 << (37 - 32);
  return [lo >>> 0, cssNvm];
}

/** Writable bits per register dword; anything else is read-only (or handled by the controller). */
const WRITABLE: ReadonlyMap<number, number> = new Map([
  [Reg.Cc, 0x00ff_fff1], // EN, CSS, MPS, AMS, SHN, IOSQES, IOCQES
  [Reg.Aqa, 0x0fff_0fff],
  [Reg.Asq, 0xffff_f000],
  [Reg.Asq + 4, 0xffff_ffff],
  [Reg.Acq, 0xffff_f000],
  [Reg.Acq + 4, 0xffff_ffff],
]);

export class RegisterFile {
  private readonly bytes = new Uint8Array(Reg.End);
  private readonly view = new DataView(this.bytes.buffer);
  /** INTMS/INTMC both read the interrupt mask (only meaningful for INTx). */
  intMask = 0;

  constructor() {
    this.reset();
  }

  reset(): void {
    this.bytes.fill(0);
    const [lo, hi] = capValue();
    this.set32(Reg.Cap, lo);
    this.set32(Reg.Cap + 4, hi);
    this.set32(Reg.Vs, LIMITS.version);
    this.intMask = 0;
  }

  get32(at: number): number {
    return this.view.getUint32(at, true);
  }

  set32(at: number, v: number): void {
    this.view.setUint32(at, v >>> 0, true);
  }

  get64(at: number): number {
    return this.get32(at) + this.get32(at + 4) * 0x1_0000_0000;
  }

  get cc(): number {
    return this.get32(Reg.Cc);
  }

  get csts(): number {
    return this.get32(Reg.Csts);
  }

  setCsts(bits: number, on: boolean): void {
    this.set32(Reg.Csts, on ? this.csts | bits : this.csts & ~bits);
  }

  setShst(s: Shst): void {
    this.set32(Reg.Csts, (this.csts & ~CstsBit.ShstMask) | (s << CstsBit.ShstShift));
  }

  read(offset: number, size: number): Uint8Array {
    const out = new Uint8Array(size);
    if (offset < Reg.End) out.set(this.bytes.subarray(offset, Math.min(offset + size, Reg.End)));
    // The interrupt mask registers read back the mask rather than what was written.
    for (const reg of [Reg.Intms, Reg.Intmc]) {
      for (let i = 0; i < 4; i++) {
        const j = reg + i - offset;
        if (j >= 0 && j < size) out[j] = (this.intMask >>> (8 * i)) & 0xff;
      }
    }
    return out;
  }

  /**
   * Applies a write byte-wise to every dword it touches, keeping read-only
   * bits. Returns the offsets of the dwords touched, for the controller's
   * side effects.
   */
  write(offset: number, data: Uint8Array): number[] {
    const touched: number[] = [];
    const first = offset & ~3;
    for (let reg = first; reg < offset + data.length && reg < Reg.End; reg += 4) {
      let written = 0;
      let enables = 0;
      for (let i = 0; i < 4; i++) {
        const j = reg + i - offset;
        if (j >= 0 && j < data.length) {
          written |= data[j]! << (8 * i);
          enables |= 0xff << (8 * i);
        }
      }
      written >>>= 0;
      if (reg === Reg.Intms) this.intMask = (this.intMask | (written & enables)) >>> 0;
      else if (reg === Reg.Intmc) this.intMask = (this.intMask & ~(written & enables)) >>> 0;
      else if (reg === Reg.Csts) this.set32(Reg.Csts, this.csts & ~(written & enables & CstsBit.NssrOccurred)); // RW1C
      else {
        const mask = (WRITABLE.get(reg) ?? 0) & enables;
        this.set32(reg, (this.get32(reg) & ~mask) | (written & mask));
      }
      touched.push(reg);
    }
    return touched;
  }
}
