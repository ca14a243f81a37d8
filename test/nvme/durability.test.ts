// Durability (issue 11): with the volatile write cache off every write is
// synced before it completes; a server killed with SIGKILL after a flushed
// write gives the data back when it starts again; SIGTERM syncs and closes.
import test from 'ava';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expectOk, PAGE, TestHost, type SoftDriver } from '../../src/devices/nvme/soft-host.ts';
import { until } from '../support/until.ts';
import { connectDriver } from './vfio-user-driver.ts';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const pattern = (len: number, seed: number) => Uint8Array.from({ length: len }, (_, i) => (i * 31 + seed * 17 + (i >> 8)) & 0xff);
const WRITE = 0x01;
const READ = 0x02;
const FLUSH = 0x00;

test('Volatile Write Cache off: each write is synced before its completion; on: only Flush syncs', async (t) => {
  const h = new TestHost(t);
  await h.ctrl.open();
  await h.enable();
  await h.createIoQueue(1);
  const ns = h.ctrl.namespaces.get(1)!;
  const buf = h.alloc(PAGE);
  h.mem.bytes.set(pattern(PAGE, 1), buf);
  const write = (slba: number) => h.submit(1, { opcode: WRITE, nsid: 1, prp1: buf, cdw10: slba, cdw12: 7 });

  expectOk(await write(0));
  t.is(ns.stats.syncs, 0, 'write cache on: a write is not synced');
  expectOk(await h.submit(1, { opcode: FLUSH, nsid: 1 }));
  t.is(ns.stats.syncs, 1, 'Flush syncs');

  expectOk(await h.admin({ opcode: 0x09, cdw10: 0x06, cdw11: 0 }));
  const before = ns.stats.syncs;
  for (const e of await h.submitMany(1, [8, 16, 24].map((slba) => ({ opcode: WRITE, nsid: 1, prp1: buf, cdw10: slba, cdw12: 7 })))) expectOk(e);
  t.is(ns.stats.syncs - before, 3, 'write cache off: every write synced by the time it completes');
});

/** nvme-main.ts as its own process, serving one controller on <dir>/dur.sock over <dir>/ns.img. */
function startServer(dir: string): { proc: ChildProcess; output: () => string; exited: Promise<{ code: number | null; signal: string | null }> } {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'src/direct-attach/nvme-main.ts'), '--socket', 'dur', '--ns', `file=${join(dir, 'ns.img')},size=1M`], {
    cwd: repoRoot,
    env: { ...process.env, LAB_SOCKET_DIR: dir, LAB_DATA: dir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  return { proc, output: () => out, exited };
}

async function serve(t: { teardown(fn: () => unknown): void }, dir: string) {
  const s = startServer(dir);
  t.teardown(() => {
    if (s.proc.exitCode === null && s.proc.signalCode === null) s.proc.kill('SIGKILL');
  });
  await until(() => /serial/.test(s.output()) || s.proc.exitCode !== null, 'the NVMe server to listen', { timeoutMs: 30_000 });
  if (!existsSync(join(dir, 'dur.sock'))) throw new Error(`server did not start:\n${s.output()}`);
  return s;
}

async function ioQueue(drv: SoftDriver): Promise<void> {
  await drv.enable();
  await drv.createIoQueue(1, 16);
}

test('SIGKILL after a flushed write, then a restart: the data reads back over vfio-user', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nvme-dur-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const data = pattern(4 * PAGE, 7);

  const first = await serve(t, dir);
  const a = await connectDriver(join(dir, 'dur.sock'));
  t.teardown(() => a.close());
  await ioQueue(a.drv);
  const wbuf = a.drv.alloc(data.length);
  a.drv.mem.bytes.set(data, wbuf);
  // 16 KiB at LBA 64, one page per command.
  for (const [i, slba] of [64, 72, 80, 88].entries()) expectOk(await a.drv.submit(1, { opcode: WRITE, nsid: 1, prp1: wbuf + i * PAGE, cdw10: slba, cdw12: 7 }));
  expectOk(await a.drv.submit(1, { opcode: FLUSH, nsid: 1 }));
  first.proc.kill('SIGKILL');
  t.deepEqual(await first.exited, { code: null, signal: 'SIGKILL' });
  a.close();
  t.deepEqual(new Uint8Array(readFileSync(join(dir, 'ns.img')).subarray(64 * 512, 64 * 512 + data.length)), data, 'in the namespace file');

  await serve(t, dir);
  const b = await connectDriver(join(dir, 'dur.sock'));
  t.teardown(() => b.close());
  await ioQueue(b.drv);
  const rbuf = b.drv.alloc(data.length);
  for (const [i, slba] of [64, 72, 80, 88].entries()) expectOk(await b.drv.submit(1, { opcode: READ, nsid: 1, prp1: rbuf + i * PAGE, cdw10: slba, cdw12: 7 }));
  t.deepEqual(b.drv.mem.bytes.slice(rbuf, rbuf + data.length), data, 'read back through the restarted controller');
});

test('SIGTERM with writes just completed: the server syncs, closes and exits 0', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nvme-dur-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const s = await serve(t, dir);
  const a = await connectDriver(join(dir, 'dur.sock'));
  t.teardown(() => a.close());
  await ioQueue(a.drv);
  const buf = a.drv.alloc(PAGE);
  const data = pattern(PAGE, 3);
  a.drv.mem.bytes.set(data, buf);
  expectOk(await a.drv.submit(1, { opcode: WRITE, nsid: 1, prp1: buf, cdw10: 200, cdw12: 7 }));
  s.proc.kill('SIGTERM');
  t.deepEqual(await s.exited, { code: 0, signal: null });
  t.regex(s.output(), /SIGTERM: flushing and closing/);
  t.deepEqual(new Uint8Array(readFileSync(join(dir, 'ns.img')).subarray(200 * 512, 200 * 512 + PAGE)), data);
});
