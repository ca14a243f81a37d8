// An irq eventfd is one open file shared by the vfio-user client and the server:
// a client may turn it back to blocking after SET_IRQS (SET_IRQS checks the flag
// only then) and fill its counter, and a blocking write of the server would then
// wait for the client to read it. native.eventfdWrite never blocks, whatever the
// flag: these show it on the bare fd and on a live testdev process serving two
// devices. Anything that could block runs in a child process, so a regression
// fails the test on a timeout instead of hanging the test process.
import test from 'ava';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { native } from '../../native/index.ts';
import { Cfg, CommandBit } from '../../src/pci/config-space.ts';
import { TESTDEV_ID_VALUE, TestReg } from '../../src/devices/testdev/testdev.ts';
import { IrqSetFlag, PciIrq, PciRegion } from '../../src/vfio-user/protocol.ts';
import { VfioUserClient, waitEventfd } from '../../src/vfio-user/client.ts';
import { withTimeout } from '../support/fuzz.ts';
import { until } from '../support/until.ts';

const nativeEntry = fileURLToPath(new URL('../../native/index.ts', import.meta.url));
const testdevMain = fileURLToPath(new URL('../../src/direct-attach/testdev-main.ts', import.meta.url));
const BAR0 = 0;
/** Two writes of this fill an eventfd counter to its maximum, 0xfffffffffffffffe. */
const HALF_FULL = (1n << 63n) - 1n;

test('eventfdWrite on a blocking eventfd whose counter is full returns false at once; after a read it counts again', (t) => {
  const script = `
    import { native } from ${JSON.stringify(nativeEntry)};
    const fd = native.eventfd();
    const out = [native.eventfdWrite(fd, ${HALF_FULL}n), native.eventfdWrite(fd, ${HALF_FULL}n)];
    native.fdNonBlocking(fd, false);
    out.push(native.fdNonBlocking(fd), native.eventfdWrite(fd), native.eventfdWrite(fd, 2));
    out.push(native.eventfdRead(fd) !== null, native.eventfdWrite(fd), native.eventfdRead(fd));
    console.log(JSON.stringify(out));`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
  t.is(r.signal, null, `the child was killed (blocked in a write?): ${r.stderr}`);
  t.is(r.status, 0, r.stderr);
  // filled twice; now blocking; no room for 1 nor 2; drained; 1 fits again and reads back.
  t.deepEqual(JSON.parse(r.stdout), [true, true, false, false, false, true, true, 1]);
});

test('a bad fd still throws EBADF; a value wider than 64 bits is a RangeError', (t) => {
  const fd = native.eventfd();
  native.close(fd);
  t.throws(() => native.eventfdWrite(fd), { code: 'EBADF' });
  const ok = native.eventfd();
  t.teardown(() => native.close(ok));
  t.throws(() => native.eventfdWrite(ok, 1n << 64n), { instanceOf: RangeError });
});

function startTestdev(dir: string): { proc: ChildProcess; output: () => string } {
  const proc = spawn(process.execPath, ['--import', 'tsx', testdevMain, '--socket-dir', dir, 'a', 'b'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  return { proc, output: () => out };
}

test('a client that turns its MSI-X eventfd blocking and fills it cannot block the server: both devices of the process keep answering', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pcieoe-efd-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const p = startTestdev(dir);
  t.teardown(() => p.proc.kill('SIGKILL'));
  await until(() => /2 device\(s\) ready/.test(p.output()), 'ready line', { timeoutMs: 20_000 });
  const a = new VfioUserClient(join(dir, 'a.sock'));
  const b = new VfioUserClient(join(dir, 'b.sock'));
  t.teardown(() => [a, b].forEach((c) => c.close()));
  await a.version();
  await b.version();

  const efd = native.eventfd(); // non-blocking, as SET_IRQS demands
  t.teardown(() => native.close(efd));
  await a.setIrqs({ flags: IrqSetFlag.DataEventfd | IrqSetFlag.ActionTrigger, index: PciIrq.Msix, start: 0, count: 1 }, [efd]);
  await a.write32(PciRegion.Config, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);
  // Wired and working.
  const first = waitEventfd(efd);
  await a.write32(BAR0, TestReg.IrqRaise, 0);
  t.is(await first, 1);

  // Now the hostile part: full counter, then blocking (the flag is the open file's, so the server's fd is blocking too).
  t.true(native.eventfdWrite(efd, HALF_FULL));
  t.true(native.eventfdWrite(efd, HALF_FULL));
  native.fdNonBlocking(efd, false);
  for (let i = 0; i < 3; i++) {
    await withTimeout(a.write32(BAR0, TestReg.IrqRaise, 0), 5000, `interrupt ${i} raised into a full blocking eventfd`);
  }
  t.is(await withTimeout(a.read32(BAR0, TestReg.Id), 5000, 'device a after the interrupts'), TESTDEV_ID_VALUE);
  t.is(await withTimeout(b.read32(BAR0, TestReg.Id), 5000, 'device b of the same process'), TESTDEV_ID_VALUE);
  t.is(await withTimeout(b.read32(PciRegion.Config, Cfg.VendorId), 5000, 'device b config') & 0xffff, (await a.read32(PciRegion.Config, Cfg.VendorId)) & 0xffff);

  // Once the client reads its counter (not blocking: it is not zero), interrupts arrive again.
  t.not(native.eventfdRead(efd), null);
  const again = waitEventfd(efd);
  await a.write32(BAR0, TestReg.IrqRaise, 0);
  t.is(await again, 1);
});
