// The NVMe model driven as the Linux driver drives it, over a DMA port of real
// bytes: registers, admin commands, queues, I/O and the error paths.
import test, { type ExecutionContext } from 'ava';
import { readFileSync } from 'node:fs';
import { CstsBit, Reg } from '../../src/devices/nvme/registers.ts';
import { Status } from '../../src/devices/nvme/status.ts';
import { expectOk, PAGE, TestHost } from '../../src/devices/nvme/soft-host.ts';

const ascii = (b: Uint8Array, at: number, len: number) => new TextDecoder().decode(b.subarray(at, at + len));
const pattern = (len: number, seed: number) => Uint8Array.from({ length: len }, (_, i) => (i * 7 + seed * 13 + (i >> 9)) & 0xff);

test('CAP, VS and the enable / disable / shutdown handshake', async (t) => {
  const h = new TestHost(t);
  const capLo = await h.reg32(Reg.Cap);
  const capHi = await h.reg32(Reg.Cap + 4);
  t.is(capLo & 0xffff, 0x7ff, 'MQES');
  t.is((capLo >>> 16) & 1, 1, 'CQR');
  t.is(capLo >>> 24, 0xf, 'TO');
  t.is(capHi & 0xf, 0, 'DSTRD');
  t.is((capHi >>> 5) & 0xff, 1, 'CSS: NVM only');
  t.is(await h.reg32(Reg.Vs), 0x10400);
  t.is(await h.reg32(Reg.Csts), 0);
  await h.enable();
  t.is(await h.reg32(Reg.Csts), CstsBit.Ready);
  // CC.SHN = normal shutdown: SHST goes to complete once the files are flushed.
  await h.wreg32(Reg.Cc, 1 | (6 << 16) | (4 << 20) | (1 << 14));
  await h.ctrl.shutdownDone;
  t.is((await h.reg32(Reg.Csts)) & CstsBit.ShstMask, 2 << 2);
  await h.wreg32(Reg.Cc, 0);
  t.is((await h.reg32(Reg.Csts)) & CstsBit.Ready, 0);
  // INTMS/INTMC set and clear one mask that both read back.
  await h.wreg32(Reg.Intms, 0b101);
  await h.wreg32(Reg.Intmc, 0b001);
  t.is(await h.reg32(Reg.Intms), 0b100);
  t.is(await h.reg32(Reg.Intmc), 0b100);
});

test('enabling with bad admin queue attributes sets CSTS.CFS', async (t) => {
  const h = new TestHost(t);
  await h.wreg32(Reg.Aqa, 0); // 1-entry queues
  await h.wreg32(Reg.Cc, 1);
  t.is((await h.reg32(Reg.Csts)) & (CstsBit.Fatal | CstsBit.Ready), CstsBit.Fatal);
  await h.wreg32(Reg.Cc, 0);
  t.is(await h.reg32(Reg.Csts), 0, 'reset clears CFS');
});

