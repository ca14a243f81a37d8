/**
 * One embedded endpoint (EEP) of the HI: a remote PCIe function, reached over
 * PCIeOE, served to QEMU as a vfio-user device.
 *
 * The HI plays the host kernel for the remote function, as VFIO does for a
 * local one: it enumerated the function (enumerate()), owns its BAR addresses
 * (in the channel's own address space at the DI) and its MSI-X table; QEMU
 * and the guest see a device whose BARs QEMU emulates.
 *
 * Config space, as QEMU uses it (design §4b):
 *   - reads go to the function as CfgRd, except the registers QEMU emulates
 *     or the HI owns: BARs read as their type bits only (QEMU reads them once
 *     to learn mem64/prefetchable, then emulates), ROM BAR 0, Interrupt Pin 0
 *     (INTx is not carried; QEMU then wires no INTx), and Command.Memory as
 *     the guest last wrote it — the remote's stays on, the HI needs it.
 *   - writes go as CfgWr, minus the bytes of BARs, ROM and the MSI-X
 *     capability (QEMU emulates MSI-X; Enable and the table are the HI's,
 *     driven by SET_IRQS). A write that starts an FLR is followed by
 *     re-programming BARs and MSI-X, as after DEVICE_RESET.
 * BARs: a read is MRd + completion, answered all-ones after the completion
 * timeout (default 2 s: far beyond a PCIe fabric's round trip, inside
 * QEMU's 5 s x-msg-timeout); a write is a posted MWr, acknowledged at once.
 * Device DMA (MRd/MWr with guest IOVAs) is served from the vfio-user DMA map;
 * an MWr into this EEP's MSI window is the eventfd of its vector.
 */

import { leadingDisabled, requestByteCount } from '../fabric/tlp/byte-enables.ts';
import { completionsForRead, urCompletionFor } from '../fabric/tlp/completion.ts';
import { type MemReadTlp, type MemWriteTlp, type Tlp, TlpType } from '../fabric/tlp/tlp.ts';
import { formatBdf } from '../pci/bdf.ts';
import type { IrqIndexDesc } from '../vfio-user/irq.ts';
import { IrqInfoFlag, PciIrq, PciRegion, RegionFlag } from '../vfio-user/protocol.ts';
import type { Logger, RegionDesc, SessionContext, VfioUserDevice } from '../vfio-user/server.ts';
import type { TlpEndpoint } from '../fabric/tlp/endpoint.ts';
import { copyInOrder } from '../vfio-user/ordered-copy.ts';

/** Config-space offsets and bits the HI needs (PCI Local Bus 3.0, PCIe Base 4.0 §7). */
const enum Reg {
  Command = 0x04,
  HeaderType = 0x0e,
  Bar0 = 0x10,
  CapPtr = 0x34,
  RomBar = 0x30,
  InterruptPin = 0x3d,
  StatusCapList = 0x10, // Status bit 4, in the Status register's low byte (0x06)
}
const CMD_MEMORY = 0x2;
const CAP_PCIE = 0x10;
const CAP_MSIX = 0x11;
const CAP_MSI = 0x05;
/** MSI capability registers (PCI Local Bus 3.0 §6.8.1), 64-bit layout. */
const enum Msi {
  Control = 2,
  AddressLo = 4,
  AddressHi = 8,
  Data64 = 0x0c,
  Data32 = 0x08,
  Mask64 = 0x10,
  Mask32 = 0x0c,
}
/** MSI messages land at msiBase + MSI_OFFSET (MSI-X vectors use [msiBase, msiBase + 4 × 2048)). */
export const MSI_OFFSET = 0x2000n;
/** PCIe capability: DevCap at +4 (FLR capable: bit 28), DevCtl at +8 (Initiate FLR: bit 15). */
const PCIE_DEVCAP = 4;
const PCIE_DEVCTL = 8;
const MSIX_ENTRY = 16;
/** Max Payload Size and Max Read Request Size the HI uses (and the completer RCB of a root complex). */
const MPS = 4096;
const RCB = 64;

export interface RemoteBar {
  size: number;
  is64: boolean;
  /** Low 4 bits of the BAR register: memory type and prefetchable. */
  typeBits: number;
  /** Where the HI placed it in the channel's address space. */
  address: bigint;
}

