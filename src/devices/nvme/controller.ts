// src/devices/nvme — the NVMe 1.4 controller model: registers, queues, admin and I/O
// commands, namespaces on files, and a soft host for tests. It may import src/common and
// src/pci only: a device knows no transport (npm run deps).
//
// The NVMe 1.4 controller as a PCI Express function (class 0x010802): BAR0
// holds the registers (0x000), the doorbells (0x1000) and the MSI-X table
// and PBA (0x2000, 0x3000; QEMU emulates the table, Linux maps it). Nothing here
// knows the transport: DMA and interrupts go through PciFunction's ports.
//
// Data path: a tail doorbell starts a fetch of every new entry of that SQ in
// one DMA read; each command then runs on its own (async file I/O), so a
// queue has as many commands in flight as the host submitted. Completion
// entries that come together share one write per cache line (cqe-writer.ts),
// as hardware posts them; the DMA port lands a line in ascending dword order,
// so each phase tag (DW3) shows after the rest of its entry. Interrupts are sent
// once per event-loop turn per vector, not once per completion, and held
// longer under Interrupt Coalescing (interrupts.ts).
import { PciFunction } from '../../pci/function.ts';
import type { Logger } from '../../common/logger.ts';
import { limitedLogger } from '../../common/log-limiter.ts';
import { executeAdmin, Features, type AdminHost, type ErrorRecord } from './admin.ts';
import { ERROR_LOG_ENTRIES } from './identify.ts';
import type { ControllerIdentity } from './identify.ts';
import { CqeWriter } from './cqe-writer.ts';
import { aggregation, InterruptCoalescer } from './interrupts.ts';
import { executeIo, type IoHost } from './io.ts';
import { Namespace, type NamespaceConfig } from './namespace.ts';
import type { HostMemory } from './prp.ts';
import { CompletionQueue, CQE_SIZE, encodeCqe, SQE_SIZE, Sqe, SubmissionQueue, type Completion } from './queues.ts';
import { CC, CcBit, CstsBit, LIMITS, Reg, RegisterFile, Shst } from './registers.ts';
import { NvmeError, Status } from './status.ts';

/** PCI IDs: 1234 is the vendor id of QEMU's test devices; no Linux quirk or other driver matches 1234:4e56 ("NV"). */
export const NVME_VENDOR_ID = 0x1234;
export const NVME_DEVICE_ID = 0x4e56;
/** Mass storage, non-volatile memory controller, NVM Express I/O controller. */
export const NVME_CLASS = 0x010802;
/** One vector for the admin queue plus one per I/O queue (16 here, >= vCPUs + 1). */
export const NVME_MSIX_VECTORS = LIMITS.ioQueues + 1;
/** MSI asks for a power of two (at most 32): the MSI-X count rounded up. */
export const NVME_MSI_VECTORS = Math.min(32, 2 ** Math.ceil(Math.log2(NVME_MSIX_VECTORS)));
const BAR0_SIZE = 16 * 1024;
const MSIX_TABLE = 0x2000;
const MSIX_PBA = 0x3000;

export interface NvmeControllerConfig {
  /** Unique per controller: Linux refuses a second controller with the same serial and subsystem NQN. */
  serial: string;
  /** Default: derived from the serial. */
  subnqn?: string;
  model?: string;
  firmware?: string;
  cntlid?: number;
  namespaces: Omit<NamespaceConfig, 'nsid'>[];
  log?: Logger;
}

/** A doorbell value as the 32-bit little-endian word of a shadow doorbell or event index. */
const doorbellWord = (value: number) => new Uint8Array([value & 0xff, (value >>> 8) & 0xff, 0, 0]);