test('Identify controller, namespace, active list, descriptors; CID echoed; other CNS are Invalid Field + DNR', async (t) => {
  const h = new TestHost(t, {
    serial: 'SN-UNIQUE-42',
    namespaces: [
      { path: 'a.img', size: 1 << 20, lbaSize: 512 },
      { path: 'b.img', size: 2 << 20, lbaSize: 4096 },
    ],
  });
  await h.ctrl.open();
  await h.enable();
  const buf = h.alloc(PAGE);
  const e = await h.admin({ opcode: 0x06, prp1: buf, cdw10: 1, cid: 0xbeef });
  t.is(e.cid, 0xbeef);
  t.is(e.sqid, 0);
  t.is(e.status, 0);
  const id = h.mem.bytes.slice(buf, buf + PAGE);
  const v = new DataView(id.buffer);
  t.is(ascii(id, 4, 20), 'SN-UNIQUE-42        ');
  t.is(id[77], 5, 'MDTS');
  t.is(v.getUint32(80, true), 0x10400, 'VER');
  t.is(id[512], 0x66, 'SQES');
  t.is(id[513], 0x44, 'CQES');
  t.is(v.getUint32(516, true), 2, 'NN');
  t.is(v.getUint16(520, true), 0x0c, 'ONCS: DSM + Write Zeroes, no timestamp');
  t.is(id[525], 1, 'VWC');
  t.is(v.getUint16(256, true), 0x100, 'OACS: Doorbell Buffer Config only');
  for (const [at, len, what] of [[261, 1, 'LPA'], [92, 4, 'OAES'], [96, 4, 'CTRATT']] as const) t.true(id.subarray(at, at + len).every((x) => x === 0), what);
  t.is(ascii(id, 768, 40), 'nqn.2026-11.org.pcieoe:nvme:SN-UNIQUE-42');

  t.is((await h.admin({ opcode: 0x06, nsid: 2, prp1: buf, cdw10: 0 })).status, 0);
  const ns = new DataView(h.mem.bytes.slice(buf, buf + PAGE).buffer);
  t.is(ns.getUint32(0, true), 512, 'NSZE of 2 MiB / 4 KiB');
  t.is((ns.getUint32(128, true) >>> 16) & 0xff, 12, 'LBADS');
  t.is((await h.admin({ opcode: 0x06, nsid: 3, prp1: buf, cdw10: 0 })).status, Status.InvalidNamespace);

  t.is((await h.admin({ opcode: 0x06, nsid: 1, prp1: buf, cdw10: 2 })).status, 0);
  const list = new DataView(h.mem.bytes.slice(buf, buf + 12).buffer);
  t.deepEqual([list.getUint32(0, true), list.getUint32(4, true), list.getUint32(8, true)], [2, 0, 0], 'active NSIDs after 1');

  t.is((await h.admin({ opcode: 0x06, nsid: 1, prp1: buf, cdw10: 3 })).status, 0);
  t.deepEqual([...h.mem.bytes.slice(buf, buf + 2)], [2, 16], 'first descriptor: NGUID');
  t.deepEqual([...h.mem.bytes.slice(buf + 20, buf + 22)], [3, 16], 'second: UUID');

  for (const cns of [0x06, 0x08, 0x10]) {
    const bad = await h.admin({ opcode: 0x06, prp1: buf, cdw10: cns });
    t.is(bad.status, Status.InvalidField, `CNS ${cns}`);
    t.true(bad.dnr);
  }
  t.is((await h.admin({ opcode: 0x7f })).status, Status.InvalidOpcode);
});

test('features: number of queues, write cache, temperature, power state; logs: SMART, error, firmware', async (t) => {
  const h = new TestHost(t);
  await h.enable();
  t.is((await h.admin({ opcode: 0x09, cdw10: 0x07, cdw11: (63 << 16) | 1 })).dw0, (15 << 16) | 1, 'clamped to 16 CQs, 2 SQs granted');
  t.is((await h.admin({ opcode: 0x0a, cdw10: 0x07 })).dw0, (15 << 16) | 1);
  t.is((await h.admin({ opcode: 0x0a, cdw10: 0x06 })).dw0, 1, 'VWC on by default');
  expectOk(await h.admin({ opcode: 0x09, cdw10: 0x06, cdw11: 0 }));
  t.is((await h.admin({ opcode: 0x0a, cdw10: 0x06 })).dw0, 0);
  t.is((await h.admin({ opcode: 0x0a, cdw10: 0x06 | (1 << 8) })).dw0, 1, 'SEL default');
  expectOk(await h.admin({ opcode: 0x09, cdw10: 0x04, cdw11: 350 }));
  t.is((await h.admin({ opcode: 0x0a, cdw10: 0x04 })).dw0, 350);
  t.is((await h.admin({ opcode: 0x09, cdw10: 0x02, cdw11: 1 })).status, Status.InvalidField, 'no power state 1');
  t.is((await h.admin({ opcode: 0x09, cdw10: 0x06 | 0x8000_0000, cdw11: 1 })).status, Status.FeatureNotSaveable);
  t.is((await h.admin({ opcode: 0x0a, cdw10: 0x0c })).status, Status.InvalidField, 'APST not supported');
  expectOk(await h.admin({ opcode: 0x09, cdw10: 0x08, cdw11: 0x0a04 }));

  const buf = h.alloc(PAGE);
  h.mem.bytes.fill(0xee, buf, buf + PAGE);
  expectOk(await h.admin({ opcode: 0x02, nsid: 0xffffffff, prp1: buf, cdw10: 0x02 | (127 << 16) }));
  const smart = new DataView(h.mem.bytes.buffer, buf, 512);
  t.is(smart.getUint16(1, true), 308, 'composite temperature (K)');
  t.is(smart.getUint8(3), 100, 'available spare');
  t.is(h.mem.bytes[buf + 512], 0xee, 'exactly NUMD dwords written');
  expectOk(await h.admin({ opcode: 0x02, prp1: buf, cdw10: 0x03 | (127 << 16) }));
  t.is(ascii(h.mem.bytes, buf + 8, 8), '1.0     ');
  expectOk(await h.admin({ opcode: 0x02, prp1: buf, cdw10: 0x01 | (63 << 16) }));
  t.is((await h.admin({ opcode: 0x02, prp1: buf, cdw10: 0xc0 | (127 << 16) })).status, Status.InvalidLogPage);
});

