// Reads take two ways through the model: up to SYNC_IO_MAX read from the file and written to the
// host within the command's first step, larger ones through the thread pool (namespace.ts). Both
// must land the same bytes wherever PRP1 and PRP2 put them, and a file that fails must give the
// host a media error, not a fatal controller.
import test, { type ExecutionContext } from 'ava';
import { writeFileSync } from 'node:fs';
import { SYNC_IO_MAX } from '../../src/devices/nvme/namespace.ts';
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

test('small reads (one page, straddling PRP1 and PRP2, 512 B) and a pooled one (32 KiB through a PRP list) land the file bytes', async (t) => {
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
  t.true(bytes > SYNC_IO_MAX, 'this one goes through the pool');
  const pages = Array.from({ length: bytes / PAGE }, () => h.alloc(PAGE));
  const list = h.alloc(PAGE);
  pages.slice(1).forEach((p, i) => h.mem.u64(list + 8 * i, p));
  expectOk(await h.submit(1, { opcode: READ, nsid: 1, prp1: pages[0]!, prp2: list, cdw10: 100, cdw12: bytes / 512 - 1 }));
  const back = new Uint8Array(bytes);
  pages.forEach((p, i) => back.set(h.mem.bytes.subarray(p, p + PAGE), i * PAGE));
  t.deepEqual(back, at(100, bytes));
});

test('a read the file cannot serve completes with Unrecovered Read Error, small or pooled, and the controller goes on', async (t) => {
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
