// src/pci — the one PCI vocabulary: header offsets and bits (config-space.ts),
// capability layouts and builders (capabilities.ts), BARs and the regions a
// transport offers (bar.ts), BDFs (bdf.ts), and the function model built from
// them (this file). It imports nothing outside this folder; devices, the HI,
// the DI and the direct-attach adapter import it.
//
// A transport-agnostic PCI Express function: configuration space with its
// capabilities, BARs with access handlers, MSI and an MSI-X table, and two ports the
// transport plugs in — DMA (read/write host memory by bus address) and
// interrupts. The direct-attach adapter serves it to QEMU over vfio-user; the
// DI serves the same object over PCIeOE. Nothing here knows which transport is in use.
import { BAR_COUNT, BAR_IO_BASE_MASK, BAR_MEM_BASE_MASK, barRegister, barTypeBits, type BarDef } from './bar.ts';
import {
  addMsiCapability, addMsixCapability, addPcieCapability, addPmCapability, DevCtlBit, MsiCap, MsiControl, MsixCap, MsixControl, MsixEntry, Pcie,
  type MsiOptions, type PcieOptions,
} from './capabilities.ts';
import { Cfg, CommandBit, ConfigSpace, StatusBit } from './config-space.ts';

export interface MsixDef {
  vectors: number;
  /** BAR holding the table and the PBA (both in one BAR here). */
  bar: number;
  tableOffset: number;
  pbaOffset: number;
}

export interface PciFunctionConfig {
  vendorId: number;
  deviceId: number;
  /** 24 bits: base class, subclass, programming interface. Never 0 (Linux gives class-0 hot-plugged devices no BARs). */
  classCode: number;
  revision?: number;
  subsystemVendorId?: number;
  subsystemId?: number;
  /** 0 = no INTx, 1-4 = INTA#-INTD#. */
  interruptPin?: number;
  /** Index = BAR number; a mem64 BAR also takes the next index, which must be empty. */
  bars: readonly (BarDef | undefined)[];
  msix?: MsixDef;
  /** An MSI capability (64-bit address); may coexist with MSI-X, software enables one. */
  msi?: MsiOptions;
  /** PCI Express (4 KiB config space, PCIe + PM capabilities); default true. */
  express?: boolean;
  pcie?: PcieOptions;
  /** A PCI Express function without the PM capability (default: with it). */
  noPowerManagement?: boolean;
}

/** Host memory as the device sees it: bus addresses (IOVAs). */
export interface DmaPort {
  dmaRead(addr: number, length: number): Promise<Uint8Array>;
  /**
   * A write of whole dwords within one 64-byte line lands in ascending dword
   * order, as a root complex commits one small TLP (ordered-copy.ts); writes
   * reach memory in the order issued.
   */
  dmaWrite(addr: number, data: Uint8Array): Promise<void>;
  /**
   * Optional: the scatter list `segments` read back to back into `into`, one request for all (a
   * transport that reads over a fabric issues every read at once and lands each reply in place).
   * Once it settles nothing writes into `into` any more.
   */
  dmaReadInto?(segments: readonly { addr: number; len: number }[], into: Uint8Array): Promise<unknown>;
}

/** Interrupt delivery, provided by the transport. */
export interface InterruptPort {
  /** Deliver MSI-X vector n (the transport applies the masking it knows about). */
  msix(vector: number): void;
  /**
   * Deliver MSI message n (< the vectors software allocated; per-vector
   * masking is already applied unless `hostMasksMsi`). Optional: a transport
   * without it drops MSI.
   */
  msi?(vector: number): void;
  /**
   * The host side emulates the MSI capability, per-vector Mask and Pending
   * bits included (vfio-user: QEMU answers guest reads of them from its own
   * copy), so the function sends every message and leaves masking to it.
   */
  readonly hostMasksMsi?: boolean;
  /** The INTx line changed level (already gated by Command.INTx_Disable). */
  intx(asserted: boolean): void;
}

export interface FunctionPorts {
  dma: DmaPort;
  irq: InterruptPort;
}

/** The function may not master the bus (no port, or Bus Master Enable clear). */
export class BusMasterError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BusMasterError';
  }
}

export class PciFunction {
  readonly config: ConfigSpace;
  readonly bars: readonly (BarDef | undefined)[];
  readonly msixDef?: MsixDef;
  readonly msiDef?: MsiOptions;
  /** Offset of each capability, for devices and transports. */
  readonly caps: { pm?: number; pcie?: number; msix?: number; msi?: number } = {};
  /** MSI-X table (16 B per vector: address lo/hi, data, vector control) and pending bits. */
  protected readonly msixTable: Uint8Array;
  protected readonly msixPba: Uint8Array;
  private ports?: FunctionPorts;
  private intxLevel = false;
  private intxOut = false;

