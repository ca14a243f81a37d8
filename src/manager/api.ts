// The manager's API: a WebSocket server on loopback. A client proves itself with the token
// kept in the manager's state directory (`Authorization: Bearer <token>` on the upgrade
// request); anything else is refused with 401 before a socket exists.
//
// Requests and replies are JSON text messages:
//   → {"id":1,"op":"list"}
//   → {"id":2,"op":"assign","host":"host-a","function":"di/fn0","slot":1}   (slot optional)
//   → {"id":3,"op":"unassign","host":"host-a","function":"di/fn0"}
//   → {"id":4,"op":"move","function":"di/fn0","host":"host-b"}
//   ← {"id":2,"ok":true,"result":{"assignment":{...},"ms":812}}
//   ← {"id":2,"ok":false,"error":{"code":"already-assigned","message":"di/fn0 is already assigned to host-b (slot 0); ..."}}
// Events go to every client as they happen: {"event":"assigned","assignment":{...},"ms":812}, etc.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { z } from 'zod';
import type { Manager } from './manager.ts';
import { AssignmentError } from './table.ts';

const ref = z.string().regex(/^[a-z][a-z0-9-]*\/[a-z][a-z0-9-]*$/, 'expected "<di>/<function>"');
const host = z.string().min(1);
const Request = z.discriminatedUnion('op', [
  z.strictObject({ id: z.number(), op: z.literal('list') }),
  z.strictObject({ id: z.number(), op: z.literal('assign'), host, function: ref, slot: z.number().int().min(0).optional() }),
  z.strictObject({ id: z.number(), op: z.literal('unassign'), host, function: ref }),
  z.strictObject({ id: z.number(), op: z.literal('move'), host, function: ref, slot: z.number().int().min(0).optional() }),
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
  writeFileSync(token, t + '\n', { mode: 0o600 });
  return t;
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

/** Snapshot for "list": hosts with their slots, DIs with their functions and holders, assignments. */
export function listing(m: Manager) {
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
  };
}

async function answer(m: Manager, req: ApiRequest): Promise<unknown> {
  switch (req.op) {
    case 'list':
      return listing(m);
    case 'assign':
      return m.assign(req.host, req.function, req.slot);
    case 'unassign':
      return m.unassign(req.host, req.function);
    case 'move':
      return m.move(req.function, req.host, req.slot);
  }
}

/** Serves the API on 127.0.0.1 (`port` 0: any free port) and writes api.json for clients. */
export async function serveApi(m: Manager, dir: string, port = 0): Promise<RunningApi> {
  const token = apiToken(dir);
  const http: Server = createServer((_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain' }).end('the PCIeOE manager API is a WebSocket (see src/manager/api.ts)\n');
  });
  const wss = new WebSocketServer({ noServer: true });
  http.on('upgrade', (req, socket, head) => {
    const given = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (!sameToken(given, token)) {
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
    ws.on('close', () => clients.delete(ws));
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
        ws.send(JSON.stringify({ id, ok: true, result: await answer(m, parsed.data) }));
      } catch (err) {
        const code = err instanceof AssignmentError ? err.code : err instanceof SyntaxError ? 'bad-request' : 'failed';
        ws.send(JSON.stringify({ id, ok: false, error: { code, message: (err as Error).message } }));
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(port, '127.0.0.1', () => resolve());
  });
  const actual = (http.address() as AddressInfo).port;
  writeFileSync(apiFiles(dir).endpoint, JSON.stringify({ port: actual, pid: process.pid }) + '\n');
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
