// src/devices/testdev — the test device model. It may import src/common, src/pci and native/
// (its shared page is a memfd) only: a device knows no transport (npm run deps).
//
// The PCIeOE test device: scratch registers, a DMA copy engine, MSI-X and
// MSI, optionally a shared-memory page, enough to exercise every path of a
// transport without NVMe's complexity.
//
// IDs: vendor 0x1234 (the id QEMU's own test devices use, e.g. "edu"
// 1234:11e8; no Linux driver claims 1234:0e0e), device 0x0e0e, class
// 0x088000 (base 08 system peripheral, subclass 80 other), INTA#.
//
// BAR0, 64-bit memory, 16 KiB:
//   0x000 ID          RO   0x7e570e0e
//   0x004 VERSION     RO   1
//   0x010 SCRATCH0-7  RW   8 x u32, any access size
//   0x040 DMA_SRC     RW   u64 bus address to copy from
//   0x048 DMA_DST     RW   u64 bus address to copy to
//   0x050 DMA_LEN     RW   u32 bytes (<= 1 MiB)
//   0x054 DMA_VECTOR  RW   MSI-X vector raised on completion (reset 0)
//   0x058 DOORBELL    WO   any write starts a copy (ignored while busy)
//   0x05c STATUS      bit0 BUSY (RO), bit1 DONE (W1C), bit2 ERROR (W1C);
//                          clearing both deasserts INTx
//   0x060 DMA_COUNT   RO   copies completed since reset
//   0x064 IRQ_RAISE   WO   write n: signal vector n now (software interrupt)
//   0x2000 MSI-X table (4 vectors), 0x3000 MSI-X PBA
//
// MSI capability, only with `msi`: 64-bit, 4 vectors, per-vector masking.
//
// BAR2, only with `sharedPage` (off by default: a mappable region turns off
// QEMU's posted MMIO writes for the whole device), 32-bit memory, 8 KiB:
//   0x0000 SHARED_SUM      RO   u32 sum (mod 2^32) of the shared page's dwords
//   0x0004 SHARED_STAMP    WO   write v: the device stores v at SHARED_PAGE + 0xffc
//   0x0008 SHARED_TRAPPED  RO   accesses to the shared page that came through the
//                               transport (0 while the host maps the page itself)
//   0x1000 SHARED_PAGE     RW   4 KiB of memfd memory, offered for mmap (sparse)
//
// Completion (or a failed DMA) sets DONE (or ERROR) and signals DMA_VECTOR:
// MSI-X when enabled, else MSI when enabled, else INTx. DMA needs Bus Master Enable.
import { native } from '../../../native/index.ts';
import { PciFunction } from '../../pci/function.ts';

export const TESTDEV_VENDOR_ID = 0x1234;
export const TESTDEV_DEVICE_ID = 0x0e0e;
export const TESTDEV_CLASS = 0x088000;
export const TESTDEV_ID_VALUE = 0x7e570e0e;
export const TESTDEV_MSIX_VECTORS = 4;
export const TESTDEV_MSI_VECTORS = 4;
export const TESTDEV_MAX_DMA = 1 << 20;

export const enum TestReg {
  Id = 0x000,
  Version = 0x004,
  Scratch = 0x010,
  DmaSrc = 0x040,
  DmaDst = 0x048,
  DmaLen = 0x050,
  DmaVector = 0x054,
  Doorbell = 0x058,
  Status = 0x05c,
  DmaCount = 0x060,
  IrqRaise = 0x064,
  /** Size of the register file; the rest of BAR0 below the MSI-X table reads 0. */
  End = 0x100,
}

export const enum TestStatus {
  Busy = 1,
  Done = 2,
  Error = 4,
}

/** BAR2 (with `sharedPage`): registers in the trapped first page, memory in the second. */
export const enum SharedReg {
  Sum = 0x000,
  Stamp = 0x004,
  Trapped = 0x008,
  Page = 0x1000,
  /** Where SHARED_STAMP stores its value, relative to Page. */
  StampAt = 0xffc,
  PageSize = 0x1000,
}

export const SHARED_BAR = 2;
const SHARED_BAR_SIZE = 2 * SharedReg.PageSize;
const BAR0_SIZE = 16 * 1024;

