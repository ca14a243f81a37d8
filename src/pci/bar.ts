// Base Address Registers (PCI Local Bus 3.0 §6.2.5.1): how a function
// describes a BAR, the register's type bits, and sizing. Devices declare
// BarDefs; the HI learns them from a remote function's registers; transports
// offer them as regions. One description for all three.
import { Cfg, type ConfigSpace } from './config-space.ts';

export const BAR_COUNT = 6;

/** Low bits of a BAR register: space, memory type, prefetchable. Read-only. */
export const enum BarBit {
  Io = 1 << 0,
  /** Memory type field (bits 2:1) = 2: a 64-bit BAR, the next register holds the upper half. */
  Mem64 = 2 << 1,
  MemTypeMask = 3 << 1,
  Prefetchable = 1 << 3,
  /** The type bits of a memory BAR (bits 3:0); the base is the rest. */
  MemTypeBits = 0xf,
}

/** Base address bits of a memory / I/O BAR register. */
export const BAR_MEM_BASE_MASK = 0xfffffff0;
export const BAR_IO_BASE_MASK = 0xfffffffc;

export interface BarDef {
  /** Bytes, a power of two (memory >= 16, I/O >= 4). */
  size: number;
  kind: 'mem32' | 'mem64' | 'io';
  prefetchable?: boolean;
  /**
   * Parts of the BAR that are plain memory in a shared file, so that a
   * transport may map them into the host instead of trapping each access
   * (vfio-user: sparse mmap). BAR offset X is file offset X. Accesses that
   * still arrive through barRead/barWrite must hit the same memory.
   */
  shared?: SharedBarMemory;
}

export interface SharedBarMemory {
  /** A mappable fd (memfd) owned by the device; at least as large as the BAR. */
  fd: number;
  /** Page-aligned [offset, offset + size) ranges of the BAR. */
  areas: readonly { offset: number; size: number }[];
}

/** Config offset of BAR register `index`. */
export function barRegister(index: number): number {
  return Cfg.Bar0 + 4 * index;
}

/** The read-only low bits of the BAR register that `b` describes. */
export function barTypeBits(b: BarDef): number {
  if (b.kind === 'io') return BarBit.Io;
  return (b.kind === 'mem64' ? BarBit.Mem64 : 0) | (b.prefetchable ? BarBit.Prefetchable : 0);
}

/** The kind of BAR a register value (its low bits) announces. */
export function barKind(register: number): BarDef['kind'] {
  if (register & BarBit.Io) return 'io';
  return (register & BarBit.MemTypeMask) === BarBit.Mem64 ? 'mem64' : 'mem32';
}

/** The base address software programmed into memory BAR `index` of `cs` (0: not programmed). */
export function memBarBase(cs: ConfigSpace, index: number, b: BarDef): bigint {
  const at = barRegister(index);
  const lo = BigInt((cs.get32(at) & BAR_MEM_BASE_MASK) >>> 0);
  return b.kind === 'mem64' ? lo | (BigInt(cs.get32(at + 4)) << 32n) : lo;
}

/**
 * A memory BAR's size from what reads back after writing all-ones: the low
 * register's mask and, for a 64-bit BAR, the high one's.
 */
export function memBarSize(maskLo: number, maskHi?: number): bigint {
  const hi = maskHi === undefined ? 0xffffffffn : BigInt(maskHi >>> 0);
  return (~((hi << 32n) | BigInt((maskLo & BAR_MEM_BASE_MASK) >>> 0)) & 0xffff_ffff_ffff_ffffn) + 1n;
}

/**
 * What a transport offers of a function besides interrupts: its BARs by
 * index (undefined: none, or the upper half of a 64-bit BAR) and its
 * config space size.
 */
export interface FunctionRegions {
  bars: readonly (BarDef | undefined)[];
  configSize: 256 | 4096;
}
