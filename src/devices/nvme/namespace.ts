// A namespace backed by a sparse file: LBA n lives at byte n * lbaSize. The
// file is created on demand and grown (never shrunk) to the namespace size,
// so data survives server restarts. Transfers up to SYNC_IO_MAX (every one
// the controller's MDTS lets through) are plain pread/pwritev on the event
// loop: the data is in the page cache (the model writes back, as QEMU's
// cache=writeback does), so even a 128 KiB copy takes tens of µs, while a trip
// through libuv's thread pool costs two cross-thread wake-ups — on these
// machines (a VM whose idle CPUs halt) ≈ 25 µs of main-thread time per command
// each way at 4 KiB (the nvme-model bench's QD 1 4 KiB read went from ≈ 140 to
// ≈ 36 µs of CPU), and in the lab's 64 KiB sequential runs the submission alone
// was 14 % of the DI's busy time (reads) and the write's 14 % (`fs.writev`).
// Larger transfers and syncs go to the pool. Async calls use the callback API
// on the raw fd: a FileHandle.read costs several times the main-thread CPU of
// fs.read.
import { constants, read as fsRead, readSync, writev as fsWritev, writevSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

/** Largest transfer done synchronously on the event loop. */
export const SYNC_IO_MAX = 128 * 1024;

function pread(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fsRead(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

function pwritev(fd: number, parts: Uint8Array[], total: number, pos: number): Promise<number> {
  if (total <= SYNC_IO_MAX) return Promise.resolve(writevSync(fd, parts, pos));
  return new Promise((resolve, reject) => fsWritev(fd, parts, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

export interface NamespaceConfig {
  /** 1-based namespace id. */
  nsid: number;
  path: string;
  /** Bytes; rounded down to whole LBAs. */
  size: number;
  /** 512 or 4096. */
  lbaSize: 512 | 4096;
}

/** Data buffers kept for reuse per size (a queue's depth of them): see Namespace.recycle. */
const KEPT_PER_SIZE = 64;

/** Largest buffer Write Zeroes writes at once. */
const ZERO_CHUNK = 1 << 20;
let zeros: Uint8Array | undefined;

export class Namespace {
  readonly nsid: number;
  readonly path: string;
  readonly lbaSize: number;
  /** log2(lbaSize), for Identify Namespace LBADS. */
  readonly lbaShift: number;
  /** Namespace size in LBAs (NSZE). */
  readonly blocks: number;
  private fh?: FileHandle;
  /** Counters for the SMART log (bytes and commands), and syncs to stable storage. */
  readonly stats = { bytesRead: 0, bytesWritten: 0, reads: 0, writes: 0, syncs: 0 };
  /**
   * Read buffers the host has taken its data from, by size. A 4 KiB or larger Buffer is an
   * ArrayBuffer of its own (Node pools only smaller ones), external memory the GC must track and
   * free: at 64 KiB reads that was one per command, and the DI spent 16 % of its time collecting.
   */
  private readonly spare = new Map<number, Buffer[]>();
  /** Buffers read() and take() handed out: the only ones recycle() takes back. */
  private readonly lent = new WeakSet<Buffer>();
  /** File operations under way; close() waits for them so none meets a closed fd. */
  private busy = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(cfg: NamespaceConfig) {
    if (cfg.lbaSize !== 512 && cfg.lbaSize !== 4096) throw new Error(`namespace ${cfg.nsid}: LBA size ${cfg.lbaSize} is not 512 or 4096`);
    this.nsid = cfg.nsid;
    this.path = cfg.path;
    this.lbaSize = cfg.lbaSize;
    this.lbaShift = Math.log2(cfg.lbaSize);
    this.blocks = Math.floor(cfg.size / cfg.lbaSize);
    if (this.blocks < 1) throw new Error(`namespace ${cfg.nsid}: size ${cfg.size} is less than one LBA`);
  }

  /** Opens (creating if needed) and grows the backing file; idempotent. */
  async open(): Promise<void> {
    if (this.fh) return;
    const fh = await open(this.path, constants.O_RDWR | constants.O_CREAT, 0o644);
    const bytes = this.blocks * this.lbaSize;
    if ((await fh.stat()).size < bytes) await fh.truncate(bytes);
    this.fh = fh;
  }

  private get file(): FileHandle {
    if (!this.fh) throw new Error(`namespace ${this.nsid} is not open`);
    return this.fh;
  }

  /** True when [slba, slba + nlb) lies inside the namespace. */
  inRange(slba: number, nlb: number): boolean {
    return slba + nlb <= this.blocks;
  }

  /**
   * The bytes of LBAs [slba, slba + nlb): up to SYNC_IO_MAX read right here and returned as they
   * are (no promise to settle: at queue depth 1 a command is its wake-up's only work, and every
   * promise step costs CPU on the way to its completion), larger reads through the thread pool.
   * Throws (or rejects) on a file error.
   */
  read(slba: number, nlb: number): Uint8Array | Promise<Uint8Array> {
    const len = nlb * this.lbaSize;
    if (len > SYNC_IO_MAX) return this.readPooled(slba, len);
    // Not zero-filled: the file covers the namespace, so every byte is read (a short read is filled below).
    const buf = this.take(len);
    const fd = this.file.fd;
    const pos = slba * this.lbaSize;
    for (let done = 0; done < len; ) {
      const n = readSync(fd, buf, done, len - done, pos + done);
      if (n === 0) {
        buf.fill(0, done); // beyond EOF (file shrunk under us) reads as zeros
        break;
      }
      done += n;
    }
    this.stats.bytesRead += len;
    this.stats.reads++;
    return buf;
  }

  /**
   * A buffer read() returned, whose bytes are no longer needed by anyone (the host has them: every
   * write of them settled), for a later read of the same size. Nothing may hold a view of it.
   */
  recycle(buf: Uint8Array): void {
    if (!(buf instanceof Buffer) || !this.lent.delete(buf)) return;
    let kept = this.spare.get(buf.length);
    if (!kept) this.spare.set(buf.length, (kept = []));
    if (kept.length < KEPT_PER_SIZE) kept.push(buf);
  }

  /**
   * A buffer of `len` bytes, uninitialised: one given back (recycle) if there is one. A write's
   * data is read from the host into one (a 64 KiB write: one buffer, not sixteen 4 KiB pieces)
   * and given back once it is in the file.
   */
  take(len: number): Buffer {
    const buf = this.spare.get(len)?.pop() ?? Buffer.allocUnsafe(len);
    this.lent.add(buf);
    return buf;
  }

  private async readPooled(slba: number, len: number): Promise<Uint8Array> {
    this.busy++;
    try {
      const buf = Buffer.allocUnsafe(len);
      const fd = this.file.fd;
      let done = 0;
      while (done < len) {
        const n = await pread(fd, buf, done, len - done, slba * this.lbaSize + done);
        if (n === 0) {
          buf.fill(0, done);
          break;
        }
        done += n;
      }
      this.stats.bytesRead += len;
      this.stats.reads++;
      return buf;
    } finally {
      this.done();
    }
  }

  /** Writes `parts` back to back from LBA slba. */
  async write(slba: number, parts: Uint8Array[]): Promise<void> {
    this.busy++;
    try {
      let pos = slba * this.lbaSize;
      let total = 0;
      for (const p of parts) total += p.length;
      const bytesWritten = await pwritev(this.file.fd, parts, total, pos);
      // writev may be short on a full disk or a signal; finish piece by piece.
      if (bytesWritten < total) {
        let skip = bytesWritten;
        for (const p of parts) {
          if (skip >= p.length) {
            skip -= p.length;
            pos += p.length;
            continue;
          }
          await this.writeAll(p.subarray(skip), pos + skip);
          pos += p.length;
          skip = 0;
        }
      }
      this.stats.bytesWritten += total;
      this.stats.writes++;
    } finally {
      this.done();
    }
  }

  async writeZeroes(slba: number, nlb: number): Promise<void> {
    this.busy++;
    try {
      zeros ??= new Uint8Array(ZERO_CHUNK);
      let pos = slba * this.lbaSize;
      const end = pos + nlb * this.lbaSize;
      while (pos < end) {
        const n = Math.min(end - pos, ZERO_CHUNK);
        await this.writeAll(zeros.subarray(0, n), pos);
        pos += n;
      }
    } finally {
      this.done();
    }
  }

  /** Flush (and FUA, and every write with the volatile write cache off): data and size reach stable storage. */
  async flush(): Promise<void> {
    if (!this.fh) return;
    this.busy++;
    try {
      await this.fh.datasync();
      this.stats.syncs++;
    } finally {
      this.done();
    }
  }

  /** Waits for the file operations under way, syncs and closes the file (server shutdown). */
  async close(): Promise<void> {
    while (this.busy > 0) await new Promise<void>((r) => this.idleWaiters.push(r));
    const fh = this.fh;
    this.fh = undefined;
    if (fh) {
      await fh.sync();
      this.stats.syncs++;
      await fh.close();
    }
  }

  private done(): void {
    if (--this.busy === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  private async writeAll(buf: Uint8Array, pos: number): Promise<void> {
    let done = 0;
    while (done < buf.length) {
      const { bytesWritten } = await this.file.write(buf, done, buf.length - done, pos + done);
      done += bytesWritten;
    }
  }
}
