// src/vfio-user — the vfio-user protocol: message codec (protocol.ts), parser, transport (unix
// sockets with fd passing), this server (sessions, DMA table, IRQs) and the client that tests
// and benchmarks share (client.ts). It may import src/common, src/pci and native/; it knows no
// device model and no fabric (src/direct-attach joins a PciFunction to it).
//
// vfio-user server: one listening socket per device, one client (session) at
// a time, any number of servers per process.
//
// Every command is validated; a bad one gets an error reply carrying an errno
// (or, with the no-reply flag, a log line) and the session goes on. Only a
// broken byte stream or a client that skips VERSION is dropped, with a log
// line. Nothing a client sends can throw out of the event loop.
//
// Commands are handled strictly in arrival order, even when the device
// answers asynchronously (a posted MMIO write must land before a later read).
// Replies to the server's own DMA_READ/DMA_WRITE requests bypass that queue:
// a device may be waiting for them while handling a command.
//
// What a client can make the server hold is bounded: commands waiting for
// their turn (maxQueuedCommands, maxQueuedBytes) and replies it does not read
// (the connection's send queue). A client past either bound is disconnected.
import { EventEmitter } from 'node:events';
import { native } from '../../native/index.ts';
import { OrderedQueue } from '../common/ordered-queue.ts';
import { DmaError, DmaTable, type DmaMessenger } from './dma.ts';
import { IrqTable, type IrqIndexDesc } from './irq.ts';
import type { Message } from './parser.ts';
import {
  Command, DEVICE_INFO_SIZE, DMA_UNMAP_SIZE, DeviceFlag, DmaRwLayout, DmaUnmapFlag, Errno, IRQ_INFO_SIZE, MsgFlag, ProtocolError,
  REGION_RW_SIZE, RegionFlag, commandName, decodeDeviceInfo, decodeDmaAccess, decodeDmaMap, decodeDmaUnmap, decodeIrqInfo, decodeIrqSet,
  decodeRegionAccess, decodeRegionInfo, decodeVersion, encodeDeviceInfo, encodeDmaAccess, encodeIrqInfo, encodeRegionAccess, errnoName,
  errorReply, isReply, regionInfoPayload, reply, request, versionPayload, type MmapArea,
} from './protocol.ts';
import { Connection, UnixListener } from './transport.ts';
import { type Logger, processLogger } from '../common/logger.ts';

export interface RegionDesc {
  /** Bytes; 0 = the region does not exist. */
  size: number;
  /** RegionFlag.Read / RegionFlag.Write. */
  flags: number;
  /** Offer (parts of) the region for mmap: QEMU then disables posted writes for the whole device. */
  mmap?: { fd: number; areas: MmapArea[] };
}

export interface SessionContext {
  /** Guest memory as the client mapped it. */
  readonly dma: DmaTable;
  /** Eventfds the client wired with SET_IRQS. */
  readonly irqs: IrqTable;
  readonly log: Logger;
}

/** What a vfio-user server serves. pci-adapter.ts builds one from a PciFunction. */
export interface VfioUserDevice {
  /** By region index (a PCI device has 9: BAR0-5, ROM, config, VGA). */
  readonly regions: readonly RegionDesc[];
  /** By IRQ index (a PCI device has 5: INTx, MSI, MSI-X, ERR, REQ). */
  readonly irqs: readonly IrqIndexDesc[];
  readonly canReset: boolean;
  /** `offset + count` is already checked against the region size. */
  regionRead(region: number, offset: number, count: number): Uint8Array | Promise<Uint8Array>;
  regionWrite(region: number, offset: number, data: Uint8Array): void | Promise<void>;
  reset(): void | Promise<void>;
  /** A client finished VERSION negotiation. */
  connected(ctx: SessionContext): void;
  /** The client went away; its DMA maps and eventfds are already gone. */
  disconnected(): void;
  /** SET_IRQS (de)assigned eventfds of an index. */
  irqWiringChanged?(index: number): void;
  /** SET_IRQS unmasked a vector (level-triggered sources re-fire). */
  irqUnmasked?(index: number, vector: number): void;
}

