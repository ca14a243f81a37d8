// A software virtio-net driver for unit tests and benchmarks: guest memory at
// bus addresses [0, size), the function's ports wired to it, and the steps the
// Linux virtio_pci (modern) and virtio_net drivers take — find the virtio
// capabilities, reset, negotiate features, lay out split rings (or packed ones when
// VIRTIO_F_RING_PACKED is negotiated), post receive buffers, transmit with a doorbell,
// reap the used ring.
import { GuestMemory, PAGE } from '../nvme/soft-host.ts';
import { CapId, Cfg, CommandBit } from '../../pci/config-space.ts';
import { NET_HDR_SIZE, NetBar, RX_QUEUE, TX_QUEUE, VirtioNet, type EthernetWire, type VirtioNetConfig } from './net-device.ts';
import { CfgType, Common, DeviceStatus, feature, TransportFeature } from './virtio-pci.ts';
import { DescFlag } from './virtqueue.ts';
import { availBits, EventFlag, usedBits, wrapOf } from './packed-queue.ts';

/** A wire in memory: what the device sent, and a way to hand it frames. */
export class MemoryWire implements EthernetWire {
  readonly sent: Uint8Array[] = [];
  private receive?: (frame: Uint8Array) => void;
  transmit(frame: Uint8Array): void {
    this.sent.push(frame.slice());
  }
  attach(receive: (frame: Uint8Array) => void): void {
    this.receive = receive;
  }
  deliver(frame: Uint8Array): void {
    this.receive!(frame);
  }
}

export interface SoftQueue {
  size: number;
  /** The descriptor table (split) or ring (packed). */
  desc: number;
  /** The avail ring (split) or the driver event suppression structure (packed). */
  avail: number;
  /** The used ring (split) or the device event suppression structure (packed). */
  used: number;
  /** Next avail index the driver publishes (packed: the next ring position, counted without wrapping). */
  availIdx: number;
  /** Next used index the driver has not read (packed: the next position a used descriptor goes to). */
  lastUsed: number;
  /** Next free descriptor (descriptors are handed out round-robin: the tests keep few in flight). */
  nextDesc: number;
  /** Packed rings: the descriptors each buffer id in flight took (a used descriptor skips as many). */
  packed?: Map<number, number>;
}

export interface UsedElem {
  id: number;
  len: number;
}

export interface SegmentSpec {
  addr: number;
  len: number;
  write?: boolean;
}

export class SoftVirtioNetDriver {
  readonly mem: GuestMemory;
  readonly wire = new MemoryWire();
  readonly dev: VirtioNet;
  readonly irqs: number[] = [];
  readonly intx: boolean[] = [];
  readonly logs: string[] = [];
  readonly queues: SoftQueue[] = [];
  /** Where each virtio structure is in BAR0, as its capability says. */
  readonly regions = new Map<CfgType, { offset: number; length: number; multiplier: number }>();
  private brk = 16 * PAGE;
  /** VIRTIO_F_RING_PACKED was negotiated by the last init(). */
  packedRings = false;

  /** `memory`: guest memory of that size, or one the test made (one that holds DMA, say). */
  constructor(cfg: Partial<Omit<VirtioNetConfig, 'wire'>> = {}, memory: number | GuestMemory = 4 << 20) {
    this.mem = typeof memory === 'number' ? new GuestMemory(memory) : memory;
    // Everything the model can offer, unless the test says otherwise.
    this.dev = new VirtioNet({ mac: '02:00:00:00:00:01', log: (l, m) => this.logs.push(`${l}: ${m}`), eventIdx: true, csum: true, ...cfg, wire: this.wire });
    this.dev.attach({ dma: this.mem, irq: { msix: (v) => this.irqs.push(v), intx: (level) => this.intx.push(level) } });
    this.dev.configWrite(Cfg.Command, new Uint8Array([CommandBit.Memory | CommandBit.BusMaster, 0]));
    this.dev.setMsixEnabled(true);
    this.findCapabilities();
  }

  alloc(bytes: number): number {
    const at = this.brk;
    this.brk += Math.ceil(bytes / PAGE) * PAGE;
    if (this.brk > this.mem.size) throw new Error('test guest memory exhausted');
    return at;
  }