test('create/delete queue status codes', async (t) => {
  const h = new TestHost(t);
  await h.enable();
  expectOk(await h.admin({ opcode: 0x09, cdw10: 0x07, cdw11: (1 << 16) | 1 })); // 2 + 2
  const base = h.alloc(64 * 64);
  const cq = (qid: number, size: number, dw11 = 3) => h.admin({ opcode: 0x05, prp1: base, cdw10: ((size - 1) << 16) | qid, cdw11: dw11 });
  const sq = (qid: number, cqid: number, size = 16) => h.admin({ opcode: 0x01, prp1: base, cdw10: ((size - 1) << 16) | qid, cdw11: (cqid << 16) | 1 });
  t.is((await cq(0, 16)).status, Status.InvalidQueueId);
  t.is((await cq(3, 16)).status, Status.InvalidQueueId, 'beyond the granted number');
  t.is((await cq(1, 4097)).status, Status.InvalidQueueSize);
  t.is((await cq(1, 16, 2)).status, Status.InvalidField, 'not contiguous');
  t.is((await cq(1, 16, (17 << 16) | 3)).status, Status.InvalidInterruptVector);
  t.is((await h.admin({ opcode: 0x05, prp1: base + 8, cdw10: (15 << 16) | 1, cdw11: 3 })).status, Status.PrpOffsetInvalid);
  expectOk(await cq(1, 16));
  t.is((await cq(1, 16)).status, Status.InvalidQueueId, 'exists');
  t.is((await sq(1, 2)).status, Status.CompletionQueueInvalid);
  expectOk(await sq(1, 1));
  t.is((await h.admin({ opcode: 0x09, cdw10: 0x07, cdw11: 0 })).status, Status.CommandSequenceError);
  t.is((await h.admin({ opcode: 0x04, cdw10: 1 })).status, Status.InvalidQueueDeletion);
  t.is((await h.admin({ opcode: 0x00, cdw10: 2 })).status, Status.InvalidQueueId);
  expectOk(await h.admin({ opcode: 0x00, cdw10: 1 }));
  expectOk(await h.admin({ opcode: 0x04, cdw10: 1 }));
  t.is((await h.admin({ opcode: 0x04, cdw10: 1 })).status, Status.InvalidQueueId);
});

test('AERs stay outstanding without blocking the admin queue; the fifth is refused', async (t) => {
  const h = new TestHost(t);
  await h.enable();
  for (let i = 0; i < 4; i++) await h.wreg32(Reg.Doorbells, 0); // no-op rings are fine
  // Four AERs and a fifth: the CQ is in order, so the fifth's refusal coming first shows the four still outstanding.
  for (let i = 0; i < 4; i++) await h.post(0, { opcode: 0x0c, cid: 0x40 + i });
  await h.post(0, { opcode: 0x0c, cid: 0x50 });
  t.like(await h.reap(0), { cid: 0x50, status: Status.AerLimitExceeded });
  t.regex(h.logs.join('\n'), /status 0x105/, 'AER limit exceeded went to the 5th');
  // An Identify behind them completes next: outstanding AERs do not block the admin queue.
  const identify = await h.post(0, { opcode: 0x06, prp1: h.alloc(PAGE), cdw10: 1 });
  t.like(await h.reap(0), { cid: identify, status: 0 });
  t.is(await h.reg32(Reg.Csts), CstsBit.Ready);
});

