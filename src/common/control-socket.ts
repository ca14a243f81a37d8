/**
 * A line-delimited JSON control socket (unix stream), as the switch process
 * has one: one reply line per request line, replies in request order even
 * when the handler answers asynchronously. Used by the HI and DI processes
 * for counters (and the HI's forged-TLP injection for isolation tests).
 */

import { chmodSync, closeSync, constants, openSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { readLines } from './lines.ts';
import { removeStaleSocket } from './socket-file.ts';

const MAX_LINE = 64 * 1024;

export type ControlHandler = (request: unknown) => Record<string, unknown> | Promise<Record<string, unknown>>;

export async function serveLineControl(path: string, handle: ControlHandler): Promise<net.Server> {
  const conns = new Set<net.Socket>();
  const server = net.createServer((conn) => {
    conns.add(conn);
    conn.on('close', () => conns.delete(conn));
    let chain: Promise<void> = Promise.resolve();
    conn.on('error', () => conn.destroy());
    readLines(
      conn,
      (line) => {
        chain = chain.then(async () => {
          const reply = await answer(line);
          if (!conn.destroyed) conn.write(`${JSON.stringify(reply, (_k, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v))}\n`);
        });
      },
      { maxLine: MAX_LINE, onOverflow: () => conn.end(`${JSON.stringify({ ok: false, error: `request line longer than ${MAX_LINE} bytes` })}\n`) },
    );
  });
  const answer = async (line: string): Promise<Record<string, unknown>> => {
    let req: unknown;
    try {
      req = JSON.parse(line);
    } catch {
      return { ok: false, error: 'not JSON' };
    }
    try {
      return { ok: true, ...(await handle(req)) };
    } catch (err) {
      return { ok: false, error: (err as Error).message };
    }
  };
  // net.Server.close waits for every connection to end: a client that keeps its connection open
  // (a bench, a forgotten `socat`) would hold the process's shutdown for ever. Closing the
  // server hangs up on them.
  const closeServer = server.close.bind(server);
  server.close = (cb) => {
    closeServer(cb);
    for (const c of conns) c.destroy();
    return server;
  };
  removeStaleSocket(path);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(path, 0o600); // only the lab's own user may send requests
  return server;
}

/**
 * {"profile":"start"} / {"profile":"stop","file":"NAME.cpuprofile"}: a V8 CPU
 * profile of the running process (open it in Chrome DevTools), so a lab that
 * is up can be profiled over a run of interest. The file is written into
 * `dir`, the process's own state directory (its LAB_SOCKET_DIR unless
 * given), and only as a new file (no path
 * parts, no overwriting, no symlink followed): whoever reaches the control
 * socket cannot make the process write anywhere else. Returns undefined for
 * any other request.
 */
export function cpuProfileControl(dir: string | undefined = process.env.LAB_SOCKET_DIR): (req: unknown) => Promise<Record<string, unknown>> | undefined {
  let session: import('node:inspector/promises').Session | undefined;
  return (req) => {
    if (typeof req !== 'object' || req === null || !('profile' in req)) return undefined;
    const r = req as { profile: unknown; file?: unknown };
    return (async () => {
      if (r.profile === 'start') {
        if (session) throw new Error('already profiling');
        const { Session } = await import('node:inspector/promises');
        session = new Session();
        session.connect();
        await session.post('Profiler.enable');
        await session.post('Profiler.start');
        return { profiling: true };
      }
      if (r.profile === 'stop' && typeof r.file === 'string') {
        if (!PROFILE_NAME.test(r.file)) throw new Error(`profile file ${JSON.stringify(r.file)}: expected a plain name like "run1.cpuprofile" (it is written into ${dir})`);
        if (!session) throw new Error('not profiling');
        if (!dir) throw new Error('this process has no state directory to write profiles to');
        const path = join(dir, r.file);
        // O_EXCL: never replace a file (nor follow a symlink planted at the name).
        const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
        try {
          const { profile } = await session.post('Profiler.stop');
          session.disconnect();
          session = undefined;
          writeFileSync(fd, JSON.stringify(profile));
        } finally {
          closeSync(fd);
        }
        return { written: path };
      }
      throw new Error('profile: "start", or "stop" with "file": a plain NAME.cpuprofile');
    })();
  };
}

export const PROFILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,100}\.cpuprofile$/;
