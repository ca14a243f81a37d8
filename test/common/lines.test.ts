import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readLines } from '../../src/common/lines.ts';
import { until } from '../support/until.ts';

/** Two connected unix stream sockets. */
async function pair(t: { teardown(fn: () => void): void }): Promise<[net.Socket, net.Socket]> {
  const dir = mkdtempSync(join(tmpdir(), 'lines-'));
  const path = join(dir, 's.sock');
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect(path);
  const peer = await accepted;
  t.teardown(() => {
    client.destroy();
    peer.destroy();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return [client, peer];
}

test('lines split across chunks arrive whole, as sent but for the line end; blank lines are skipped', async (t) => {
  const [a, b] = await pair(t);
  const got: string[] = [];
  readLines(b, (l) => got.push(l));
  a.write('{"a":');
  a.write('1}\n\n \r\n  two  \r\nthr');
  a.write('ee\n');
  await until(() => got.length === 3, 'three lines');
  t.deepEqual(got, ['{"a":1}', '  two  ', 'three']);
});

test('an unfinished line past maxLine is dropped and reported', async (t) => {
  const [a, b] = await pair(t);
  const got: string[] = [];
  let overflows = 0;
  readLines(b, (l) => got.push(l), { maxLine: 8, onOverflow: () => overflows++ });
  a.write('0123456789');
  await until(() => overflows === 1, 'the overflow');
  a.write('\nok\n');
  await until(() => got.length === 1, 'the next line');
  t.deepEqual(got, ['ok']);
});
