import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { TestDevice, type TestDeviceOptions } from '../../src/devices/testdev/testdev.ts';
import { servePciFunction } from '../../src/direct-attach/adapter.ts';
import type { VfioUserServer } from '../../src/vfio-user/server.ts';
import type { Logger } from '../../src/common/logger.ts';
import { ClientError, VfioUserClient } from '../../src/vfio-user/client.ts';

export interface Rig {
  dir: string;
  dev: TestDevice;
  server: VfioUserServer;
  logs: string[];
  /** A connected client that has done VERSION. */
  client(): Promise<VfioUserClient>;
  /** Resolves when a log line matches. */
  logged(re: RegExp, timeoutMs?: number): Promise<string>;
}

/** A test device (with MSI unless `options` say otherwise) served on a fresh socket; torn down with the test. */
export function rig(t: ExecutionContext, name = 'dev', dir?: string, options: TestDeviceOptions = {}): Rig {
  const d = dir ?? mkdtempSync(join(tmpdir(), 'pcieoe-vfu-'));
  const logs: string[] = [];
  const watchers: { re: RegExp; resolve: (l: string) => void }[] = [];
  const log: Logger = (level, msg) => {
    const line = `${level}: ${msg}`;
    logs.push(line);
    for (const w of watchers.filter((w) => w.re.test(line))) {
      watchers.splice(watchers.indexOf(w), 1);
      w.resolve(line);
    }
  };
  // Direct attach, as the lab's testdev process serves it: with MSI.
  const dev = new TestDevice({ msi: true, ...options });
  const server = servePciFunction(dev, { path: join(d, `${name}.sock`), name, log, dmaTimeoutMs: 1000 });
  const clients: VfioUserClient[] = [];
  t.teardown(() => {
    for (const c of clients) c.close();
    server.close();
    dev.close();
    if (!dir) rmSync(d, { recursive: true, force: true });
  });
  return {
    dir: d,
    dev,
    server,
    logs,
    async client() {
      const c = new VfioUserClient(server.path);
      clients.push(c);
      await c.version();
      return c;
    },
    logged(re, timeoutMs = 2000) {
      const hit = logs.find((l) => re.test(l));
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const w = { re, resolve };
        watchers.push(w);
        setTimeout(() => reject(new Error(`no log line matching ${re} in:\n${logs.join('\n')}`)), timeoutMs);
      });
    },
  };
}

export function u32le(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
}

export function u64le(v: number | bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
  return b;
}

/** The errno of the error reply `p` rejects with; throws if it succeeds or fails otherwise. */
export async function errnoOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ClientError) return err.errno;
    throw err;
  }
  throw new Error('expected an error reply');
}