export interface TestDeviceOptions {
  /**
   * An MSI capability next to MSI-X. Off by default: the HI does not carry
   * MSI over the fabric yet (its MSI index has no vectors), so a device
   * behind a DI would show a capability the guest cannot enable.
   */
  msi?: boolean;
  /** BAR2 with a memfd-backed page the transport may let the host map. */
  sharedPage?: boolean;
}

/** The memfd behind BAR2, laid out like the BAR (file offset = BAR offset). */
class SharedMemory {
  readonly fd: number;
  private readonly map: ArrayBuffer;
  /** The shared page as the device sees it. */
  readonly page: Uint8Array;

  constructor() {
    this.fd = native.memfdCreate('testdev-bar2', SHARED_BAR_SIZE);
    this.map = native.mmap(this.fd, 0, SHARED_BAR_SIZE, true);
    this.page = new Uint8Array(this.map, SharedReg.Page, SharedReg.PageSize);
  }

  private closed = false;

  close(): void {
    if (this.closed) return;
    this.closed = true;
    native.munmap(this.map);
    native.close(this.fd);
  }
}

export class TestDevice extends PciFunction {
  private readonly regs = new Uint8Array(TestReg.End);
  private readonly view = new DataView(this.regs.buffer);
  /** Bumped on reset so a copy in flight cannot report into the new state. */
  private generation = 0;
  /** Settles when the current copy finishes (for tests and orderly shutdown). */
  idle: Promise<void> = Promise.resolve();
  /** Why the last copy failed, for logs and tests. */
  lastError?: Error;

  private readonly shared?: SharedMemory;
  private sharedTrapped = 0;

  constructor(options: TestDeviceOptions = {}) {
    const shared = options.sharedPage ? new SharedMemory() : undefined;
    super({
      vendorId: TESTDEV_VENDOR_ID,
      deviceId: TESTDEV_DEVICE_ID,
      classCode: TESTDEV_CLASS,
      revision: 1,
      interruptPin: 1,
      bars: [
        { size: BAR0_SIZE, kind: 'mem64' },
        undefined,
        shared && { size: SHARED_BAR_SIZE, kind: 'mem32', shared: { fd: shared.fd, areas: [{ offset: SharedReg.Page, size: SharedReg.PageSize }] } },
      ],
      msix: { vectors: TESTDEV_MSIX_VECTORS, bar: 0, tableOffset: 0x2000, pbaOffset: 0x3000 },
      msi: options.msi ? { vectors: TESTDEV_MSI_VECTORS, perVectorMask: true } : undefined,
    });
    this.shared = shared;
    this.onReset();
  }

  /** Releases the shared memory (the server must be closed first: its regions name the fd). */
  close(): void {
    this.shared?.close();
  }

  protected override onReset(): void {
    this.generation++;
    this.regs.fill(0);
    this.u32(TestReg.Id, TESTDEV_ID_VALUE);
    this.u32(TestReg.Version, 1);
    // The shared page is memory, not a register: like RAM it keeps its contents.
    this.sharedTrapped = 0;
  }

  protected override read(bar: number, offset: number, size: number): Uint8Array {
    const out = new Uint8Array(size);
    if (bar === SHARED_BAR && this.shared) return this.sharedRead(this.shared, offset, out);
    if (bar === 0 && offset < TestReg.End) out.set(this.regs.subarray(offset, Math.min(offset + size, TestReg.End)));
    return out;
  }

  protected override write(bar: number, offset: number, data: Uint8Array): void {
    if (bar === SHARED_BAR && this.shared) return this.sharedWrite(this.shared, offset, data);
    if (bar !== 0 || offset >= TestReg.End) return;
    const end = Math.min(offset + data.length, TestReg.End);
    const statusBefore = this.view.getUint32(TestReg.Status, true);
    for (let o = offset; o < end; o++) {
      if (isWritable(o)) this.regs[o] = data[o - offset]!;
    }
    if (touches(offset, end, TestReg.Status)) {
      // W1C on DONE/ERROR; BUSY is the engine's.
      const written = readU32Clipped(data, offset, TestReg.Status);
      this.u32(TestReg.Status, statusBefore & ~(written & (TestStatus.Done | TestStatus.Error)));
      if ((this.status & (TestStatus.Done | TestStatus.Error)) === 0) this.setIntx(false);
    }
    if (touches(offset, end, TestReg.IrqRaise)) this.interrupt(readU32Clipped(data, offset, TestReg.IrqRaise));
    if (touches(offset, end, TestReg.Doorbell)) this.ring();
  }