  constructor(cfg: PciFunctionConfig) {
    if (cfg.classCode === 0) throw new Error('class code 0 makes Linux ignore the BARs of a hot-plugged device');
    const express = cfg.express ?? true;
    const cs = (this.config = new ConfigSpace(express ? 4096 : 256));
    this.bars = cfg.bars;
    cs.set16(Cfg.VendorId, cfg.vendorId);
    cs.set16(Cfg.DeviceId, cfg.deviceId);
    cs.set8(Cfg.Revision, cfg.revision ?? 0);
    cs.set8(Cfg.ClassProgIf, cfg.classCode & 0xff);
    cs.set16(Cfg.ClassProgIf + 1, cfg.classCode >>> 8);
    cs.set16(Cfg.SubsystemVendorId, cfg.subsystemVendorId ?? cfg.vendorId);
    cs.set16(Cfg.SubsystemId, cfg.subsystemId ?? cfg.deviceId);
    cs.set8(Cfg.InterruptPin, cfg.interruptPin ?? 0);
    this.layOutBars(cfg.bars);
    if (express) {
      if (!cfg.noPowerManagement) this.caps.pm = addPmCapability(cs);
      this.caps.pcie = addPcieCapability(cs, { flr: true, ...cfg.pcie });
    }
    const m = cfg.msix;
    if (m) {
      const bar = cfg.bars[m.bar];
      if (!bar || bar.kind === 'io') throw new Error(`MSI-X BAR ${m.bar} must be a memory BAR`);
      if (m.tableOffset + m.vectors * MsixEntry.Size > bar.size || m.pbaOffset + pbaBytes(m.vectors) > bar.size) throw new Error('MSI-X table/PBA do not fit their BAR');
      this.msixDef = m;
      this.caps.msix = addMsixCapability(cs, { vectors: m.vectors, tableBar: m.bar, tableOffset: m.tableOffset, pbaBar: m.bar, pbaOffset: m.pbaOffset });
    }
    if (cfg.msi) {
      this.msiDef = { ...cfg.msi };
      this.caps.msi = addMsiCapability(cs, cfg.msi);
    }
    this.msixTable = new Uint8Array((m?.vectors ?? 0) * MsixEntry.Size);
    this.msixPba = new Uint8Array(m ? pbaBytes(m.vectors) : 0);
    cs.seal();
    this.resetMsixTable();
  }

  // ---- transport-facing ----------------------------------------------------

  /** Plug in (or with undefined, unplug) the transport's DMA and interrupt ports. */
  attach(ports: FunctionPorts | undefined): void {
    this.ports = ports;
    this.intxOut = false;
    this.updateIntx();
  }

  configRead(offset: number, length: number): Uint8Array {
    return this.config.read(offset, length);
  }

  configWrite(offset: number, data: Uint8Array): void {
    const pcie = this.caps.pcie;
    const flr = pcie !== undefined && overlaps(offset, data.length, pcie + Pcie.DevCtl + 1, 1) && (data[pcie + Pcie.DevCtl + 1 - offset]! & (DevCtlBit.InitiateFlr >> 8)) !== 0;
    const msiMaskBefore = this.msiMaskBits;
    const msixMaskedBefore = this.msixFunctionMasked;
    const modeBefore = this.interruptMode;
    this.config.write(offset, data);
    if (flr) {
      this.reset();
      return;
    }
    if (overlaps(offset, data.length, Cfg.Command, 2) || (this.caps.msi !== undefined && overlaps(offset, data.length, this.caps.msi + MsiCap.Control, 2))) this.updateIntx();
    // A message held back by a mask is sent when the mask clears (PCI 3.0 §6.8.1.7, §6.8.2.9).
    if (msiMaskBefore & ~this.msiMaskBits) this.sendPendingMsi(msiMaskBefore & ~this.msiMaskBits);
    if (msixMaskedBefore && !this.msixFunctionMasked) this.sendPendingMsix();
    if (this.interruptMode !== modeBefore) this.interruptModeChanged();
    this.configWritten(offset, data);
  }

