// Reads take two ways through the namespace: up to SYNC_IO_MAX (every transfer MDTS lets through)
// read from the file on the event loop, larger ones through the thread pool (namespace.ts); the
// controller writes what it read to the host, and the read buffer serves a later read once every
// write of it has settled. The bytes must land wherever PRP1 and PRP2 put them, a reused buffer
// must never carry one command's data into another's, and a file that fails must give the host a
// media error, not a fatal controller.
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Namespace, SYNC_IO_MAX } from '../../src/devices/nvme/namespace.ts';
import { CstsBit, Reg } from '../../src/devices/nvme/registers.ts';
import { expectOk, PAGE, TestHost } from '../../src/devices/nvme/soft-host.ts';
import { Status } from '../../src/devices/nvme/status.ts';

const READ = 0x02;
const NS_BYTES = 1 << 20;
const pattern = (len: number) => Uint8Array.from({ length: len }, (_, i) => (i * 11 + (i >> 8) * 3) & 0xff);

async function host(t: ExecutionContext) {
  const h = new TestHost(t, { namespaces: [{ path: 'read.img', size: NS_BYTES, lbaSize: 512 }] });
  // The file's contents before the controller opens it: every LBA distinct.
  writeFileSync(h.ctrl.namespaces.get(1)!.path, pattern(NS_BYTES));
  await h.ctrl.open();
  await h.enable();
  await h.createIoQueue(1, 64, 1);
  return h;
}

test('small reads (one page, straddling PRP1 and PRP2, 512 B) and a 32 KiB one through a PRP list land the file bytes', async (t) => {
  const h = await host(t);
  const file = pattern(NS_BYTES);
  const at = (lba: number, len: number) => file.subarray(lba * 512, lba * 512 + len);

  const page = h.alloc(PAGE);
  expectOk(await h.submit(1, { opcode: READ, nsid: 1, prp1: page, cdw10: 40, cdw12: 7 }));
  t.deepEqual(h.mem.bytes.slice(page, page + PAGE), at(40, PAGE), '4 KiB, PRP1 only');

  const two = h.alloc(2 * PAGE);
  expectOk(await h.submit(1, { opcode: READ, nsid: 1, prp1: two + 0x600, prp2: two + PAGE, cdw10: 9, cdw12: 7 }));
  t.deepEqual(h.mem.bytes.slice(two + 0x600, two + 0x600 + PAGE), at(9, PAGE), '4 KiB from 0x600 into a page: PRP1 then PRP2');

  const small = h.alloc(PAGE);
  expectOk(await h.submit(1, { opcode: READ, nsid: 1, prp1: small + 0x200, cdw10: 2047, cdw12: 0 }));
  t.deepEqual(h.mem.bytes.slice(small + 0x200, small + 0x400), at(2047, 512), 'the last LBA, 512 B');

  const bytes = 32 * 1024;
  const pages = Array.from({ length: bytes / PAGE }, () => h.alloc(PAGE));
  const list = h.alloc(PAGE);
  pages.slice(1).forEach((p, i) => h.mem.u64(list + 8 * i, p));
  expectOk(await h.submit(1, { opcode: READ, nsid: 1, prp1: pages[0]!, prp2: list, cdw10: 100, cdw12: bytes / 512 - 1 }));
  const back = new Uint8Array(bytes);
  pages.forEach((p, i) => back.set(h.mem.bytes.subarray(p, p + PAGE), i * PAGE));
  t.deepEqual(back, at(100, bytes));
});

test('64 KiB reads two at a time, again and again: each buffer lands its own LBAs (read buffers are reused)', async (t) => {
  const h = await host(t);
  const file = pattern(NS_BYTES);
  const bytes = 64 * 1024;
  const buffers = [0, 1].map(() => {
    const pages = Array.from({ length: bytes / PAGE }, () => h.alloc(PAGE));
    const list = h.alloc(PAGE);
    pages.slice(1).forEach((p, i) => h.mem.u64(list + 8 * i, p));
    return { pages, list };
  });
  const landed = (b: (typeof buffers)[number]) => {
    const out = new Uint8Array(bytes);
    b.pages.forEach((p, i) => out.set(h.mem.bytes.subarray(p, p + PAGE), i * PAGE));
    return out;
  };
  for (let round = 0; round < 4; round++) {
    const lbas = [round * 256, 1024 + round * 128];
    const done = await h.submitMany(1, buffers.map((b, i) => ({ opcode: READ, nsid: 1, prp1: b.pages[0]!, prp2: b.list, cdw10: lbas[i]!, cdw12: bytes / 512 - 1 })));
    done.forEach(expectOk);
    buffers.forEach((b, i) => t.deepEqual(landed(b), file.subarray(lbas[i]! * 512, lbas[i]! * 512 + bytes), `round ${round}, buffer ${i}`));
  }
});

test('a read larger than SYNC_IO_MAX goes through the thread pool and returns the file bytes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ns-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ns = new Namespace({ nsid: 1, path: join(dir, 'big.img'), size: NS_BYTES, lbaSize: 512 });
  writeFileSync(ns.path, pattern(NS_BYTES));
  await ns.open();
  t.teardown(() => ns.close());
  const len = 2 * SYNC_IO_MAX;
  const r = ns.read(8, len / 512);
  t.true(r instanceof Promise, 'not read on the event loop');
  t.deepEqual(new Uint8Array(await r), pattern(NS_BYTES).subarray(8 * 512, 8 * 512 + len));
});

test('a read the file cannot serve completes with Unrecovered Read Error, 4 KiB or 64 KiB, and the controller goes on', async (t) => {
  const h = await host(t);
  const ns = h.ctrl.namespaces.get(1)!;
  await ns.close(); // the file is gone from under the controller
  const buf = h.alloc(16 * PAGE);
  const list = h.alloc(PAGE);
  for (let i = 1; i < 16; i++) h.mem.u64(list + 8 * (i - 1), buf + i * PAGE);
  t.is((await h.submit(1, { opcode: READ, nsid: 1, prp1: buf, cdw10: 0, cdw12: 7 })).status, Status.UnrecoveredReadError, '4 KiB');
  t.is((await h.submit(1, { opcode: READ, nsid: 1, prp1: buf, prp2: list, cdw10: 0, cdw12: 127 })).status, Status.UnrecoveredReadError, '64 KiB');
  t.is((await h.reg32(Reg.Csts)) & CstsBit.Fatal, 0, 'a media error is the command\'s, not the controller\'s');
  await ns.open();
  expectOk(await h.submit(1, { opcode: READ, nsid: 1, prp1: buf, cdw10: 8, cdw12: 7 }));
  t.deepEqual(h.mem.bytes.slice(buf, buf + PAGE), pattern(NS_BYTES).subarray(8 * 512, 8 * 512 + PAGE));
});
