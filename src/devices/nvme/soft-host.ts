// A host for tests: guest RAM as real bytes at bus addresses [0, size), a
// minimal driver (SoftDriver) over any BAR0 — the controller in-process or
// over vfio-user — and TestHost, the controller in-process with its DMA port
// on that memory and its interrupts recorded.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as tick, setTimeout as sleep } from 'node:timers/promises';
import { NvmeController, type NvmeControllerConfig } from './controller.ts';
import { Reg } from './registers.ts';
import { Cfg, CommandBit } from '../../pci/config-space.ts';

export const PAGE = 4096;

/** Guest RAM at bus addresses [0, size): its own bytes, or a mapping the caller shares (a memfd). */
export class GuestMemory {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly size: number;
  constructor(sizeOrBytes: number | Uint8Array) {
    this.bytes = typeof sizeOrBytes === 'number' ? new Uint8Array(sizeOrBytes) : sizeOrBytes;
    this.size = this.bytes.length;
    this.view = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
  }
  private check(addr: number, len: number): void {
    if (addr < 0 || addr + len > this.size) throw new Error(`DMA 0x${addr.toString(16)}+${len} outside guest memory`);
  }
  async dmaRead(addr: number, len: number): Promise<Uint8Array> {
    this.check(addr, len);
    return this.bytes.slice(addr, addr + len);
  }
  async dmaWrite(addr: number, data: Uint8Array): Promise<void> {
    this.check(addr, data.length);
    this.bytes.set(data, addr);
  }
  u64(at: number, v: number): void {
    this.view.setUint32(at, v % 2 ** 32, true);
    this.view.setUint32(at + 4, Math.floor(v / 2 ** 32), true);
  }
}

export interface Cmd {
  opcode: number;
  nsid?: number;
  prp1?: number;
  prp2?: number;
  cdw10?: number;
  cdw11?: number;
  cdw12?: number;
  cdw13?: number;
  flags?: number;
  cid?: number;
}

export interface Cqe {
  dw0: number;
  sqhd: number;
  sqid: number;
  cid: number;
  /** SCT << 8 | SC */
  status: number;
  dnr: boolean;
}

interface HostQueue {
  sqBase: number;
  cqBase: number;
  size: number;
  tail: number;
  head: number;
  phase: number;
}

/** BAR0 as a driver reaches it: the controller in-process, or over vfio-user. */
export interface Bar0 {
  read32(offset: number): Promise<number>;
  write32(offset: number, value: number): Promise<void>;
}

/** Shadow doorbells and event indexes (Doorbell Buffer Config), laid out as the doorbell registers. */
interface DoorbellBuffers {
  shadow: number;
  eventIdx: number;
}

/**
 * A minimal NVMe driver over any BAR0 and guest memory: lays out queues,
 * rings doorbells and reaps completions by phase tag, as the Linux driver
 * does — including, after useDoorbellBuffer(), its shadow doorbell rule:
 * write the shadow, then ring MMIO only if the event index lies in
 * [old, new) (nvme_dbbuf_need_event), I/O queues only.
 */
export class SoftDriver {
  /** MMIO doorbell writes, by doorbell index (2 * qid SQ tail, 2 * qid + 1 CQ head). */
  readonly doorbellWrites = new Map<number, number>();
  private queues = new Map<number, HostQueue>();
  private nextCid = 0x100;
  /** Bump allocator for page-aligned guest buffers (queues, data). */
  private brk = 16 * PAGE;
  private dbbuf?: DoorbellBuffers;
  /** The pages of the last Doorbell Buffer Config, kept across a controller reset. */
  private dbbufPages?: DoorbellBuffers;
  /** How long reap() waits for a completion by default. */
  reapTimeoutMs = 2000;

  constructor(
    readonly mem: GuestMemory,
    private readonly bar: Bar0,
    /** How long to wait between looks at a CQ; 0 polls every event-loop turn (in-process controller). */
    private readonly pollMs = 0,
  ) {}

  alloc(bytes: number): number {
    const at = this.brk;
    this.brk += Math.ceil(bytes / PAGE) * PAGE;
    if (this.brk > this.mem.size) throw new Error('test guest memory exhausted');
    return at;
  }

  reg32(off: number): Promise<number> {
    return this.bar.read32(off);
  }

  wreg32(off: number, v: number): Promise<void> {
    return this.bar.write32(off, v);
  }

  async wreg64(off: number, v: number): Promise<void> {
    await this.wreg32(off, v % 2 ** 32);
    await this.wreg32(off + 4, Math.floor(v / 2 ** 32));
  }

  /** Admin queues of `size` entries, CC.EN = 1 with 64/16-byte entries, as Linux does; no doorbell buffer yet. */
  async enable(size = 32): Promise<void> {
    this.dbbuf = undefined;
    const q: HostQueue = { sqBase: this.alloc(size * 64), cqBase: this.alloc(size * 16), size, tail: 0, head: 0, phase: 1 };
    this.queues.set(0, q);
    await this.wreg32(Reg.Aqa, ((size - 1) << 16) | (size - 1));
    await this.wreg64(Reg.Asq, q.sqBase);
    await this.wreg64(Reg.Acq, q.cqBase);
    await this.wreg32(Reg.Cc, 1 | (6 << 16) | (4 << 20));
  }

