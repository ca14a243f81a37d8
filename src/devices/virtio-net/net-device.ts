// src/devices/virtio-net — the virtio-net NIC model and a soft driver for tests. It may import
// src/common, src/pci and the other device models' test helpers only: a device knows no
// transport (npm run deps).
//
// A modern virtio-net PCI function (virtio spec v1.2 §5.1, PCI transport
// §4.1), 1AF4:1041, class 0x020000 (network, Ethernet). Nothing here knows the
// transport: DMA and interrupts go through PciFunction's ports, and frames go
// to and come from an injected EthernetWire.
//
// BAR0, 64-bit memory, 32 KiB:
//   0x0000 common configuration (struct virtio_pci_common_cfg, 0x3c B)
//   0x1000 ISR status (read to clear; INTx only)
//   0x2000 device configuration (struct virtio_net_config):
//            0 mac[6] | 6 status le16 (LINK_UP 1) | 8 max_virtqueue_pairs le16 (1)
//            10 mtu le16 | 12 speed le32 (unknown) | 16 duplex u8 (unknown)
//   0x3000 notify: queue n's doorbell at 0x3000 + 4n (notify_off n, multiplier 4)
//   0x4000 MSI-X table (3 vectors: configuration, receive, transmit), 0x5000 PBA
//
// Queues: 0 receive, 1 transmit, at most QUEUE_MAX entries each. Features:
// VERSION_1, MAC, STATUS, MTU, and when configured RING_EVENT_IDX (the driver's
// doorbells and the device's interrupts follow the event indices, virtqueue.ts), RING_PACKED
// (the driver may lay out packed rings instead of split ones, packed-queue.ts: a transmit batch
// then waits two dependent reads of driver memory, not three; the process entries offer it:
// nic-coexistence, three interleaved rounds each, A->B 42 -> 58 Mb/s, B->A 82 -> 96), the
// checksum offloads CSUM and GUEST_CSUM (checksum.ts) and HOST_TSO4 (segment.ts). Every
// packet carries the 12-byte virtio_net_hdr (with VERSION_1, num_buffers included):
//   0 flags (NEEDS_CSUM 1, DATA_VALID 2) | 1 gso_type (NONE 0, TCPV4 1 with HOST_TSO4) |
//   2 hdr_len le16 | 4 gso_size le16 | 6 csum_start le16 | 8 csum_offset le16 |
//   10 num_buffers le16 (1 on receive, ignored on transmit)
// The model offers them only when configured (unit tests drive each case); the process
// entries (direct attach and DI alike, netOptionsFromEnv) offer all three unless told not
// to. Why: over PCIeOE every transmit batch waits three dependent round trips (avail ring,
// descriptors, data; ~1 ms each under load), and the guest's TCP keeps only about a
// millisecond of data below the socket, so A->B throughput follows the bytes per batch. With
// TSO a chain carries up to 64 KiB instead of one frame: nic-coexistence, iperf3 TCP 10 s, four
// side-by-side rounds, A->B 56/75/48 Mb/s without, 130/90/106 with (B->A 137/148/101 and
// 159/131/136). On nic-direct (guest memory is local) they stay within the run-to-run spread,
// as first measured there (commit messages of this note).
//
// Interrupts (event index): when the used_event last seen was passed already, a publish
// interrupts at once instead of reading used_event again first (SplitQueue.publish; the
// spec's SHOULD NOT, knowingly). Under iperf3 most such reads over PCIeOE answered "yes, now",
// a round trip late, and a transmit completion that comes late holds TCP (TSQ): side by side,
// nic-coexistence, A->B 26/66 -> 85/97 Mb/s, B->A 74/112 -> 117/125, ping 6.3/5.8 -> 4.8/4.0 ms
// (VIRTIO_NET_EAGER_IRQ=0 measures without). A later interleaved run on a loaded machine
// (four rounds, both on vs both off, then each alone) put the lab's processes back without them:
// A->B 53/63 vs 79/85 Mb/s, more interrupts for the TCG guest to take; so this is off unless
// configured (eagerInterrupts; the process entries take VIRTIO_NET_EAGER_IRQ=1).
//
// Except on the receive queue after a quiet spell (rxQuietEagerMs; the process entries take
// RX_QUIET_EAGER_MS unless VIRTIO_NET_RX_QUIET_MS says otherwise): Linux 6.1 leaves its event
// where it was interrupted and moves it when its poll ends, so a receive publish after a gap
// almost always found the old event passed and, a read later, a new one asking. Wish reads
// counted by how long the queue had been quiet (rxWishQuiet), nic-coexistence: A->B (the ACKs)
// said "interrupt" 592 times and "not" 154 after >= 1 ms quiet, 7 and 73 sooner; B->A (data)
// 538 / 630 and 123 / 1 061. So the receive queue is eager after 1 ms quiet; A->B, the side the
// late ACKs held, gains (side by side in one lab, NIC_BENCH_AB, four rounds: 118 -> 141 Mb/s
// mean, better in each round), B->A takes ~ 600 more interrupts a run and alone lost (151 -> 143;
// the read-ahead below makes that up). The transmit queue stays as it was (eager there did not
// measure better).
//
// Receive buffers can be read ahead of the frames (receiveAll; the process entries do unless
// VIRTIO_NET_RX_PREFETCH=0): with them held, a frame is written with posted writes and no read
// first, and the whole-ring reads carry the driver's event along. Side by side with eager
// interrupts on, two rounds: A->B 56/74 -> 52/126 Mb/s, B->A 99/110 -> 91/200, ping 6.6/4.2 ->
// 4.7/3.4 ms; A->B's received frames (the ACKs) no longer wait for a ring read. With the quiet
// receive interrupts above against neither, in one lab, three holds of four or five rounds:
// A->B 100 -> 117 Mb/s mean (better in 10 of 13 rounds), B->A 112 -> 110 (6 of 13); the quiet
// interrupts alone lost B->A in each hold, which the read-ahead makes up.
//
// Bad input (spec §2.1.2): a queue programmed beyond the limits, a malformed
// descriptor chain or a buffer outside guest memory set DEVICE_NEEDS_RESET
// (with a configuration interrupt) and stop the queues until the driver resets
// the device; a transmitted frame larger than the MTU allows, or one with no
// Ethernet header, or whose header asks for what was not negotiated, is dropped and
// counted, as is a received frame larger than the MTU or one that finds no buffer in time.
import { PciFunction } from '../../pci/function.ts';
import type { Logger } from '../../common/logger.ts';
import { type DeviceQueue, type Eagerness, gather, type ReadInto, scatter, SplitQueue, VirtqueueError } from './virtqueue.ts';
import { PackedQueue, RING_WINDOW } from './packed-queue.ts';
import { completeChecksum, l4ChecksumValid } from './checksum.ts';
import { segmentTcpV4 } from './segment.ts';
import {
  addVirtioCapability, CfgType, Common, COMMON_FIELDS, DeviceStatus, feature, IsrBit, NO_VECTOR, TransportFeature, VIRTIO_PCI_DEVICE_BASE,
  VIRTIO_VENDOR_ID,
} from './virtio-pci.ts';

