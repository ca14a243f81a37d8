// Unix stream socket transport with fd passing, on Node's event loop.
//
// Node's net.Socket reads with read(2), which silently drops SCM_RIGHTS
// descriptors, so the socket is driven through the native addon instead:
// a Poll watches readiness, recvmsg/sendmsg move bytes and fds.
import { chmodSync } from 'node:fs';
import { removeStaleSocket } from '../common/socket-file.ts';
import { native, PollEvent, type Poll } from '../../native/index.ts';
import { FramingError, Parser, type Message } from './parser.ts';

export interface ConnectionHandlers {
  message(m: Message): void;
  /** Called once; `error` is set when the connection broke rather than ended. */
  closed(reason: string, error?: Error): void;
}

const RECV_BUFFER_SIZE = 256 * 1024;
/** Reads per readiness callback before yielding to other sockets. */
const READS_PER_WAKEUP = 16;

export class Connection {
  private readonly poll: Poll;
  private readonly parser: Parser;
  private readonly recvBuf = new Uint8Array(RECV_BUFFER_SIZE);
  private readonly recvFds: number[] = [];
  /** Unsent tail of earlier sends; fds ride with the first byte of their entry. */
  private sendQueue: { data: Uint8Array; fds: number[] }[] = [];
  /** Bytes in sendQueue. */
  private unsent = 0;
  private open = true;

  /** A peer that leaves more than `maxUnsentBytes` unread is disconnected. */
  constructor(readonly fd: number, maxMessageSize: number, private readonly handlers: ConnectionHandlers, private readonly maxUnsentBytes = Infinity) {
    this.parser = new Parser({ maxMessageSize });
    this.poll = new native.Poll(fd, (err, events) => this.onReady(err, events));
    this.poll.start(PollEvent.Readable | PollEvent.Disconnect);
  }

  get isOpen(): boolean {
    return this.open;
  }

  /**
   * Sends one whole message. Never blocks: what the socket cannot take now is
   * queued and flushed when it becomes writable. The fds are only borrowed.
   */
  send(data: Uint8Array, fds: readonly number[] = []): void {
    if (!this.open) return;
    if (this.sendQueue.length > 0) {
      this.enqueue(data, dupFree(fds));
      return;
    }
    try {
      const n = native.sendmsg(this.fd, data, fds);
      if (n === data.length) return;
      this.enqueue(data.subarray(Math.max(n, 0)), n > 0 ? [] : dupFree(fds));
      this.poll.start(PollEvent.Readable | PollEvent.Disconnect | PollEvent.Writable);
    } catch (err) {
      this.close(`send failed: ${(err as Error).message}`, err as Error);
    }
  }

  close(reason = 'closed locally', error?: Error): void {
    if (!this.open) return;
    this.open = false;
    this.poll.close();
    native.close(this.fd);
    for (const fd of [...this.recvFds.splice(0), ...this.parser.takeFds()]) native.close(fd);
    for (const q of this.sendQueue) closeAll(q.fds);
    this.sendQueue = [];
    this.unsent = 0;
    this.handlers.closed(reason, error);
  }

  private enqueue(data: Uint8Array, fds: number[]): void {
    this.sendQueue.push({ data, fds });
    this.unsent += data.length;
    if (this.unsent > this.maxUnsentBytes) this.close(`peer does not read: ${this.unsent} bytes unsent`);
  }

  private onReady(err: Error | null, events: number): void {
    if (!this.open) return;
    if (err) return this.close(`poll error: ${err.message}`, err);
    if (events & PollEvent.Writable) this.flush();
    if (events & (PollEvent.Readable | PollEvent.Disconnect)) this.readSome();
  }

  private readSome(): void {
    for (let i = 0; i < READS_PER_WAKEUP && this.open; i++) {
      let n: number;
      try {
        n = native.recvmsg(this.fd, this.recvBuf, this.recvFds);
      } catch (err) {
        return this.close(`recvmsg failed: ${(err as Error).message}`, err as Error);
      }
      if (n < 0) return;
      if (n === 0) {
        const partial = this.parser.buffered;
        return this.close(partial > 0 ? `peer closed the socket in the middle of a message (${partial} bytes buffered)` : 'peer closed the socket');
      }
      const fds = this.recvFds.splice(0);
      try {
        this.parser.push(this.recvBuf.subarray(0, n), fds, (m) => this.handlers.message(m));
      } catch (err) {
        if (err instanceof FramingError) return this.close(`framing error: ${err.message}`, err);
        throw err;
      }
    }
  }

  private flush(): void {
    while (this.sendQueue.length > 0) {
      const head = this.sendQueue[0]!;
      let n: number;
      try {
        n = native.sendmsg(this.fd, head.data, head.fds);
      } catch (err) {
        return this.close(`send failed: ${(err as Error).message}`, err as Error);
      }
      if (n < 0) return;
      if (n > 0) closeAll(head.fds.splice(0));
      this.unsent -= n;
      if (n < head.data.length) {
        head.data = head.data.subarray(n);
        return;
      }
      this.sendQueue.shift();
    }
    this.poll.start(PollEvent.Readable | PollEvent.Disconnect);
  }
}

/** Queued sends outlive the caller's fds, so the queue keeps its own duplicates. */
function dupFree(fds: readonly number[]): number[] {
  return fds.map((fd) => native.dup(fd));
}

function closeAll(fds: number[]): void {
  for (const fd of fds) native.close(fd);
}

/** A listening unix stream socket; hands each accepted fd to `accept`. */
export class UnixListener {
  private readonly fd: number;
  private readonly poll: Poll;
  private listening = true;

  constructor(readonly path: string, accept: (fd: number) => void, onError: (err: Error) => void) {
    removeStaleSocket(path);
    this.fd = native.unixListen(path, 16);
    // Only the lab's own user may connect (the directory should be private too: this closes no race with bind).
    chmodSync(path, 0o600);
    this.poll = new native.Poll(this.fd, (err) => {
      if (!this.listening) return;
      if (err) return onError(err);
      for (;;) {
        let fd: number;
        try {
          fd = native.unixAccept(this.fd);
        } catch (e) {
          return onError(e as Error); // e.g. EMFILE: keep listening, report it
        }
        if (fd < 0) return;
        accept(fd);
      }
    });
    this.poll.start(PollEvent.Readable);
  }

  close(): void {
    if (!this.listening) return;
    this.listening = false;
    this.poll.close();
    native.close(this.fd);
    try {
      removeStaleSocket(this.path);
    } catch {
      // Someone put another file there meanwhile: not ours to delete.
    }
  }
}