  /** Set Features number of queues, then CQ and SQ `qid` of `size` entries on `vector`. */
  async createIoQueue(qid: number, size = 64, vector = qid): Promise<void> {
    const sqBase = this.alloc(size * 64);
    const cqBase = this.alloc(size * 16);
    expectOk(await this.admin({ opcode: 0x05, prp1: cqBase, cdw10: ((size - 1) << 16) | qid, cdw11: (vector << 16) | 3 }));
    expectOk(await this.admin({ opcode: 0x01, prp1: sqBase, cdw10: ((size - 1) << 16) | qid, cdw11: (qid << 16) | 1 }));
    this.queues.set(qid, { sqBase, cqBase, size, tail: 0, head: 0, phase: 1 });
  }

  /**
   * Doorbell Buffer Config (admin 7Ch) with two fresh zeroed pages, as Linux
   * does when OACS bit 8 is set; from then on I/O queues use shadow doorbells.
   * `keepPages`: the pages of the last config again, as they are (a host
   * reusing them after a controller reset without clearing them).
   */
  async useDoorbellBuffer(o: { keepPages?: boolean } = {}): Promise<Cqe> {
    let pages = o.keepPages ? this.dbbufPages : undefined;
    if (!pages) {
      pages = { shadow: this.alloc(PAGE), eventIdx: this.alloc(PAGE) };
      this.mem.bytes.fill(0, pages.shadow, pages.shadow + PAGE);
      this.mem.bytes.fill(0, pages.eventIdx, pages.eventIdx + PAGE);
    }
    this.dbbufPages = pages;
    const e = await this.admin({ opcode: 0x7c, prp1: pages.shadow, prp2: pages.eventIdx });
    if (e.status === 0) this.dbbuf = pages;
    return e;
  }

  /** The shadow doorbell value for doorbell `index` (2 * qid SQ tail, 2 * qid + 1 CQ head). */
  shadowDoorbell(index: number): number | undefined {
    return this.dbbufPages && this.mem.view.getUint32(this.dbbufPages.shadow + 4 * index, true);
  }

  /** The event index the controller posted for doorbell `index`. */
  eventIdx(index: number): number | undefined {
    return this.dbbufPages && this.mem.view.getUint32(this.dbbufPages.eventIdx + 4 * index, true);
  }

  admin(c: Cmd): Promise<Cqe> {
    return this.submit(0, c);
  }

  /** Places the commands in SQ `qid`, rings the tail doorbell once, and reaps one completion per command. */
  async submitMany(qid: number, cmds: Cmd[]): Promise<Cqe[]> {
    const q = this.queue(qid);
    const cids = cmds.map((c) => this.place(q, c));
    await this.doorbell(2 * qid, q.tail);
    const out = new Map<number, Cqe>();
    while (out.size < cids.length) {
      const e = await this.reap(qid);
      out.set(e.cid, e);
    }
    return cids.map((cid) => out.get(cid)!);
  }

  async submit(qid: number, c: Cmd): Promise<Cqe> {
    return (await this.submitMany(qid, [c]))[0]!;
  }

  /**
   * Submits one command without waiting for its completion (rings as
   * submitMany does); pair with reap(). Returns its CID.
   */
  async post(qid: number, c: Cmd): Promise<number> {
    const q = this.queue(qid);
    const cid = this.place(q, c);
    await this.doorbell(2 * qid, q.tail);
    return cid;
  }

  /** Rings a doorbell with any value (for bad-doorbell tests). */
  ring(index: number, value: number): Promise<void> {
    return this.wreg32(Reg.Doorbells + 4 * index, value);
  }

  /** Whether CQ `qid` holds a completion not yet reaped (its next entry carries the current phase tag). */
  pending(qid: number): boolean {
    const q = this.queue(qid);
    return (this.mem.view.getUint16(q.cqBase + q.head * 16 + 14, true) & 1) === q.phase;
  }

  /** Waits for the next CQE of `qid` (phase tag flips), then updates the head doorbell. */
  async reap(qid: number, timeoutMs = this.reapTimeoutMs): Promise<Cqe> {
    const q = this.queue(qid);
    const at = () => q.cqBase + q.head * 16;
    const end = Date.now() + timeoutMs;
    while (!this.pending(qid)) {
      if (Date.now() > end) throw new Error(`no completion on CQ ${qid} within ${timeoutMs} ms${this.stuck()}`);
      await (this.pollMs ? sleep(this.pollMs) : tick());
    }
    const v = this.mem.view;
    const sf = v.getUint16(at() + 14, true);
    const e: Cqe = { dw0: v.getUint32(at(), true), sqhd: v.getUint16(at() + 8, true), sqid: v.getUint16(at() + 10, true), cid: v.getUint16(at() + 12, true), status: (sf >> 1) & 0x7ff, dnr: (sf & 0x8000) !== 0 };
    q.head = (q.head + 1) % q.size;
    if (q.head === 0) q.phase ^= 1;
    await this.doorbell(2 * qid + 1, q.head);
    return e;
  }

