// Host side of the guest agent (lab/qemu/guest/lab-agent): one command at a time over the
// VM's second serial port, exposed by QEMU as a unix socket.
import { createConnection, type Socket } from 'node:net';
import { randomInt } from 'node:crypto';
import { readLines } from '../common/lines.ts';

export interface ExecResult {
  status: number;
  stdout: string;
  stderr: string;
}

const RESPONSE = /\x1eLAB (\d+) (\d+) ([A-Za-z0-9+/=]*) ([A-Za-z0-9+/=]*)$/;

function connect(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createConnection(path);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/**
 * Sends `command` (a bash script) and waits for its result. With `retryEveryMs` the request
 * is repeated until answered: used while the guest boots and the agent is not reading yet.
 */
export async function agentExec(
  agentSocket: string,
  command: string,
  opts: { timeoutMs?: number; retryEveryMs?: number } = {},
): Promise<ExecResult> {
  const timeoutMs = opts.timeoutMs ?? 600_000;
  const sock = await connect(agentSocket);
  const id = randomInt(1, 2 ** 31);
  const request = `${id} ${Buffer.from(command).toString('base64')}\n`;
  return new Promise((resolve, reject) => {
    const done = (err?: Error, res?: ExecResult) => {
      clearTimeout(timer);
      clearInterval(retry);
      sock.removeAllListeners();
      sock.on('error', () => {});
      sock.destroy();
      err ? reject(err) : resolve(res!);
    };
    const timer = setTimeout(() => done(new Error(`guest agent: no answer within ${timeoutMs / 1000} s`)), timeoutMs);
    const retry = opts.retryEveryMs ? setInterval(() => sock.write(request), opts.retryEveryMs) : undefined;
    readLines(
      sock,
      (line) => {
        const m = RESPONSE.exec(line);
        if (!m || Number(m[1]) !== id) return; // console noise, or an answer to an earlier try
        const text = (b64: string) => Buffer.from(b64, 'base64').toString('utf8');
        done(undefined, { status: Number(m[2]), stdout: text(m[3]!), stderr: text(m[4]!) });
      },
      { encoding: 'latin1' },
    );
    sock.on('error', (err) => done(new Error(`guest agent: ${err.message}`)));
    sock.on('close', () => done(new Error('guest agent: connection closed (did the VM stop?)')));
    sock.write(request);
  });
}
