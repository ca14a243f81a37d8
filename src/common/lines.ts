// Line protocols (the lab processes' control sockets, QMP, the guest agent) read whole lines off
// a stream socket; this is the one place that puts them together across chunks.
import type { Socket } from 'node:net';

export interface ReadLinesOptions {
  /** Default utf8. */
  encoding?: BufferEncoding;
  /** The longest unfinished line kept: past it the partial line is dropped and `onOverflow` called. */
  maxLine?: number;
  onOverflow?: () => void;
}

/**
 * Calls `onLine` with each line that arrives on `sock`, without its line end (\n or \r\n) but
 * otherwise as sent (the guest agent's fields may end in spaces); blank lines are skipped. Stops
 * as soon as the socket is destroyed.
 */
export function readLines(sock: Socket, onLine: (line: string) => void, options: ReadLinesOptions = {}): void {
  let pending = '';
  sock.setEncoding(options.encoding ?? 'utf8');
  sock.on('data', (chunk: string) => {
    pending += chunk;
    let nl;
    while (!sock.destroyed && (nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, pending[nl - 1] === '\r' ? nl - 1 : nl);
      pending = pending.slice(nl + 1);
      if (line.trim()) onLine(line);
    }
    if (options.maxLine !== undefined && pending.length > options.maxLine) {
      pending = '';
      options.onOverflow?.();
    }
  });
}
