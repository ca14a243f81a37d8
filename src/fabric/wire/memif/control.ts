/**
 * One memif control connection: a connected unix SOCK_SEQPACKET socket
 * carrying 128-byte messages (messages.ts), each with at most one fd. Reads
 * are event-driven on Node's loop; a packet that is not a memif message, or
 * the peer closing, ends the connection through `onClose` with the reason.
 */

import { type Poll, PollEvent, native } from '../../../../native/index.ts';
import { MEMIF_MESSAGE_BYTES, type MemifMessage, MemifProtocolError, decodeMemifMessage, encodeMemifMessage } from './messages.ts';

export class MemifControl {
  private readonly poll: Poll;
  private readonly rx = Buffer.alloc(2 * MEMIF_MESSAGE_BYTES);
  private closed = false;

  /**
   * `onMessage` gets each message and the fd that came with it (-1: none),
   * and owns the fd once it returns; it keeps an fd only as its last step. An
   * exception from it is a protocol error: the fd is closed, DISCONNECT
   * carries the message, then the connection closes.
   */
  constructor(
    readonly fd: number,
    private readonly onMessage: (m: MemifMessage, fd: number) => void,
    private readonly onClose: (reason: string) => void,
  ) {
    this.poll = new native.Poll(fd, (err, events) => {
      if (err) return this.close(`control socket: ${err.message}`);
      if (events & (PollEvent.Readable | PollEvent.Disconnect)) this.read();
    });
    this.poll.start(PollEvent.Readable | PollEvent.Disconnect);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  send(m: MemifMessage, fd?: number): void {
    if (this.closed) return;
    try {
      // 128 bytes on an idle control socket: the send buffer has room unless the peer stopped reading.
      if (native.sendmsg(this.fd, encodeMemifMessage(m), fd === undefined ? undefined : [fd]) < 0) throw new Error('peer is not reading its control socket');
    } catch (err) {
      this.close(`send ${m.type}: ${(err as Error).message}`);
    }
  }

  /** Say why (DISCONNECT), then close. */
  disconnect(reason: string): void {
    this.send({ type: 'disconnect', code: 0, reason });
    this.close(reason);
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.poll.close();
    native.close(this.fd);
    this.onClose(reason);
  }

  private read(): void {
    while (!this.closed) {
      const fds: number[] = [];
      let n: number;
      try {
        n = native.recvmsg(this.fd, this.rx, fds);
      } catch (err) {
        return this.close(`control socket: ${(err as Error).message}`);
      }
      if (n < 0) return;
      if (n === 0) return this.close('the peer closed the control socket');
      // At most one fd belongs to a memif message; more are a protocol error, and none may leak.
      for (const extra of fds.slice(1)) native.close(extra);
      const fd = fds[0] ?? -1;
      try {
        if (fds.length > 1) throw new MemifProtocolError(`control message with ${fds.length} fds, at most 1 expected`);
        const m = decodeMemifMessage(this.rx.subarray(0, n));
        if (m.type === 'disconnect') {
          if (fd >= 0) native.close(fd);
          return this.close(`the peer disconnected: ${m.reason || `code ${m.code}`}`);
        }
        this.onMessage(m, fd);
      } catch (err) {
        if (fd >= 0) native.close(fd);
        return this.disconnect((err as Error).message);
      }
    }
  }
}