  /** A BAR access from the host. MSI-X table and PBA are handled here; the rest goes to read(). */
  barRead(bar: number, offset: number, size: number): Uint8Array | Promise<Uint8Array> {
    const m = this.msixDef;
    if (m && bar === m.bar) {
      if (inside(offset, size, m.tableOffset, this.msixTable.length)) return this.msixTable.slice(offset - m.tableOffset, offset - m.tableOffset + size);
      if (inside(offset, size, m.pbaOffset, this.msixPba.length)) return this.msixPba.slice(offset - m.pbaOffset, offset - m.pbaOffset + size);
    }
    return this.read(bar, offset, size);
  }

  barWrite(bar: number, offset: number, data: Uint8Array): void | Promise<void> {
    const m = this.msixDef;
    if (m && bar === m.bar) {
      if (inside(offset, data.length, m.tableOffset, this.msixTable.length)) {
        this.msixTable.set(data, offset - m.tableOffset);
        return;
      }
      if (inside(offset, data.length, m.pbaOffset, this.msixPba.length)) return; // PBA is read-only
    }
    return this.write(bar, offset, data);
  }

  /** Conventional / function-level reset: registers to power-on values. Ports stay attached. */
  reset(): void {
    this.config.reset();
    this.resetMsixTable();
    this.intxLevel = false;
    this.updateIntx();
    this.onReset();
  }

  get msixEnabled(): boolean {
    const at = this.caps.msix;
    return at !== undefined && (this.config.get16(at + MsixCap.Control) & MsixControl.Enable) !== 0;
  }

  /**
   * Set MSI-X Enable as the transport knows it. Under vfio-user QEMU hides the
   * capability and reports the state through SET_IRQS instead of config writes.
   */
  setMsixEnabled(enabled: boolean): void {
    const modeBefore = this.interruptMode;
    const at = this.caps.msix;
    if (at !== undefined) this.config.setBits16(at + MsixCap.Control, MsixControl.Enable, enabled);
    this.updateIntx();
    if (this.interruptMode !== modeBefore) this.interruptModeChanged();
  }

  /**
   * MSI-X table entry of `vector` as software programmed it (for transports
   * that deliver MSI-X as a memory write, e.g. the DI); undefined out of range.
   */
  msixEntry(vector: number): { address: bigint; data: number; masked: boolean } | undefined {
    if (!this.msixDef || !Number.isInteger(vector) || vector < 0 || vector >= this.msixDef.vectors) return undefined;
    const v = new DataView(this.msixTable.buffer, this.msixTable.byteOffset + vector * MsixEntry.Size, MsixEntry.Size);
    const address = (BigInt(v.getUint32(MsixEntry.AddressHi, true)) << 32n) | BigInt(v.getUint32(MsixEntry.AddressLo, true));
    return { address, data: v.getUint32(MsixEntry.Data, true), masked: (v.getUint32(MsixEntry.VectorControl, true) & MsixEntry.Masked) !== 0 };
  }

  get msiEnabled(): boolean {
    const at = this.caps.msi;
    return at !== undefined && (this.config.get16(at + MsiCap.Control) & MsiControl.Enable) !== 0;
  }

  /**
   * Set MSI Enable as the transport knows it (vfio-user: QEMU emulates the MSI
   * capability and reports "on" as eventfds wired with SET_IRQS index 1).
   */
  setMsiEnabled(enabled: boolean): void {
    const modeBefore = this.interruptMode;
    const at = this.caps.msi;
    if (at !== undefined) this.config.setBits16(at + MsiCap.Control, MsiControl.Enable, enabled);
    this.updateIntx();
    if (this.interruptMode !== modeBefore) this.interruptModeChanged();
  }

  /** How interrupts leave the function: MSI-X, MSI with its vector count, or INTx. */
  private get interruptMode(): string {
    return this.msixEnabled ? 'msix' : this.msiEnabled ? `msi${this.msiVectors}` : 'intx';
  }

  /** Vectors software allocated (Multiple Message Enable, capped at what the function asked for); 0 without MSI. */
  get msiVectors(): number {
    const at = this.caps.msi;
    if (at === undefined) return 0;
    const mme = (this.config.get16(at + MsiCap.Control) & MsiControl.MmeMask) >> MsiControl.MmeShift;
    return Math.min(1 << mme, this.msiDef!.vectors);
  }