async function ioHost(t: ExecutionContext, lbaSize: 512 | 4096 = 512) {
  const h = new TestHost(t, { namespaces: [{ path: 'io.img', size: 4 << 20, lbaSize }] });
  await h.ctrl.open();
  await h.enable();
  await h.createIoQueue(1, 64, 1);
  return h;
}

test('write then read through PRP1+PRP2, an unaligned PRP1 with a PRP list, and a chained list; data lands in the file', async (t) => {
  const h = await ioHost(t);
  const file = h.ctrl.namespaces.get(1)!.path;
  // 1) 8 KiB from a page-aligned buffer: PRP1 + PRP2 as data pointers.
  const a = h.alloc(2 * PAGE);
  h.mem.bytes.set(pattern(8192, 1), a);
  expectOk(await h.submit(1, { opcode: 0x01, nsid: 1, prp1: a, prp2: a + PAGE, cdw10: 0, cdw12: 15 }));
  t.deepEqual(readFileSync(file).subarray(0, 8192), Buffer.from(pattern(8192, 1)));

  // 2) 20 KiB starting 0x200 into a page: 6 pages, PRP2 -> a list (unaligned, 256 bytes into its page), scattered pages.
  const pages = [h.alloc(PAGE), h.alloc(PAGE), h.alloc(PAGE), h.alloc(PAGE), h.alloc(PAGE), h.alloc(PAGE)].reverse();
  const list = h.alloc(PAGE) + 256;
  pages.slice(1).forEach((p, i) => h.mem.u64(list + 8 * i, p));
  const data = pattern(20480, 2);
  let off = 0;
  pages.forEach((p, i) => {
    const start = i === 0 ? p + 0x200 : p;
    const n = i === 0 ? PAGE - 0x200 : Math.min(PAGE, data.length - off);
    h.mem.bytes.set(data.subarray(off, off + n), start);
    off += n;
  });
  expectOk(await h.submit(1, { opcode: 0x01, nsid: 1, prp1: pages[0]! + 0x200, prp2: list, cdw10: 100, cdw12: 39 }));
  t.deepEqual(readFileSync(file).subarray(100 * 512, 100 * 512 + 20480), Buffer.from(data));

  // 3) Read it back through a list that starts in the last 3 slots of a page and chains to a second page.
  const dst = Array.from({ length: 6 }, () => h.alloc(PAGE));
  const l1 = h.alloc(PAGE) + PAGE - 24; // 3 slots: 2 data entries + chain pointer
  const l2 = h.alloc(PAGE);
  h.mem.u64(l1, dst[1]!);
  h.mem.u64(l1 + 8, dst[2]!);
  h.mem.u64(l1 + 16, l2);
  h.mem.u64(l2, dst[3]!);
  h.mem.u64(l2 + 8, dst[4]!);
  h.mem.u64(l2 + 16, dst[5]!);
  expectOk(await h.submit(1, { opcode: 0x02, nsid: 1, prp1: dst[0]! + 0x200, prp2: l1, cdw10: 100, cdw12: 39 }));
  const back = new Uint8Array(20480);
  back.set(h.mem.bytes.subarray(dst[0]! + 0x200, dst[0]! + PAGE), 0);
  for (let i = 1; i < 6; i++) back.set(h.mem.bytes.subarray(dst[i]!, dst[i]! + Math.min(PAGE, 20480 - (PAGE - 0x200) - (i - 1) * PAGE)), PAGE - 0x200 + (i - 1) * PAGE);
  t.deepEqual(back, data);
});