export interface RemoteLayout {
  vendorId: number;
  deviceId: number;
  configSize: 256 | 4096;
  /** By BAR index; the upper half of a 64-bit BAR and I/O BARs are undefined. */
  bars: (RemoteBar | undefined)[];
  msix?: { cap: number; vectors: number; bar: number; tableOffset: number };
  /** MSI: vectors the function asks for (Multiple Message Capable), address width, per-vector masking. */
  msi?: { cap: number; vectors: number; is64: boolean; perVectorMask: boolean };
  pcieCap?: number;
  flr: boolean;
}

/** Bump allocator for BAR addresses in one channel's address space. */
export class AddressWindow {
  private next32: bigint;
  private next64: bigint;
  constructor(private readonly w: { base32: bigint; limit32: bigint; base64: bigint; limit64: bigint }) {
    this.next32 = w.base32;
    this.next64 = w.base64;
  }
  alloc(size: number, is64: boolean): bigint {
    const s = BigInt(size);
    const align = (a: bigint) => (a + s - 1n) & ~(s - 1n);
    const at = align(is64 ? this.next64 : this.next32);
    if (at + s > (is64 ? this.w.limit64 : this.w.limit32)) throw new Error(`BAR window exhausted (${size} bytes, ${is64 ? '64' : '32'}-bit)`);
    if (is64) this.next64 = at + s;
    else this.next32 = at + s;
    return at;
  }
}

export interface RemoteFunctionOptions {
  name: string;
  endpoint: TlpEndpoint;
  /** The id the HI uses as requester and completer on this channel. */
  hiId: number;
  /** The remote function's host-side BDF (completer id of config requests). */
  remoteBdf: number;
  window: AddressWindow;
  /** Base of this EEP's MSI window: vector v is an MWr of data v to msiBase + 4v. */
  msiBase: bigint;
  log: Logger;
}

export interface RemoteFunctionStats {
  /** BAR reads answered all-ones (timeout, UR, CA). */
  mmioReadFailures: number;
  configFailures: number;
  dmaReads: number;
  dmaWrites: number;
  /** DMA the guest map could not serve (unmapped IOVA, no client): UR / dropped. */
  dmaErrors: number;
  msix: number;
  /** MWr into the MSI window that names no wired vector. */
  msixSpurious: number;
}

export class RemoteFunction implements VfioUserDevice {
  readonly regions: RegionDesc[];
  readonly irqs: IrqIndexDesc[];
  readonly canReset = true;
  readonly stats: RemoteFunctionStats = { mmioReadFailures: 0, configFailures: 0, dmaReads: 0, dmaWrites: 0, dmaErrors: 0, msix: 0, msixSpurious: 0 };
  private ctx?: SessionContext;
  /** Command.Memory as the guest last wrote it. */
  private guestMemory = false;
  /** Device writes to guest memory still under way (only without an fd); later reads and interrupts wait. */
  private writesInFlight = 0;
  private writeTail: Promise<void> = Promise.resolve();
  private readonly log: Logger;

  private constructor(private readonly o: RemoteFunctionOptions, readonly layout: RemoteLayout) {
    this.log = (level, m) => o.log(level, `${o.name}: ${m}`);
    const rw = RegionFlag.Read | RegionFlag.Write;
    this.regions = Array.from({ length: PciRegion.Count }, () => ({ size: 0, flags: 0 }));
    layout.bars.forEach((b, i) => {
      if (b) this.regions[i] = { size: b.size, flags: rw };
    });
    this.regions[PciRegion.Config] = { size: layout.configSize, flags: rw };
    this.irqs = [];
    this.irqs[PciIrq.Intx] = { count: 0, flags: IrqInfoFlag.Eventfd };
    // MSI as the function offers it; QEMU emulates the capability (and its per-vector mask) for the guest.
    this.irqs[PciIrq.Msi] = { count: layout.msi?.vectors ?? 0, flags: IrqInfoFlag.Eventfd | IrqInfoFlag.Maskable | IrqInfoFlag.NoResize };
    this.irqs[PciIrq.Msix] = { count: layout.msix?.vectors ?? 0, flags: IrqInfoFlag.Eventfd | IrqInfoFlag.NoResize };
    this.irqs[PciIrq.Err] = { count: 1, flags: IrqInfoFlag.Eventfd };
    this.irqs[PciIrq.Req] = { count: 1, flags: IrqInfoFlag.Eventfd };
  }

