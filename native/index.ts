// Typed loader for the pcieoe_native addon, the single JS entry to it. Its C++ is one file a
// concern in native/src/ (fds.cc, seals.cc, eventfd.cc, timerfd.cc, stream.cc, dgram.cc, crc32.cc, poll.cc;
// addon.cc registers them); this file may import only Node itself.
//
// Conventions shared by every function here:
//  * fds are created non-blocking and close-on-exec;
//  * I/O that would block returns -1 (or null) instead of throwing;
//  * real failures throw an Error whose `code` is the errno name ("EBADF"),
//    `errno` the negative errno and `syscall` the failing call, like Node's.
import { createRequire } from 'node:module';

export interface NativeError extends Error {
  code: string;
  errno: number;
  syscall: string;
}

/** Readiness bits for Poll.start() and its callback. */
export const enum PollEvent {
  Readable = 1,
  Writable = 2,
  Disconnect = 4,
}

/** F_SEAL_* bits of fcntl(F_GET_SEALS). */
export const enum FileSeal {
  Seal = 1,
  Shrink = 2,
  Grow = 4,
  Write = 8,
  FutureWrite = 16,
}

export interface Poll {
  /** Watch `events` (PollEvent bits); replaces any previous set. */
  start(events: number): void;
  stop(): void;
  /** Stop for good and release the watcher. Does not close the fd. */
  close(): void;
}

export interface Native {
  close(fd: number): void;
  /** A new close-on-exec fd for the same open file. */
  dup(fd: number): number;
  /** Whether the open file is O_NONBLOCK; sets or clears it first when `on` is given (shared by every fd of that file). */
  fdNonBlocking(fd: number, on?: boolean): boolean;

  /** memfd_create(name) + ftruncate(size). */
  memfdCreate(name: string, size: number): number;
  /** MAP_SHARED mapping of fd[offset, offset+length); offset need not be page-aligned. */
  mmap(fd: number, offset: number, length: number, writable: boolean): ArrayBuffer;
  /** Unmap now and detach the ArrayBuffer (its views become empty). */
  munmap(buffer: ArrayBuffer): void;
  /** F_GET_SEALS: the fd's FileSeal bits; 0 when it does not support sealing (seals.cc). */
  fdSeals(fd: number): number;
  /** A memfd sealed SHRINK|GROW|SEAL, as QEMU's memory-backend-memfd makes guest RAM. */
  sealedMemfd(name: string, size: number): number;

  eventfd(initial?: number): number;
  /**
   * Add `value` (default 1) to the counter; false when it did not fit (a saturated counter is
   * not an error: the reader has a wake-up pending). Never blocks, even on an fd that was made
   * blocking (a vfio-user client may do that to an irq eventfd it shares); a value above 1 on a
   * blocking fd is refused (false), as poll can only tell that 1 more fits.
   */
  eventfdWrite(fd: number, value?: number | bigint): boolean;
  /** Read and reset the counter; null when it is zero. */
  eventfdRead(fd: number): number | null;

  /** A CLOCK_MONOTONIC timerfd, disarmed (timerfd.cc). */
  timerfd(): number;
  /** Expire once `us` microseconds from now (fractions count; a negative value disarms). */
  timerfdSet(fd: number, us: number): void;
  /** Expirations since the last read; null when none. */
  timerfdRead(fd: number): number | null;

  socketpair(kind: 'stream' | 'dgram' | 'seqpacket'): [number, number];
  /** A listening socket bound at `path` (kind default 'stream'; 'seqpacket' for the memif control socket). */
  unixListen(path: string, backlog?: number, kind?: 'stream' | 'seqpacket'): number;
  /** A connected fd, or -1 when no connection is pending. */
  unixAccept(listenFd: number): number;
  unixConnect(path: string, kind?: 'stream' | 'dgram' | 'seqpacket'): number;
  /** A datagram socket, bound to `path` when given. */
  unixDgram(path?: string): number;

