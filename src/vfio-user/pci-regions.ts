// The vfio-user tables of a PCI function. Regions (VFIO_PCI_*_REGION_INDEX):
// 0-5 are the BARs (a 64-bit BAR's upper half and absent BARs are empty),
// 6 ROM (none), 7 config space, 8 VGA (none); a BAR with shared memory is
// offered for mmap as sparse areas. IRQ indexes (VFIO_PCI_*_IRQ_INDEX):
// INTx, MSI and MSI-X as the device serves them, one ERR and one REQ eventfd.
import type { FunctionRegions } from '../pci/bar.ts';
import type { IrqIndexDesc } from './irq.ts';
import { IrqInfoFlag, PciIrq, PciRegion, RegionFlag } from './protocol.ts';
import type { RegionDesc } from './server.ts';

export function pciRegionTable(f: FunctionRegions): RegionDesc[] {
  const rw = RegionFlag.Read | RegionFlag.Write;
  const regions: RegionDesc[] = Array.from({ length: PciRegion.Count }, () => ({ size: 0, flags: 0 }));
  f.bars.forEach((b, i) => {
    if (b) regions[i] = { size: b.size, flags: rw, mmap: b.shared && { fd: b.shared.fd, areas: [...b.shared.areas] } };
  });
  regions[PciRegion.Config] = { size: f.configSize, flags: rw };
  return regions;
}

export function pciIrqTable(o: { intx: IrqIndexDesc; msi: IrqIndexDesc; msix: IrqIndexDesc }): IrqIndexDesc[] {
  const irqs: IrqIndexDesc[] = [];
  irqs[PciIrq.Intx] = o.intx;
  irqs[PciIrq.Msi] = o.msi;
  irqs[PciIrq.Msix] = o.msix;
  irqs[PciIrq.Err] = { count: 1, flags: IrqInfoFlag.Eventfd };
  irqs[PciIrq.Req] = { count: 1, flags: IrqInfoFlag.Eventfd };
  return irqs;
}