  get name(): string {
    return this.o.name;
  }

  get remoteBdf(): number {
    return this.o.remoteBdf;
  }

  /**
   * Find the function over TLPs as a host kernel would, place its BARs, turn
   * on memory decode. Throws if there is no usable function at the BDF.
   */
  static async enumerate(o: RemoteFunctionOptions): Promise<RemoteFunction> {
    const cfg = new ConfigAccess(o.endpoint, o.hiId, o.remoteBdf);
    const id = await cfg.read32(0);
    if (id === undefined || (id & 0xffff) === 0xffff) throw new Error(`${o.name}: no function at ${formatBdf(o.remoteBdf)} (${cfg.lastError})`);
    const header = await cfg.mustRead32(Reg.HeaderType & ~3);
    if (((header >>> 16) & 0x7f) !== 0) throw new Error(`${o.name}: ${formatBdf(o.remoteBdf)} is not a type 0 (endpoint) function`);
    const layout: RemoteLayout = { vendorId: id & 0xffff, deviceId: id >>> 16, configSize: 256, bars: [], flr: false };

    // BAR sizing: all-ones, read back, restore.
    for (let i = 0; i < 6; i++) {
      const at = Reg.Bar0 + 4 * i;
      const orig = await cfg.mustRead32(at);
      await cfg.write32(at, 0xffffffff);
      const mask = await cfg.mustRead32(at);
      await cfg.write32(at, orig);
      if (mask === 0) continue;
      if (orig & 1) {
        o.log('warn', `${o.name}: BAR ${i} is I/O space, not carried over PCIeOE; ignored`);
        continue;
      }
      const is64 = ((orig >>> 1) & 3) === 2;
      let size = BigInt(~(mask & 0xfffffff0) >>> 0) + 1n;
      if (is64) {
        const origHi = await cfg.mustRead32(at + 4);
        await cfg.write32(at + 4, 0xffffffff);
        const maskHi = await cfg.mustRead32(at + 4);
        await cfg.write32(at + 4, origHi);
        size = (~((BigInt(maskHi) << 32n) | BigInt(mask & 0xfffffff0)) & 0xffff_ffff_ffff_ffffn) + 1n;
      }
      if (size > 1n << 31n) throw new Error(`${o.name}: BAR ${i} of ${size} bytes is beyond what the HI serves`);
      layout.bars[i] = { size: Number(size), is64, typeBits: orig & 0xf, address: o.window.alloc(Number(size), is64) };
      if (is64) i++;
    }

    // Capabilities: PCI Express (4 KiB config space, FLR) and MSI-X.
    const status = await cfg.mustRead32(Reg.Command);
    if ((status >>> 16) & Reg.StatusCapList) {
      const seen = new Set<number>();
      for (let at = (await cfg.mustRead32(Reg.CapPtr)) & 0xfc; at !== 0 && !seen.has(at); ) {
        seen.add(at);
        const dw = await cfg.mustRead32(at);
        const capId = dw & 0xff;
        if (capId === CAP_PCIE) {
          layout.pcieCap = at;
          layout.configSize = 4096;
          layout.flr = ((await cfg.mustRead32(at + PCIE_DEVCAP)) & (1 << 28)) !== 0;
        } else if (capId === CAP_MSI) {
          const ctl = dw >>> 16;
          layout.msi = { cap: at, vectors: 1 << ((ctl >>> 1) & 7), is64: (ctl & 0x80) !== 0, perVectorMask: (ctl & 0x100) !== 0 };
        } else if (capId === CAP_MSIX) {
          const table = await cfg.mustRead32(at + 4);
          layout.msix = { cap: at, vectors: ((dw >>> 16) & 0x7ff) + 1, bar: table & 7, tableOffset: table & ~7 };
        }
        at = (dw >>> 8) & 0xfc;
      }
    }
    if (layout.msix && !layout.bars[layout.msix.bar]) throw new Error(`${o.name}: MSI-X table in BAR ${layout.msix.bar}, which is not a memory BAR`);
    const f = new RemoteFunction(o, layout);
    await f.restore();
    f.log('info', `${formatBdf(o.remoteBdf)} ${hex(layout.vendorId, 4)}:${hex(layout.deviceId, 4)}: ${describe(layout)}`);
    return f;
  }

  // ---- vfio-user: QEMU → function ---------------------------------------------

