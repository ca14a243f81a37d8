// What every part of a remote function shares: its options, its counters and
// the transfer sizes the HI uses.
import type { TlpEndpoint } from '../../fabric/tlp/endpoint.ts';
import type { Logger } from '../../common/logger.ts';
import type { AddressWindow } from './address-window.ts';

/** Max Payload Size and Max Read Request Size the HI uses. */
export const MPS = 4096;

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
  /**
   * Present no MSI-X capability to QEMU when the function has MSI too (it is unlinked from
   * the capability list; the function then signals MSI). For hot-plugged EEPs: QEMU 11.1.3
   * aborts finalizing a removed vfio-user-pci that has MSI-X (src/hi/hotplug-control.ts).
   */
  hideMsix?: boolean;
  /**
   * Carry the function's INTx (its Interrupt Pin, Assert/Deassert_INTx messages) as the
   * vfio-user INTx interrupt; then hideMsix also applies to a function with INTx but no MSI
   * (virtio-net: Linux's virtio_pci falls back from MSI-X to INTx, never to MSI).
   */
  carryIntx?: boolean;
}

export interface RemoteFunctionStats {
  /** BAR reads answered all-ones (timeout, UR, CA). */
  mmioReadFailures: number;
  configFailures: number;
  dmaReads: number;
  dmaWrites: number;
  /** DMA the guest map could not serve (unmapped IOVA, no client): UR / dropped. */
  dmaErrors: number;
  /** MSI-X and MSI eventfd signals. */
  msix: number;
  /** Messages whose vector was already to be signalled at the end of the same delivery batch (one signal for both). */
  msixMerged: number;
  /** INTx eventfd signals (an assert, or an unmask while still asserted). */
  intx: number;
  /** MWr into the MSI window that names no wired vector. */
  msixSpurious: number;
}
