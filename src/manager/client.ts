// A client of the manager's API (api.ts), as `lab assign/unassign/move` and tests use it.
import { existsSync, readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { apiFiles, type ApiRequest } from './api.ts';

type Distribute<T> = T extends unknown ? Omit<T, 'id'> : never;
export type ApiCall = Distribute<ApiRequest>;

export class ManagerError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export class ManagerClient {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  readonly events: Record<string, unknown>[] = [];

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const msg = JSON.parse(String(data));
      if ('event' in msg) return void this.events.push(msg);
      const w = this.waiting.get(msg.id);
      this.waiting.delete(msg.id);
      if (msg.ok) w?.resolve(msg.result);
      else w?.reject(new ManagerError(msg.error.code, msg.error.message));
    });
    ws.on('close', () => {
      for (const w of this.waiting.values()) w.reject(new ManagerError('closed', 'the manager closed the connection'));
      this.waiting.clear();
    });
  }

  /** Connects to the manager whose state directory is `dir` (its api.json and token). */
  static connect(dir: string, token?: string): Promise<ManagerClient> {
    const files = apiFiles(dir);
    if (!existsSync(files.endpoint)) return Promise.reject(new ManagerError('not-running', `the manager is not running (no ${files.endpoint}); is a lab with hosts and DIs up?`));
    const { port } = JSON.parse(readFileSync(files.endpoint, 'utf8')) as { port: number };
    const auth = token ?? readFileSync(files.token, 'utf8').trim();
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { headers: { authorization: `Bearer ${auth}` } });
      ws.once('open', () => resolve(new ManagerClient(ws)));
      ws.once('unexpected-response', (_req, res) =>
        reject(new ManagerError(res.statusCode === 401 ? 'unauthorized' : 'failed', `the manager refused the connection: ${res.statusCode} ${res.statusMessage} (wrong token?)`)),
      );
      ws.once('error', (err) => reject(new ManagerError('not-running', `the manager does not answer on 127.0.0.1:${port} (${err.message}); is it running?`)));
    });
  }

  call<T = unknown>(req: ApiCall): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.ws.send(JSON.stringify({ id, ...req }));
    });
  }

  close(): void {
    this.ws.close();
  }
}
