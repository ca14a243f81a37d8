// Streaming vfio-user message parser: bytes (and SCM_RIGHTS fds) in,
// whole messages out. It keeps only the unfinished tail between pushes.
//
// Which message do received fds belong to? Linux ends a stream recvmsg()
// right after the segment that carried descriptors, and a sender writes each
// message with one sendmsg() whose first byte carries its fds. So the fds of
// one read belong to the last message that *starts* inside that read. Fds
// that arrive in a read where no message starts cannot belong to anything:
// that is a framing error.
import { HEADER_SIZE, decodeHeader, type Header } from './protocol.ts';

export interface Message {
  header: Header;
  /** The bytes after the header (a private copy, safe to keep). */
  payload: Uint8Array;
  /** Descriptors received with this message; the consumer owns (and must close or keep) them. */
  fds: number[];
}

/** The byte stream cannot be parsed further; the connection must be dropped. */
export class FramingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FramingError';
  }
}

export interface ParserOptions {
  /** Largest message accepted, header included. */
  maxMessageSize: number;
}

export class Parser {
  private pending: Uint8Array = new Uint8Array(0);
  /** Stream position of pending[0]; pending[0] is always a message start. */
  private pendingPos = 0;
  /** Fds waiting for the message starting at stream position `pos`. */
  private fdsAt: { pos: number; fds: number[] }[] = [];
  private readonly maxMessageSize: number;

  constructor(opts: ParserOptions) {
    this.maxMessageSize = opts.maxMessageSize;
  }

  /** Bytes buffered for an unfinished message. */
  get buffered(): number {
    return this.pending.length;
  }

  /**
   * Feeds one read. Complete messages are passed to `emit` in order. Throws
   * FramingError when the stream is broken; fds not yet handed out stay in
   * the parser until takeFds().
   */
  push(chunk: Uint8Array, fds: readonly number[], emit: (m: Message) => void): void {
    const chunkPos = this.pendingPos + this.pending.length;
    // Avoid a copy in the common case of no leftover from the previous read.
    this.pending = this.pending.length === 0 ? chunk : concat(this.pending, chunk);
    if (fds.length > 0) this.attachFds(chunkPos, chunkPos + chunk.length, fds);

    let at = 0;
    try {
      while (this.pending.length - at >= HEADER_SIZE) {
        const header = decodeHeader(this.pending, at);
        this.checkSize(header);
        if (this.pending.length - at < header.size) break;
        const payload = this.pending.slice(at + HEADER_SIZE, at + header.size);
        const msgFds = this.fdsFor(this.pendingPos + at);
        at += header.size;
        emit({ header, payload, fds: msgFds });
      }
    } finally {
      // Keep only the unfinished tail, as a private copy: `chunk` may be the
      // caller's reusable receive buffer.
      this.pending = at === this.pending.length ? new Uint8Array(0) : this.pending.slice(at);
      this.pendingPos += at;
    }
  }

  /** Removes and returns every fd not yet handed out (to close on teardown). */
  takeFds(): number[] {
    const all = this.fdsAt.flatMap((e) => e.fds);
    this.fdsAt = [];
    return all;
  }

  private checkSize(h: Header): void {
    if (h.size < HEADER_SIZE) throw new FramingError(`message id ${h.id} command ${h.command}: size ${h.size} is smaller than the ${HEADER_SIZE}-byte header`);
    if (h.size > this.maxMessageSize) throw new FramingError(`message id ${h.id} command ${h.command}: size ${h.size} exceeds the limit of ${this.maxMessageSize}`);
  }

  /** Finds the last message start in [from, to) and parks the fds there. */
  private attachFds(from: number, to: number, fds: readonly number[]): void {
    let start = this.pendingPos;
    let last = -1;
    for (;;) {
      if (start >= from) last = start;
      const rel = start - this.pendingPos;
      if (this.pending.length - rel < HEADER_SIZE) break;
      const size = decodeHeader(this.pending, rel).size;
      if (size < HEADER_SIZE) break; // reported as a FramingError by push()
      const next = start + size;
      if (next >= to) break;
      start = next;
    }
    // Park them before any throw so takeFds() can close them.
    this.fdsAt.push({ pos: last, fds: [...fds] });
    if (last < 0) throw new FramingError(`${fds.length} fd(s) arrived in the middle of a message`);
  }

  private fdsFor(pos: number): number[] {
    const i = this.fdsAt.findIndex((e) => e.pos === pos);
    if (i < 0) return [];
    const [e] = this.fdsAt.splice(i, 1);
    return e!.fds;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
