// Interrupts of a remote function. The HI owns the function's MSI and MSI-X
// programming (QEMU emulates both capabilities for the guest and reports
// wiring through SET_IRQS): every message targets this EEP's MSI window at
// the HI, and an MWr arriving there becomes the eventfd of its vector.
//
// INTx (carryIntx): the function's Assert/Deassert_INTx messages set a level; vfio's INTx
// is an automasked edge on the eventfd, so an assert signals it once, and QEMU's UNMASK
// (after the guest's EOI) signals it again while the level is still high.
//
// MSI window of one EEP: MSI-X vector v at msiBase + 4v (up to 2048 vectors),
// the MSI address at msiBase + MSI_OFFSET.
//
// Messages are signalled once per delivery batch: every message of the frames taken in one wake-up
// is noted, and at the batch's end (a microtask) each vector noted gets one eventfd write, which
// costs the HI a cross-CPU wake-up of QEMU's thread (5-9 % of its busy time at 64 KiB). QEMU
// reads the counter and injects one interrupt however often it was written, so a vector noted twice
// is signalled once (counted in msixMerged). The data the function wrote before a message is in
// guest memory by then: device writes are copied at delivery (DmaService).
import { TRACING, trace } from '../../fabric/trace.ts';
import type { TlpEndpoint } from '../../fabric/tlp/endpoint.ts';
import type { MemWriteTlp } from '../../fabric/tlp/tlp.ts';
import { MsiCap, MsiControl, MsixCap, MsixControl, MsixEntry, msiLayout } from '../../pci/capabilities.ts';
import { PciIrq } from '../../vfio-user/protocol.ts';
import type { SessionContext } from '../../vfio-user/server.ts';
import type { ConfigAccess } from './config-access.ts';
import type { RemoteLayout } from './layout.ts';
import { MPS, type RemoteFunctionStats } from './options.ts';

/** MSI messages land at msiBase + MSI_OFFSET (MSI-X vectors use [msiBase, msiBase + 4 × 2048)). */
export const MSI_OFFSET = 0x2000n;

export class RemoteInterrupts {
  /** The function's INTx level as its last Assert/Deassert_INTx message said. */
  private intxLevel = false;
  /** Vectors (MSI-X, then MSI) messages of the current delivery batch signal at its end. */
  private readonly dueMsix: number[] = [];
  private readonly dueMsi: number[] = [];
  private signalScheduled = false;
  /** Made once: a closure made per message costs more than the rest of it under the lab's loader. */
  private readonly signalDue = () => this.signalDueVectors();

  constructor(
    private readonly o: {
      layout: RemoteLayout;
      cfg: ConfigAccess;
      endpoint: TlpEndpoint;
      hiId: number;
      msiBase: bigint;
      session: () => SessionContext | undefined;
      /** Delivery waits for device writes still under way (DmaService.afterWrites). */
      afterWrites: (fn: () => void) => void;
      /** No device write is under way (DmaService.settled). */
      writesSettled: () => boolean;
      stats: RemoteFunctionStats;
    },
  ) {}

  // ---- function → host ----------------------------------------------------------

  /** The vector an MWr to `address` signals, if it is in this EEP's MSI-X window. */
  msiVector(address: bigint): number | undefined {
    const n = this.o.layout.msix?.vectors ?? 0;
    const d = address - this.o.msiBase;
    return d >= 0n && d < BigInt(n * 4) && (d & 3n) === 0n ? Number(d >> 2n) : undefined;
  }

  /** Whether `address` is this EEP's MSI (not MSI-X) address. */
  isMsiAddress(address: bigint): boolean {
    return this.o.layout.msi !== undefined && address === this.o.msiBase + MSI_OFFSET;
  }

  /** An MSI message from the function: Message Data (we programmed 0) carries the vector. */
  deliverPlainMsi(tlp: MemWriteTlp): void {
    const vector = tlp.data.length >= 4 ? new DataView(tlp.data.buffer, tlp.data.byteOffset).getUint16(0, true) : -1;
    if (vector < 0 || vector >= (this.o.session()?.irqs.enabledCount(PciIrq.Msi) ?? 0)) {
      this.o.stats.msixSpurious++;
      return;
    }
    this.trigger(PciIrq.Msi, vector);
  }

  /** An MSI-X message from the function (an MWr into the MSI window). */
  deliverMsix(vector: number, tlp: MemWriteTlp): void {
    const data = tlp.data.length >= 4 ? new DataView(tlp.data.buffer, tlp.data.byteOffset).getUint32(0, true) : -1;
    if (data !== vector) {
      this.o.stats.msixSpurious++;
      return;
    }
    this.trigger(PciIrq.Msix, vector);
  }

  /** An Assert/Deassert_INTx message from the function. */
  deliverIntx(asserted: boolean): void {
    if (this.o.layout.intxPin === undefined) return;
    this.intxLevel = asserted;
    if (asserted) this.triggerIntx();
  }

  /** QEMU unmasked INTx (the guest's EOI): a level still high fires again. */
  intxUnmasked(): void {
    if (this.intxLevel) this.triggerIntx();
  }

