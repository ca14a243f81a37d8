// A small vfio-user client for tests and benchmarks: the second
// implementation the server is checked against (QEMU being the first).
// It speaks over a real unix socket with real fd passing, can send
// malformed input on purpose, and answers the server's DMA_READ/DMA_WRITE
// from its own memory for regions mapped without an fd.
import { native } from '../../native/index.ts';
import type { Message } from './parser.ts';
import {
  Command, DEVICE_INFO_SIZE, DmaRwLayout, HEADER_SIZE, IRQ_INFO_SIZE, MsgFlag, REGION_INFO_SIZE, decodeDeviceInfo, decodeDmaAccess,
  decodeIrqInfo, decodeRegionAccess, decodeRegionInfo, decodeSparseMmap, decodeVersion, encodeDmaMap, encodeDmaUnmap, encodeIrqSet,
  encodeRegionAccess, errnoName, isReply, reply, request, errorReply, versionPayload, type DeviceInfo, type IrqInfo, type IrqSet,
  type MmapArea, type RegionInfo, type Version, Errno,
} from './protocol.ts';
import { Connection } from './transport.ts';

export class ClientError extends Error {
  constructor(readonly command: number, readonly errno: number) {
    super(`command ${command} failed: ${errnoName(errno)}`);
  }
}

/** QEMU's default capabilities, as sent by QEMU 11 (see the design trace). */
export const QEMU_CAPS = {
  capabilities: { pgsizes: 4096, max_msg_fds: 16, max_dma_maps: 65535, max_data_xfer_size: 1048576, migration: { max_bitmap_size: 268435456, pgsize: 4096 }, write_multiple: true },
};

export class VfioUserClient {
  private readonly conn: Connection;
  private nextId = 0;
  private readonly waiting = new Map<number, (m: Message) => void>();
  /** Memory the client serves to DMA_READ/DMA_WRITE (regions mapped without fd). */
  readonly memory = new Map<number, Uint8Array>();
  /** Server-initiated requests seen, for assertions. */
  readonly serverRequests: Message[] = [];
  /** Replies that answer nothing this client is waiting for (e.g. to a NO_REPLY command), for assertions. */
  readonly strayReplies: Message[] = [];
  readonly closed: Promise<string>;
  private closedResolve!: (reason: string) => void;

  constructor(path: string, private readonly layout = DmaRwLayout.Spec) {
    this.closed = new Promise((r) => (this.closedResolve = r));
    const fd = native.unixConnect(path);
    this.conn = new Connection(fd, 2 << 20, {
      message: (m) => this.onMessage(m),
      closed: (reason) => {
        for (const [, w] of this.waiting) w({ header: { id: -1, command: -1, size: 0, flags: -1, error: 0 }, payload: new Uint8Array(), fds: [] });
        this.closedResolve(reason);
      },
    });
  }

  get isOpen(): boolean {
    return this.conn.isOpen;
  }

  close(): void {
    this.conn.close();
  }

  /** Raw bytes, for malformed input. */
  sendRaw(bytes: Uint8Array, fds: number[] = []): void {
    this.conn.send(bytes, fds);
  }

  /** Bytes sent that the server has not read yet: a test waits for 0 to know the server saw them. */
  get unreadByServer(): number {
    return native.unsentBytes(this.conn.fd);
  }

  /** Sends a command and resolves with the raw reply (error replies included). */
  call(command: number, payloadSize: number, fill?: (v: DataView, b: Uint8Array) => void, fds: number[] = [], flags = 0): Promise<Message> {
    const id = this.nextId++ & 0xffff;
    const msg = request(id, command, payloadSize, fill, flags);
    return this.callRaw(id, msg, fds);
  }

  callRaw(id: number, msg: Uint8Array, fds: number[] = []): Promise<Message> {
    const p = new Promise<Message>((resolve, reject) => {
      this.waiting.set(id, (m) => (m.header.flags === -1 ? reject(new Error('connection closed before the reply')) : resolve(m)));
    });
    this.conn.send(msg, fds);
    return p;
  }

  /** Sends with the no-reply flag; nothing comes back. */
  post(command: number, payloadSize: number, fill?: (v: DataView, b: Uint8Array) => void): void {
    this.conn.send(request(this.nextId++ & 0xffff, command, payloadSize, fill, MsgFlag.NoReply));
  }

  async ok(command: number, payloadSize: number, fill?: (v: DataView, b: Uint8Array) => void, fds: number[] = []): Promise<Message> {
    const m = await this.call(command, payloadSize, fill, fds);
    if (m.header.flags & MsgFlag.Error) throw new ClientError(command, m.header.error);
    if (m.header.command !== command) throw new Error(`reply for command ${m.header.command}, expected ${command}`);
    return m;
  }

  // ---- typed helpers ----

  async version(json: Record<string, unknown> = QEMU_CAPS): Promise<Version> {
    const p = versionPayload({ major: 0, minor: 0, json });
    const m = await this.ok(Command.Version, p.length, (_, b) => b.set(p));
    return decodeVersion(m.payload);
  }

  async dmaMap(iova: number, size: number, opts: { fd?: number; offset?: number; flags?: number } = {}): Promise<void> {
    await this.ok(Command.DmaMap, 32, encodeDmaMap({ flags: opts.flags ?? 3, offset: opts.offset ?? 0, iova, size }), opts.fd === undefined ? [] : [opts.fd]);
  }