  /** Bytes sent (possibly short on a stream), or -1 if the socket buffer is full. fds travel with the first byte. */
  sendmsg(fd: number, data: Uint8Array, fds?: readonly number[]): number;
  /**
   * Bytes read into buf (0 = peer closed), or -1 if nothing is queued.
   * Received fds are appended to fdsOut; they all belong to the last message
   * that starts within the returned bytes (Linux stops a read after the
   * segment carrying them).
   */
  recvmsg(fd: number, buf: Uint8Array, fdsOut: number[]): number;
  /** Bytes sent on this socket that the peer has not read yet (SIOCOUTQ); 0 once it has read everything. */
  unsentBytes(fd: number): number;
  /** Datagram to a bound unix path; -1 if the receiver's queue is full. */
  sendTo(fd: number, data: Uint8Array, path: string): number;
  /** One datagram (truncated to buf), or -1 if none is queued. */
  recv(fd: number, buf: Uint8Array): number;

  // ---- datagram fast path (the fabric's ports) ----

  /**
   * One datagram with its sender, or null if none is queued. `length` is the
   * datagram's real length: more than buf.length means it was cut to fit.
   * `sender` is the sender's bound path, null for an unbound sender (which
   * cannot be answered); abstract addresses keep their leading NUL ("\0").
   */
  recvFrom(fd: number, buf: Uint8Array): [length: number, sender: string | null] | null;
  /**
   * Connect a (bound or unbound) datagram socket to `path`: sends without a
   * path go there, and only from there is anything received. null dissolves
   * the association. A pair connected to each other is exempt from the
   * receiver's net.unix.max_dgram_qlen; only the sender's SO_SNDBUF bounds it.
   */
  dgramConnect(fd: number, path: string | null): void;
  /**
   * Set SO_SNDBUF / SO_RCVBUF where a size is given and return the sizes in
   * effect (the kernel doubles requests and caps them at net.core.[wr]mem_max).
   */
  socketBuffers(fd: number, send?: number | null, recv?: number | null): { send: number; recv: number };
  /**
   * Send frames[start, start+count) in one system call (count is clamped to
   * 256), to `path` or, without it, to the connected peer. Returns how many
   * went out, in order; -1 if the first would block. An error on the first
   * frame throws; one on a later frame only ends the batch there (the next
   * call reports it).
   */
  sendmmsg(fd: number, frames: readonly Uint8Array[], start: number, count: number, path?: string | null): number;
  /**
   * Read up to `count` (clamped to 256) datagrams in one system call into
   * `slab`: each lands in a `slot`-byte window at offset + i*slot (that must
   * fit the slab; offset 8-byte aligned), then the batch is packed down, each
   * datagram starting 8-byte aligned right after the previous one.
   * meta[2i] = where datagram i now starts, meta[2i+1] = its real length;
   * a length above `slot` means it was cut short and its bytes were not kept.
   * `senders[i]`, when the array is given: as for recvFrom (one string is
   * shared by consecutive datagrams from one sender).
   * Returns the number read, or -1 if none is queued.
   */
  recvmmsg(fd: number, slab: Uint8Array, offset: number, slot: number, count: number, meta: Int32Array, senders?: (string | null)[]): number;
  /**
   * CRC-32 (IEEE 802.3, as zlib) of data[start, end) continuing from `initial`
   * (PCLMULQDQ folding where the CPU has it, else slicing-by-8). With `zeroAt`,
   * the four bytes there (within the range) count as zero: a frame's own CRC field.
   */
  crc32(data: Uint8Array, initial?: number, start?: number, end?: number, zeroAt?: number): number;
  /** Copy `src` to dst[offset, offset + src.length) and return its CRC-32 continuing from `initial`, in one pass. */
  crc32Copy(dst: Uint8Array, offset: number, src: Uint8Array, initial?: number): number;
  /**
   * Copy src[start, end) to dst[offset, offset + end - start) and return the CRC-32 of
   * src[crcStart, crcEnd) with the four bytes at zeroAt counted as zero, in one pass: a
   * received frame is copied out of shared memory and checked at once (the bytes checked
   * are the bytes copied, whatever the peer writes meanwhile). The ranges must nest as
   * start <= crcStart <= zeroAt, zeroAt + 4 <= crcEnd <= end; src and dst must not overlap.
   */
  copyCrc32(dst: Uint8Array, offset: number, src: Uint8Array, start: number, end: number, crcStart: number, crcEnd: number, zeroAt: number): number;
  /**
   * The last step of encoding a PCIeOE frame whose 24-byte header stands at buf[hdr]: `payload`
   * copied in behind it and the CRC-32 of header and payload (the CRC field at hdr + 12 counted
   * as zero) written into that field, big-endian, in one pass; returns the CRC.
   */
  sealFrame(buf: Uint8Array, hdr: number, payload: Uint8Array): number;
  /**
   * For i < count, ok[i] = 1 when region[start, end) (the i-th pair of u32, native byte order, in
   * `spans`) is a PCIeOE frame, tagged or not, whose payload fits and whose CRC field holds the
   * CRC-32 of its header and payload (the field counted as zero); else 0. One call for the
   * frames of a receive pass.
   */
  framesCrcOk(region: Uint8Array, spans: Uint8Array, count: number, ok: Uint8Array): void;
  /** Keep large freed blocks in the process heap so new receive slabs reuse warm pages (see dgram.cc). */
  retainFreedHeap(): void;

