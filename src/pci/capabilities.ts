// Capability builders: each lays out one capability in a ConfigSpace with
// its reset values and writable bits, and returns its offset.
import { CapId, type ConfigSpace } from './config-space.ts';

// ---- Power Management (PCI PM 1.2) ------------------------------------------

export const enum Pm {
  Pmc = 2,
  Pmcsr = 4,
  Length = 8,
}

/** D0/D3hot only, no PME. No_Soft_Reset set: D3hot->D0 keeps state. */
export function addPmCapability(cs: ConfigSpace): number {
  const at = cs.addCapability(CapId.PowerManagement, Pm.Length);
  cs.set16(at + Pm.Pmc, 0x0003); // version 3 (PM 1.2)
  cs.set16(at + Pm.Pmcsr, 0x0008); // D0, No_Soft_Reset
  cs.setMask16(at + Pm.Pmcsr, 0x0003); // PowerState
  return at;
}

// ---- PCI Express capability, version 2, endpoint -----------------------------

export const enum Pcie {
  Caps = 0x02,
  DevCap = 0x04,
  DevCtl = 0x08,
  DevSta = 0x0a,
  LinkCap = 0x0c,
  LinkCtl = 0x10,
  LinkSta = 0x12,
  DevCap2 = 0x24,
  DevCtl2 = 0x28,
  LinkCap2 = 0x2c,
  LinkCtl2 = 0x30,
  Length = 0x3c,
}

export const enum DevCapBit {
  RoleBasedErrorReporting = 1 << 15,
  FlrCapable = 1 << 28,
}

export const enum DevCtlBit {
  InitiateFlr = 1 << 15,
}

export interface PcieOptions {
  /** Max_Payload_Size Supported, encoded (0 = 128 B ... 5 = 4096 B). */
  maxPayloadSupported?: number;
  /** Link speed (1 = 2.5 GT/s, 2 = 5, 3 = 8, 4 = 16) and width reported as trained. */
  linkSpeed?: number;
  linkWidth?: number;
  /** Advertise Function Level Reset (the function resets on DevCtl.InitiateFlr). */
  flr?: boolean;
}

export function addPcieCapability(cs: ConfigSpace, o: PcieOptions = {}): number {
  const at = cs.addCapability(CapId.PciExpress, Pcie.Length);
  const speed = o.linkSpeed ?? 3;
  const width = o.linkWidth ?? 4;
  cs.set16(at + Pcie.Caps, 0x0002); // version 2, device/port type 0 = PCI Express Endpoint
  // DevCap: MPS supported, role-based error reporting (bit 15), FLR (bit 28).
  cs.set32(at + Pcie.DevCap, ((o.maxPayloadSupported ?? 1) & 7) | DevCapBit.RoleBasedErrorReporting | (o.flr ? DevCapBit.FlrCapable : 0));
  // DevCtl reset value: relaxed ordering + no snoop enabled, MPS 128 B, MRRS 512 B.
  cs.set16(at + Pcie.DevCtl, 0x2810);
  // Error reporting enables, RO, MPS, ext tag, phantom, aux PM, no snoop, MRRS.
  // Initiate FLR (bit 15) always reads 0, so it is not stored.
  cs.setMask16(at + Pcie.DevCtl, 0x7fff);
  cs.setW1c16(at + Pcie.DevSta, 0x000f); // error detected bits
  cs.set32(at + Pcie.LinkCap, (speed & 0xf) | ((width & 0x3f) << 4));
  cs.setMask16(at + Pcie.LinkCtl, 0x01cb); // ASPM, RCB, common clock, ext sync, clock PM
  cs.set16(at + Pcie.LinkSta, (speed & 0xf) | ((width & 0x3f) << 4) | (1 << 12)); // slot clock
  cs.set32(at + Pcie.LinkCap2, ((1 << speed) - 1) << 1); // supported speeds vector
  cs.set16(at + Pcie.LinkCtl2, speed & 0xf);
  cs.setMask16(at + Pcie.LinkCtl2, 0x000f);
  return at;
}

// ---- MSI-X -------------------------------------------------------------------

export const enum MsixCap {
  Control = 2,
  Table = 4,
  Pba = 8,
  Length = 12,
}

export const enum MsixControl {
  TableSizeMask = 0x07ff,
  FunctionMask = 1 << 14,
  Enable = 1 << 15,
}

