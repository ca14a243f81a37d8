/**
 * The HI's control endpoint: a local PCIe function (no fabric behind it) that
 * the guest sees with lspci beside the EEPs, as a hardware HI would expose a
 * management function in its switch. BAR0 (4 KiB, read-only) holds the HI's
 * status and mapping table as text, regenerated on every read at offset 0:
 *
 *   PCIeOE HI 1
 *   channel 1 peer reachable links up,up
 *   eep eep0 channel 1 remote 01:00.0 id 1234:4e56 msix 3 dma-errors 0 mmio-read-failures 0
 *
 * so `cat /sys/bus/pci/devices/<bdf>/resource0` (or devmem) in the guest shows
 * which remote function each EEP is and whether its DI answers. Writes are
 * ignored. No interrupts, no DMA.
 */

import { IrqInfoFlag, PciIrq, PciRegion, RegionFlag } from '../vfio-user/protocol.ts';
import type { IrqIndexDesc } from '../vfio-user/irq.ts';
import type { RegionDesc } from '../vfio-user/server.ts';
import type { VfioUserDevice } from '../vfio-user/server.ts';

export const HI_CONTROL_VENDOR = 0x1234;
export const HI_CONTROL_DEVICE = 0x4849; // "HI"
const BAR_SIZE = 4096;
const PCIE_CAP = 0x40;

export class HiControlEndpoint implements VfioUserDevice {
  readonly regions: RegionDesc[];
  readonly irqs: IrqIndexDesc[];
  readonly canReset = true;
  private readonly config = new Uint8Array(4096);
  private snapshot = new Uint8Array(BAR_SIZE);

  /** `status` renders the status and mapping table (called on each read of BAR0 at offset 0). */
  constructor(private readonly status: () => string) {
    this.regions = Array.from({ length: PciRegion.Count }, () => ({ size: 0, flags: 0 }));
    this.regions[PciRegion.Bar0] = { size: BAR_SIZE, flags: RegionFlag.Read | RegionFlag.Write };
    this.regions[PciRegion.Config] = { size: this.config.length, flags: RegionFlag.Read | RegionFlag.Write };
    this.irqs = [];
    this.irqs[PciIrq.Intx] = { count: 0, flags: IrqInfoFlag.Eventfd };
    this.irqs[PciIrq.Msi] = { count: 0, flags: IrqInfoFlag.Eventfd };
    this.irqs[PciIrq.Msix] = { count: 0, flags: IrqInfoFlag.Eventfd };
    this.irqs[PciIrq.Err] = { count: 1, flags: IrqInfoFlag.Eventfd };
    this.irqs[PciIrq.Req] = { count: 1, flags: IrqInfoFlag.Eventfd };
    const c = new DataView(this.config.buffer);
    c.setUint16(0x00, HI_CONTROL_VENDOR, true);
    c.setUint16(0x02, HI_CONTROL_DEVICE, true);
    c.setUint16(0x06, 0x0010, true); // Status: capability list
    c.setUint8(0x08, 1); // revision
    c.setUint8(0x0a, 0x80); // subclass: other system peripheral
    c.setUint8(0x0b, 0x08); // class: system peripheral (a real class code: see design §4)
    c.setUint16(0x2c, HI_CONTROL_VENDOR, true);
    c.setUint16(0x2e, HI_CONTROL_DEVICE, true);
    c.setUint8(0x34, PCIE_CAP);
    // PCI Express capability v2, Endpoint (behind a downstream port it must say so); no next.
    c.setUint8(PCIE_CAP, 0x10);
    c.setUint16(PCIE_CAP + 2, 0x0002, true);
    c.setUint32(PCIE_CAP + 4, 0x0000_0000, true); // DevCap: MPS 128, no FLR
    c.setUint32(PCIE_CAP + 0x0c, 0x0000_0011, true); // LinkCap: x1, 2.5 GT/s
    c.setUint16(PCIE_CAP + 0x12, 0x0011, true); // LinkSta: x1, 2.5 GT/s
  }

  regionRead(region: number, offset: number, count: number): Uint8Array {
    if (region === PciRegion.Config) {
      // BAR0: 32-bit memory, non-prefetchable (QEMU sizes and emulates it from the region).
      return this.config.slice(offset, offset + count);
    }
    if (offset === 0) {
      const text = new TextEncoder().encode(this.status().slice(0, BAR_SIZE - 1));
      this.snapshot = new Uint8Array(BAR_SIZE);
      this.snapshot.set(text);
    }
    return this.snapshot.slice(offset, offset + count);
  }

  regionWrite(region: number, offset: number, data: Uint8Array): void {
    // Command and Device Control are the only writable config bits that matter; keep what software writes there.
    if (region !== PciRegion.Config) return;
    for (let i = 0; i < data.length; i++) {
      const at = offset + i;
      if (at === 0x04 || at === 0x05 || at === PCIE_CAP + 8 || at === PCIE_CAP + 9) this.config[at] = data[i]!;
    }
  }

  reset(): void {
    this.config[0x04] = 0;
    this.config[0x05] = 0;
  }

  connected(): void {}
  disconnected(): void {}
}