test('4 KiB LBA format, flush, write zeroes, DSM deallocate, many commands in flight across phase wraps', async (t) => {
  const h = await ioHost(t, 4096);
  const bufs = Array.from({ length: 40 }, (_, i) => {
    const b = h.alloc(PAGE);
    h.mem.bytes.set(pattern(PAGE, i + 10), b);
    return b;
  });
  // 40 writes in one doorbell on a 64-entry queue, then 40 reads into fresh pages (phase wraps at 64).
  const w = await h.submitMany(1, bufs.map((b, i) => ({ opcode: 0x01, nsid: 1, prp1: b, cdw10: i * 3, cdw12: 0 })));
  t.deepEqual(w.map((e) => e.status), Array(40).fill(0));
  t.is(new Set(w.map((e) => e.cid)).size, 40);
  const dst = bufs.map(() => h.alloc(PAGE));
  const r = await h.submitMany(1, dst.map((b, i) => ({ opcode: 0x02, nsid: 1, prp1: b, cdw10: i * 3, cdw12: 0 })));
  t.deepEqual(r.map((e) => e.status), Array(40).fill(0));
  t.true(dst.every((b, i) => Buffer.from(h.mem.bytes.subarray(b, b + PAGE)).equals(Buffer.from(pattern(PAGE, i + 10)))));
  expectOk(await h.submit(1, { opcode: 0x00, nsid: 1 }));
  expectOk(await h.submit(1, { opcode: 0x08, nsid: 1, cdw10: 3, cdw12: 1 })); // zero LBAs 3-4
  expectOk(await h.submit(1, { opcode: 0x02, nsid: 1, prp1: dst[1]!, cdw10: 3 }));
  t.true(h.mem.bytes.subarray(dst[1]!, dst[1]! + PAGE).every((x) => x === 0));
  const ranges = h.alloc(PAGE);
  h.mem.view.setUint32(ranges + 4, 8, true);
  h.mem.u64(ranges + 8, 16);
  expectOk(await h.submit(1, { opcode: 0x09, nsid: 1, prp1: ranges, cdw10: 0, cdw11: 4 }));
  h.mem.u64(ranges + 8, 1020);
  t.is((await h.submit(1, { opcode: 0x09, nsid: 1, prp1: ranges, cdw10: 0, cdw11: 4 })).status, Status.LbaOutOfRange);
  t.true(h.irqs.includes(1), 'I/O completions signalled on vector 1');
  t.true(h.irqs.includes(0), 'admin completions on vector 0');
});

test('I/O errors: LBA range, opcode, namespace, MDTS, PRP offset, PRP outside guest memory; earlier data kept', async (t) => {
  const h = await ioHost(t);
  const b = h.alloc(PAGE * 2);
  h.mem.bytes.set(pattern(PAGE, 7), b);
  expectOk(await h.submit(1, { opcode: 0x01, nsid: 1, prp1: b, cdw10: 8, cdw12: 7 }));
  const cases: [string, Parameters<TestHost['submit']>[1], number][] = [
    ['LBA out of range', { opcode: 0x02, nsid: 1, prp1: b, cdw10: 8190, cdw12: 7 }, Status.LbaOutOfRange],
    ['invalid opcode', { opcode: 0x7e, nsid: 1 }, Status.InvalidOpcode],
    ['invalid namespace', { opcode: 0x02, nsid: 9, prp1: b }, Status.InvalidNamespace],
    ['over MDTS (128 KiB)', { opcode: 0x02, nsid: 1, prp1: b, cdw12: 256 }, Status.InvalidField],
    ['PRP2 with an offset', { opcode: 0x02, nsid: 1, prp1: b, prp2: b + PAGE + 8, cdw12: 15 }, Status.PrpOffsetInvalid],
    ['PRP1 outside guest memory', { opcode: 0x02, nsid: 1, prp1: 0x4000_0000, cdw12: 0 }, Status.DataTransferError],
    ['write from outside guest memory', { opcode: 0x01, nsid: 1, prp1: 0x4000_0000, cdw10: 8, cdw12: 0 }, Status.DataTransferError],
    ['PRP list outside guest memory', { opcode: 0x02, nsid: 1, prp1: b, prp2: 0x4000_0000, cdw12: 31 }, Status.DataTransferError],
    ['SGL requested', { opcode: 0x02, nsid: 1, prp1: b, flags: 0x40 }, Status.InvalidField],
  ];
  for (const [what, cmd, status] of cases) t.is((await h.submit(1, cmd)).status, status, what);
  const dst = h.alloc(PAGE);
  expectOk(await h.submit(1, { opcode: 0x02, nsid: 1, prp1: dst, cdw10: 8, cdw12: 7 }));
  t.deepEqual(h.mem.bytes.slice(dst, dst + PAGE), pattern(PAGE, 7), 'data written before the errors is intact');
  // The error log holds the newest 4, newest first: SGL (count 9), then PRP list, ...
  const log = h.alloc(PAGE);
  expectOk(await h.admin({ opcode: 0x02, prp1: log, cdw10: 0x01 | (63 << 16) }));
  const ev = new DataView(h.mem.bytes.buffer, log, 256);
  t.is(Number(ev.getBigUint64(0, true)), cases.length);
  t.is((ev.getUint16(12, true) >> 1) & 0x7ff, Status.InvalidField);
  t.is(Number(ev.getBigUint64(64, true)), cases.length - 1);
  t.is((ev.getUint16(64 + 12, true) >> 1) & 0x7ff, Status.DataTransferError);
  t.is(ev.getUint16(64 + 8, true), 1, 'SQ id');
  t.is((await h.reg32(Reg.Csts)) & CstsBit.Fatal, 0, 'command errors are not fatal');
});