  regionRead(region: number, offset: number, count: number): Promise<Uint8Array> {
    if (region === PciRegion.Config) return this.configRead(offset, count);
    const bar = this.layout.bars[region]!; // the server checked the region exists
    return this.o.endpoint.readMemory(bar.address + BigInt(offset), count, this.o.hiId, MPS).catch((err: Error) => {
      this.stats.mmioReadFailures++;
      this.log('warn', `BAR ${region} read +0x${offset.toString(16)}/${count}: ${err.message}; all-ones`);
      return new Uint8Array(count).fill(0xff);
    });
  }

  regionWrite(region: number, offset: number, data: Uint8Array): void | Promise<void> {
    if (region === PciRegion.Config) return this.configWrite(offset, data);
    const bar = this.layout.bars[region]!;
    this.o.endpoint.writeMemory(bar.address + BigInt(offset), data, this.o.hiId, MPS);
  }

  /** DEVICE_RESET: function-level reset of the remote function, then the HI's programming again. */
  async reset(): Promise<void> {
    const pcie = this.layout.pcieCap;
    if (pcie !== undefined && this.layout.flr) {
      const cfg = this.cfg();
      // Initiate FLR is DevCtl bit 15: byte pcie+9, bit 7. Write that byte only.
      const devctl = (await cfg.read32(pcie + PCIE_DEVCTL)) ?? 0;
      await cfg.writeBytes(pcie + PCIE_DEVCTL + 1, new Uint8Array([((devctl >>> 8) & 0xff) | 0x80]));
    } else {
      this.log('warn', 'no FLR capability: reset only re-programs BARs and MSI-X');
    }
    this.guestMemory = false;
    await this.restore();
  }

  connected(ctx: SessionContext): void {
    this.ctx = ctx;
  }

  disconnected(): void {
    this.ctx = undefined;
    // The next client gets a clean function: no DMA or interrupts meant for the old one.
    this.reset().catch((err: Error) => this.log('warn', `reset after disconnect: ${err.message}`));
  }

  irqWiringChanged(index: number): void {
    if (index === PciIrq.Msix) this.programMsix().catch((err: Error) => this.log('warn', `MSI-X programming: ${err.message}`));
    if (index === PciIrq.Msi) this.programMsi().catch((err: Error) => this.log('warn', `MSI programming: ${err.message}`));
  }

  // ---- fabric: function → host ------------------------------------------------

  /** The vector an MWr to `address` signals, if it is in this EEP's MSI-X window. */
  msiVector(address: bigint): number | undefined {
    const n = this.layout.msix?.vectors ?? 0;
    const d = address - this.o.msiBase;
    return d >= 0n && d < BigInt(n * 4) && (d & 3n) === 0n ? Number(d >> 2n) : undefined;
  }

  /** Whether `address` is this EEP's MSI (not MSI-X) address. */
  isMsiAddress(address: bigint): boolean {
    return this.layout.msi !== undefined && address === this.o.msiBase + MSI_OFFSET;
  }

  /** An MSI message from the function: Message Data (we programmed 0) carries the vector. */
  deliverPlainMsi(tlp: MemWriteTlp): void {
    const vector = tlp.data.length >= 4 ? new DataView(tlp.data.buffer, tlp.data.byteOffset).getUint16(0, true) : -1;
    if (vector < 0 || vector >= (this.ctx?.irqs.enabledCount(PciIrq.Msi) ?? 0)) {
      this.stats.msixSpurious++;
      return;
    }
    this.afterWrites(() => {
      if (this.ctx?.irqs.trigger(PciIrq.Msi, vector)) this.stats.msix++;
      else this.stats.msixSpurious++;
    });
  }

  /** An MSI-X message from the function (an MWr into the MSI window). */
  deliverMsi(vector: number, tlp: MemWriteTlp): void {
    const data = tlp.data.length >= 4 ? new DataView(tlp.data.buffer, tlp.data.byteOffset).getUint32(0, true) : -1;
    if (data !== vector) {
      this.stats.msixSpurious++;
      return;
    }
    // An interrupt must not overtake the data written before it.
    this.afterWrites(() => {
      if (this.ctx?.irqs.trigger(PciIrq.Msix, vector)) this.stats.msix++;
      else this.stats.msixSpurious++;
    });
  }

