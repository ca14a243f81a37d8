// The lab's testdev process (src/direct-attach/testdev-main.ts): devices with MSI on
// their sockets, --shared-page, usage errors, and a clean exit on SIGTERM.
import test from 'ava';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SHARED_BAR, SharedReg, TESTDEV_MSI_VECTORS } from '../../src/devices/testdev/testdev.ts';
import { PciIrq, REGION_INFO_SIZE, sparseMmapCapSize } from '../../src/vfio-user/protocol.ts';
import { native } from '../../native/index.ts';
import { VfioUserClient } from '../../src/vfio-user/client.ts';
import { until } from '../support/until.ts';

const main = fileURLToPath(new URL('../../src/direct-attach/testdev-main.ts', import.meta.url));

function start(args: string[]): { proc: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const proc = spawn(process.execPath, ['--import', 'tsx', main, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, output: () => out, exited };
}

test('--shared-page: every device offers its BAR2 page for mmap and has MSI; SIGTERM exits 0', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'testdev-main-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const p = start(['--socket-dir', dir, '--shared-page', 'a', 'b']);
  t.teardown(() => p.proc.kill('SIGKILL'));
  await until(() => /2 device\(s\) ready/.test(p.output()), 'ready line', { timeoutMs: 20_000 });
  for (const name of ['a', 'b']) {
    const c = new VfioUserClient(join(dir, `${name}.sock`));
    try {
      await c.version();
      const r = await c.regionInfo(SHARED_BAR, REGION_INFO_SIZE + sparseMmapCapSize(1));
      r.fds.forEach((fd) => native.close(fd));
      t.deepEqual(r.areas, [{ offset: SharedReg.Page, size: SharedReg.PageSize }], name);
      t.is(r.fds.length, 1);
      t.is((await c.irqInfo(PciIrq.Msi)).count, TESTDEV_MSI_VECTORS);
    } finally {
      c.close();
    }
  }
  p.proc.kill('SIGTERM');
  t.is(await p.exited, 0);
});

test('without --shared-page there is no BAR2; bad names are a usage error', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'testdev-main-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const p = start(['--socket-dir', dir, 'a']);
  t.teardown(() => p.proc.kill('SIGKILL'));
  await until(() => /1 device\(s\) ready/.test(p.output()), 'ready line', { timeoutMs: 20_000 });
  const c = new VfioUserClient(join(dir, 'a.sock'));
  try {
    await c.version();
    t.is((await c.regionInfo(SHARED_BAR)).info.size, 0);
  } finally {
    c.close();
  }
  p.proc.kill('SIGTERM');
  t.is(await p.exited, 0);

  const bad = start(['--socket-dir', dir, 'Bad_Name']);
  t.is(await bad.exited, 2);
  t.regex(bad.output(), /bad device name "Bad_Name"/);
});