  /** Walks the capability list as virtio_pci_modern does. */
  private findCapabilities(): void {
    const cs = this.dev.config;
    for (let at = cs.get8(Cfg.CapabilitiesPtr); at; at = cs.get8(at + 1)) {
      if (cs.get8(at) !== CapId.VendorSpecific) continue;
      if (cs.get8(at + 4) !== 0) throw new Error('virtio structure outside BAR0');
      this.regions.set(cs.get8(at + 3), { offset: cs.get32(at + 8), length: cs.get32(at + 12), multiplier: cs.get8(at + 3) === CfgType.Notify ? cs.get32(at + 16) : 0 });
    }
  }

  private at(type: CfgType, off: number): number {
    const r = this.regions.get(type);
    if (!r) throw new Error(`no virtio capability of type ${type}`);
    return r.offset + off;
  }

  async read(type: CfgType, off: number, size: 1 | 2 | 4): Promise<number> {
    const b = await this.dev.barRead(0, this.at(type, off), size);
    const v = new DataView(b.buffer, b.byteOffset, size);
    return size === 1 ? v.getUint8(0) : size === 2 ? v.getUint16(0, true) : v.getUint32(0, true);
  }

  async write(type: CfgType, off: number, size: 1 | 2 | 4, value: number): Promise<void> {
    const b = new Uint8Array(size);
    const v = new DataView(b.buffer);
    if (size === 1) v.setUint8(0, value);
    else if (size === 2) v.setUint16(0, value, true);
    else v.setUint32(0, value >>> 0, true);
    await this.dev.barWrite(0, this.at(type, off), b);
  }

  common(off: Common, size: 1 | 2 | 4): Promise<number> {
    return this.read(CfgType.Common, off, size);
  }

  setCommon(off: Common, size: 1 | 2 | 4, value: number): Promise<void> {
    return this.write(CfgType.Common, off, size, value);
  }

  async status(): Promise<number> {
    return this.common(Common.DeviceStatus, 1);
  }