  /** Device DMA write: the enabled bytes go to guest memory. Posted: failures are counted. */
  dmaWrite(tlp: MemWriteTlp, runs: [number, number][]): void {
    const ctx = this.ctx;
    if (!ctx) {
      this.stats.dmaErrors++;
      return;
    }
    this.stats.dmaWrites++;
    for (const [start, len] of runs) {
      const iova = Number(tlp.address) + start;
      const bytes = tlp.data.subarray(start, start + len);
      const direct = this.writesInFlight === 0 ? ctx.dma.translate(iova, len, true) : undefined;
      if (direct) {
        copyInOrder(direct, bytes);
        continue;
      }
      // No fd for this range (DMA_WRITE messages): keep order with later writes, reads and interrupts.
      const copy = bytes.slice();
      this.writesInFlight++;
      this.writeTail = this.writeTail
        .then(() => ctx.dma.write(iova, copy))
        .catch((err: Error) => {
          this.stats.dmaErrors++;
          this.log('warn', `DMA write 0x${iova.toString(16)}+${len}: ${err.message}`);
        })
        .finally(() => this.writesInFlight--);
    }
  }

  /** Device DMA read: CplD(s) from guest memory, UR when the range is not mapped. */
  dmaRead(tlp: MemReadTlp, post: (tlp: Tlp) => void): void {
    this.stats.dmaReads++;
    const span = new Uint8Array(tlp.length * 4);
    const first = leadingDisabled(tlp.firstBe);
    const count = requestByteCount(tlp.length, tlp.firstBe, tlp.lastBe);
    const reply = () => {
      for (const c of completionsForRead(tlp, this.o.hiId, span, { rcb: RCB, maxPayload: MPS })) post(c);
    };
    const fail = (why: string) => {
      this.stats.dmaErrors++;
      this.log('warn', `DMA read 0x${tlp.address.toString(16)}+${count}: ${why}: UR`);
      post(urCompletionFor(tlp, this.o.hiId));
    };
    this.afterWrites(() => {
      const ctx = this.ctx;
      if (!ctx) return fail('no client');
      if (tlp.firstBe === 0 && tlp.length === 1) return reply(); // zero-length read: ordering only
      const iova = Number(tlp.address) + first;
      const direct = ctx.dma.translate(iova, count, false);
      if (direct) {
        span.set(direct, first);
        return reply();
      }
      ctx.dma.read(iova, count).then(
        (data) => {
          span.set(data, first);
          reply();
        },
        (err: Error) => fail(err.message),
      );
    });
  }

  // ---- internals ----------------------------------------------------------------

  private cfg(): ConfigAccess {
    return new ConfigAccess(this.o.endpoint, this.o.hiId, this.o.remoteBdf);
  }

  private afterWrites(fn: () => void): void {
    if (this.writesInFlight === 0) fn();
    else this.writeTail = this.writeTail.then(fn);
  }

  /** BAR addresses, memory decode on, MSI-X as wired: the HI's state in the function. */
  private async restore(): Promise<void> {
    const cfg = this.cfg();
    this.layout.bars.forEach((b, i) => {
      if (!b) return;
      void cfg.write32(Reg.Bar0 + 4 * i, Number(b.address & 0xfffffff0n) | b.typeBits);
      if (b.is64) void cfg.write32(Reg.Bar0 + 4 * i + 4, Number(b.address >> 32n));
    });
    // Memory Space on; Bus Master stays as it is (the guest's to set, as with VFIO).
    const cmd = (await cfg.read32(Reg.Command)) ?? 0;
    await cfg.writeBytes(Reg.Command, new Uint8Array([(cmd & 0xff) | CMD_MEMORY]));
    await this.programMsix();
    await this.programMsi();
  }