export class NvmeController extends PciFunction implements AdminHost, IoHost {
  readonly identity: ControllerIdentity;
  readonly namespaces = new Map<number, Namespace>();
  readonly sqs = new Map<number, SubmissionQueue>();
  readonly cqs = new Map<number, CompletionQueue>();
  readonly msixVectors = NVME_MSIX_VECTORS;
  readonly mem: HostMemory = {
    dmaRead: (addr, length) => this.dmaRead(addr, length),
    dmaWrite: (addr, data) => this.dmaWrite(addr, data),
    dmaReadInto: (segments, into) => this.dmaReadInto(segments, into),
  };
  features = new Features();
  aerCount = 0;
  pageSize = 4096;
  readonly unsafeShutdowns = 0;
  readonly errors: ErrorRecord[] = [];
  private errorCount = 0;
  private readonly regs = new RegisterFile();
  private readonly created = Date.now();
  /** Bumped by every controller reset: work started before it must not touch the new state. */
  private generation = 0;
  private readonly log: Logger;
  /** MSI-X: one per vector per event-loop turn, held longer under Interrupt Coalescing. */
  readonly interrupts = new InterruptCoalescer(
    (v) => this.interrupt(v),
    (v) => (v === 0 || this.features.vectorConfig.get(v) ? undefined : aggregation(this.features.interruptCoalescing)),
  );
  /** Completion entries, a cache line per write where completions come together. */
  readonly cqes = new CqeWriter((addr, data) => this.dmaWrite(addr, data));
  /** Settles when a shutdown (CC.SHN) has flushed everything. */
  shutdownDone: Promise<void> = Promise.resolve();
  /** Doorbell Buffer Config: bus addresses of the shadow doorbells and event indexes (I/O queues only). */
  private dbbuf?: { shadow: number; eventIdx: number };

  constructor(cfg: NvmeControllerConfig) {
    super({
      vendorId: NVME_VENDOR_ID,
      deviceId: NVME_DEVICE_ID,
      classCode: NVME_CLASS,
      revision: 1,
      interruptPin: 1,
      bars: [{ size: BAR0_SIZE, kind: 'mem64' }],
      msix: { vectors: NVME_MSIX_VECTORS, bar: 0, tableOffset: MSIX_TABLE, pbaOffset: MSIX_PBA },
      // MSI as well, for hosts that hide MSI-X (the HI does for hot-plugged functions:
      // QEMU 11.1.3 aborts removing a vfio-user-pci with MSI-X, see src/hi/hotplug-control.ts).
      msi: { vectors: NVME_MSI_VECTORS, perVectorMask: true },
    });
    if (!/^[\x20-\x7e]{1,20}$/.test(cfg.serial)) throw new Error(`serial "${cfg.serial}": 1-20 printable ASCII characters`);
    cfg.namespaces.forEach((n, i) => this.namespaces.set(i + 1, new Namespace({ ...n, nsid: i + 1 })));
    this.identity = {
      pciVendorId: NVME_VENDOR_ID,
      subsystemVendorId: NVME_VENDOR_ID,
      serial: cfg.serial,
      model: cfg.model ?? 'PCIeOE NVMe model',
      firmware: cfg.firmware ?? '1.0',
      subnqn: cfg.subnqn ?? `nqn.2026-11.org.pcieoe:nvme:${cfg.serial}`,
      cntlid: cfg.cntlid ?? 1,
      nn: this.namespaces.size,
    };
    // The host decides how often it enables, resets, shuts down or fails commands: a hostile one
    // must not flood the log (logs live in RAM), so a few lines a second per level; failed
    // commands are counted in the Error Information log page all the same.
    this.log = cfg.log ? limitedLogger(cfg.log) : () => {};
  }

  /** Opens (creating) the namespace files; call before serving. */
  async open(): Promise<void> {
    await Promise.all([...this.namespaces.values()].map((ns) => ns.open()));
  }

  /** Flushes and closes the namespace files (server shutdown). */
  async close(): Promise<void> {
    this.generation++;
    await this.shutdownDone;
    await Promise.all([...this.namespaces.values()].map((ns) => ns.close()));
  }

  get powerOnHours(): number {
    return Math.floor((Date.now() - this.created) / 3_600_000);
  }

  get ready(): boolean {
    return (this.regs.csts & CstsBit.Ready) !== 0;
  }

  get fatal(): boolean {
    return (this.regs.csts & CstsBit.Fatal) !== 0;
  }

  /**
   * The pages may hold values of an earlier controller: a host may keep them
   * across a controller reset without clearing them (Linux did before 5.8),
   * and if its shadow tails ran on past the event indexes the old controller
   * left (a controller that died mid-I/O), nvme_dbbuf_need_event says "no
   * MMIO" for every new command and the queue hangs. So, as QEMU's NVMe does,
   * each I/O queue's shadow doorbell and event index are set to the queue's
   * own tail or head before the command completes: the host's next doorbell
   * write then rings MMIO.
   */
  async useDoorbellBuffer(shadow: number, eventIdx: number): Promise<void> {
    this.dbbuf = { shadow, eventIdx };
    this.log('info', `shadow doorbells @0x${shadow.toString(16)}, event indexes @0x${eventIdx.toString(16)}`);
    const writes: Promise<void>[] = [];
    const inStep = (index: number, value: number) => {
      const word = doorbellWord(value);
      writes.push(this.dmaWrite(shadow + 4 * index, word), this.dmaWrite(eventIdx + 4 * index, word));
    };
    for (const sq of this.sqs.values()) {
      if (sq.id === 0) continue;
      inStep(2 * sq.id, sq.tail);
      sq.eventIdx = sq.tail;
    }
    for (const cq of this.cqs.values()) if (cq.id !== 0) inStep(2 * cq.id + 1, cq.head);
    await Promise.all(writes);
  }