  /** The function was reset: its pin is low until it says otherwise. */
  resetIntx(): void {
    this.intxLevel = false;
  }

  /** The INTx eventfd, after earlier device writes; masked (not yet unmasked after the last one) is no signal. */
  private triggerIntx(): void {
    this.o.afterWrites(() => {
      if (!this.intxLevel) return;
      if (TRACING) trace('irq:intx');
      if (this.o.session()?.irqs.trigger(PciIrq.Intx, 0)) this.o.stats.intx++;
    });
  }

  /**
   * The eventfd of `vector` at the end of this delivery batch; behind device writes still under way
   * (DMA_WRITE messages, no fd), once they have reached guest memory.
   */
  private trigger(index: PciIrq.Msi | PciIrq.Msix, vector: number): void {
    if (!this.o.writesSettled()) return this.o.afterWrites(() => this.signal(index, vector));
    const due = index === PciIrq.Msix ? this.dueMsix : this.dueMsi;
    if (due.includes(vector)) {
      this.o.stats.msixMerged++;
      return;
    }
    due.push(vector);
    if (this.signalScheduled) return;
    this.signalScheduled = true;
    queueMicrotask(this.signalDue);
  }

  private signalDueVectors(): void {
    this.signalScheduled = false;
    for (const v of this.dueMsix) this.signal(PciIrq.Msix, v);
    for (const v of this.dueMsi) this.signal(PciIrq.Msi, v);
    this.dueMsix.length = 0;
    this.dueMsi.length = 0;
  }

  private signal(index: PciIrq, vector: number): void {
    if (TRACING) trace(`irq:${vector}`);
    if (this.o.session()?.irqs.trigger(index, vector)) this.o.stats.msix++;
    else this.o.stats.msixSpurious++;
  }

  // ---- host → function: programming ---------------------------------------------

  /**
   * The remote MSI capability gets the HI's MSI address and data 0 (so
   * message n carries data n), as many vectors as QEMU wired (a power of two),
   * per-vector mask bits clear (QEMU masks for the guest); Enable follows
   * "any wired".
   */
  async programMsi(): Promise<void> {
    const m = this.o.layout.msi;
    if (!m) return;
    const wired = this.o.session()?.irqs.enabledCount(PciIrq.Msi) ?? 0;
    const cfg = this.o.cfg;
    const regs = msiLayout(m.is64, m.perVectorMask);
    const addr = this.o.msiBase + MSI_OFFSET;
    const writes = [cfg.write32(m.cap + MsiCap.AddressLo, Number(addr & 0xffffffffn))];
    if (m.is64) writes.push(cfg.write32(m.cap + MsiCap.AddressHi, Number(addr >> 32n)));
    writes.push(cfg.write16(m.cap + regs.data, 0));
    if (m.perVectorMask) writes.push(cfg.write32(m.cap + regs.maskBits, 0));
    const mme = wired > 0 ? Math.ceil(Math.log2(Math.min(wired, m.vectors))) : 0;
    // The low byte of Control only: Enable and Multiple Message Enable. Sent right behind
    // address and data (config requests are delivered in order), not a round trip later:
    // the guest's next doorbell must find MSI on as soon as possible.
    writes.push(cfg.writeBytes(m.cap + MsiCap.Control, new Uint8Array([(mme << MsiControl.MmeShift) | (wired > 0 ? MsiControl.Enable : 0)])));
    if (!(await Promise.all(writes)).every(Boolean)) throw new Error('MSI programming write failed');
  }

  /**
   * The remote MSI-X table gets one HI address per vector (data = vector),
   * unmasked where QEMU wired an eventfd; MSI-X Enable follows "any wired".
   */
  async programMsix(): Promise<void> {
    const m = this.o.layout.msix;
    if (!m) return;
    const irqs = this.o.session()?.irqs;
    const table = new Uint8Array(m.vectors * MsixEntry.Size);
    const v = new DataView(table.buffer);
    for (let n = 0; n < m.vectors; n++) {
      const addr = this.o.msiBase + BigInt(n * 4);
      const at = n * MsixEntry.Size;
      v.setUint32(at + MsixEntry.AddressLo, Number(addr & 0xffffffffn), true);
      v.setUint32(at + MsixEntry.AddressHi, Number(addr >> 32n), true);
      v.setUint32(at + MsixEntry.Data, n, true);
      v.setUint32(at + MsixEntry.VectorControl, irqs?.isWired(PciIrq.Msix, n) ? 0 : MsixEntry.Masked, true);
    }
    const bar = this.o.layout.bars[m.bar]!;
    this.o.endpoint.writeMemory(bar.address + BigInt(m.tableOffset), table, this.o.hiId, MPS);
    const enable = (irqs?.enabledCount(PciIrq.Msix) ?? 0) > 0;
    // Function Mask cleared; the table size bits are read-only.
    const ok = await this.o.cfg.write16(m.cap + MsixCap.Control, enable ? MsixControl.Enable : 0);
    if (!ok) throw new Error('MSI-X enable write failed');
  }
}
