// Typed loader for the pcieoe_native addon (native/src/addon.cc).
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

  /** memfd_create(name) + ftruncate(size). */
  memfdCreate(name: string, size: number): number;
  /** MAP_SHARED mapping of fd[offset, offset+length); offset need not be page-aligned. */
  mmap(fd: number, offset: number, length: number, writable: boolean): ArrayBuffer;
  /** Unmap now and detach the ArrayBuffer (its views become empty). */
  munmap(buffer: ArrayBuffer): void;

  eventfd(initial?: number): number;
  /** Add `value` (default 1) to the counter; a saturated counter is not an error. */
  eventfdWrite(fd: number, value?: number): void;
  /** Read and reset the counter; null when it is zero. */
  eventfdRead(fd: number): number | null;

  socketpair(kind: 'stream' | 'dgram' | 'seqpacket'): [number, number];
  unixListen(path: string, backlog?: number): number;
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
  /** Datagram to a bound unix path; -1 if the receiver's queue is full. */
  sendTo(fd: number, data: Uint8Array, path: string): number;
  /** One datagram (truncated to buf), or -1 if none is queued. */
  recv(fd: number, buf: Uint8Array): number;

  Poll: new (fd: number, callback: (err: NativeError | null, events: number) => void) => Poll;
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
