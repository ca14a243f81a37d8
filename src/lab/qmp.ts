// A minimal QMP client: one connection per call, capabilities negotiated, events skipped.
import { createConnection } from 'node:net';

export interface QmpReply {
  return?: unknown;
  error?: { class: string; desc: string };
}

export function qmp(socketPath: string, command: string, args?: object, timeoutMs = 10_000): Promise<QmpReply> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(socketPath);
    let buf = '';
    let stage = 0; // 0 greeting, 1 capabilities reply, 2 command reply
    const timer = setTimeout(() => fail(new Error(`QMP ${command}: no reply within ${timeoutMs} ms (${socketPath})`)), timeoutMs);
    const fail = (err: Error) => {
      clearTimeout(timer);
      sock.destroy();
      reject(err);
    };
    sock.setEncoding('utf8');
    sock.on('error', (err) => fail(new Error(`QMP ${socketPath}: ${err.message}`)));
    sock.on('close', () => fail(new Error(`QMP ${socketPath}: connection closed before the reply`)));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line);
        if (msg.event) continue;
        if (stage === 0) sock.write(JSON.stringify({ execute: 'qmp_capabilities' }) + '\n');
        else if (stage === 1) sock.write(JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) }) + '\n');
        else {
          clearTimeout(timer);
          sock.removeAllListeners('close');
          sock.end();
          resolve(msg);
          return;
        }
        stage++;
      }
    });
  });
}