  waitForEvent(): Promise<Completion> {
    // No asynchronous events are generated (OAES = 0, no error or SMART
    // conditions arise): the request stays outstanding until a reset.
    return new Promise(() => {});
  }

  /**
   * The transport went away (client disconnected, cable pulled): the next
   * host must find a controller fresh from power-on, not one still enabled
   * with the old host's queue addresses.
   */
  override attach(ports: Parameters<PciFunction['attach']>[0]): void {
    super.attach(ports);
    if (!ports) this.reset();
  }

  // ---- BAR0 ---------------------------------------------------------------------

  protected override read(bar: number, offset: number, size: number): Uint8Array {
    // Doorbells are write-only and read 0, as does everything not modelled.
    return bar === 0 && offset < Reg.Doorbells ? this.regs.read(offset, size) : new Uint8Array(size);
  }

  protected override write(bar: number, offset: number, data: Uint8Array): void {
    if (bar !== 0) return;
    if (offset >= Reg.Doorbells) return this.doorbell(offset, data);
    const ccBefore = this.regs.cc;
    const touched = this.regs.write(offset, data);
    if (touched.includes(Reg.Cc)) this.ccWritten(ccBefore, this.regs.cc);
    if (touched.includes(Reg.Intms) || touched.includes(Reg.Intmc)) this.refreshIntx();
  }

  protected override onReset(): void {
    this.controllerReset();
    this.regs.reset();
  }

  private ccWritten(before: number, cc: number): void {
    const shn = (v: number) => (v >>> CC.shnShift) & CC.shnMask;
    if (shn(cc) !== 0 && shn(before) === 0) this.shutdown();
    const wasOn = (before & CcBit.Enable) !== 0;
    const on = (cc & CcBit.Enable) !== 0;
    if (wasOn && !on) {
      this.controllerReset();
      this.log('info', 'controller disabled (CC.EN = 0)');
    } else if (!wasOn && on) this.enable(cc);
  }

  private enable(cc: number): void {
    const mps = (cc >>> CC.mpsShift) & CC.mpsMask;
    const css = (cc >>> CC.cssShift) & CC.cssMask;
    const aqa = this.regs.get32(Reg.Aqa);
    const asq = this.regs.get64(Reg.Asq);
    const acq = this.regs.get64(Reg.Acq);
    const sqSize = (aqa & 0xfff) + 1;
    const cqSize = ((aqa >>> 16) & 0xfff) + 1;
    // CAP says MPSMIN = MPSMAX = 4 KiB and CSS = NVM only; admin queues of 1 entry or at address 0 are host bugs.
    const problem =
      mps !== 0 ? `CC.MPS ${mps}` : css !== 0 ? `CC.CSS ${css}` : sqSize < 2 || cqSize < 2 ? `AQA 0x${aqa.toString(16)}` : asq === 0 || acq === 0 ? 'ASQ/ACQ is 0' : undefined;
    if (problem) return this.fatalError(`cannot enable: ${problem}`);
    this.pageSize = 4096 << mps;
    const acqQ = new CompletionQueue(0, acq, cqSize, 0, true);
    this.cqs.set(0, acqQ);
    this.sqs.set(0, new SubmissionQueue(0, asq, sqSize, acqQ));
    acqQ.sqs.add(0);
    this.regs.setShst(Shst.Normal);
    this.regs.setCsts(CstsBit.Ready, true);
    this.log('info', `controller enabled: admin SQ ${sqSize} @0x${asq.toString(16)}, CQ ${cqSize} @0x${acq.toString(16)}`);
  }

  /** CC.EN 1 → 0 (or a function reset): queues, outstanding commands and features are gone. */
  private controllerReset(): void {
    this.generation++;
    for (const cq of this.cqs.values()) cq.abandon();
    this.sqs.clear();
    this.cqs.clear();
    this.interrupts.reset();
    this.cqes.reset();
    this.aerCount = 0;
    this.dbbuf = undefined;
    this.features = new Features();
    this.regs.setCsts(CstsBit.Ready | CstsBit.Fatal, false);
    this.setIntx(false);
  }