export const VIRTIO_NET_DEVICE_ID = VIRTIO_PCI_DEVICE_BASE + 1;
export const VIRTIO_NET_CLASS = 0x020000;

/** virtio-net feature bits. */
export const enum NetFeature {
  Csum = 0,
  GuestCsum = 1,
  HostTso4 = 11,
  Mtu = 3,
  Mac = 5,
  Status = 16,
}

export const NET_HDR_SIZE = 12;
const enum HdrFlag {
  NeedsCsum = 1,
  DataValid = 2,
}
const GSO_NONE = 0;
const GSO_TCPV4 = 1;
/** The largest packet a driver may hand over with TSO (an IPv4 packet and its Ethernet header). */
const TSO_MAX_FRAME = 65535 + 18;
/** Transmit read buffers kept for reuse (txBuffers): a batch's chains and the next batch's, in flight at once. */
const TX_BUFFERS_KEPT = 32;
export const QUEUE_MAX = 256;
export const RX_QUEUE = 0;
export const TX_QUEUE = 1;
const NUM_QUEUES = 2;
export const NET_MSIX_VECTORS = NUM_QUEUES + 1;
/** Ethernet header plus one 802.1Q tag: a frame may be this much longer than the MTU. */
const ETH_OVERHEAD = 14 + 4;
const MIN_FRAME = 14;
/** Received frames held while the driver has no buffer posted; beyond this they are dropped. */
const RX_BACKLOG = 1024;

export const enum NetBar {
  Common = 0x0000,
  Isr = 0x1000,
  Device = 0x2000,
  Notify = 0x3000,
  MsixTable = 0x4000,
  MsixPba = 0x5000,
  Size = 0x8000,
}
const NOTIFY_MULTIPLIER = 4;
const DEVICE_CFG_LENGTH = 0x18;

/** The cable: frames out, and a receiver the wire calls for frames in. */
export interface EthernetWire {
  transmit(frame: Uint8Array): void;
  attach(receive: (frame: Uint8Array) => void): void;
}

export interface VirtioNetConfig {
  /** Unicast MAC address, 6 bytes or "02:00:..." form. */
  mac: string | Uint8Array;
  /** Default 1500. */
  mtu?: number;
  wire: EthernetWire;
  log?: Logger;
  /** Offer VIRTIO_F_EVENT_IDX (default false). */
  eventIdx?: boolean;
  /** Offer the checksum offloads CSUM and GUEST_CSUM (default false). */
  csum?: boolean;
  /** Offer HOST_TSO4 too (with csum only; default false). */
  tso?: boolean;
  /** Read receive buffers ahead of the frames (default false; receiveAll). */
  rxPrefetch?: boolean;
  /** With the event index, interrupt at once when the event last seen was passed already (default false; RingBase.decide). */
  eagerInterrupts?: boolean;
  /** The same on the receive queue only, when it had published nothing for this long (ms; default Infinity: never). */
  rxQuietEagerMs?: number;
  /** The clock rxQuietEagerMs is measured with (ms; default performance.now). */
  now?: () => number;
  /** Offer VIRTIO_F_RING_PACKED (default false): a driver that takes it lays out packed rings (packed-queue.ts). */
  packed?: boolean;
}

/** The features a device offers only when configured. */
export type NetOptions = Pick<VirtioNetConfig, 'eventIdx' | 'csum' | 'tso' | 'rxPrefetch' | 'eagerInterrupts' | 'rxQuietEagerMs' | 'packed'>;

/**
 * How long the receive queue must have published nothing before a publish on a passed event
 * interrupts at once (the process entries' default; see the header, "Interrupts").
 */