  async dmaUnmap(iova: number, size: number, flags = 0): Promise<Message> {
    return this.ok(Command.DmaUnmap, 24, encodeDmaUnmap({ flags, iova, size }));
  }

  async deviceInfo(argsz = DEVICE_INFO_SIZE): Promise<DeviceInfo> {
    const m = await this.ok(Command.DeviceGetInfo, DEVICE_INFO_SIZE, (v) => v.setUint32(0, argsz, true));
    return decodeDeviceInfo(m.payload);
  }

  async regionInfo(index: number, argsz = REGION_INFO_SIZE): Promise<{ info: RegionInfo; areas: MmapArea[]; fds: number[] }> {
    const m = await this.ok(Command.GetRegionInfo, REGION_INFO_SIZE, (v) => {
      v.setUint32(0, argsz, true);
      v.setUint32(8, index, true);
    });
    // A reply struct's argsz is the size needed, possibly more than was sent.
    const v = new DataView(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength);
    const info: RegionInfo = { argsz: v.getUint32(0, true), flags: v.getUint32(4, true), index: v.getUint32(8, true), capOffset: v.getUint32(12, true), size: Number(v.getBigUint64(16, true)), offset: Number(v.getBigUint64(24, true)) };
    return { info, areas: decodeSparseMmap(m.payload, info), fds: m.fds };
  }

  async irqInfo(index: number): Promise<IrqInfo> {
    const m = await this.ok(Command.GetIrqInfo, IRQ_INFO_SIZE, (v) => {
      v.setUint32(0, IRQ_INFO_SIZE, true);
      v.setUint32(8, index, true);
    });
    return decodeIrqInfo(m.payload);
  }

  async setIrqs(s: Omit<IrqSet, 'argsz'>, fds: number[] = []): Promise<void> {
    const e = encodeIrqSet(s);
    await this.ok(Command.SetIrqs, e.size, e.fill, fds);
  }

  async regionRead(region: number, offset: number, count: number): Promise<Uint8Array> {
    const e = encodeRegionAccess({ offset, region, count });
    const m = await this.ok(Command.RegionRead, e.size, e.fill);
    return decodeRegionAccess(m.payload, true).data;
  }

  async regionWrite(region: number, offset: number, data: Uint8Array): Promise<void> {
    const e = encodeRegionAccess({ offset, region, count: data.length, data });
    await this.ok(Command.RegionWrite, e.size, e.fill);
  }

  postRegionWrite(region: number, offset: number, data: Uint8Array): void {
    const e = encodeRegionAccess({ offset, region, count: data.length, data });
    this.post(Command.RegionWrite, e.size, e.fill);
  }

  async read32(region: number, offset: number): Promise<number> {
    const d = await this.regionRead(region, offset, 4);
    return new DataView(d.buffer, d.byteOffset).getUint32(0, true);
  }

  async write32(region: number, offset: number, value: number): Promise<void> {
    const d = new Uint8Array(4);
    new DataView(d.buffer).setUint32(0, value >>> 0, true);
    await this.regionWrite(region, offset, d);
  }

  async reset(): Promise<void> {
    await this.ok(Command.DeviceReset, 0);
  }

  // ---- incoming ----

  private onMessage(m: Message): void {
    if (isReply(m.header.flags)) {
      const w = this.waiting.get(m.header.id);
      this.waiting.delete(m.header.id);
      if (w) w(m);
      else this.strayReplies.push(m);
      return;
    }
    this.serverRequests.push(m);
    this.serveDma(m);
  }

  /** Answers DMA_READ/DMA_WRITE from `memory`, as QEMU does for non-shared RAM. */
  private serveDma(m: Message): void {
    const { id, command } = m.header;
    if (command !== Command.DmaRead && command !== Command.DmaWrite) {
      this.conn.send(errorReply(id, command, Errno.ENOSYS));
      return;
    }
    const a = decodeDmaAccess(m.payload, this.layout, command === Command.DmaWrite);
    const mem = this.find(a.address, a.count);
    if (!mem) {
      this.conn.send(errorReply(id, command, Errno.EFAULT));
      return;
    }
    if (command === Command.DmaWrite) {
      mem.set(a.data);
      this.conn.send(reply(id, command, 0));
      return;
    }
    // QEMU's reply: the request fields, then data at the layout's offset, padded to count + 32.
    const prefix = this.layout - HEADER_SIZE;
    this.conn.send(reply(id, command, 16 + a.count, (_, b) => {
      b.set(m.payload.subarray(0, 16));
      b.set(mem, prefix);
    }));
  }

  private find(addr: number, count: number): Uint8Array | undefined {
    for (const [base, mem] of this.memory) {
      if (addr >= base && addr + count <= base + mem.length) return mem.subarray(addr - base, addr - base + count);
    }
    return undefined;
  }
}

/** Resolves on the next signal of an eventfd (and consumes it). */
export function waitEventfd(fd: number, timeoutMs = 2000): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      poll.close();
      reject(new Error(`eventfd ${fd} not signalled within ${timeoutMs} ms`));
    }, timeoutMs);
    const poll = new native.Poll(fd, () => {
      const v = native.eventfdRead(fd);
      if (v === null) return;
      clearTimeout(timer);
      poll.close();
      resolve(v);
    });
    poll.start(1);
  });
}
