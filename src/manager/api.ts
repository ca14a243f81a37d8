// The manager's API: a WebSocket server on loopback. A client proves itself with the token
// kept in the manager's state directory (`Authorization: Bearer <token>` on the upgrade
// request); anything else is refused with 401 before a socket exists.
//
// Requests and replies are JSON text messages:
//   → {"id":1,"op":"list"}   ← hosts, DIs, assignments and (with a station on the switch) "discovery", as in stations.json
//   → {"id":2,"op":"assign","host":"host-a","function":"di/fn0","slot":1}   (slot optional)
//   → {"id":3,"op":"unassign","host":"host-a","function":"di/fn0"}
//   → {"id":4,"op":"move","function":"di/fn0","host":"host-b"}
//   ← {"id":2,"ok":true,"result":{"assignment":{...},"ms":812}}
//   ← {"id":2,"ok":false,"error":{"code":"already-assigned","message":"di/fn0 is already assigned to host-b (slot 0); ..."}}
// Events go to every client as they happen: {"event":"assigned","assignment":{...},"ms":812}, etc.;
// {"event":"fault","link":"di0","set":{...}} after a fault change.
//
// The fabric's links (links.ts; each is a switch port, "hi-host-a0", "di0"):
//   → {"id":5,"op":"links"}                                   ← per link: station, up, counters, faults
//   → {"id":6,"op":"fault","link":"di0","set":{"loss":0.1,"latency":5,"down":false},"dir":"tx"}  (dir optional)
//   → {"id":7,"op":"capture","link":"di0"}  ("all": every link)  ← {"id":1,"file":".../capture-1.pcap",...}
//   → {"id":8,"op":"capture-stop","capture":1}                   ← {"frames":42,"file":...}
//
// The web console (console/) is served over plain HTTP on the same port: GET / and
// /console.js hold no data; the page opens the WebSocket with the token it was given in the
// URL's fragment, as the subprotocol "token.<token>" (browsers cannot set headers there).
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { writeFileAtomic } from '../common/atomic-file.ts';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join } from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { z } from 'zod';
import type { Manager } from './manager.ts';
import { AssignmentError } from './table.ts';
import { LinkError, type SwitchLinks } from './links.ts';
import type { StationsFile } from './station-link.ts';

const ref = z.string().regex(/^[a-z][a-z0-9-]*\/[a-z][a-z0-9-]*$/, 'expected "<di>/<function>"');
const host = z.string().min(1);
const Request = z.discriminatedUnion('op', [
  z.strictObject({ id: z.number(), op: z.literal('list') }),
  z.strictObject({ id: z.number(), op: z.literal('assign'), host, function: ref, slot: z.number().int().min(0).optional() }),
  z.strictObject({ id: z.number(), op: z.literal('unassign'), host, function: ref }),
  z.strictObject({ id: z.number(), op: z.literal('move'), host, function: ref, slot: z.number().int().min(0).optional() }),
  z.strictObject({ id: z.number(), op: z.literal('links') }),
  // The switch checks the settings themselves (names and ranges) and says what was wrong.
  z.strictObject({ id: z.number(), op: z.literal('fault'), link: z.string().min(1), dir: z.enum(['tx', 'rx']).optional(), set: z.record(z.string(), z.union([z.number(), z.boolean()])) }),
  z.strictObject({ id: z.number(), op: z.literal('capture'), link: z.string().min(1) }),
  z.strictObject({ id: z.number(), op: z.literal('capture-stop'), capture: z.number().int() }),
]);
export type ApiRequest = z.infer<typeof Request>;

/** Where a client finds the API: the port (in api.json) and the token, in the manager's state directory. */
export const apiFiles = (dir: string) => ({ endpoint: join(dir, 'api.json'), token: join(dir, 'token') });

/** The token, created once (readable by its owner only) and kept across manager restarts. */
export function apiToken(dir: string): string {
  const { token } = apiFiles(dir);
  if (existsSync(token)) return readFileSync(token, 'utf8').trim();
  mkdirSync(dir, { recursive: true });
  const t = randomBytes(24).toString('hex');
  writeFileAtomic(token, t + '\n', 0o600);
  return t;
}

/** The console's address, the token in its fragment (browsers do not send fragments to servers). */
export function consoleUrl(dir: string): string {
  const { endpoint, token } = apiFiles(dir);
  const { port } = JSON.parse(readFileSync(endpoint, 'utf8')) as { port: number };
  return `http://127.0.0.1:${port}/#token=${readFileSync(token, 'utf8').trim()}`;
}