  /** CC.SHN: flush everything to stable storage, then report SHST = complete. */
  private shutdown(): void {
    this.regs.setShst(Shst.Processing);
    this.shutdownDone = Promise.all([...this.namespaces.values()].map((ns) => ns.flush())).then(
      () => {
        this.regs.setShst(Shst.Complete);
        this.log('info', 'shutdown complete');
      },
      (err) => this.fatalError(`flush at shutdown failed: ${(err as Error).message}`),
    );
  }

  /** A condition real controllers answer with CSTS.CFS: the host must reset us. */
  private fatalError(why: string): void {
    this.log('error', `controller fatal status: ${why}`);
    this.regs.setCsts(CstsBit.Fatal, true);
  }

  // ---- doorbells --------------------------------------------------------------

  private doorbell(offset: number, data: Uint8Array): void {
    if (!this.ready || this.fatal) return;
    const index = (offset - Reg.Doorbells) >>> 2;
    const qid = index >>> 1;
    let value = 0;
    for (let i = 0; i < Math.min(data.length, 4); i++) value |= data[i]! << (8 * i);
    value >>>= 0;
    if ((offset & 3) !== 0 || data.length !== 4) return this.fatalError(`doorbell write of ${data.length} B at 0x${offset.toString(16)}`);
    // With shadow doorbells an MMIO doorbell is only a wake-up: a write posted
    // before the shadow moved on may arrive after a newer shadow value was read,
    // so the value is taken from the shadow.
    const shadowed = this.shadowed(qid);
    if (index & 1) {
      const cq = this.cqs.get(qid);
      if (!cq) return this.fatalError(`CQ ${qid} head doorbell: no such queue`);
      if (shadowed) {
        if (cq.full || !this.messageSignalled) void this.refreshCqHead(cq, this.generation);
        return;
      }
      if (!cq.setHead(value)) return this.fatalError(`CQ ${qid} head doorbell ${value}: not between head ${cq.head} and tail ${cq.tail}`);
      if (!this.messageSignalled) this.refreshIntx();
    } else {
      const sq = this.sqs.get(qid);
      if (!sq) return this.fatalError(`SQ ${qid} tail doorbell: no such queue`);
      if (shadowed) {
        sq.kicked = true;
        sq.hint = value < sq.size ? value : -1;
      } else if (!sq.setTail(value)) return this.fatalError(`SQ ${qid} tail doorbell ${value} >= size ${sq.size}`);
      if (!sq.fetching) void this.fetch(sq, this.generation);
    }
  }

  /** I/O queues use the shadow doorbells once the host configured them; the admin queue never does (as in Linux). */
  private shadowed(qid: number): boolean {
    return this.dbbuf !== undefined && qid !== 0;
  }