  /** Extra context for a completion timeout. */
  protected stuck(): string {
    return '';
  }

  private queue(qid: number): HostQueue {
    const q = this.queues.get(qid);
    if (!q) throw new Error(`queue ${qid} was not created`);
    return q;
  }

  private place(q: HostQueue, c: Cmd): number {
    const cid = c.cid ?? (this.nextCid = (this.nextCid + 1) & 0xffff);
    const at = q.sqBase + q.tail * 64;
    this.mem.bytes.fill(0, at, at + 64);
    const v = this.mem.view;
    v.setUint8(at, c.opcode);
    v.setUint8(at + 1, c.flags ?? 0);
    v.setUint16(at + 2, cid, true);
    v.setUint32(at + 4, c.nsid ?? 0, true);
    this.mem.u64(at + 24, c.prp1 ?? 0);
    this.mem.u64(at + 32, c.prp2 ?? 0);
    [c.cdw10, c.cdw11, c.cdw12, c.cdw13].forEach((d, i) => v.setUint32(at + 40 + 4 * i, (d ?? 0) >>> 0, true));
    q.tail = (q.tail + 1) % q.size;
    return cid;
  }

  /** A new doorbell value: through the shadow when the controller offered one (I/O queues), else MMIO. */
  private async doorbell(index: number, value: number): Promise<void> {
    if (this.dbbuf && index >= 2) {
      const v = this.mem.view;
      const shadow = this.dbbuf.shadow + 4 * index;
      const old = v.getUint32(shadow, true);
      v.setUint32(shadow, value, true);
      const ei = v.getUint32(this.dbbuf.eventIdx + 4 * index, true);
      // nvme_dbbuf_need_event: ring only if the event index lies in [old, new), u16 arithmetic.
      if (((value - ei - 1) & 0xffff) >= ((value - old) & 0xffff)) return;
    }
    this.doorbellWrites.set(index, (this.doorbellWrites.get(index) ?? 0) + 1);
    await this.ring(index, value);
  }
}

/** The controller in this process over GuestMemory, MSI-X vectors and INTx levels recorded. */
export class TestHost extends SoftDriver {
  readonly ctrl: NvmeController;
  readonly irqs: number[] = [];
  /** INTx level changes, when MSI-X is off. */
  readonly intx: boolean[] = [];
  readonly logs: string[] = [];
  readonly dir: string;

  /** Call open() before I/O; namespace paths are file names in a scratch directory. */
  constructor(t: { teardown(fn: () => unknown): void }, cfg: Partial<NvmeControllerConfig> = {}, memSize = 8 << 20) {
    const mem = new GuestMemory(memSize);
    let ctrl: NvmeController | undefined;
    super(mem, {
      read32: async (off) => {
        const b = await ctrl!.barRead(0, off, 4);
        return new DataView(b.buffer, b.byteOffset).getUint32(0, true);
      },
      write32: async (off, v) => {
        const b = new Uint8Array(4);
        new DataView(b.buffer).setUint32(0, v >>> 0, true);
        await ctrl!.barWrite(0, off, b);
      },
    });
    this.dir = mkdtempSync(join(tmpdir(), 'nvme-unit-'));
    t.teardown(async () => {
      await this.ctrl.close();
      rmSync(this.dir, { recursive: true, force: true });
    });
    // Namespace files are named relative to a scratch directory removed with the test.
    const namespaces = (cfg.namespaces ?? [{ path: 'ns1.img', size: 1 << 20, lbaSize: 512 }]).map((n) => ({ ...n, path: join(this.dir, n.path) }));
    ctrl = this.ctrl = new NvmeController({ serial: 'UNIT0001', log: (l, m) => this.logs.push(`${l}: ${m}`), ...cfg, namespaces });
    this.ctrl.attach({ dma: this.mem, irq: { msix: (v) => this.irqs.push(v), intx: (level) => this.intx.push(level) } });
    this.ctrl.configWrite(Cfg.Command, new Uint8Array([CommandBit.Memory | CommandBit.BusMaster, 0]));
    this.ctrl.setMsixEnabled(true);
  }

  protected override stuck(): string {
    return `; logs:\n${this.logs.join('\n')}`;
  }

  /** Waits until the controller has settled what is in flight (no CQE expected). */
  async settle(): Promise<void> {
    for (let i = 0; i < 20; i++) await tick();
  }
}

export function expectOk(e: Cqe): Cqe {
  if (e.status !== 0) throw new Error(`command failed: status 0x${e.status.toString(16)}`);
  return e;
}
