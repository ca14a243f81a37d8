// src/direct-attach — a PciFunction served straight to QEMU over vfio-user (this adapter) and
// the direct-attach process entries (nvme-main.ts, testdev-main.ts). It may import src/common,
// src/pci, src/devices/*, src/vfio-user, and src/fabric/wire for a device cabled to the switch.
//
// Serves any PciFunction over vfio-user (direct attach: no fabric between
// QEMU and the device model).
//
// Mapping: regions 0-5 are the BARs (a 64-bit BAR's upper half is an empty
// region), 6 ROM (none), 7 config space (4096 B for PCI Express), 8 VGA
// (none). IRQ indexes: INTx (1 vector if the function has an interrupt pin),
// MSI (the vectors its MSI capability asks for), MSI-X (table size), ERR,
// REQ. QEMU emulates the MSI and MSI-X capabilities (and the MSI-X table)
// itself and reports "on" through SET_IRQS eventfds, so the function's
// Enable bits are driven from the wiring. MSI and MSI-X are maskable per
// vector with SET_IRQS MASK/UNMASK (a vector masked there that fires is held
// as pending and sent on unmask); QEMU 11 does not use that, other clients may.
//
// A BAR with shared memory (BarDef.shared) is offered for mmap as sparse
// areas; QEMU then turns off posted writes for the whole device (design §4b).
import type { PciFunction } from '../pci/function.ts';
import { Cfg } from '../pci/config-space.ts';
import type { IrqIndexDesc } from '../vfio-user/irq.ts';
import { pciIrqTable, pciRegionTable } from '../vfio-user/pci-regions.ts';
import { IrqInfoFlag, PciIrq, PciRegion } from '../vfio-user/protocol.ts';
import { VfioUserServer, type RegionDesc, type ServerOptions, type SessionContext, type VfioUserDevice } from '../vfio-user/server.ts';

export class PciVfioUserDevice implements VfioUserDevice {
  readonly regions: RegionDesc[];
  readonly irqs: IrqIndexDesc[];
  readonly canReset = true;
  private ctx?: SessionContext;

  constructor(readonly fn: PciFunction) {
    this.regions = pciRegionTable({ bars: fn.bars, configSize: fn.config.size });
    const hasPin = fn.config.get8(Cfg.InterruptPin) !== 0;
    const message = IrqInfoFlag.Eventfd | IrqInfoFlag.Maskable | IrqInfoFlag.NoResize;
    this.irqs = pciIrqTable({
      intx: { count: hasPin ? 1 : 0, flags: IrqInfoFlag.Eventfd | IrqInfoFlag.Maskable | IrqInfoFlag.Automasked },
      msi: { count: fn.msiDef?.vectors ?? 0, flags: message },
      msix: { count: fn.msixDef?.vectors ?? 0, flags: message },
    });
  }

  regionRead(region: number, offset: number, count: number): Uint8Array | Promise<Uint8Array> {
    if (region === PciRegion.Config) return this.fn.configRead(offset, count);
    const data = this.fn.barRead(region, offset, count);
    const m = this.fn.msixDef;
    if (!m || region !== m.bar || offset >= m.pbaOffset + Math.ceil(m.vectors / 8) || offset + count <= m.pbaOffset) return data;
    return data instanceof Promise ? data.then((d) => this.withMaskedPending(d, offset)) : this.withMaskedPending(data, offset);
  }

  regionWrite(region: number, offset: number, data: Uint8Array): void | Promise<void> {
    if (region === PciRegion.Config) this.fn.configWrite(offset, data);
    else return this.fn.barWrite(region, offset, data);
  }

  reset(): void {
    this.fn.reset();
    this.syncEnables();
  }

  connected(ctx: SessionContext): void {
    this.ctx = ctx;
    this.fn.attach({
      dma: {
        dmaRead: (addr, length) => ctx.dma.read(addr, length),
        dmaReadInto: (segments, into) => ctx.dma.readInto(segments, into),
        dmaWrite: (addr, data) => ctx.dma.write(addr, data),
      },
      irq: {
        msix: (vector) => {
          ctx.irqs.trigger(PciIrq.Msix, vector);
        },
        msi: (vector) => {
          ctx.irqs.trigger(PciIrq.Msi, vector);
        },
        // QEMU holds a masked MSI as pending in its emulated capability, which is
        // where the guest reads Pending; a message the function held back would
        // never show there (seen in the guest test).
        hostMasksMsi: true,
        // VFIO INTx is an edge on the eventfd; QEMU holds the line until it unmasks.
        intx: (asserted) => {
          if (asserted) ctx.irqs.trigger(PciIrq.Intx, 0);
        },
      },
    });
    this.syncEnables();
  }

  disconnected(): void {
    this.ctx = undefined;
    this.fn.attach(undefined);
    this.syncEnables();
  }

  irqWiringChanged(index: number): void {
    if (index === PciIrq.Msix || index === PciIrq.Msi) this.syncEnables();
  }

  irqUnmasked(index: number, vector: number): void {
    // A level interrupt still asserted at unmask fires again, as on hardware.
    if (index === PciIrq.Intx && this.fn.intxAsserted) this.ctx?.irqs.trigger(index, vector);
  }

  /**
   * QEMU forwards guest PBA reads to the server ("the server copy is what
   * matters"): a vector held back by SET_IRQS MASK is pending there too.
   */
  private withMaskedPending(data: Uint8Array, offset: number): Uint8Array {
    const irqs = this.ctx?.irqs;
    const m = this.fn.msixDef!;
    if (!irqs) return data;
    data = data.slice(); // not the device's own buffer
    for (let i = 0; i < data.length; i++) {
      const first = (offset + i - m.pbaOffset) * 8;
      for (let bit = 0; bit < 8; bit++) {
        if (first + bit >= 0 && first + bit < m.vectors && irqs.isPending(PciIrq.Msix, first + bit)) data[i]! |= 1 << bit;
      }
    }
    return data;
  }

  /** MSI-X / MSI Enable follow whether the client wired eventfds (none without a client). */
  private syncEnables(): void {
    const wired = (index: PciIrq) => (this.ctx?.irqs.enabledCount(index) ?? 0) > 0;
    this.fn.setMsixEnabled(wired(PciIrq.Msix));
    if (this.fn.msiDef) this.fn.setMsiEnabled(wired(PciIrq.Msi));
  }
}

/** Convenience: a listening server for one PCI function. */
export function servePciFunction(fn: PciFunction, options: Omit<ServerOptions, 'device'>): VfioUserServer {
  return new VfioUserServer({ ...options, device: new PciVfioUserDevice(fn) }).listen();
}
