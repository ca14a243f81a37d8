/**
 * Client for the switch process's control socket (see switch-main.ts):
 * line-delimited JSON, one reply per request, replies in request order.
 */

import * as net from 'node:net';
import { readLines } from '../../common/lines.ts';
import type { ControlRequest } from './main.ts';

export type ControlReply = { ok: true; [key: string]: unknown } | { ok: false; error: string };

export class SwitchControl {
  private readonly waiting: { resolve: (r: ControlReply) => void; reject: (e: Error) => void }[] = [];
  private failure: Error | null = null;

  private constructor(private readonly conn: net.Socket) {
    readLines(conn, (line) => this.waiting.shift()?.resolve(JSON.parse(line) as ControlReply));
    const fail = (err: Error) => {
      this.failure = err;
      for (const w of this.waiting.splice(0)) w.reject(err);
    };
    conn.on('error', fail);
    conn.on('close', () => fail(new Error('switch control connection closed')));
  }

  static connect(path: string): Promise<SwitchControl> {
    return new Promise((resolve, reject) => {
      const conn = net.connect(path, () => {
        conn.off('error', reject);
        resolve(new SwitchControl(conn));
      });
      conn.once('error', reject);
    });
  }

  /** Send one request; resolves with the switch's reply, whether ok or not. */
  request(req: ControlRequest): Promise<ControlReply> {
    return this.requestLine(JSON.stringify(req));
  }

  /** Send one line as it is (no newline in it), valid or not; resolves with the reply. For fuzzing. */
  requestLine(line: string): Promise<ControlReply> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.conn.write(`${line}\n`);
    });
  }

  /** Like request(), but an error reply rejects. */
  async must(req: ControlRequest): Promise<Record<string, unknown>> {
    const r = await this.request(req);
    if (!r.ok) throw new Error(`switch control: ${r.error}`);
    return r;
  }

  close(): void {
    this.conn.end();
  }
}