  /**
   * The MSI message for `vector` as software programmed it (for transports
   * that deliver MSI as a memory write, e.g. the DI): the vector number goes
   * into the low Message Data bits that Multiple Message Enable frees.
   * Undefined without MSI or for a vector beyond the allocated ones.
   */
  msiMessage(vector: number): { address: bigint; data: number; masked: boolean } | undefined {
    const at = this.caps.msi;
    if (at === undefined || !Number.isInteger(vector) || vector < 0 || vector >= this.msiVectors) return undefined;
    const cs = this.config;
    const address = (BigInt(cs.get32(at + MsiCap.AddressHi)) << 32n) | BigInt(cs.get32(at + MsiCap.AddressLo));
    const data = (cs.get16(at + MsiCap.Data) & ~(this.msiVectors - 1)) | vector;
    return { address, data, masked: ((this.msiMaskBits >>> vector) & 1) !== 0 };
  }

  get busMasterEnabled(): boolean {
    return (this.config.get16(Cfg.Command) & CommandBit.BusMaster) !== 0;
  }

  // ---- device-facing: override these ---------------------------------------

  /** A BAR read of `size` bytes; return exactly that many. Default: zeros. */
  protected read(_bar: number, _offset: number, size: number): Uint8Array | Promise<Uint8Array> {
    return new Uint8Array(size);
  }

  /** A BAR write. Default: ignored. */
  protected write(_bar: number, _offset: number, _data: Uint8Array): void | Promise<void> {}

  /** Device state back to power-on values (config space is already reset). */
  protected onReset(): void {}

  /**
   * MSI-X or MSI was switched on or off, or MSI's vector count changed. A
   * device whose interrupt condition still holds signals it again in the new
   * mode: a message that fell into the switch (the host's doorbell may pass
   * the config write that enables MSI) is otherwise lost.
   */
  protected interruptModeChanged(): void {}

  /** After a config write was applied (hook for device-specific registers). */
  protected configWritten(_offset: number, _data: Uint8Array): void {}

  // ---- device-facing: services ---------------------------------------------

  protected dmaRead(addr: number, length: number): Promise<Uint8Array> {
    return this.dmaPort().dmaRead(addr, length);
  }

  protected dmaWrite(addr: number, data: Uint8Array): Promise<void> {
    return this.dmaPort().dmaWrite(addr, data);
  }

  /** The transport's scatter read (DmaPort.dmaReadInto), or undefined when it has none. */
  protected dmaReadInto(segments: readonly { addr: number; len: number }[], into: Uint8Array): Promise<unknown> | undefined {
    const port = this.dmaPort();
    return port.dmaReadInto?.(segments, into);
  }

  /**
   * Signal an interrupt for `vector`: MSI-X when enabled, else MSI when enabled
   * (both need Bus Master Enable), else INTx is asserted (level; the device
   * deasserts it with setIntx(false)). Returns how it was signalled.
   */
  protected interrupt(vector: number): 'msix' | 'msi' | 'intx' | 'none' {
    if (this.msixEnabled && this.msixDef && vector < this.msixDef.vectors) {
      // An MSI-X message is a memory write: without Bus Master Enable the function may
      // not send it (QEMU drops it too; seen in the guest test before `setpci COMMAND`).
      if (!this.busMasterEnabled) return 'none';
      if (this.msixFunctionMasked) {
        setBit(this.msixPba, vector, true);
        return 'none';
      }
      this.ports?.irq.msix(vector);
      return this.ports ? 'msix' : 'none';
    }
    if (this.msiEnabled) {
      if (!this.busMasterEnabled) return 'none';
      // With fewer vectors allocated than asked for, the vector number only
      // has the low Message Data bits MME frees: the others fold onto them.
      const n = vector & (this.msiVectors - 1);
      if (!this.ports?.irq.hostMasksMsi && (this.msiMaskBits >>> n) & 1) {
        this.setMsiPending(n, true);
        return 'none';
      }
      return this.sendMsi(n) ? 'msi' : 'none';
    }
    if (this.config.get8(Cfg.InterruptPin) === 0) return 'none';
    this.setIntx(true);
    return 'intx';
  }

  /** Drive the INTx level; Status.Interrupt follows it, Command.INTx_Disable gates delivery. */
  protected setIntx(level: boolean): void {
    this.intxLevel = level;
    this.updateIntx();
  }

  /** INTx as delivered: level high, not disabled by Command, MSI and MSI-X off. */
  get intxAsserted(): boolean {
    return this.intxOut;
  }

  private dmaPort(): DmaPort {
    if (!this.ports) throw new BusMasterError('no transport attached');
    if (!this.busMasterEnabled) throw new BusMasterError('Bus Master Enable is clear in the Command register');
    return this.ports.dma;
  }