  async deviceFeatures(): Promise<bigint> {
    await this.setCommon(Common.DeviceFeatureSelect, 4, 0);
    const lo = await this.common(Common.DeviceFeature, 4);
    await this.setCommon(Common.DeviceFeatureSelect, 4, 1);
    const hi = await this.common(Common.DeviceFeature, 4);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** Reset, negotiate `features` (default: all offered), set up both queues, DRIVER_OK. Returns the status read back. */
  async init(o: { features?: bigint; queueSize?: number; vectors?: boolean; txRing?: { desc: number; avail: number; used: number } } = {}): Promise<number> {
    await this.setCommon(Common.DeviceStatus, 1, 0);
    await this.setCommon(Common.DeviceStatus, 1, DeviceStatus.Acknowledge);
    await this.setCommon(Common.DeviceStatus, 1, DeviceStatus.Acknowledge | DeviceStatus.Driver);
    const features = o.features ?? (await this.deviceFeatures());
    for (const sel of [0, 1]) {
      await this.setCommon(Common.DriverFeatureSelect, 4, sel);
      await this.setCommon(Common.DriverFeature, 4, Number((features >> BigInt(32 * sel)) & 0xffffffffn));
    }
    let s = DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.FeaturesOk;
    await this.setCommon(Common.DeviceStatus, 1, s);
    if (!((await this.status()) & DeviceStatus.FeaturesOk)) return this.status();
    if (o.vectors ?? true) await this.setCommon(Common.ConfigMsixVector, 2, 0);
    this.packedRings = (features & feature(TransportFeature.RingPacked)) !== 0n;
    this.queues.length = 0;
    for (const n of [RX_QUEUE, TX_QUEUE]) {
      await this.setCommon(Common.QueueSelect, 2, n);
      const size = o.queueSize ?? (await this.common(Common.QueueSize, 2));
      this.queues[n] = await this.setUpQueue(size, o.vectors ?? true ? n + 1 : 0xffff, n === TX_QUEUE ? o.txRing : undefined);
    }
    s |= DeviceStatus.DriverOk;
    await this.setCommon(Common.DeviceStatus, 1, s);
    return this.status();
  }

  /** Programs the selected queue: size, ring addresses (two 32-bit halves, as Linux writes them), vector, enable. */
  async setUpQueue(size: number, vector: number, where?: { desc: number; avail: number; used: number }): Promise<SoftQueue> {
    const packed = this.packedRings;
    const q: SoftQueue = {
      size,
      desc: where?.desc ?? this.alloc(16 * size),
      avail: where?.avail ?? this.alloc(packed ? 4 : 6 + 2 * size),
      used: where?.used ?? this.alloc(packed ? 4 : 6 + 8 * size),
      availIdx: 0,
      lastUsed: 0,
      nextDesc: 0,
      ...(packed ? { packed: new Map<number, number>() } : {}),
    };
    if (packed) {
      // Fresh memory for the rings, as a driver allocates it: no descriptor looks available or used.
      this.mem.bytes.fill(0, q.desc, q.desc + 16 * size);
      this.mem.view.setUint32(q.avail, 0, true);
    }
    await this.setCommon(Common.QueueSize, 2, size);
    for (const [field, addr] of [[Common.QueueDesc, q.desc], [Common.QueueDriver, q.avail], [Common.QueueDevice, q.used]] as const) {
      await this.setCommon(field, 4, addr % 2 ** 32);
      await this.setCommon(field + 4, 4, Math.floor(addr / 2 ** 32));
    }
    await this.setCommon(Common.QueueMsixVector, 2, vector);
    await this.setCommon(Common.QueueEnable, 2, 1);
    return q;
  }

  writeDesc(q: SoftQueue, i: number, addr: number, len: number, flags: number, next: number): void {
    const at = q.desc + 16 * i;
    this.mem.u64(at, addr);
    this.mem.view.setUint32(at + 8, len, true);
    this.mem.view.setUint16(at + 12, flags, true);
    this.mem.view.setUint16(at + 14, next, true);
  }

  /** A packed ring's descriptor at slot `i`. */
  writePackedDesc(q: SoftQueue, i: number, addr: number, len: number, id: number, flags: number): void {
    const at = q.desc + 16 * i;
    this.mem.u64(at, addr);
    this.mem.view.setUint32(at + 8, len, true);
    this.mem.view.setUint16(at + 12, id, true);
    this.mem.view.setUint16(at + 14, flags, true);
  }

  /** Writes a chain into the next free descriptors and makes it available; returns its head (packed: its buffer id). */
  addChain(q: SoftQueue, segs: readonly SegmentSpec[]): number {
    if (q.packed) return this.addPackedChain(q, segs);
    const ids = segs.map((_, k) => (q.nextDesc + k) % q.size);
    q.nextDesc = (q.nextDesc + segs.length) % q.size;
    segs.forEach((s, k) => this.writeDesc(q, ids[k]!, s.addr, s.len, (s.write ? DescFlag.Write : 0) | (k + 1 < segs.length ? DescFlag.Next : 0), ids[k + 1] ?? 0));
    this.makeAvailable(q, ids[0]!);
    return ids[0]!;
  }

  /**
   * A packed ring's chain: consecutive positions from the next one, each descriptor flagged
   * available for its own lap, the buffer id (the head's slot, free while the chain is in
   * flight) in every descriptor as Linux writes it. (Linux writes the head's flags last; here the
   * device cannot run between these writes.)
   */
  private addPackedChain(q: SoftQueue, segs: readonly SegmentSpec[]): number {
    const p = q.availIdx;
    const id = p % q.size;
    const flags = (k: number) => availBits(wrapOf(p + k, q.size)) | (segs[k]!.write ? DescFlag.Write : 0) | (k + 1 < segs.length ? DescFlag.Next : 0);
    segs.forEach((s, k) => this.writePackedDesc(q, (p + k) % q.size, s.addr, s.len, id, flags(k)));
    q.packed!.set(id, segs.length);
    q.availIdx = p + segs.length;
    return id;
  }

  /** Puts `head` in the avail ring and publishes the new index. */
  makeAvailable(q: SoftQueue, head: number): void {
    this.mem.view.setUint16(q.avail + 4 + 2 * (q.availIdx % q.size), head, true);
    q.availIdx = (q.availIdx + 1) & 0xffff;
    this.mem.view.setUint16(q.avail + 2, q.availIdx, true);
  }

  /** The split ring's avail flags (NO_INTERRUPT 1), or a packed ring's driver event flags (DISABLE 1, DESC 2). */
  setAvailFlags(q: SoftQueue, flags: number): void {
    this.mem.view.setUint16(q.packed ? q.avail + 2 : q.avail, flags, true);
  }

  /** A packed ring's driver event structure: interrupt when the used descriptor at position `at` is written. */
  setUsedEvent(q: SoftQueue, at: number): void {
    this.mem.view.setUint16(q.avail, (at % q.size) | (wrapOf(at, q.size) << 15), true);
    this.mem.view.setUint16(q.avail + 2, EventFlag.Desc, true);
  }

  /** The doorbell: queue n's notify address. */
  async kick(n: number): Promise<void> {
    const r = this.regions.get(CfgType.Notify)!;
    await this.setCommon(Common.QueueSelect, 2, n);
    const off = await this.common(Common.QueueNotifyOff, 2);
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, n, true);
    await this.dev.barWrite(0, r.offset + off * r.multiplier, b);
  }

