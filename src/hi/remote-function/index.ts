// The HI's remote functions (EEPs): a PCIe function behind a DI, reached
// over PCIeOE, served to QEMU as a vfio-user device. The HI plays the host
// kernel for it, as VFIO does for a local one: it enumerated the function,
// owns its BAR addresses (in the channel's address space at the DI) and its
// MSI/MSI-X programming; QEMU and the guest see a device whose BARs QEMU
// emulates.
//
// One module per job: enumerate.ts (finding the function, sizing BARs,
// capabilities), config-access.ts (CfgRd/CfgWr), config-view.ts (config space
// as QEMU sees it), interrupts.ts (MSI/MSI-X programming and delivery),
// dma-service.ts (device DMA from the guest map, the memory-read completer),
// address-window.ts (BAR placement), remote-function.ts (the device).
// May import: src/pci, src/fabric/tlp, src/vfio-user (it is a vfio-user device).
export { AddressWindow } from './address-window.ts';
export { MSI_OFFSET } from './interrupts.ts';
export type { RemoteBar, RemoteLayout } from './layout.ts';
export type { RemoteFunctionOptions, RemoteFunctionStats } from './options.ts';
export { RemoteFunction } from './remote-function.ts';
