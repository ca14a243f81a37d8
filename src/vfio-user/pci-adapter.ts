// Serves any PciFunction over vfio-user (direct attach: no fabric between
// QEMU and the device model).
//
// Mapping: regions 0-5 are the BARs (a 64-bit BAR's upper half is an empty
// region), 6 ROM (none), 7 config space (4096 B for PCI Express), 8 VGA
// (none). IRQ indexes: INTx (1 vector if the function has an interrupt pin),
// MSI (none), MSI-X (table size), ERR, REQ. QEMU emulates the MSI-X
// capability and table itself and reports "MSI-X on" only through SET_IRQS,
// so the function's MSI-X Enable bit is driven from the eventfd wiring.
import type { PciFunction } from '../devices/pci/function.ts';
import { Cfg } from '../devices/pci/config-space.ts';
import type { IrqIndexDesc } from './irq.ts';
import { IrqInfoFlag, PciIrq, PciRegion, RegionFlag } from './protocol.ts';
import { VfioUserServer, type RegionDesc, type ServerOptions, type SessionContext, type VfioUserDevice } from './server.ts';

export class PciVfioUserDevice implements VfioUserDevice {
  readonly regions: RegionDesc[];
  readonly irqs: IrqIndexDesc[];
  readonly canReset = true;
  private ctx?: SessionContext;

  constructor(readonly fn: PciFunction) {
    const rw = RegionFlag.Read | RegionFlag.Write;
    this.regions = Array.from({ length: PciRegion.Count }, () => ({ size: 0, flags: 0 }));
    fn.bars.forEach((b, i) => {
      if (b) this.regions[i] = { size: b.size, flags: rw };
    });
    this.regions[PciRegion.Config] = { size: fn.config.size, flags: rw };
    const hasPin = fn.config.get8(Cfg.InterruptPin) !== 0;
    this.irqs = [];
    this.irqs[PciIrq.Intx] = { count: hasPin ? 1 : 0, flags: IrqInfoFlag.Eventfd | IrqInfoFlag.Maskable | IrqInfoFlag.Automasked };
    this.irqs[PciIrq.Msi] = { count: 0, flags: IrqInfoFlag.Eventfd };
    this.irqs[PciIrq.Msix] = { count: fn.msixDef?.vectors ?? 0, flags: IrqInfoFlag.Eventfd | IrqInfoFlag.NoResize };
    this.irqs[PciIrq.Err] = { count: 1, flags: IrqInfoFlag.Eventfd };
    this.irqs[PciIrq.Req] = { count: 1, flags: IrqInfoFlag.Eventfd };
  }

  regionRead(region: number, offset: number, count: number): Uint8Array | Promise<Uint8Array> {
    return region === PciRegion.Config ? this.fn.configRead(offset, count) : this.fn.barRead(region, offset, count);
  }

  regionWrite(region: number, offset: number, data: Uint8Array): void | Promise<void> {
    if (region === PciRegion.Config) this.fn.configWrite(offset, data);
    else return this.fn.barWrite(region, offset, data);
  }

  reset(): void {
    this.fn.reset();
    this.syncMsix();
  }

  connected(ctx: SessionContext): void {
    this.ctx = ctx;
    this.fn.attach({
      dma: {
        dmaRead: (addr, length) => ctx.dma.read(addr, length),
        dmaWrite: (addr, data) => ctx.dma.write(addr, data),
      },
      irq: {
        msix: (vector) => {
          ctx.irqs.trigger(PciIrq.Msix, vector);
        },
        // VFIO INTx is an edge on the eventfd; QEMU holds the line until it unmasks.
        intx: (asserted) => {
          if (asserted) ctx.irqs.trigger(PciIrq.Intx, 0);
        },
      },
    });
    this.syncMsix();
  }

  disconnected(): void {
    this.ctx = undefined;
    this.fn.attach(undefined);
    this.fn.setMsixEnabled(false);
  }

  irqWiringChanged(index: number): void {
    if (index === PciIrq.Msix) this.syncMsix();
  }

  irqUnmasked(index: number, vector: number): void {
    // A level interrupt still asserted at unmask fires again, as on hardware.
    if (index === PciIrq.Intx && this.fn.intxAsserted) this.ctx?.irqs.trigger(index, vector);
  }

  private syncMsix(): void {
    this.fn.setMsixEnabled((this.ctx?.irqs.enabledCount(PciIrq.Msix) ?? 0) > 0);
  }
}

/** Convenience: a listening server for one PCI function. */
export function servePciFunction(fn: PciFunction, options: Omit<ServerOptions, 'device'>): VfioUserServer {
  return new VfioUserServer({ ...options, device: new PciVfioUserDevice(fn) }).listen();
}