export const RX_QUIET_EAGER_MS = 1;

/** What may change while the device runs (VirtioNet.tune): a lab measures both ways without a restart. */
export type NetTunables = Pick<VirtioNetConfig, 'rxPrefetch' | 'eagerInterrupts' | 'rxQuietEagerMs'>;

/**
 * The optional features as a process entry takes them from its environment: RING_EVENT_IDX,
 * CSUM/GUEST_CSUM, HOST_TSO4 and RING_PACKED are offered unless VIRTIO_NET_EVENT_IDX, VIRTIO_NET_CSUM,
 * VIRTIO_NET_TSO or VIRTIO_NET_PACKED is 0 (TSO needs CSUM); receive read-ahead unless
 * VIRTIO_NET_RX_PREFETCH is 0; eager interrupts only when VIRTIO_NET_EAGER_IRQ is 1, on the receive
 * queue after a quiet RX_QUIET_EAGER_MS unless VIRTIO_NET_RX_QUIET_MS says other ms or off. The direct attach and the DI read the same variables,
 * so a lab run measures both paths with the same features, and a run with them off compares.
 */
export function netOptionsFromEnv(env: Readonly<Record<string, string | undefined>>): NetOptions {
  return { eventIdx: env.VIRTIO_NET_EVENT_IDX !== '0', csum: env.VIRTIO_NET_CSUM !== '0', tso: env.VIRTIO_NET_TSO !== '0', rxPrefetch: env.VIRTIO_NET_RX_PREFETCH !== '0',
    eagerInterrupts: env.VIRTIO_NET_EAGER_IRQ === '1', rxQuietEagerMs: quietMs(env.VIRTIO_NET_RX_QUIET_MS), packed: env.VIRTIO_NET_PACKED !== '0' };
}

/** VIRTIO_NET_RX_QUIET_MS: ms, or "off"; unset, RX_QUIET_EAGER_MS. */
function quietMs(v: string | undefined): number {
  if (v === undefined) return RX_QUIET_EAGER_MS;
  if (v === 'off') return Infinity;
  const ms = Number(v);
  if (v.trim() === '' || !(ms >= 0)) throw new Error(`VIRTIO_NET_RX_QUIET_MS=${v}: expected ms (>= 0) or off`);
  return ms;
}

export interface VirtioNetCounters {
  /** Transmit batches: avail ring reads that found chains (each then costs a descriptor and a data read). */
  txBatches: number;
  txFrames: number;
  txBytes: number;
  /** Transmitted frames longer than the MTU allows: dropped. */
  txOversize: number;
  /** Transmit chains too short for a header and an Ethernet header: dropped. */
  txRunt: number;
  /** Transmitted packets whose header asks for what was not negotiated (segmentation, a checksum out of the frame): dropped. */
  txBadHeader: number;
  /** Received packets given to the driver checked (DATA_VALID). */
  rxChecksumValid: number;
  rxFrames: number;
  rxBytes: number;
  /** Received frames longer than the MTU allows: dropped. */
  rxOversize: number;
  /** Received frames dropped because the driver was not ready or the backlog was full. */
  rxDropped: number;
  /** Receive batches that found no buffer held and waited for an avail ring read. */
  rxWaits: number;
  /** Receive buffers too small for the frame: given back empty, the frame dropped. */
  rxBufferTooSmall: number;
  /** Times the device set DEVICE_NEEDS_RESET. */
  needsReset: number;
  /** Doorbell writes (driver → device notifications), both queues. */
  notifications: number;
  /** Queue interrupts raised (device → driver), both queues. */
  interrupts: number;
  /** Publishes whose interrupt waited for a read of the driver's wish (the last ring read did not show it asking). */
  wishWaits: number;
  /** Of those, the ones the read said to interrupt (the interrupt came a round trip late). */
  wishLate: number;
  /** Of the late ones, what the wish seen before said: interrupts off, its event ahead, or passed (RingBase.decide). */
  wishLateOff: number;
  wishLateAhead: number;
  wishLatePassed: number;
  /** Receive queue wish reads by how long the queue had been quiet before (QUIET_BUCKETS ms): told to interrupt (late), or not. */
  rxWishQuiet: { late: number[]; not: number[] };
}

/** Upper bounds (ms) of the rxWishQuiet buckets; the last bucket is beyond the last bound. */
const QUIET_BUCKETS = [0.25, 0.5, 1, 2, 4];

interface QueueState {
  size: number;
  msixVector: number;
  enabled: boolean;
  desc: number;
  driver: number;
  device: number;
  ring?: DeviceQueue;
}

const BASE_FEATURES = feature(TransportFeature.Version1) | feature(NetFeature.Mac) | feature(NetFeature.Status) | feature(NetFeature.Mtu);

