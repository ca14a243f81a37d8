// The vfio-user region table of a PCI function (VFIO_PCI_*_REGION_INDEX):
// regions 0-5 are the BARs (a 64-bit BAR's upper half and absent BARs are
// empty), 6 ROM (none), 7 config space, 8 VGA (none). A BAR with shared
// memory is offered for mmap as sparse areas.
import type { FunctionRegions } from '../pci/bar.ts';
import { PciRegion, RegionFlag } from './protocol.ts';
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
