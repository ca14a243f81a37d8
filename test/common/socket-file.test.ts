import test from 'ava';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeStaleSocket } from '../../src/common/socket-file.ts';

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'socket-file-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('a socket file left behind is removed, so a new listener can bind the path', async (t) => {
  const path = join(tempDir(t), 'stale.sock');
  const old = net.createServer();
  await new Promise<void>((resolve) => old.listen(path, resolve));
  t.teardown(() => old.close());
  removeStaleSocket(path);
  t.false(existsSync(path));
  const fresh = net.createServer();
  t.teardown(() => fresh.close());
  await new Promise<void>((resolve, reject) => fresh.once('error', reject).listen(path, resolve));
  t.true(existsSync(path));
});

test('nothing at the path is fine', (t) => {
  t.notThrows(() => removeStaleSocket(join(tempDir(t), 'absent.sock')));
});

test('a file that is not a socket is left alone and named in the error', (t) => {
  const path = join(tempDir(t), 'data.sock');
  writeFileSync(path, 'not a socket');
  t.throws(() => removeStaleSocket(path), { message: `${path} exists and is not a socket: not removing it` });
  t.true(existsSync(path));
});