  private updateIntx(): void {
    const cs = this.config;
    cs.setBits16(Cfg.Status, StatusBit.InterruptStatus, this.intxLevel);
    const asserted = this.intxLevel && !(cs.get16(Cfg.Command) & CommandBit.IntxDisable) && !this.msixEnabled && !this.msiEnabled;
    if (asserted !== this.intxOut) {
      this.intxOut = asserted;
      this.ports?.irq.intx(asserted);
    }
  }

  private sendMsi(n: number): boolean {
    const send = this.ports?.irq.msi;
    send?.call(this.ports!.irq, n);
    return send !== undefined;
  }

  /** Mask Bits (0 without per-vector masking). */
  private get msiMaskBits(): number {
    const at = this.caps.msi;
    return at !== undefined && this.msiDef!.perVectorMask ? this.config.get32(at + MsiCap.MaskBits) : 0;
  }

  private setMsiPending(n: number, on: boolean): void {
    const at = this.caps.msi! + MsiCap.PendingBits;
    const bits = this.config.get32(at);
    this.config.set32(at, on ? bits | (1 << n) : bits & ~(1 << n));
  }

  private sendPendingMsi(unmasked: number): void {
    const at = this.caps.msi;
    if (at === undefined || !this.msiEnabled || !this.busMasterEnabled) return;
    const pending = this.config.get32(at + MsiCap.PendingBits) & unmasked;
    for (let n = 0; n < this.msiVectors; n++) {
      if ((pending >>> n) & 1) {
        this.setMsiPending(n, false);
        this.sendMsi(n);
      }
    }
  }

  private get msixFunctionMasked(): boolean {
    const at = this.caps.msix;
    return at !== undefined && (this.config.get16(at + MsixCap.Control) & MsixControl.FunctionMask) !== 0;
  }

  /** Function Mask cleared: every vector with its PBA bit set fires once. */
  private sendPendingMsix(): void {
    if (!this.msixEnabled || !this.busMasterEnabled) return;
    for (let v = 0; v < this.msixDef!.vectors; v++) {
      if (getBit(this.msixPba, v)) {
        setBit(this.msixPba, v, false);
        this.ports?.irq.msix(v);
      }
    }
  }

  private resetMsixTable(): void {
    this.msixTable.fill(0);
    this.msixPba.fill(0);
    // Every vector starts masked (Vector Control bit 0).
    for (let v = 0; v * MsixEntry.Size < this.msixTable.length; v++) this.msixTable[v * MsixEntry.Size + MsixEntry.VectorControl] = MsixEntry.Masked;
  }

  private layOutBars(bars: readonly (BarDef | undefined)[]): void {
    const cs = this.config;
    if (bars.length > BAR_COUNT) throw new Error(`a type-0 function has at most ${BAR_COUNT} BARs`);
    for (let i = 0; i < bars.length; i++) {
      const b = bars[i];
      if (!b) continue;
      const min = b.kind === 'io' ? 4 : 16;
      if (b.size < min || (b.size & (b.size - 1)) !== 0 || b.size > 2 ** 31) throw new Error(`BAR ${i}: size ${b.size} must be a power of two in [${min}, 2 GiB]`);
      const at = barRegister(i);
      const sizeMask = ~(b.size - 1) >>> 0;
      cs.set32(at, barTypeBits(b));
      if (b.kind === 'io') {
        cs.setMask32(at, sizeMask & BAR_IO_BASE_MASK);
      } else {
        cs.setMask32(at, sizeMask & BAR_MEM_BASE_MASK);
        if (b.kind === 'mem64') {
          if (i === BAR_COUNT - 1 || bars[i + 1]) throw new Error(`BAR ${i} is 64-bit, so BAR ${i + 1} must be free`);
          cs.setMask32(at + 4, 0xffffffff);
          i++;
        }
      }
    }
  }
}

function pbaBytes(vectors: number): number {
  return Math.ceil(vectors / 64) * 8;
}

function overlaps(off: number, len: number, at: number, n: number): boolean {
  return off < at + n && at < off + len;
}

function inside(off: number, len: number, at: number, n: number): boolean {
  return off >= at && off + len <= at + n;
}

function getBit(bits: Uint8Array, n: number): boolean {
  return ((bits[n >> 3] ?? 0) & (1 << (n & 7))) !== 0;
}

function setBit(bits: Uint8Array, n: number, on: boolean): void {
  const b = bits[n >> 3] ?? 0;
  bits[n >> 3] = on ? b | (1 << (n & 7)) : b & ~(1 << (n & 7));
}