export interface ServerOptions {
  /** Unix socket path; a stale socket file there is replaced. */
  path: string;
  device: VfioUserDevice;
  /** For log lines. */
  name?: string;
  log?: Logger;
  /** Largest REGION_READ/WRITE and DMA transfer, advertised as max_data_xfer_size. */
  maxDataTransfer?: number;
  /** Fds the client may send per message, advertised as max_msg_fds. */
  maxMsgFds?: number;
  maxDmaMaps?: number;
  /** DMA_READ/WRITE data offset; the spec's (32) by default, which QEMU 11.1.3 uses. */
  dmaRwLayout?: DmaRwLayout;
  /** How long to wait for a DMA_READ/WRITE reply. */
  dmaTimeoutMs?: number;
  /** Commands that may wait behind the one being handled; a client that queues more is disconnected. */
  maxQueuedCommands?: number;
  /** Bytes those commands may hold. */
  maxQueuedBytes?: number;
  /** Reply bytes the client may leave unread before it is disconnected. */
  maxUnsentBytes?: number;
}

// QEMU keeps a few commands in flight (one per vCPU plus posted writes); these bounds are far above that.
const DEFAULTS = {
  maxDataTransfer: 1 << 20, maxMsgFds: 16, maxDmaMaps: 65535, dmaTimeoutMs: 5000, maxQueuedCommands: 4096, maxQueuedBytes: 64 << 20, maxUnsentBytes: 64 << 20,
};

/** A client violated the protocol badly enough that the session ends. */
class DropClient extends Error {}

export interface VfioUserServerEvents {
  connect: [];
  disconnect: [reason: string];
}

export class VfioUserServer extends EventEmitter<VfioUserServerEvents> {
  readonly path: string;
  readonly name: string;
  private readonly opts: Required<Omit<ServerOptions, 'name' | 'log'>>;
  private readonly log: Logger;
  private listener?: UnixListener;
  private current?: Session;

  constructor(options: ServerOptions) {
    super();
    this.path = options.path;
    this.name = options.name ?? options.path;
    const log = options.log ?? processLogger();
    this.log = (level, msg) => log(level, `vfio-user ${this.name}: ${msg}`);
    this.opts = { dmaRwLayout: DmaRwLayout.Spec, ...DEFAULTS, ...stripUndefined(options) } as Required<Omit<ServerOptions, 'name' | 'log'>>;
  }

  /** Binds and listens; throws (e.g. EADDRINUSE, ENOENT) if it cannot. */
  listen(): this {
    if (this.listener) return this;
    this.listener = new UnixListener(this.path, (fd) => this.accept(fd), (err) => this.log('error', `accept failed: ${err.message}`));
    this.log('info', `listening on ${this.path}`);
    return this;
  }

  get hasClient(): boolean {
    return this.current !== undefined;
  }

  /** Stops listening and drops the current client. */
  close(): void {
    this.listener?.close();
    this.listener = undefined;
    this.current?.close('server closing');
  }