/** Table and PBA registers: BAR indicator in bits 2:0, offset in the rest. */
export const MSIX_BIR_MASK = 7;

/** One MSI-X table entry (PCI Local Bus 3.0 §6.8.2.6). */
export const enum MsixEntry {
  AddressLo = 0,
  AddressHi = 4,
  Data = 8,
  VectorControl = 12,
  /** Vector Control bit 0. */
  Masked = 1,
  Size = 16,
}

export interface MsixOptions {
  vectors: number;
  tableBar: number;
  tableOffset: number;
  pbaBar: number;
  pbaOffset: number;
}

export function addMsixCapability(cs: ConfigSpace, o: MsixOptions): number {
  if (o.vectors < 1 || o.vectors > 2048) throw new Error(`MSI-X vectors must be 1..2048, got ${o.vectors}`);
  if ((o.tableOffset | o.pbaOffset) & 7) throw new Error('MSI-X table and PBA offsets must be 8-byte aligned');
  const at = cs.addCapability(CapId.MsiX, MsixCap.Length);
  cs.set16(at + MsixCap.Control, o.vectors - 1);
  cs.setMask16(at + MsixCap.Control, MsixControl.Enable | MsixControl.FunctionMask);
  cs.set32(at + MsixCap.Table, o.tableOffset | o.tableBar);
  cs.set32(at + MsixCap.Pba, o.pbaOffset | o.pbaBar);
  return at;
}

// ---- MSI (PCI Local Bus 3.0 §6.8.1), always with a 64-bit address -----------

export const enum MsiCap {
  Control = 0x02,
  AddressLo = 0x04,
  AddressHi = 0x08,
  Data = 0x0c,
  /** Per-vector masking only: one bit per vector, software-owned. */
  MaskBits = 0x10,
  /** Per-vector masking only: one bit per vector, set by the function while masked. */
  PendingBits = 0x14,
  /** 64-bit address without per-vector masking (Data is 16 bits). */
  Length = 0x0e,
  LengthWithMask = 0x18,
}

export const enum MsiControl {
  Enable = 1 << 0,
  /** Multiple Message Capable: log2 of the vectors requested (read-only). */
  MmcShift = 1,
  /** Multiple Message Enable: log2 of the vectors software allocated. */
  MmcMask = 7 << 1,
  MmeShift = 4,
  MmeMask = 7 << 4,
  Address64 = 1 << 7,
  PerVectorMask = 1 << 8,
}

/**
 * Register offsets of an MSI capability as its Control announces them:
 * without a 64-bit address, Data, Mask and Pending sit 4 bytes lower.
 */
export function msiLayout(is64: boolean, perVectorMask: boolean): { data: number; maskBits: number; pendingBits: number; length: number } {
  const down = is64 ? 0 : 4;
  return {
    data: MsiCap.Data - down,
    maskBits: MsiCap.MaskBits - down,
    pendingBits: MsiCap.PendingBits - down,
    length: (perVectorMask ? MsiCap.LengthWithMask : MsiCap.Length) - down,
  };
}

export interface MsiOptions {
  /** Vectors requested: a power of two, 1..32. */
  vectors: number;
  /** Per-vector Mask and Pending bits. */
  perVectorMask?: boolean;
}

export function addMsiCapability(cs: ConfigSpace, o: MsiOptions): number {
  const log2 = Math.log2(o.vectors);
  if (!Number.isInteger(log2) || log2 < 0 || log2 > 5) throw new Error(`MSI vectors must be a power of two in 1..32, got ${o.vectors}`);
  const at = cs.addCapability(CapId.Msi, o.perVectorMask ? MsiCap.LengthWithMask : MsiCap.Length);
  cs.set16(at + MsiCap.Control, (log2 << MsiControl.MmcShift) | MsiControl.Address64 | (o.perVectorMask ? MsiControl.PerVectorMask : 0));
  cs.setMask16(at + MsiCap.Control, MsiControl.Enable | MsiControl.MmeMask);
  cs.setMask32(at + MsiCap.AddressLo, 0xfffffffc); // dword-aligned
  cs.setMask32(at + MsiCap.AddressHi, 0xffffffff);
  cs.setMask16(at + MsiCap.Data, 0xffff);
  // Mask bits exist for the vectors requested only; Pending bits are the function's.
  if (o.perVectorMask) cs.setMask32(at + MsiCap.MaskBits, o.vectors === 32 ? 0xffffffff : (1 << o.vectors) - 1);
  return at;
}
