// Virtio 1.x over PCI (virtio spec v1.2 §4.1): the vocabulary a modern virtio
// function shows its driver — device status bits, transport feature bits, the
// vendor-specific capabilities that say where each structure lives in a BAR,
// and the common configuration structure's layout.
//
// struct virtio_pci_cap (cap_len 16; the notify capability adds a 4-byte multiplier):
//   0 cap_vndr 0x09 | 1 cap_next | 2 cap_len | 3 cfg_type | 4 bar | 5 id | 6-7 padding
//   8 offset le32 (within the BAR) | 12 length le32 | [16 notify_off_multiplier le32]
import { CapId, type ConfigSpace } from '../../pci/config-space.ts';

export const VIRTIO_VENDOR_ID = 0x1af4;
/** Modern (non-transitional) devices: 0x1040 + virtio device id. */
export const VIRTIO_PCI_DEVICE_BASE = 0x1040;

export const enum CfgType {
  Common = 1,
  Notify = 2,
  Isr = 3,
  Device = 4,
}

export const enum DeviceStatus {
  Acknowledge = 1,
  Driver = 2,
  DriverOk = 4,
  FeaturesOk = 8,
  NeedsReset = 0x40,
  Failed = 0x80,
}

/** Transport feature bits (as bit numbers in the 64-bit feature word). */
export const enum TransportFeature {
  RingIndirectDesc = 28,
  RingEventIdx = 29,
  Version1 = 32,
  RingPacked = 34,
}

/** "No vector" in config_msix_vector and queue_msix_vector. */
export const NO_VECTOR = 0xffff;

/** ISR status bits (read-to-clear; used only with INTx). */
export const enum IsrBit {
  Queue = 1,
  Config = 2,
}

/** struct virtio_pci_common_cfg, with the 1.2 queue_notify_data / queue_reset fields. */
export const enum Common {
  DeviceFeatureSelect = 0x00,
  DeviceFeature = 0x04,
  DriverFeatureSelect = 0x08,
  DriverFeature = 0x0c,
  ConfigMsixVector = 0x10,
  NumQueues = 0x12,
  DeviceStatus = 0x14,
  ConfigGeneration = 0x15,
  QueueSelect = 0x16,
  QueueSize = 0x18,
  QueueMsixVector = 0x1a,
  QueueEnable = 0x1c,
  QueueNotifyOff = 0x1e,
  QueueDesc = 0x20,
  QueueDriver = 0x28,
  QueueDevice = 0x30,
  QueueNotifyData = 0x38,
  QueueReset = 0x3a,
  Length = 0x3c,
}

/** Fields of the common structure with their width in bytes, in layout order. */
export const COMMON_FIELDS: readonly (readonly [Common, number])[] = [
  [Common.DeviceFeatureSelect, 4], [Common.DeviceFeature, 4], [Common.DriverFeatureSelect, 4], [Common.DriverFeature, 4],
  [Common.ConfigMsixVector, 2], [Common.NumQueues, 2], [Common.DeviceStatus, 1], [Common.ConfigGeneration, 1],
  [Common.QueueSelect, 2], [Common.QueueSize, 2], [Common.QueueMsixVector, 2], [Common.QueueEnable, 2],
  [Common.QueueNotifyOff, 2], [Common.QueueDesc, 8], [Common.QueueDriver, 8], [Common.QueueDevice, 8],
  [Common.QueueNotifyData, 2], [Common.QueueReset, 2],
];

export interface VirtioRegion {
  bar: number;
  offset: number;
  length: number;
}

/** Adds one virtio vendor capability; `multiplier` only for the notify capability. */
export function addVirtioCapability(cs: ConfigSpace, type: CfgType, r: VirtioRegion, multiplier?: number): number {
  const len = type === CfgType.Notify ? 20 : 16;
  const at = cs.addCapability(CapId.VendorSpecific, len);
  cs.set8(at + 2, len);
  cs.set8(at + 3, type);
  cs.set8(at + 4, r.bar);
  cs.set32(at + 8, r.offset);
  cs.set32(at + 12, r.length);
  if (type === CfgType.Notify) cs.set32(at + 16, multiplier ?? 0);
  return at;
}

/** Bit `n` of a 64-bit feature word kept as a bigint. */
export const feature = (n: number): bigint => 1n << BigInt(n);
