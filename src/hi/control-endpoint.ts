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
 * ignored. No interrupts, no DMA. It is a PciFunction like the device models,
 * served over vfio-user by the direct-attach adapter.
 */

import { PciVfioUserDevice } from '../direct-attach/adapter.ts';
import { PciFunction } from '../pci/function.ts';

export const HI_CONTROL_VENDOR = 0x1234;
export const HI_CONTROL_DEVICE = 0x4849; // "HI"
/** System peripheral, other: a real class code (see design §4). */
const CLASS_OTHER_SYSTEM_PERIPHERAL = 0x088000;
const BAR_SIZE = 4096;

/** The control endpoint's PCI function: IDs, one 32-bit BAR with the status text. */
export class HiControlFunction extends PciFunction {
  private snapshot = new Uint8Array(BAR_SIZE);

  /** `status` renders the status and mapping table (called on each read of BAR0 at offset 0). */
  constructor(private readonly status: () => string) {
    super({
      vendorId: HI_CONTROL_VENDOR,
      deviceId: HI_CONTROL_DEVICE,
      classCode: CLASS_OTHER_SYSTEM_PERIPHERAL,
      revision: 1,
      bars: [{ size: BAR_SIZE, kind: 'mem32' }],
      // A PCI Express Endpoint (behind a downstream port it must say so): MPS 128 B, x1 at 2.5 GT/s, no FLR.
      pcie: { maxPayloadSupported: 0, linkSpeed: 1, linkWidth: 1, flr: false },
      noPowerManagement: true,
    });
  }

  protected override read(_bar: number, offset: number, size: number): Uint8Array {
    if (offset === 0) {
      const text = new TextEncoder().encode(this.status().slice(0, BAR_SIZE - 1));
      this.snapshot = new Uint8Array(BAR_SIZE);
      this.snapshot.set(text);
    }
    return this.snapshot.slice(offset, offset + size);
  }
}

/** The control endpoint as a vfio-user device (what the HI serves at hictl.sock). */
export class HiControlEndpoint extends PciVfioUserDevice {
  constructor(status: () => string) {
    super(new HiControlFunction(status));
  }
}