  private sharedRead(m: SharedMemory, offset: number, out: Uint8Array): Uint8Array {
    if (offset >= SharedReg.Page) {
      this.sharedTrapped++;
      out.set(m.page.subarray(offset - SharedReg.Page, offset - SharedReg.Page + out.length));
      return out;
    }
    const regs = new Uint8Array(12);
    const v = new DataView(regs.buffer);
    v.setUint32(SharedReg.Sum, sumDwords(m.page), true);
    v.setUint32(SharedReg.Trapped, this.sharedTrapped >>> 0, true);
    out.set(regs.subarray(Math.min(offset, regs.length), Math.min(offset + out.length, regs.length)));
    return out;
  }

  private sharedWrite(m: SharedMemory, offset: number, data: Uint8Array): void {
    if (offset >= SharedReg.Page) {
      this.sharedTrapped++;
      m.page.set(data, offset - SharedReg.Page);
      return;
    }
    if (touches(offset, offset + data.length, SharedReg.Stamp)) {
      new DataView(m.page.buffer, m.page.byteOffset).setUint32(SharedReg.StampAt, readU32Clipped(data, offset, SharedReg.Stamp), true);
    }
  }

  private get status(): number {
    return this.view.getUint32(TestReg.Status, true);
  }

  private u32(at: number, v: number): void {
    this.view.setUint32(at, v >>> 0, true);
  }

  private u64(at: number): number {
    return this.view.getUint32(at, true) + this.view.getUint32(at + 4, true) * 0x1_0000_0000;
  }

  private ring(): void {
    if (this.status & TestStatus.Busy) return;
    this.u32(TestReg.Status, (this.status | TestStatus.Busy) & ~(TestStatus.Done | TestStatus.Error));
    this.idle = this.copy(this.generation);
  }

  private async copy(generation: number): Promise<void> {
    const src = this.u64(TestReg.DmaSrc);
    const dst = this.u64(TestReg.DmaDst);
    const len = this.view.getUint32(TestReg.DmaLen, true);
    let ok = false;
    try {
      if (len > TESTDEV_MAX_DMA) throw new RangeError(`DMA_LEN ${len} exceeds ${TESTDEV_MAX_DMA}`);
      if (len > 0) await this.dmaWrite(dst, await this.dmaRead(src, len));
      ok = true;
      this.lastError = undefined;
    } catch (err) {
      this.lastError = err as Error;
    }
    if (generation !== this.generation) return; // reset while copying
    this.u32(TestReg.Status, (this.status & ~TestStatus.Busy) | (ok ? TestStatus.Done : TestStatus.Error));
    if (ok) this.u32(TestReg.DmaCount, this.view.getUint32(TestReg.DmaCount, true) + 1);
    this.interrupt(this.view.getUint32(TestReg.DmaVector, true));
  }
}

function sumDwords(page: Uint8Array): number {
  const v = new DataView(page.buffer, page.byteOffset, page.byteLength);
  let sum = 0;
  for (let o = 0; o + 4 <= page.length; o += 4) sum = (sum + v.getUint32(o, true)) >>> 0;
  return sum;
}

/** Register bytes that store what software writes: scratch and DMA setup. */
function isWritable(o: number): boolean {
  return (o >= TestReg.Scratch && o < TestReg.Scratch + 32) || (o >= TestReg.DmaSrc && o < TestReg.Doorbell);
}

function touches(start: number, end: number, reg: number): boolean {
  return start < reg + 4 && reg < end;
}

/** The bytes of a write that fall on the 32-bit register at `reg` (others read as 0). */
function readU32Clipped(data: Uint8Array, offset: number, reg: number): number {
  let v = 0;
  for (let i = 0; i < 4; i++) {
    const j = reg + i - offset;
    if (j >= 0 && j < data.length) v |= data[j]! << (8 * i);
  }
  return v >>> 0;
}
