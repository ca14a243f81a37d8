// A minimal QMP client: one connection per call, capabilities negotiated, events skipped.
import { createConnection } from 'node:net';
import { readLines } from '../common/lines.ts';

export interface QmpReply {
  return?: unknown;
  error?: { class: string; desc: string };
}

export function qmp(socketPath: string, command: string, args?: object, timeoutMs = 10_000): Promise<QmpReply> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(socketPath);
    let stage = 0; // 0 greeting, 1 capabilities reply, 2 command reply, 3 answered
    const timer = setTimeout(() => fail(new Error(`QMP ${command}: no reply within ${timeoutMs} ms (${socketPath})`)), timeoutMs);
    const fail = (err: Error) => {
      clearTimeout(timer);
      sock.destroy();
      reject(err);
    };
    sock.on('error', (err) => fail(new Error(`QMP ${socketPath}: ${err.message}`)));
    sock.on('close', () => fail(new Error(`QMP ${socketPath}: connection closed before the reply`)));
    readLines(sock, (line) => {
      const msg = JSON.parse(line);
      if (msg.event || stage > 2) return;
      if (stage === 0) sock.write(JSON.stringify({ execute: 'qmp_capabilities' }) + '\n');
      else if (stage === 1) sock.write(JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) }) + '\n');
      else {
        clearTimeout(timer);
        sock.removeAllListeners('close');
        sock.end();
        resolve(msg);
      }
      stage++;
    });
  });
}
