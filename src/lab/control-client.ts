// Client side of the lab processes' line-JSON control sockets (common/control-socket.ts):
// one request, one reply line.
import { createConnection } from 'node:net';

/** One request; undefined if nothing answers within `timeoutMs`. */
export function controlRequest(path: string, request: object, timeoutMs = 1000): Promise<Record<string, unknown> | undefined> {
  return new Promise((resolve) => {
    const sock = createConnection(path);
    let buf = '';
    const done = (v: Record<string, unknown> | undefined) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    sock.setEncoding('utf8');
    sock.on('error', () => done(undefined));
    sock.on('connect', () => sock.write(`${JSON.stringify(request)}\n`));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      try {
        done(JSON.parse(buf.slice(0, nl)));
      } catch {
        done(undefined);
      }
    });
  });
}

/** One request that must succeed: throws naming `who` and its error otherwise. */
export async function controlCall(who: string, path: string, request: object, timeoutMs = 10_000): Promise<Record<string, unknown>> {
  const r = await controlRequest(path, request, timeoutMs);
  if (r === undefined) throw new Error(`${who}: no answer on ${path} within ${timeoutMs / 1000} s`);
  if (r.ok !== true) throw new Error(`${who}: ${String(r.error ?? 'refused')} (request ${JSON.stringify(request)})`);
  return r;
}