  /** Shadow doorbell or event index `index` (2 * qid SQ tail, 2 * qid + 1 CQ head). */
  private async readShadow(index: number): Promise<number> {
    const b = await this.dmaRead(this.dbbuf!.shadow + 4 * index, 4);
    return (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
  }

  private writeEventIdx(index: number, value: number): Promise<void> {
    return this.dmaWrite(this.dbbuf!.eventIdx + 4 * index, doorbellWord(value));
  }

  /**
   * The host's CQ head from its shadow, when the CQ looks full (or, with
   * INTx, when the host rang: the level follows the head). If it still
   * does, the event index asks for an MMIO write at the next head update,
   * and the shadow is read once more (the host may have moved it before
   * seeing the new event index).
   */
  private async refreshCqHead(cq: CompletionQueue, gen: number): Promise<void> {
    const index = 2 * cq.id + 1;
    try {
      cq.setHead(await this.readShadow(index));
      if (!this.messageSignalled) this.refreshIntx();
      if (!cq.full || gen !== this.generation) return;
      await this.writeEventIdx(index, cq.head);
      if (gen === this.generation) cq.setHead(await this.readShadow(index));
    } catch (err) {
      if (gen === this.generation) this.fatalError(`reading the shadow head of CQ ${cq.id}: ${(err as Error).message}`);
    }
  }

  /**
   * Fetches new entries of `sq` until it is empty, starting each command as
   * it arrives. With shadow doorbells the tail is read from the shadow, and
   * once caught up the event index is set to the tail, so the host rings
   * MMIO for its next command only; the shadow is read once more after that
   * (the host may have written it before it saw the new event index).
   */
  private async fetch(sq: SubmissionQueue, gen: number): Promise<void> {
    sq.fetching = true;
    const shadowed = this.shadowed(sq.id);
    const live = () => gen === this.generation && !sq.deleted && !this.fatal;
    try {
      /** The event index in place (written) before the last shadow tail read was sent; -1: none read. */
      let indexedBeforeRead = -1;
      while (live()) {
        let early: { run: { slot: number; count: number }; bytes: Uint8Array } | undefined;
        if (shadowed) {
          sq.kicked = false;
          // The entries an MMIO doorbell announced (written before it was sent, read after it
          // came) are fetched alongside the shadow tail — one round trip, not two, over a
          // fabric — and kept if the shadow tail reaches the doorbell's value; an older value
          // (the shadow had moved on) lies behind the head and is dropped. This assumes no
          // doorbell write is overtaken by a whole ring of commands.
          const hint = sq.hint;
          const guess = hint >= 0 ? sq.runTo(hint) : undefined;
          sq.hint = -1;
          // On an idle queue (a host at queue depth 1) the event index moves to the doorbell's value
          // ahead of the reads: a read does not pass an earlier write, so if the shadow tail is still
          // that value the controller is caught up and the host will ring for its next command — no
          // second read after a later move (over a fabric, a round trip less per I/O). A stale value
          // only costs the move to the tail below and the read after it, as without this. With
          // commands in flight the index stays behind until the fetch catches up, so commands the
          // host posts meanwhile ride on the read after that move instead of ringing.
          const move = hint >= 0 && sq.inFlight === 0 && sq.eventIdx !== hint ? this.writeEventIdx(2 * sq.id, hint) : undefined;
          const indexed = move ? hint : sq.eventIdx;
          const [, tail, bytes] = await Promise.all([
            move,
            this.readShadow(2 * sq.id),
            guess && this.dmaRead(sq.base + guess.slot * SQE_SIZE, guess.count * SQE_SIZE),
          ]);
          if (move) sq.eventIdx = hint;
          indexedBeforeRead = indexed;
          if (!live()) return;
          if (!sq.setTail(tail)) return this.fatalError(`SQ ${sq.id} shadow tail ${tail} >= size ${sq.size}`);
          if (guess && bytes && sq.reaches(hint) && sq.reaches((guess.slot + guess.count) % sq.size)) early = { run: guess, bytes };
        }
        const run = early?.run ?? sq.nextRun();
        if (run) {
          const bytes = early?.bytes ?? (await this.dmaRead(sq.base + run.slot * SQE_SIZE, run.count * SQE_SIZE));
          if (gen !== this.generation || sq.deleted) return;
          sq.consumed(run.count);
          for (let i = 0; i < run.count; i++) this.dispatch(sq, new Sqe(bytes.subarray(i * SQE_SIZE, (i + 1) * SQE_SIZE)), gen);
          // Caught up with a tail read after the event index already stood there: done.
          if (shadowed && sq.head === sq.tail && indexedBeforeRead === sq.tail && !sq.kicked) break;
          // Caught up with the tail just read: move the event index now, so the one shadow read
          // that follows is also the read after the move (a read does not pass an earlier write),
          // rather than a read, the move, and a read again (a DMA round trip less per command).
          if (shadowed && sq.head === sq.tail && sq.eventIdx !== sq.tail) {
            await this.writeEventIdx(2 * sq.id, sq.tail);
            sq.eventIdx = sq.tail;
          }
          continue;
        }
        if (!shadowed) break;
        if (sq.eventIdx !== sq.tail) {
          await this.writeEventIdx(2 * sq.id, sq.tail);
          sq.eventIdx = sq.tail;
          continue;
        }
        if (!sq.kicked) break;
      }
    } catch (err) {
      if (gen === this.generation) this.fatalError(`fetching SQ ${sq.id}: ${(err as Error).message}`);
    } finally {
      sq.fetching = false;
    }
  }

  private dispatch(sq: SubmissionQueue, sqe: Sqe, gen: number): void {
    const cid = sqe.cid;
    let result: Completion | Promise<Completion>;
    try {
      // FUSE (bits 1:0) and PSDT (bits 7:6): no fused commands, no SGLs (SGLS = 0).
      if (sqe.flags & 0xc3) throw new NvmeError(Status.InvalidField, `CDW0 flags 0x${sqe.flags.toString(16)}: fused or SGL`);
      result = sq.id === 0 ? executeAdmin(this, sqe) : executeIo(this, sqe);
    } catch (err) {
      result = this.failure(sq, sqe, err);
    }
    if (result instanceof Promise) {
      result.then(
        (c) => this.complete(sq, cid, c, gen),
        (err) => this.complete(sq, cid, this.failure(sq, sqe, err), gen),
      );
    } else void this.complete(sq, cid, result, gen);
  }

  private failure(sq: SubmissionQueue, sqe: Sqe, err: unknown): Completion {
    let c: Completion;
    if (err instanceof NvmeError) {
      this.log('warn', `SQ ${sq.id} cid ${sqe.cid} opcode 0x${sqe.opcode.toString(16)}: status 0x${err.status.toString(16)}: ${err.message}`);
      c = { dw0: 0, status: err.status, dnr: err.dnr };
    } else {
      // A bug in the model must not take the server down; the host sees an internal error.
      this.log('error', `SQ ${sq.id} cid ${sqe.cid} opcode 0x${sqe.opcode.toString(16)}: ${(err as Error)?.stack ?? err}`);
      c = { dw0: 0, status: Status.InternalError, dnr: false };
    }
    // I/O commands carry their starting LBA in CDW10-11; admin commands have none.
    const lba = sq.id === 0 ? 0 : sqe.dw10_11;
    this.errors.unshift({ count: ++this.errorCount, sqid: sq.id, cid: sqe.cid, status: c.status, dnr: c.dnr, nsid: sqe.nsid, lba });
    this.errors.length = Math.min(this.errors.length, ERROR_LOG_ENTRIES);
    return c;
  }

  private async complete(sq: SubmissionQueue, cid: number, c: Completion, gen: number): Promise<void> {
    if (gen !== this.generation) return;
    const cq = sq.cq;
    try {
      // With shadow doorbells the head is known only from the shadow: look when the CQ seems full.
      if (cq.full && this.shadowed(cq.id)) await this.refreshCqHead(cq, gen);
      const free = cq.reserve();
      const slot = free instanceof Promise ? await free : free;
      if (gen !== this.generation) return;
      // Written with its neighbours in the cache line, if they complete together (cqe-writer.ts).
      await this.cqes.post(cq.id, slot.addr, encodeCqe(c, sq.head, sq.id, cid, slot.phase));
      if (gen !== this.generation) return;
      // INTx is a level held while entries are unconsumed: have the host ring MMIO when it reaps this one.
      if (!this.messageSignalled && this.shadowed(cq.id)) await this.writeEventIdx(2 * cq.id + 1, (slot.addr - cq.base) / CQE_SIZE);
      if (cq.interrupts) this.signal(cq.vector, this.alone(cq));
    } catch (err) {
      if (gen === this.generation) this.fatalError(`posting to CQ ${cq.id}: ${(err as Error).message}`);
    } finally {
      if (gen === this.generation) sq.completed();
    }
  }

  // ---- interrupts ---------------------------------------------------------------

  /** MSI-X or MSI on: completions signal vectors; otherwise INTx is a level. */
  private get messageSignalled(): boolean {
    return this.msixEnabled || this.msiEnabled;
  }

  /** Every interrupt-enabled CQ with unconsumed entries signals again in the new mode (INTx: the level is recomputed). */
  protected override interruptModeChanged(): void {
    if (!this.messageSignalled) return this.refreshIntx();
    for (const cq of this.cqs.values()) if (cq.interrupts && cq.pending > 0) this.interrupts.resend(cq.vector);
  }

  private signal(vector: number, alone = false): void {
    if (!this.messageSignalled) return this.refreshIntx();
    this.interrupts.completion(vector, alone);
  }

  /** Whether the command completing on `cq` is the only one in flight on the SQs posting there (it counts until it has signalled). */
  private alone(cq: CompletionQueue): boolean {
    let n = 0;
    for (const id of cq.sqs) n += this.sqs.get(id)?.inFlight ?? 0;
    return n <= 1;
  }

  /** INTx (no MSI-X or MSI): asserted while an interrupt-enabled CQ holds unconsumed entries and INTMS does not mask it. */
  private refreshIntx(): void {
    if (this.messageSignalled) return;
    let pending = false;
    for (const cq of this.cqs.values()) if (cq.interrupts && cq.pending > 0) pending = true;
    this.setIntx(pending && (this.regs.intMask & 1) === 0);
  }
}
