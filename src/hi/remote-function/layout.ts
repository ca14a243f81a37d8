// What enumeration learnt of a remote function, and where the HI placed it.
import type { BarDef } from '../../pci/bar.ts';

/** A memory BAR of the remote function, placed in the channel's address space. */
export interface RemoteBar extends BarDef {
  kind: 'mem32' | 'mem64';
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
  /** Interrupt Pin (1-4 = INTA-INTD) when the HI carries INTx (carryIntx); else absent. */
  intxPin?: number;
  /** A capability unlinked from QEMU's view (hideMsix): the pointer byte that named it reads as `next`. */
  unlinked?: { cap: number; pointerAt: number; next: number };
}

/** One line for the log: BARs, MSI-X, PCI or PCIe, FLR. */
export function describeLayout(l: RemoteLayout): string {
  const bars = l.bars.map((b, i) => (b ? `BAR${i} ${b.size} B @0x${b.address.toString(16)}` : '')).filter(Boolean);
  return [...bars, l.msix ? `MSI-X ${l.msix.vectors}` : l.unlinked ? 'MSI-X hidden' : 'no MSI-X', l.msi ? `MSI ${l.msi.vectors}` : 'no MSI', ...(l.intxPin ? ['INTx'] : []), l.configSize === 4096 ? 'PCIe' : 'PCI', l.flr ? 'FLR' : 'no FLR'].join(', ');
}