for (const [what, index, value] of [
  ['SQ tail beyond the queue size', 2, 64],
  ['a doorbell of a queue that does not exist', 6, 1],
  ['a CQ head past the posted entries', 3, 5],
] as const) {
  test(`bad doorbell (${what}) sets CSTS.CFS; a controller reset recovers`, async (t) => {
    const h = await ioHost(t);
    await h.ring(index, value);
    t.is((await h.reg32(Reg.Csts)) & CstsBit.Fatal, CstsBit.Fatal);
    await h.wreg32(Reg.Cc, 0);
    t.is(await h.reg32(Reg.Csts), 0);
    await h.enable();
    t.is((await h.admin({ opcode: 0x06, prp1: h.alloc(PAGE), cdw10: 1 })).status, 0);
  });
}

test('a transport detach (client gone) leaves the controller as at power-on for the next host', async (t) => {
  const h = await ioHost(t);
  t.is(await h.reg32(Reg.Csts), CstsBit.Ready);
  h.ctrl.attach(undefined);
  h.ctrl.attach({ dma: h.mem, irq: { msix: () => {}, intx: () => {} } });
  t.is(await h.reg32(Reg.Csts), 0);
  t.is(await h.reg32(Reg.Cc), 0);
  t.is(h.ctrl.sqs.size + h.ctrl.cqs.size, 0);
});

test('without MSI-X: INTx is asserted while a CQ holds entries, dropped at the head doorbell, masked by INTMS', async (t) => {
  const h = new TestHost(t);
  h.ctrl.setMsixEnabled(false);
  await h.enable();
  const buf = h.alloc(PAGE);
  await h.admin({ opcode: 0x06, prp1: buf, cdw10: 1 }); // reaps and rings the CQ head doorbell
  t.deepEqual(h.intx, [true, false]);
  t.deepEqual(h.irqs, []);
  await h.wreg32(Reg.Intms, 1);
  await h.admin({ opcode: 0x06, prp1: buf, cdw10: 1 });
  t.deepEqual(h.intx, [true, false], 'masked: no edge at all');
  await h.wreg32(Reg.Intmc, 1);
  t.deepEqual(h.intx, [true, false]);
});

test('Abort reports "not aborted"; Get Features SEL 3 reports changeable, not saveable', async (t) => {
  const h = new TestHost(t);
  await h.enable();
  const abort = await h.admin({ opcode: 0x08, cdw10: (0x1234 << 16) | 0 });
  t.is(abort.status, 0);
  t.is(abort.dw0 & 1, 1);
  t.is((await h.admin({ opcode: 0x0a, cdw10: 0x06 | (3 << 8) })).dw0, 0b100);
});