export class VirtioNet extends PciFunction {
  readonly counters: VirtioNetCounters = {
    txBatches: 0, txFrames: 0, txBytes: 0, txOversize: 0, txRunt: 0, txBadHeader: 0, rxChecksumValid: 0,
    rxFrames: 0, rxBytes: 0, rxOversize: 0, rxDropped: 0, rxWaits: 0, rxBufferTooSmall: 0, needsReset: 0, notifications: 0, interrupts: 0, wishWaits: 0, wishLate: 0, wishLateOff: 0, wishLateAhead: 0, wishLatePassed: 0,
    rxWishQuiet: { late: QUIET_BUCKETS.map(() => 0).concat(0), not: QUIET_BUCKETS.map(() => 0).concat(0) },
  };
  /** The feature bits the device offers. */
  readonly offered: bigint;
  readonly mac: Uint8Array;
  readonly mtu: number;
  /** Why the device last set DEVICE_NEEDS_RESET, for logs and tests. */
  lastError?: string;
  private readonly wire: EthernetWire;
  private readonly log: Logger;
  private readonly mem = {
    dmaRead: (addr: number, length: number) => this.dmaRead(addr, length),
    dmaWrite: (addr: number, data: Uint8Array) => this.dmaWrite(addr, data),
  };
  private readonly readInto: ReadInto = (segments, into) => this.dmaReadInto(segments, into);
  /**
   * Buffers transmitted packets of several buffers are read into (gather), each given back once
   * the packet's frames are made: a 64 KiB TSO packet otherwise took an ArrayBuffer of its own,
   * whose backing store the GC accounts and sweeps (src/fabric/slab.ts says why that costs).
   */
  private readonly txBuffers: Uint8Array[] = [];
  private linkUp = true;
  private rxPrefetch: boolean;
  /** Per queue, when a publish interrupts without reading the driver's wish first; the rings hold these objects. */
  private readonly eagerness: Eagerness[];

  // ---- common configuration state ----
  private status = 0;
  private deviceFeatureSelect = 0;
  private driverFeatureSelect = 0;
  private driverFeatures = 0n;
  private configMsixVector = NO_VECTOR;
  private configGeneration = 0;
  private queueSelect = 0;
  private queues: QueueState[] = [];
  private isr = 0;

  /** Bumped by every reset: work started before it must not touch the new state. */
  private generation = 0;
  private readonly rxBacklog: Uint8Array[] = [];
  /** Per queue: the generation whose worker is running (a worker of an older one only winds down). */
  private readonly worker: (number | undefined)[] = [undefined, undefined];
  private readonly again = [false, false];
  private activeWorkers = 0;
  /** Settles when the queue workers are idle (tests). */
  private idleWaiters: (() => void)[] = [];

  constructor(cfg: VirtioNetConfig) {
    super({
      vendorId: VIRTIO_VENDOR_ID,
      deviceId: VIRTIO_NET_DEVICE_ID,
      classCode: VIRTIO_NET_CLASS,
      revision: 1,
      subsystemVendorId: VIRTIO_VENDOR_ID,
      subsystemId: 0x0001,
      interruptPin: 1,
      bars: [{ size: NetBar.Size, kind: 'mem64' }],
      msix: { vectors: NET_MSIX_VECTORS, bar: 0, tableOffset: NetBar.MsixTable, pbaOffset: NetBar.MsixPba },
    });
    const cs = this.config;
    addVirtioCapability(cs, CfgType.Common, { bar: 0, offset: NetBar.Common, length: Common.Length });
    addVirtioCapability(cs, CfgType.Notify, { bar: 0, offset: NetBar.Notify, length: NUM_QUEUES * NOTIFY_MULTIPLIER }, NOTIFY_MULTIPLIER);
    addVirtioCapability(cs, CfgType.Isr, { bar: 0, offset: NetBar.Isr, length: 4 });
    addVirtioCapability(cs, CfgType.Device, { bar: 0, offset: NetBar.Device, length: DEVICE_CFG_LENGTH });
    cs.seal();
    this.mac = typeof cfg.mac === 'string' ? parseMac(cfg.mac) : cfg.mac.slice();
    if (this.mac.length !== 6 || this.mac[0]! & 1) throw new Error(`MAC ${formatMac(this.mac)}: expected a unicast address of 6 bytes`);
    this.mtu = cfg.mtu ?? 1500;
    if (!Number.isInteger(this.mtu) || this.mtu < 68 || this.mtu > 65535 - ETH_OVERHEAD) throw new Error(`MTU ${cfg.mtu}: expected 68..${65535 - ETH_OVERHEAD}`);
    this.wire = cfg.wire;
    this.rxPrefetch = false;
    const now = cfg.now ?? (() => performance.now());
    this.eagerness = Array.from({ length: NUM_QUEUES }, () => ({ always: false, quietMs: Infinity, now }));
    this.tune(cfg);
    this.log = cfg.log ?? (() => {});
    this.offered =
      BASE_FEATURES |
      (cfg.eventIdx ? feature(TransportFeature.RingEventIdx) : 0n) |
      (cfg.csum ? feature(NetFeature.Csum) | feature(NetFeature.GuestCsum) : 0n) |
      (cfg.csum && cfg.tso ? feature(NetFeature.HostTso4) : 0n) |
      (cfg.packed ? feature(TransportFeature.RingPacked) : 0n);
    this.resetDevice();
    this.wire.attach((frame) => this.receive(frame));
  }

  /** The device's link state (STATUS.LINK_UP); a change raises a configuration interrupt. */
  setLink(up: boolean): void {
    if (up === this.linkUp) return;
    this.linkUp = up;
    this.configChanged();
  }

  /** Changes what NetTunables names while running; the queues follow from their next publish or read. */
  tune(t: NetTunables): void {
    if (t.rxPrefetch !== undefined) this.rxPrefetch = t.rxPrefetch;
    if (t.eagerInterrupts !== undefined) for (const e of this.eagerness) e.always = t.eagerInterrupts;
    if (t.rxQuietEagerMs !== undefined) this.eagerness[RX_QUEUE]!.quietMs = t.rxQuietEagerMs;
  }