function sameToken(given: string | undefined, token: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

export interface RunningApi {
  port: number;
  close(): Promise<void>;
}

/** What the manager's station discovered on the wire (stations.json's content), where it has one. */
export type Discovered = () => StationsFile | undefined;

/** Snapshot for "list": hosts with their slots, DIs with their functions and holders, assignments,
 *  and, with a station on the switch, what it discovered (stations, liveness, epochs, links, HI slots, DI functions). */
export function listing(m: Manager, discovered?: Discovered) {
  const discovery = discovered?.();
  const { inventory } = m.table;
  const assignments = m.table.list();
  return {
    hosts: inventory.hosts.map((h) => {
      const used = m.table.usedSlots(h.name);
      return { name: h.name, slots: [...Array(h.slots).keys()].map((s) => ({ slot: s, function: used.get(s) ?? null })) };
    }),
    dis: inventory.dis.map((d) => ({
      name: d.name,
      functions: d.functions.map((f) => ({ ...f, holder: assignments.find((a) => a.di === d.name && a.function === f.name)?.host ?? null })),
    })),
    assignments,
    ...(discovery ? { discovery } : {}),
  };
}

function needLinks(links: SwitchLinks | undefined): SwitchLinks {
  if (!links) throw new LinkError('this manager has no switch to ask about links');
  return links;
}

async function answer(m: Manager, req: ApiRequest, links: SwitchLinks | undefined, discovered: Discovered | undefined): Promise<unknown> {
  switch (req.op) {
    case 'list':
      return listing(m, discovered);
    case 'assign':
      return m.assign(req.host, req.function, req.slot);
    case 'unassign':
      return m.unassign(req.host, req.function);
    case 'move':
      return m.move(req.function, req.host, req.slot);
    case 'links':
      return { links: await needLinks(links).list() };
    case 'fault':
      return needLinks(links).fault(req.link, req.set, req.dir);
    case 'capture':
      return needLinks(links).startCapture(req.link);
    case 'capture-stop':
      return needLinks(links).stopCapture(req.capture);
  }
}

const consoleDir = new URL('./console/', import.meta.url);
const CONSOLE_FILES: Record<string, string> = { '/': 'index.html', '/console.js': 'console.js' };
const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8' };

/** The console's static files (no data in them: the page asks the API, with the token). */
function serveConsole(url: string | undefined, res: import('node:http').ServerResponse): void {
  const file = CONSOLE_FILES[new URL(url ?? '/', 'http://x').pathname];
  if (!file) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: the console is at / and the API is a WebSocket (see src/manager/api.ts)\n');
    return;
  }
  res.writeHead(200, { 'content-type': TYPES[extname(file)]!, 'cache-control': 'no-store' }).end(readFileSync(new URL(file, consoleDir)));
}

/** The token a client gives: `Authorization: Bearer <token>`, or a browser's subprotocol `token.<token>`. */
function givenToken(req: import('node:http').IncomingMessage): string | undefined {
  const bearer = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
  if (bearer) return bearer;
  const protocols = String(req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
  return protocols.find((p) => p.startsWith('token.'))?.slice('token.'.length);
}

/** Serves the API on 127.0.0.1 (`port` 0: any free port) and writes api.json for clients. */
export async function serveApi(m: Manager, dir: string, port = 0, links?: SwitchLinks, discovered?: Discovered): Promise<RunningApi> {
  const token = apiToken(dir);
  const http: Server = createServer((req, res) => serveConsole(req.url, res));
  // A browser's token subprotocol is echoed back, as the WebSocket handshake requires.
  const wss = new WebSocketServer({ noServer: true, handleProtocols: (protocols) => [...protocols].find((p) => p.startsWith('token.')) ?? false });
  http.on('upgrade', (req, socket, head) => {
    if (!sameToken(givenToken(req), token)) {
      socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nwrong or missing token\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });
  const clients = new Set<WebSocket>();
  const onEvent = (e: unknown) => {
    const text = JSON.stringify(e);
    for (const c of clients) c.send(text);
  };
  m.on('event', onEvent);
  wss.on('connection', (ws: WebSocket) => {
    clients.add(ws);
    // Captures this client started and did not stop: stopped, and their files removed, when it goes
    // (a `lab capture` killed outright must not leave the switch writing a file forever).
    const captures = new Set<number>();
    ws.on('close', () => {
      clients.delete(ws);
      for (const c of captures) links?.stopCapture(c).then((r) => rmSync(r.file, { force: true }), () => {});
    });
    ws.on('message', async (data) => {
      let id: unknown = null;
      try {
        const raw = JSON.parse(String(data));
        id = raw?.id ?? null;
        const parsed = Request.safeParse(raw);
        if (!parsed.success) {
          ws.send(JSON.stringify({ id, ok: false, error: { code: 'bad-request', message: `bad request: ${z.prettifyError(parsed.error)}` } }));
          return;
        }
        const result = await answer(m, parsed.data, links, discovered);
        if (parsed.data.op === 'capture') captures.add((result as { id: number }).id);
        if (parsed.data.op === 'capture-stop') captures.delete(parsed.data.capture);
        // A fault change is news for every client (the console redraws the link).
        if (parsed.data.op === 'fault') onEvent({ event: 'fault', link: parsed.data.link, set: parsed.data.set, ...(parsed.data.dir ? { dir: parsed.data.dir } : {}) });
        ws.send(JSON.stringify({ id, ok: true, result }));
      } catch (err) {
        const code = err instanceof AssignmentError || err instanceof LinkError ? err.code : err instanceof SyntaxError ? 'bad-request' : 'failed';
        ws.send(JSON.stringify({ id, ok: false, error: { code, message: (err as Error).message } }));
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(port, '127.0.0.1', () => resolve());
  });
  const actual = (http.address() as AddressInfo).port;
  writeFileAtomic(apiFiles(dir).endpoint, JSON.stringify({ port: actual, pid: process.pid }) + '\n');
  return {
    port: actual,
    close: async () => {
      m.off('event', onEvent);
      for (const c of clients) c.terminate();
      wss.close();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}