  /**
   * The remote MSI capability gets the HI's MSI address and data 0 (so
   * message n carries data n), as many vectors as QEMU wired (a power of two),
   * per-vector mask bits clear (QEMU masks for the guest); Enable follows
   * "any wired".
   */
  private async programMsi(): Promise<void> {
    const m = this.layout.msi;
    if (!m) return;
    const wired = this.ctx?.irqs.enabledCount(PciIrq.Msi) ?? 0;
    const cfg = this.cfg();
    const addr = this.o.msiBase + MSI_OFFSET;
    const writes = [cfg.write32(m.cap + Msi.AddressLo, Number(addr & 0xffffffffn))];
    if (m.is64) writes.push(cfg.write32(m.cap + Msi.AddressHi, Number(addr >> 32n)));
    writes.push(cfg.writeBytes(m.cap + (m.is64 ? Msi.Data64 : Msi.Data32), new Uint8Array(2)));
    if (m.perVectorMask) writes.push(cfg.write32(m.cap + (m.is64 ? Msi.Mask64 : Msi.Mask32), 0));
    const mme = wired > 0 ? Math.ceil(Math.log2(Math.min(wired, m.vectors))) : 0;
    if (!(await Promise.all(writes)).every(Boolean)) throw new Error('MSI address/data write failed');
    const ok = await cfg.writeBytes(m.cap + Msi.Control, new Uint8Array([(mme << 4) | (wired > 0 ? 1 : 0)]));
    if (!ok) throw new Error('MSI enable write failed');
  }

  /**
   * The remote MSI-X table gets one HI address per vector (data = vector),
   * unmasked where QEMU wired an eventfd; MSI-X Enable follows "any wired".
   */
  private async programMsix(): Promise<void> {
    const m = this.layout.msix;
    if (!m) return;
    const irqs = this.ctx?.irqs;
    const table = new Uint8Array(m.vectors * MSIX_ENTRY);
    const v = new DataView(table.buffer);
    for (let n = 0; n < m.vectors; n++) {
      const addr = this.o.msiBase + BigInt(n * 4);
      v.setUint32(n * MSIX_ENTRY, Number(addr & 0xffffffffn), true);
      v.setUint32(n * MSIX_ENTRY + 4, Number(addr >> 32n), true);
      v.setUint32(n * MSIX_ENTRY + 8, n, true);
      v.setUint32(n * MSIX_ENTRY + 12, irqs?.isWired(PciIrq.Msix, n) ? 0 : 1, true);
    }
    const bar = this.layout.bars[m.bar]!;
    this.o.endpoint.writeMemory(bar.address + BigInt(m.tableOffset), table, this.o.hiId, MPS);
    const enable = (irqs?.enabledCount(PciIrq.Msix) ?? 0) > 0;
    // Message Control is bytes cap+2..3: Enable is bit 15, Function Mask bit 14 (cleared), table size read-only.
    const ok = await this.cfg().writeBytes(m.cap + 2, new Uint8Array([0, enable ? 0x80 : 0]));
    if (!ok) throw new Error('MSI-X enable write failed');
  }

  private async configRead(offset: number, count: number): Promise<Uint8Array> {
    const cfg = this.cfg();
    const out = new Uint8Array(count);
    const firstDw = offset >> 2;
    const lastDw = (offset + count - 1) >> 2;
    const reads: Promise<void>[] = [];
    for (let dw = firstDw; dw <= lastDw; dw++) {
      reads.push(
        cfg.read32(dw * 4).then((value) => {
          if (value === undefined) this.stats.configFailures++;
          const bytes = value ?? 0xffffffff;
          for (let i = 0; i < 4; i++) {
            const at = dw * 4 + i;
            if (at >= offset && at < offset + count) out[at - offset] = this.virtualise(at, (bytes >>> (8 * i)) & 0xff);
          }
        }),
      );
    }
    await Promise.all(reads);
    return out;
  }

  /** The byte QEMU should see at config offset `at`, given the remote's `actual`. */
  private virtualise(at: number, actual: number): number {
    if (at === Reg.Command) return (actual & ~CMD_MEMORY) | (this.guestMemory ? CMD_MEMORY : 0);
    if (at >= Reg.Bar0 && at < Reg.Bar0 + 24) {
      const i = (at - Reg.Bar0) >> 2;
      const b = this.layout.bars[i];
      return b && (at & 3) === 0 ? b.typeBits : 0;
    }
    if (at >= Reg.RomBar && at < Reg.RomBar + 4) return 0;
    if (at === Reg.InterruptPin) return 0;
    return actual;
  }

  /** Bytes of a guest config write that must not reach the function. */
  private hidden(at: number): boolean {
    const m = this.layout.msix;
    const msi = this.layout.msi;
    // The whole MSI capability body is the HI's (QEMU keeps the guest's values).
    if (msi !== undefined && at >= msi.cap + 2 && at < msi.cap + (msi.is64 ? 0x0e : 0x0a) + (msi.perVectorMask ? 0x0a : 0)) return true;
    return (at >= Reg.Bar0 && at < Reg.Bar0 + 24) || (at >= Reg.RomBar && at < Reg.RomBar + 4) || (m !== undefined && at >= m.cap && at < m.cap + 12);
  }