  Poll: new (fd: number, callback: (err: NativeError | null, events: number) => void) => Poll;
  /** The switch's memif-to-memif fast path (memif-forward.cc; used by src/fabric/switch/memif-forward.ts). */
  MemifForwarder: new (ports: number, routes: number, counters: Float64Array, hits: Float64Array, open: Uint8Array, loss: Float64Array, seed: number) => MemifForwarder;
  /**
   * Port i's receive eventfd watched as a Poll is, each wake-up served by the forwarder first
   * (memif-forward.cc); `callback` runs only for what it leaves. close() detaches the port.
   */
  MemifForwardPoll: new (forwarder: MemifForwarder, i: number, fd: number, callback: (err: NativeError | null, events: number) => void) => Poll;
}

/**
 * Frames from one memif port's receive ring to others' transmit rings, slot to slot, by routes
 * (memif-forward.cc). `counters`: ten per port (rxFrames, rxBytes, txFrames, txBytes,
 * txSignals, rxWakes, rxLost, rxPassed, txLost, txPassed); `hits[k]`: the `now` route k was last
 * used at; `open[j]`: port j's transmit ring may be written (kept by the caller); `loss[2j]`,
 * `loss[2j + 1]`: the probability a frame in from port j's station, out to it, is dropped;
 * `seed`: of the drops' random numbers.
 */
export interface MemifForwarder {
  /** Port i's receive ring (its header-and-descriptor bytes, the connection's regions); null: none. */
  setRx(i: number, ring: Uint8Array | null, regions?: readonly Uint8Array[]): void;
  /** Port i's transmit ring and the eventfd that wakes its consumer; null: none. */
  setTx(i: number, ring: Uint8Array | null, regions?: readonly Uint8Array[], event?: number): void;
  /** Route k (at most one past the last): frames from port `from` with these addresses and tag (VID, -1 untagged) go to `to` while now ≤ until. */
  setRoute(k: number, from: number, src: number, dst: number, tag: number, to: number, until: number): void;
  clearRoutes(): void;
  /**
   * Forward what waits on port i's receive ring from `cursor`, at most `max` frames, stopping at
   * the first it cannot (left for the JS path); `open` brought up to date first.
   * Returns frames * 65536 + the new cursor.
   */
  forward(i: number, cursor: number, max: number, now: number): number;
}

const require = createRequire(import.meta.url);

function load(): Native {
  try {
    return require('./build/Release/pcieoe_native.node') as Native;
  } catch (err) {
    const e = err as Error;
    throw new Error(`pcieoe native addon not built (run "npm install" or "npx node-gyp rebuild -C native"): ${e.message}`, { cause: err });
  }
}

export const native: Native = load();

export function isNativeError(err: unknown, code?: string): err is NativeError {
  return err instanceof Error && typeof (err as NativeError).code === 'string' && (code === undefined || (err as NativeError).code === code);
}
