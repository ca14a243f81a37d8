// Durability (issue 11): with the volatile write cache off every write is
// synced before it completes; a server killed with SIGKILL after a flushed
// write gives the data back when it starts again; SIGTERM syncs and closes.
import test from 'ava';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expectOk, PAGE, TestHost, type SoftDriver } from '../../src/devices/nvme/soft-host.ts';
import { startSwitch } from '../../src/fabric/switch/switch-process.ts';
import { type LabProcess, startProcess, waitForSocket } from '../hi-di/lab-process.ts';
import { connectDriver } from './vfio-user-driver.ts';

const HI_MAC = '02:00:00:00:01:00';
const DI_MAC = '02:00:00:00:0d:00';
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

/** nvme-main.ts as its own process, serving one controller on <dir>/dur.sock over `file`. */
async function serveDirect(t: { teardown(fn: () => unknown): void }, dir: string, file = join(dir, 'ns.img')): Promise<LabProcess> {
  // A killed server leaves its socket file behind: wait for the new one.
  rmSync(join(dir, 'dur.sock'), { force: true });
  const p = startProcess('src/direct-attach/nvme-main.ts', dir, ['--socket', 'dur', '--ns', `file=${file},size=1M`]);
  t.teardown(() => kill(p));
  await waitForSocket(join(dir, 'dur.sock'), p);
  return p;
}

function kill(p: LabProcess): void {
  if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGKILL');
}

/** Writes `data` from LBA `slba` on, one page per command, then a Flush. */
async function writeFlushed(drv: SoftDriver, slba: number, data: Uint8Array): Promise<void> {
  const buf = drv.alloc(data.length);
  drv.mem.bytes.set(data, buf);
  for (let i = 0; i < data.length / PAGE; i++) expectOk(await drv.submit(1, { opcode: WRITE, nsid: 1, prp1: buf + i * PAGE, cdw10: slba + 8 * i, cdw12: 7 }));
  expectOk(await drv.submit(1, { opcode: FLUSH, nsid: 1 }));
}

async function readBack(drv: SoftDriver, slba: number, length: number): Promise<Uint8Array> {
  const buf = drv.alloc(length);
  for (let i = 0; i < length / PAGE; i++) expectOk(await drv.submit(1, { opcode: READ, nsid: 1, prp1: buf + i * PAGE, cdw10: slba + 8 * i, cdw12: 7 }));
  return drv.mem.bytes.slice(buf, buf + length);
}

async function ioQueue(drv: SoftDriver): Promise<void> {
  await drv.enable();
  await drv.createIoQueue(1, 16);
}

test('SIGKILL after a flushed write, then a restart: the data reads back over vfio-user', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nvme-dur-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const data = pattern(4 * PAGE, 7);

  const first = await serveDirect(t, dir);
  const a = await connectDriver(join(dir, 'dur.sock'));
  t.teardown(() => a.close());
  await ioQueue(a.drv);
  await writeFlushed(a.drv, 64, data);
  first.proc.kill('SIGKILL');
  t.is(await first.exited, null, 'killed');
  a.close();
  t.deepEqual(new Uint8Array(readFileSync(join(dir, 'ns.img')).subarray(64 * 512, 64 * 512 + data.length)), data, 'in the namespace file');

  await serveDirect(t, dir);
  const b = await connectDriver(join(dir, 'dur.sock'));
  t.teardown(() => b.close());
  await ioQueue(b.drv);
  t.deepEqual(await readBack(b.drv, 64, data.length), data, 'read back through the restarted controller');
});

test('over PCIeOE: SIGKILL of the DI after a flushed write; the data reads back from its namespace file', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'nvme-dur-di-'));
  const file = join(root, 'remote.img');
  const sw = await startSwitch({
    dir: join(root, 'sw'),
    ports: ['hi0', 'di0'],
    args: ['hi0', 'di0'].flatMap((p) => ['--peer', `${p}=${join(root, p.slice(0, 2), 'link0.sock')}`]),
  });
  const di = startProcess('src/di/main.ts', join(root, 'di'), [
    '--link', `${DI_MAC}@${sw.portPath('di0')}`, '--channel', `1=${HI_MAC}`,
    '--function', `nvme0=nvme:file:${file},size:1M`, '--assign', 'nvme0=channel:1,bdf:01:00.0',
  ]);
  const hi = startProcess('src/hi/main.ts', join(root, 'hi'), ['--link', `${HI_MAC}@${sw.portPath('hi0')}`, '--channel', `1=${DI_MAC}`, '--eep', 'eep0=channel:1,bdf:01:00.0']);
  t.teardown(async () => {
    for (const p of [hi, di]) kill(p);
    await Promise.all([hi.exited, di.exited]);
    await sw.stop();
    rmSync(root, { recursive: true, force: true });
  });
  await waitForSocket(join(root, 'hi', 'eep0.sock'), hi, [di]);
  const a = await connectDriver(join(root, 'hi', 'eep0.sock'));
  t.teardown(() => a.close());
  await ioQueue(a.drv);
  const data = pattern(4 * PAGE, 9);
  await writeFlushed(a.drv, 128, data);
  di.proc.kill('SIGKILL');
  t.is(await di.exited, null, 'killed');
  a.close();

  // The same file served directly: what the DI acknowledged is there.
  await serveDirect(t, root, file);
  const b = await connectDriver(join(root, 'dur.sock'));
  t.teardown(() => b.close());
  await ioQueue(b.drv);
  t.deepEqual(await readBack(b.drv, 128, data.length), data);
});

test('the DI closes its NVMe namespaces at SIGTERM and exits 0', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'nvme-dur-di-'));
  const sw = await startSwitch({ dir: join(root, 'sw'), ports: ['di0'], args: ['--peer', `di0=${join(root, 'di', 'link0.sock')}`] });
  const di = startProcess('src/di/main.ts', join(root, 'di'), [
    '--link', `${DI_MAC}@${sw.portPath('di0')}`, '--channel', `1=${HI_MAC}`,
    '--function', `nvme0=nvme:file:${join(root, 'remote.img')},size:1M`, '--assign', 'nvme0=channel:1,bdf:01:00.0',
  ]);
  t.teardown(async () => {
    kill(di);
    await di.exited;
    await sw.stop();
    rmSync(root, { recursive: true, force: true });
  });
  await waitForSocket(join(root, 'di', 'control.sock'), di);
  di.proc.kill('SIGTERM');
  t.is(await di.exited, 0, di.output());
  t.regex(di.output(), /SIGTERM: closing/);
});

test('SIGTERM with writes just completed: the server syncs, closes and exits 0', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nvme-dur-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const s = await serveDirect(t, dir);
  const a = await connectDriver(join(dir, 'dur.sock'));
  t.teardown(() => a.close());
  await ioQueue(a.drv);
  const buf = a.drv.alloc(PAGE);
  const data = pattern(PAGE, 3);
  a.drv.mem.bytes.set(data, buf);
  expectOk(await a.drv.submit(1, { opcode: WRITE, nsid: 1, prp1: buf, cdw10: 200, cdw12: 7 }));
  s.proc.kill('SIGTERM');
  t.is(await s.exited, 0);
  t.regex(s.output(), /SIGTERM: flushing and closing/);
  t.deepEqual(new Uint8Array(readFileSync(join(dir, 'ns.img')).subarray(200 * 512, 200 * 512 + PAGE)), data);
});