  private async configWrite(offset: number, data: Uint8Array): Promise<void> {
    const bytes = data.slice();
    if (offset <= Reg.Command && Reg.Command < offset + bytes.length) {
      const i = Reg.Command - offset;
      this.guestMemory = (bytes[i]! & CMD_MEMORY) !== 0;
      bytes[i] = bytes[i]! | CMD_MEMORY; // the HI's MMIO forwarding needs decode on
    }
    const pcie = this.layout.pcieCap;
    const flrAt = pcie === undefined ? -1 : pcie + PCIE_DEVCTL + 1;
    const flr = flrAt >= offset && flrAt < offset + bytes.length && (bytes[flrAt - offset]! & 0x80) !== 0;
    // Runs of forwarded bytes, each written DW by DW with byte enables.
    const writes: Promise<boolean>[] = [];
    let i = 0;
    while (i < bytes.length) {
      if (this.hidden(offset + i)) {
        i++;
        continue;
      }
      let j = i;
      while (j < bytes.length && !this.hidden(offset + j)) j++;
      writes.push(this.cfg().writeBytes(offset + i, bytes.subarray(i, j)));
      i = j;
    }
    const ok = await Promise.all(writes);
    if (ok.includes(false)) {
      this.stats.configFailures++;
      this.log('warn', `config write 0x${offset.toString(16)}/${data.length} failed`);
    }
    if (flr) {
      this.guestMemory = false;
      await this.restore();
    }
  }
}

/** CfgRd0/CfgWr0 to one function, a DW at a time. */
class ConfigAccess {
  lastError = '';
  constructor(private readonly ep: TlpEndpoint, private readonly requesterId: number, private readonly completerId: number) {}

  private common(register: number, firstBe: number) {
    return { tc: 0, attr: 0, poisoned: false, requesterId: this.requesterId, completerId: this.completerId, register, firstBe, lastBe: 0 };
  }

  /** The DW at `offset` (DW-aligned), or undefined when the request failed. */
  async read32(offset: number): Promise<number | undefined> {
    const o = await this.ep.request({ type: TlpType.CfgRd0, ...this.common(offset >> 2, 0xf) });
    if (o.status !== 'ok') {
      this.lastError = o.status;
      return undefined;
    }
    return new DataView(o.data.buffer, o.data.byteOffset).getUint32(0, true);
  }

  async mustRead32(offset: number): Promise<number> {
    const v = await this.read32(offset);
    if (v === undefined) throw new Error(`config read 0x${offset.toString(16)} of ${formatBdf(this.completerId)}: ${this.lastError}`);
    return v;
  }

  write32(offset: number, value: number): Promise<boolean> {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, value >>> 0, true);
    return this.writeBytes(offset, b);
  }

  /** Any bytes at any offset: one CfgWr per DW touched, with byte enables; all sent before any completes. */
  async writeBytes(offset: number, bytes: Uint8Array): Promise<boolean> {
    const reqs: Promise<{ status: string }>[] = [];
    for (let at = offset; at < offset + bytes.length; ) {
      const dw = at & ~3;
      const end = Math.min(dw + 4, offset + bytes.length);
      const data = new Uint8Array(4);
      let be = 0;
      for (let k = at; k < end; k++) {
        data[k - dw] = bytes[k - offset]!;
        be |= 1 << (k - dw);
      }
      reqs.push(this.ep.request({ type: TlpType.CfgWr0, ...this.common(dw >> 2, be), data }));
      at = end;
    }
    const outcomes = await Promise.all(reqs);
    const bad = outcomes.find((o) => o.status !== 'ok');
    if (bad) this.lastError = bad.status;
    return !bad;
  }
}

function hex(n: number, w: number): string {
  return n.toString(16).padStart(w, '0');
}

function describe(l: RemoteLayout): string {
  const bars = l.bars.map((b, i) => (b ? `BAR${i} ${b.size} B @0x${b.address.toString(16)}` : '')).filter(Boolean);
  return [...bars, l.msix ? `MSI-X ${l.msix.vectors}` : 'no MSI-X', l.configSize === 4096 ? 'PCIe' : 'PCI', l.flr ? 'FLR' : 'no FLR'].join(', ');
}