  private accept(fd: number): void {
    if (this.current) {
      // A device has one owner (its DMA maps and eventfds are per client).
      this.log('warn', 'refusing a second client while one is connected');
      native.close(fd);
      return;
    }
    const session = new Session(fd, this.opts, this.log, (reason) => {
      if (this.current === session) this.current = undefined;
      this.emit('disconnect', reason);
    });
    this.current = session;
    this.log('info', 'client connected');
    this.emit('connect');
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

type Outcome = { payload?: Uint8Array; fds?: number[] } | void;

/** Fds a command may carry; anything more is refused with EINVAL. */
function maxFdsFor(command: number, maxMsgFds: number): number {
  if (command === Command.DmaMap) return 1;
  if (command === Command.SetIrqs) return maxMsgFds;
  return 0;
}

class Session {
  private readonly conn: Connection;
  private readonly device: VfioUserDevice;
  private readonly dma: DmaTable;
  private readonly irqs: IrqTable;
  private negotiated = false;
  /** Commands in arrival order: one whose handler is asynchronous holds back those after it. */
  private readonly queue = new OrderedQueue<Message>((m) => this.handleInOrder(m));
  /** Bytes of the messages in `queue`. */
  private queuedBytes = 0;
  private signalFailures = 0;
  private warnedUnsealed = false;
  private closed = false;
  /** The client's limits from VERSION. */
  private clientMaxTransfer = DEFAULTS.maxDataTransfer;
  private nextRequestId = 0;
  private readonly outstanding = new Map<number, { command: number; resolve(m: Message): void; reject(e: Error): void; timer: NodeJS.Timeout }>();

  constructor(
    fd: number,
    private readonly opts: Required<Omit<ServerOptions, 'name' | 'log'>>,
    private readonly log: Logger,
    private readonly onClosed: (reason: string) => void,
  ) {
    this.device = opts.device;
    const session = this;
    const messenger: DmaMessenger = {
      read: (iova, length) => this.dmaRequest(Command.DmaRead, iova, length).then((m) => this.dmaReadData(m, length)),
      write: async (iova, data) => {
        await this.dmaRequest(Command.DmaWrite, iova, data.length, data);
      },
      get maxTransfer() {
        return session.clientMaxTransfer;
      },
    };
    this.dma = new DmaTable(opts.maxDmaMaps, messenger);
    this.irqs = new IrqTable(this.device.irqs, {
      wiringChanged: (i) => this.device.irqWiringChanged?.(i),
      unmasked: (i, v) => this.device.irqUnmasked?.(i, v),
      signalFailed: (i, v, err) => {
        if (this.signalFailures++ === 0) this.log('warn', `IRQ index ${i} vector ${v}: eventfd write failed, interrupt lost (logged once per session): ${err.message}`);
      },
    });
    // Room for the largest transfer plus headers, and for VERSION's JSON.
    const maxMessage = Math.max(opts.maxDataTransfer + 64, 64 * 1024);
    this.conn = new Connection(fd, maxMessage, {
      message: (m) => this.onMessage(m),
      closed: (reason, error) => this.onConnectionClosed(reason, error),
    }, opts.maxUnsentBytes);
  }

  close(reason: string): void {
    this.conn.close(reason);
  }

  private onConnectionClosed(reason: string, error?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.log(error ? 'warn' : 'info', `client disconnected: ${reason}`);
    for (const m of this.queue.clear()) closeFds(m.fds);
    for (const [, o] of this.outstanding) {
      clearTimeout(o.timer);
      o.reject(new DmaError(`client disconnected before answering ${commandName(o.command)}`));
    }
    this.outstanding.clear();
    this.dma.clear();
    this.irqs.clear();
    if (this.negotiated) this.device.disconnected();
    this.onClosed(reason);
  }

  private onMessage(m: Message): void {
    if (isReply(m.header.flags)) return this.onReply(m);
    if (this.queue.length >= this.opts.maxQueuedCommands || this.queuedBytes + m.header.size > this.opts.maxQueuedBytes) {
      closeFds(m.fds);
      this.log('error', `dropping client: it floods the command queue (${this.queue.length} commands, ${this.queuedBytes} bytes waiting)`);
      this.conn.close('command queue flooded');
      return;
    }
    this.queuedBytes += m.header.size;
    this.queue.push(m);
  }

  private handleInOrder(m: Message): void | Promise<void> {
    this.queuedBytes -= m.header.size;
    let outcome: Outcome | Promise<Outcome>;
    try {
      outcome = this.handle(m);
    } catch (err) {
      this.fail(m, err);
      return;
    }
    if (outcome instanceof Promise) return outcome.then((o) => this.finish(m, o), (err) => this.fail(m, err));
    this.finish(m, outcome);
  }

  private finish(m: Message, outcome: Outcome): void {
    closeFds(m.fds);
    if (m.header.flags & MsgFlag.NoReply) return;
    const payload = outcome?.payload;
    this.conn.send(reply(m.header.id, m.header.command, payload?.length ?? 0, (_, b) => payload && b.set(payload)), outcome?.fds);
  }

  private fail(m: Message, err: unknown): void {
    closeFds(m.fds);
    const what = `${commandName(m.header.command)} id ${m.header.id}`;
    if (err instanceof DropClient) {
      this.log('error', `dropping client: ${what}: ${err.message}`);
      if (!(m.header.flags & MsgFlag.NoReply)) this.conn.send(errorReply(m.header.id, m.header.command, Errno.EINVAL));
      this.conn.close(err.message);
      return;
    }
    let errno: number = Errno.EIO;
    if (err instanceof ProtocolError) {
      errno = err.errno;
      this.log('warn', `${what} refused: ${err.message}`);
    } else if (err instanceof DmaError) {
      errno = Errno.EFAULT;
      this.log('warn', `${what}: ${err.message}`);
    } else {
      // A device model bug must not take the process (or other clients) down.
      this.log('error', `${what}: device error: ${(err as Error)?.stack ?? String(err)}`);
    }
    if (!(m.header.flags & MsgFlag.NoReply)) this.conn.send(errorReply(m.header.id, m.header.command, errno));
  }

  private handle(m: Message): Outcome | Promise<Outcome> {
    const { command, flags } = m.header;
    if ((flags & MsgFlag.TypeMask) !== MsgFlag.Command) throw new ProtocolError(Errno.EINVAL, `message type ${flags & MsgFlag.TypeMask} is neither command nor reply`);
    const maxFds = maxFdsFor(command, this.opts.maxMsgFds);
    if (m.fds.length > maxFds) throw new ProtocolError(Errno.EINVAL, `${m.fds.length} fd(s) sent, at most ${maxFds} allowed`);
    if (!this.negotiated && command !== Command.Version) throw new DropClient(`${commandName(command)} before VERSION`);
    const p = m.payload;
    switch (command) {
      case Command.Version:
        return this.version(p);
      case Command.DmaMap: {
        const args = decodeDmaMap(p);
        if (this.dma.map(args, m.fds.pop()) === 'pread' && !this.warnedUnsealed) {
          this.warnedUnsealed = true;
          this.log('warn', 'DMA_MAP of an fd not sealed against shrinking: that guest memory is reached with pread/pwrite (slower; QEMU\'s memory-backend-memfd seals by default)');
        }
        return;
      }
      case Command.DmaUnmap: {
        const args = decodeDmaUnmap(p);
        if (args.flags & DmaUnmapFlag.GetDirtyBitmap) throw new ProtocolError(Errno.ENOTSUP, 'dirty page tracking is not supported');
        if (args.flags & ~DmaUnmapFlag.All) throw new ProtocolError(Errno.EINVAL, `DMA_UNMAP flags 0x${args.flags.toString(16)} unknown`);
        this.dma.unmap(args.iova, args.size, (args.flags & DmaUnmapFlag.All) !== 0);
        return { payload: p.subarray(0, DMA_UNMAP_SIZE) }; // QEMU expects the request echoed
      }
      case Command.DeviceGetInfo: {
        decodeDeviceInfo(p);
        const info = {
          argsz: DEVICE_INFO_SIZE,
          flags: DeviceFlag.Pci | (this.device.canReset ? DeviceFlag.Reset : 0),
          numRegions: this.device.regions.length,
          numIrqs: this.device.irqs.length,
        };
        return { payload: payloadOf(DEVICE_INFO_SIZE, encodeDeviceInfo(info)) };
      }
      case Command.GetRegionInfo:
        return this.regionInfo(p);
      case Command.GetIrqInfo: {
        const q = decodeIrqInfo(p);
        const d = this.device.irqs[q.index];
        if (!d) throw new ProtocolError(Errno.EINVAL, `GET_IRQ_INFO: no IRQ index ${q.index}`);
        return { payload: payloadOf(IRQ_INFO_SIZE, encodeIrqInfo({ argsz: IRQ_INFO_SIZE, flags: d.flags, index: q.index, count: d.count })) };
      }
      case Command.SetIrqs:
        this.irqs.set(decodeIrqSet(p), m.fds);
        return;
      case Command.RegionRead:
        return this.regionRead(p);
      case Command.RegionWrite:
        return this.regionWrite(p);
      case Command.DeviceReset: {
        if (!this.device.canReset) throw new ProtocolError(Errno.ENOTSUP, 'device has no reset');
        const r = this.device.reset();
        return r instanceof Promise ? r.then(() => undefined) : undefined;
      }
      case Command.GetRegionIoFds:
      case Command.DirtyPages:
      case Command.RegionWriteMulti:
      case Command.DmaRead:
      case Command.DmaWrite:
        throw new ProtocolError(Errno.ENOTSUP, `${commandName(command)} is not supported by this server`);
      default:
        throw new ProtocolError(Errno.ENOSYS, `unknown command ${command}`);
    }
  }

  private version(p: Uint8Array): Outcome {
    if (this.negotiated) throw new ProtocolError(Errno.EINVAL, 'VERSION sent twice');
    let v;
    try {
      v = decodeVersion(p);
    } catch (err) {
      throw new DropClient((err as Error).message);
    }
    if (v.major !== 0) throw new DropClient(`client speaks major version ${v.major}, server only 0`);
    const caps = v.json['capabilities'];
    if (caps !== undefined) {
      if (caps === null || typeof caps !== 'object') throw new DropClient('VERSION: "capabilities" is not an object');
      const xfer = (caps as Record<string, unknown>)['max_data_xfer_size'];
      if (xfer !== undefined) {
        if (typeof xfer !== 'number' || !Number.isSafeInteger(xfer) || xfer < 4096) throw new DropClient(`VERSION: bad max_data_xfer_size ${JSON.stringify(xfer)}`);
        this.clientMaxTransfer = xfer;
      }
    }
    this.negotiated = true;
    this.device.connected({ dma: this.dma, irqs: this.irqs, log: this.log });
    const ours = {
      capabilities: {
        max_msg_fds: this.opts.maxMsgFds,
        max_data_xfer_size: this.opts.maxDataTransfer,
        max_dma_maps: this.opts.maxDmaMaps,
        pgsizes: 4096,
        // No "migration" (not supported) and no "write_multiple" (REGION_WRITE_MULTI not implemented).
      },
    };
    return { payload: versionPayload({ major: 0, minor: 0, json: ours }) };
  }

  private regionInfo(p: Uint8Array): Outcome {
    const q = decodeRegionInfo(p);
    const r = this.device.regions[q.index];
    if (!r) throw new ProtocolError(Errno.EINVAL, `GET_REGION_INFO: no region ${q.index} (device has ${this.device.regions.length})`);
    const areas = r.size > 0 ? r.mmap?.areas : undefined;
    const flags = r.size === 0 ? 0 : r.flags | (areas ? RegionFlag.Mmap : 0);
    const payload = regionInfoPayload({ flags, index: q.index, size: r.size, offset: 0 }, areas, q.argsz);
    // The fd goes with the full reply only; QEMU re-asks when argsz was short.
    const full = payload.length > 32 || !areas;
    return { payload, fds: areas && full && r.mmap ? [r.mmap.fd] : undefined };
  }

  private checkRegionAccess(region: number, offset: number, count: number, need: RegionFlag): void {
    const r = this.device.regions[region];
    if (!r || r.size === 0) throw new ProtocolError(Errno.EINVAL, `region ${region} does not exist`);
    if (!(r.flags & need)) throw new ProtocolError(Errno.EINVAL, `region ${region} is not ${need === RegionFlag.Read ? 'readable' : 'writable'}`);
    if (count > this.opts.maxDataTransfer) throw new ProtocolError(Errno.E2BIG, `${count} bytes exceed max_data_xfer_size ${this.opts.maxDataTransfer}`);
    if (offset + count > r.size) throw new ProtocolError(Errno.EINVAL, `region ${region}: [0x${offset.toString(16)}, +${count}) is beyond its 0x${r.size.toString(16)} bytes`);
  }

  private regionRead(p: Uint8Array): Outcome | Promise<Outcome> {
    const a = decodeRegionAccess(p, false);
    this.checkRegionAccess(a.region, a.offset, a.count, RegionFlag.Read);
    const toOutcome = (data: Uint8Array): Outcome => {
      if (data.length !== a.count) throw new Error(`device returned ${data.length} bytes for a ${a.count}-byte read`);
      const e = encodeRegionAccess({ ...a, data });
      return { payload: payloadOf(e.size, e.fill) };
    };
    const data = this.device.regionRead(a.region, a.offset, a.count);
    return data instanceof Promise ? data.then(toOutcome) : toOutcome(data);
  }

  private regionWrite(p: Uint8Array): Outcome | Promise<Outcome> {
    const a = decodeRegionAccess(p, true);
    this.checkRegionAccess(a.region, a.offset, a.count, RegionFlag.Write);
    const echo: Outcome = { payload: p.subarray(0, REGION_RW_SIZE) };
    const r = this.device.regionWrite(a.region, a.offset, a.data);
    return r instanceof Promise ? r.then(() => echo) : echo;
  }

  // ---- server -> client DMA ------------------------------------------------

  private dmaRequest(command: Command.DmaRead | Command.DmaWrite, iova: number, count: number, data?: Uint8Array): Promise<Message> {
    if (this.closed) return Promise.reject(new DmaError('client disconnected'));
    const id = this.nextRequestId;
    this.nextRequestId = (this.nextRequestId + 1) & 0xffff;
    const e = encodeDmaAccess(iova, count, data, this.opts.dmaRwLayout);
    return new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.outstanding.delete(id);
        reject(new DmaError(`${commandName(command)} 0x${iova.toString(16)}+${count}: no reply within ${this.opts.dmaTimeoutMs} ms`));
      }, this.opts.dmaTimeoutMs);
      this.outstanding.set(id, { command, resolve, reject, timer });
      this.conn.send(request(id, command, e.size, e.fill));
    });
  }

  private dmaReadData(m: Message, length: number): Uint8Array {
    const a = decodeDmaAccess(m.payload, this.opts.dmaRwLayout, true);
    if (a.count !== length) throw new DmaError(`DMA_READ reply has ${a.count} bytes, asked ${length}`);
    return a.data;
  }

  private onReply(m: Message): void {
    closeFds(m.fds);
    const o = this.outstanding.get(m.header.id);
    if (!o || o.command !== m.header.command) {
      this.log('warn', `ignoring unexpected reply id ${m.header.id} ${commandName(m.header.command)}`);
      return;
    }
    this.outstanding.delete(m.header.id);
    clearTimeout(o.timer);
    if (m.header.flags & MsgFlag.Error) o.reject(new DmaError(`${commandName(o.command)} failed in the client: ${errnoName(m.header.error)}`));
    else o.resolve(m);
  }
}

function payloadOf(size: number, fill: (v: DataView, b: Uint8Array) => void): Uint8Array {
  const b = new Uint8Array(size);
  fill(new DataView(b.buffer), b);
  return b;
}

function closeFds(fds: number[]): void {
  for (const fd of fds.splice(0)) {
    try {
      native.close(fd);
    } catch {
      // already closed by its owner
    }
  }
}