  get deviceStatus(): number {
    return this.status;
  }

  get negotiatedFeatures(): bigint {
    return this.driverFeatures;
  }

  /** Resolves when no queue work is running or waiting (for tests and orderly shutdown). */
  idle(): Promise<void> {
    if (this.activeWorkers === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  // ---- PciFunction hooks ----

  protected override onReset(): void {
    this.resetDevice();
  }

  protected override read(bar: number, offset: number, size: number): Uint8Array {
    const out = new Uint8Array(size);
    if (bar !== 0) return out;
    const region = this.regionAt(offset, size);
    if (!region) return out;
    if (region.base === NetBar.Isr) {
      // Reading the ISR acknowledges it and lowers INTx (§4.1.4.5).
      out[0] = offset === NetBar.Isr ? this.isr : 0;
      if (offset === NetBar.Isr) {
        this.isr = 0;
        this.setIntx(false);
      }
      return out;
    }
    const image = region.base === NetBar.Common ? this.commonImage() : region.base === NetBar.Device ? this.deviceImage() : new Uint8Array(region.length);
    out.set(image.subarray(offset - region.base, offset - region.base + size));
    return out;
  }

  protected override write(bar: number, offset: number, data: Uint8Array): void {
    if (bar !== 0) return;
    const region = this.regionAt(offset, data.length);
    if (!region) return;
    if (region.base === NetBar.Common) this.commonWrite(offset - NetBar.Common, data);
    else if (region.base === NetBar.Notify) this.notify((offset - NetBar.Notify) / NOTIFY_MULTIPLIER);
    // ISR and device configuration are read-only to the driver.
  }

  /** The structure an access falls in, if it lies wholly inside one. */
  private regionAt(offset: number, size: number): { base: number; length: number } | undefined {
    for (const [base, length] of [[NetBar.Common, Common.Length], [NetBar.Isr, 4], [NetBar.Device, DEVICE_CFG_LENGTH], [NetBar.Notify, NUM_QUEUES * NOTIFY_MULTIPLIER]] as const) {
      if (offset >= base && offset + size <= base + length) return { base, length };
    }
    return undefined;
  }

  // ---- common configuration ----

  private commonImage(): Uint8Array {
    const b = new Uint8Array(Common.Length);
    const v = new DataView(b.buffer);
    const q = this.queues[this.queueSelect];
    const word = (f: bigint, sel: number) => (sel < 2 ? Number((f >> BigInt(32 * sel)) & 0xffffffffn) : 0);
    v.setUint32(Common.DeviceFeatureSelect, this.deviceFeatureSelect, true);
    v.setUint32(Common.DeviceFeature, word(this.offered, this.deviceFeatureSelect), true);
    v.setUint32(Common.DriverFeatureSelect, this.driverFeatureSelect, true);
    v.setUint32(Common.DriverFeature, word(this.driverFeatures, this.driverFeatureSelect), true);
    v.setUint16(Common.ConfigMsixVector, this.configMsixVector, true);
    v.setUint16(Common.NumQueues, NUM_QUEUES, true);
    v.setUint8(Common.DeviceStatus, this.status);
    v.setUint8(Common.ConfigGeneration, this.configGeneration & 0xff);
    v.setUint16(Common.QueueSelect, this.queueSelect, true);
    if (q) {
      v.setUint16(Common.QueueSize, q.size, true);
      v.setUint16(Common.QueueMsixVector, q.msixVector, true);
      v.setUint16(Common.QueueEnable, q.enabled ? 1 : 0, true);
      v.setUint16(Common.QueueNotifyOff, this.queueSelect, true);
      setU64(v, Common.QueueDesc, q.desc);
      setU64(v, Common.QueueDriver, q.driver);
      setU64(v, Common.QueueDevice, q.device);
    } else {
      v.setUint16(Common.QueueMsixVector, NO_VECTOR, true);
    }
    return b;
  }

  /** Applies a write of any width: each field it touches takes its new value from the merged image. */
  private commonWrite(offset: number, data: Uint8Array): void {
    const image = this.commonImage();
    image.set(data, offset);
    const v = new DataView(image.buffer);
    for (const [field, width] of COMMON_FIELDS) {
      if (offset >= field + width || field >= offset + data.length) continue;
      const value = width === 1 ? v.getUint8(field) : width === 2 ? v.getUint16(field, true) : width === 4 ? v.getUint32(field, true) : getU64(v, field);
      this.setCommon(field, value);
    }
  }

  private setCommon(field: Common, value: number): void {
    const q = this.queues[this.queueSelect];
    switch (field) {
      case Common.DeviceFeatureSelect: this.deviceFeatureSelect = value; break;
      case Common.DriverFeatureSelect: this.driverFeatureSelect = value; break;
      case Common.DriverFeature:
        if (this.driverFeatureSelect < 2 && !(this.status & DeviceStatus.FeaturesOk)) {
          const shift = BigInt(32 * this.driverFeatureSelect);
          this.driverFeatures = (this.driverFeatures & ~(0xffffffffn << shift)) | (BigInt(value) << shift);
        }
        break;
      case Common.ConfigMsixVector: this.configMsixVector = this.validVector(value); break;
      case Common.DeviceStatus: this.setStatus(value); break;
      case Common.QueueSelect: this.queueSelect = value; break;
      case Common.QueueSize: if (q && !q.enabled) q.size = value; break;
      case Common.QueueMsixVector: if (q) q.msixVector = this.validVector(value); break;
      case Common.QueueEnable: if (q && value === 1 && !q.enabled) this.enableQueue(this.queueSelect, q); break;
      case Common.QueueDesc: if (q && !q.enabled) q.desc = value; break;
      case Common.QueueDriver: if (q && !q.enabled) q.driver = value; break;
      case Common.QueueDevice: if (q && !q.enabled) q.device = value; break;
      default: break; // read-only fields
    }
  }

  /** A vector the MSI-X table has, else NO_VECTOR (the driver reads it back to see the mapping failed). */
  private validVector(v: number): number {
    return v < NET_MSIX_VECTORS ? v : NO_VECTOR;
  }

  private setStatus(value: number): void {
    if (value === 0) {
      this.resetDevice();
      return;
    }
    let next = this.status | value;
    if (value & DeviceStatus.FeaturesOk && !(this.status & DeviceStatus.FeaturesOk)) {
      // The driver reads FEATURES_OK back: cleared means "not a subset I support".
      const ok = (this.driverFeatures & ~this.offered) === 0n && (this.driverFeatures & feature(TransportFeature.Version1)) !== 0n;
      if (!ok) {
        next &= ~DeviceStatus.FeaturesOk;
        this.log('warn', `virtio-net: driver features 0x${this.driverFeatures.toString(16)} refused (offered 0x${this.offered.toString(16)})`);
      }
    }
    this.status = next;
    if (this.status & DeviceStatus.DriverOk && !(this.status & DeviceStatus.NeedsReset)) {
      this.kick(RX_QUEUE);
      this.kick(TX_QUEUE);
    }
  }

  private enableQueue(n: number, q: QueueState): void {
    try {
      if (q.size > QUEUE_MAX) throw new VirtqueueError(`queue ${n}: size ${q.size} beyond the maximum ${QUEUE_MAX}`);
      const eventIdx = this.negotiated(TransportFeature.RingEventIdx);
      const setup = { size: q.size, desc: q.desc, driver: q.driver, device: q.device };
      // A receive ring is read whole (its buffers are one descriptor each, and every one held
      // spares a frame a wait for a read); a transmit ring a window at a time (packed-queue.ts).
      q.ring = this.negotiated(TransportFeature.RingPacked)
        ? new PackedQueue(setup, this.mem, eventIdx, this.eagerness[n], n === RX_QUEUE ? q.size : RING_WINDOW)
        : new SplitQueue(setup, this.mem, eventIdx, this.eagerness[n]);
      q.enabled = true;
    } catch (err) {
      this.needsReset(err as Error);
    }
  }

  private resetDevice(): void {
    this.generation++;
    this.status = 0;
    this.deviceFeatureSelect = 0;
    this.driverFeatureSelect = 0;
    this.driverFeatures = 0n;
    this.configMsixVector = NO_VECTOR;
    this.queueSelect = 0;
    this.queues = Array.from({ length: NUM_QUEUES }, () => ({ size: QUEUE_MAX, msixVector: NO_VECTOR, enabled: false, desc: 0, driver: 0, device: 0 }));
    this.isr = 0;
    this.setIntx(false);
    this.rxBacklog.length = 0;
    this.again.fill(false);
  }

  private deviceImage(): Uint8Array {
    const b = new Uint8Array(DEVICE_CFG_LENGTH);
    const v = new DataView(b.buffer);
    b.set(this.mac, 0);
    v.setUint16(6, this.linkUp ? 1 : 0, true);
    v.setUint16(8, 1, true);
    v.setUint16(10, this.mtu, true);
    v.setUint32(12, 0xffffffff, true); // speed unknown
    v.setUint8(16, 0xff); // duplex unknown
    return b;
  }

  // ---- interrupts and errors ----

  private signal(vector: number, isr: IsrBit): void {
    this.isr |= isr;
    if (this.msixEnabled) {
      if (vector !== NO_VECTOR) this.interrupt(vector);
    } else {
      this.interrupt(0); // INTx (MSI-X off); lowered by the ISR read
    }
  }

  private configChanged(): void {
    this.configGeneration++;
    if (this.status & DeviceStatus.DriverOk) this.signal(this.configMsixVector, IsrBit.Config);
  }

  private needsReset(err: Error): void {
    this.lastError = err.message;
    this.counters.needsReset++;
    this.log('warn', `virtio-net: DEVICE_NEEDS_RESET: ${err.message}`);
    this.status |= DeviceStatus.NeedsReset;
    this.rxBacklog.length = 0;
    this.configChanged();
  }

  // ---- data path ----

  private notify(queue: number): void {
    if (!Number.isInteger(queue) || queue < 0 || queue >= NUM_QUEUES) return;
    this.counters.notifications++;
    this.kick(queue);
  }

  /** A frame from the wire. */
  private receive(frame: Uint8Array): void {
    const c = this.counters;
    if (frame.length > this.mtu + ETH_OVERHEAD) {
      c.rxOversize++;
      return;
    }
    if (!this.queueReady(RX_QUEUE) || this.rxBacklog.length >= RX_BACKLOG) {
      c.rxDropped++;
      return;
    }
    this.rxBacklog.push(frame);
    this.kick(RX_QUEUE);
  }

  private queueReady(n: number): boolean {
    return (this.status & (DeviceStatus.DriverOk | DeviceStatus.NeedsReset)) === DeviceStatus.DriverOk && this.queues[n]!.enabled;
  }

  /** Runs queue n's worker, or asks the running one for another pass. */
  private kick(n: number): void {
    if (!this.queueReady(n)) return;
    if (this.worker[n] === this.generation) {
      this.again[n] = true;
      return;
    }
    this.worker[n] = this.generation;
    this.activeWorkers++;
    void this.work(n, this.generation);
  }

  private async work(n: number, generation: number): Promise<void> {
    const q = this.queues[n]!;
    try {
      do {
        this.again[n] = false;
        if (n === TX_QUEUE) await this.transmitAll(q, generation);
        else await this.receiveAll(q, generation);
        if (generation !== this.generation) return;
        await this.complete(q, generation);
      } while (this.again[n] && generation === this.generation && this.queueReady(n));
    } catch (err) {
      if (generation === this.generation) this.needsReset(err as Error);
    } finally {
      if (this.worker[n] === generation) this.worker[n] = undefined;
      this.workerDone();
    }
  }

  private workerDone(): void {
    if (--this.activeWorkers === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /**
   * Publishes the used entries given back so far and interrupts the driver if it asks; when
   * that takes a read of its wish, the queue's work goes on meanwhile (over PCIeOE a round
   * trip: the next frames are not held behind it).
   */
  private async complete(q: QueueState, generation: number): Promise<void> {
    const wish = await q.ring!.publish();
    const raise = (yes: boolean) => {
      if (!yes || generation !== this.generation) return;
      this.counters.interrupts++;
      this.signal(q.msixVector, IsrBit.Queue);
    };
    if (typeof wish === 'boolean') raise(wish);
    else {
      this.counters.wishWaits++;
      void wish.later.then((yes) => {
        if (q === this.queues[RX_QUEUE]) {
          const b = QUIET_BUCKETS.findIndex((ms) => wish.quietMs < ms);
          this.counters.rxWishQuiet[yes ? 'late' : 'not'][b < 0 ? QUIET_BUCKETS.length : b]!++;
        }
        if (yes) {
          this.counters.wishLate++;
          this.counters[wish.seen === 'off' ? 'wishLateOff' : wish.seen === 'ahead' ? 'wishLateAhead' : 'wishLatePassed']++;
        }
        raise(yes);
      }, (err: Error) => generation === this.generation && this.needsReset(err));
    }
  }

  /**
   * Sends every available frame, as a pipeline: a batch's data is read at once
   * (the reads overlap: one round trip over PCIeOE, not one per frame), and
   * while it is in flight the next batch is already taken from the ring and its
   * data read. Each batch goes out in ring order, and is given back and
   * signalled as soon as it is sent: the driver frees its buffers (and TCP
   * sends more) one batch sooner than if the device waited for an empty ring.
   */
  private async transmitAll(q: QueueState, generation: number): Promise<void> {
    const ring = q.ring!;
    const c = this.counters;
    let next = settleLater(this.fetchTx(ring));
    for (;;) {
      const batch = await next;
      if (!batch.length || generation !== this.generation) return;
      c.txBatches++;
      next = settleLater(this.fetchTx(ring));
      for (const { head, read, buffer } of batch) {
        if (typeof read === 'number') {
          if (read < MIN_FRAME) c.txRunt++;
          else c.txOversize++;
        } else {
          const bytes = await read;
          if (generation !== this.generation) return;
          for (const frame of this.txFrames(bytes, bytes.buffer === buffer?.buffer)) {
            c.txFrames++;
            c.txBytes += frame.length;
            if (this.linkUp) this.wire.transmit(frame);
          }
          // Nothing sent refers to it (txFrames copied what it sends): the next packet is read into it.
          if (buffer && this.txBuffers.length < TX_BUFFERS_KEPT) this.txBuffers.push(buffer);
        }
        ring.push(head, 0);
      }
      await this.complete(q, generation);
    }
  }

  /** The next batch of transmit chains, each with its data read started (or the length that rules it out). */
  private async fetchTx(ring: DeviceQueue): Promise<{ head: number; read: number | Promise<Uint8Array>; buffer?: Uint8Array }[]> {
    const chains = await ring.popBatch();
    return chains.map((chain) => {
      if (chain.writable.length) throw new VirtqueueError(`transmit chain from ${chain.head} has a writable buffer`);
      const frameLen = chain.readableBytes - NET_HDR_SIZE;
      if (frameLen < MIN_FRAME || frameLen > (this.negotiated(NetFeature.HostTso4) ? TSO_MAX_FRAME : this.mtu + ETH_OVERHEAD)) return { head: chain.head, read: frameLen };
      const buffer = this.txBuffers.pop() ?? new Uint8Array(TSO_MAX_FRAME + NET_HDR_SIZE);
      return { head: chain.head, read: settleLater(gather(this.mem, chain.readable, chain.readableBytes, this.readInto, buffer)), buffer };
    });
  }

  /**
   * The frames of a transmitted packet: itself, its checksum completed if the header asks,
   * or its TCP segments (TSO); none (counted) if the header asks for what was not negotiated
   * or does not fit the packet, or a frame would exceed the MTU.
   */
  private txFrames(packet: Uint8Array, borrowed: boolean): Uint8Array[] {
    const c = this.counters;
    const flags = packet[0]!;
    const gso = packet[1]!;
    const bad = (): [] => {
      c.txBadHeader++;
      return [];
    };
    if (flags & HdrFlag.NeedsCsum && !this.negotiated(NetFeature.Csum)) return bad();
    if (gso !== GSO_NONE) {
      if (gso !== GSO_TCPV4 || !this.negotiated(NetFeature.HostTso4)) return bad();
      const segments = segmentTcpV4(packet.subarray(NET_HDR_SIZE), packet[4]! | (packet[5]! << 8));
      return segments && segments.every((s) => s.length <= this.mtu + ETH_OVERHEAD) ? segments : bad();
    }
    if (packet.length - NET_HDR_SIZE > this.mtu + ETH_OVERHEAD) {
      c.txOversize++;
      return [];
    }
    // A borrowed packet's buffer is read into again once this returns: what is sent must be a copy.
    if (!(flags & HdrFlag.NeedsCsum)) return [borrowed ? packet.slice(NET_HDR_SIZE) : packet.subarray(NET_HDR_SIZE)];
    // A copy: the packet may be the driver's memory itself, which the device only reads.
    const frame = packet.slice(NET_HDR_SIZE);
    return completeChecksum(frame, packet[6]! | (packet[7]! << 8), packet[8]! | (packet[9]! << 8)) ? [frame] : bad();
  }

  private negotiated(bit: number): boolean {
    return (this.driverFeatures & feature(bit)) !== 0n;
  }

  /**
   * Gives waiting frames to posted buffers; the writes of a batch overlap, and all land
   * before publish() (which also goes first when the frames must wait for a ring read). Then, when fewer than half the ring's buffers are held, reads the
   * avail ring ahead in the background (a doorbell on the receive queue, which says the
   * driver posted buffers, comes here too): over PCIeOE the next frames then find their
   * buffers at hand and go out as posted writes, instead of waiting two round trips (avail
   * ring, descriptors) whenever the held buffers run out. The read writes avail_event first
   * (event index), so the driver's next buffers ring the doorbell again.
   */
  private async receiveAll(q: QueueState, generation: number): Promise<void> {
    const c = this.counters;
    const ring = q.ring!;
    while (this.rxBacklog.length) {
      if (!ring.cached) {
        // The frames given buffers so far are not held behind the ring read.
        c.rxWaits++;
        await this.complete(q, generation);
        if (generation !== this.generation) return;
      }
      const chains = await ring.popBatch(this.rxBacklog.length);
      if (!chains.length || generation !== this.generation) return; // no buffer: the frames wait for the driver's next kick
      this.readAhead(ring, generation); // here too: under a steady stream this loop may not end for long
      const writes: Promise<number>[] = [];
      for (const chain of chains) {
        if (chain.readable.length) throw new VirtqueueError(`receive chain from ${chain.head} has a readable buffer`);
        const frame = this.rxBacklog.shift()!;
        if (chain.writableBytes < NET_HDR_SIZE + frame.length) {
          c.rxBufferTooSmall++;
          ring.push(chain.head, 0);
          continue;
        }
        // Not zeroed (a frame is under Buffer's pool size: a slice of a shared pool, no allocation of
        // its own): the header is written whole below, the frame after it.
        const packet = Buffer.allocUnsafe(NET_HDR_SIZE + frame.length).fill(0, 0, NET_HDR_SIZE);
        if (this.negotiated(NetFeature.GuestCsum) && l4ChecksumValid(frame)) {
          packet[0] = HdrFlag.DataValid;
          c.rxChecksumValid++;
        }
        packet[10] = 1; // num_buffers
        packet.set(frame, NET_HDR_SIZE);
        writes.push(settleLater(scatter(this.mem, chain.writable, packet)));
        ring.push(chain.head, packet.length);
        c.rxFrames++;
        c.rxBytes += frame.length;
      }
      await Promise.all(writes);
      if (generation !== this.generation) return;
    }
    this.readAhead(ring, generation);
  }

  /**
   * Reads receive buffers ahead (receiveAll) when fewer than half the ring's are held and no
   * read is on its way; frames that came meanwhile are then given them. Counts as queue work for idle().
   */
  private readAhead(ring: DeviceQueue, generation: number): void {
    if (!this.rxPrefetch || ring.prefetching || ring.cached >= ring.setup.size / 2) return;
    this.activeWorkers++;
    ring.prefetch().then(
      (found) => {
        if (found && this.rxBacklog.length && generation === this.generation) this.kick(RX_QUEUE);
      },
      (err: Error) => generation === this.generation && this.needsReset(err),
    ).finally(() => this.workerDone());
  }
}

/** A promise awaited later, maybe never (an earlier one failed): its rejection must not go unhandled meanwhile. */
function settleLater<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

function setU64(v: DataView, at: number, value: number): void {
  v.setUint32(at, value % 2 ** 32, true);
  v.setUint32(at + 4, Math.floor(value / 2 ** 32), true);
}

function getU64(v: DataView, at: number): number {
  return v.getUint32(at, true) + v.getUint32(at + 4, true) * 2 ** 32;
}

export function parseMac(s: string): Uint8Array {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(s)) throw new Error(`MAC "${s}": expected like 02:00:00:00:00:01`);
  return Uint8Array.from(s.split(':').map((h) => parseInt(h, 16)));
}

export function formatMac(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}