  /** Used elements the device has published since the last call. */
  reap(q: SoftQueue): UsedElem[] {
    if (q.packed) return this.reapPacked(q);
    const out: UsedElem[] = [];
    const idx = this.mem.view.getUint16(q.used + 2, true);
    while (q.lastUsed !== idx) {
      const at = q.used + 4 + 8 * (q.lastUsed % q.size);
      out.push({ id: this.mem.view.getUint32(at, true), len: this.mem.view.getUint32(at + 4, true) });
      q.lastUsed = (q.lastUsed + 1) & 0xffff;
    }
    return out;
  }

  /** A packed ring's used descriptors from the next used position on, each skipping its chain. */
  private reapPacked(q: SoftQueue): UsedElem[] {
    const out: UsedElem[] = [];
    for (;;) {
      const at = q.desc + 16 * (q.lastUsed % q.size);
      const flags = this.mem.view.getUint16(at + 14, true);
      const wrap = wrapOf(q.lastUsed, q.size);
      if ((flags & usedBits(1)) !== usedBits(wrap)) return out;
      const id = this.mem.view.getUint16(at + 12, true);
      const n = q.packed!.get(id);
      if (n === undefined) throw new Error(`the device gave back buffer id ${id}, not in flight`);
      q.packed!.delete(id);
      out.push({ id, len: this.mem.view.getUint32(at + 8, true) });
      q.lastUsed += n;
    }
  }

  /** Posts `count` receive buffers of `bytes` each (header included), one descriptor each; returns their addresses by head. */
  postRx(count: number, bytes = NET_HDR_SIZE + 1518): Map<number, number> {
    const q = this.queues[RX_QUEUE]!;
    const bufs = new Map<number, number>();
    for (let i = 0; i < count; i++) {
      const addr = this.alloc(bytes);
      bufs.set(this.addChain(q, [{ addr, len: bytes, write: true }]), addr);
    }
    return bufs;
  }

  /** Transmits one frame: a zero header and the frame, split at `splitAt` into two descriptors if given. */
  async send(frame: Uint8Array, splitAt?: number): Promise<number> {
    const q = this.queues[TX_QUEUE]!;
    const addr = this.alloc(NET_HDR_SIZE + frame.length);
    this.mem.bytes.fill(0, addr, addr + NET_HDR_SIZE);
    this.mem.bytes.set(frame, addr + NET_HDR_SIZE);
    const total = NET_HDR_SIZE + frame.length;
    const segs = splitAt === undefined ? [{ addr, len: total }] : [{ addr, len: splitAt }, { addr: addr + splitAt, len: total - splitAt }];
    const head = this.addChain(q, segs);
    await this.kick(TX_QUEUE);
    return head;
  }
}
