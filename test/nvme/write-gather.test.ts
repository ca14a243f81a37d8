// A write whose data spans several PRP pages is read from the host in one scatter read
// (DmaPort.dmaReadInto: over PCIeOE every page's MRds at once, one promise) into a buffer of the
// namespace's, written to the file, and the buffer given back for a later command. The bytes
// must land in the file in PRP order, a reused buffer must never carry one command's data into
// another's, a failed read must fail the command without touching the file, and a transport
// without scatter reads must still be served page by page.
import test, { type ExecutionContext } from 'ava';
import { readFileSync } from 'node:fs';
import type { DmaPort } from '../../src/pci/function.ts';
import { expectOk, PAGE, TestHost } from '../../src/devices/nvme/soft-host.ts';
import { Status } from '../../src/devices/nvme/status.ts';

const WRITE = 0x01;
const pattern = (len: number, seed: number) => Uint8Array.from({ length: len }, (_, i) => (i * 7 + seed * 31 + (i >> 9)) & 0xff);

/** A host whose DMA port reads scatter lists (recording each call's segments and buffer), failing them while `fail` is set. */
async function host(t: ExecutionContext) {
  const h = new TestHost(t, { namespaces: [{ path: 'w.img', size: 1 << 20, lbaSize: 512 }] });
  const calls: { segments: { addr: number; len: number }[]; into: Uint8Array }[] = [];
  const state = { fail: false };
  const port: DmaPort = {
    dmaRead: (a, l) => h.mem.dmaRead(a, l),
    dmaWrite: (a, d) => h.mem.dmaWrite(a, d),
    dmaReadInto: async (segments, into) => {
      calls.push({ segments: segments.map((s) => ({ ...s })), into });
      if (state.fail) throw new Error('completion timeout');
      let at = 0;
      for (const s of segments) {
        into.set(h.mem.bytes.subarray(s.addr, s.addr + s.len), at);
        at += s.len;
      }
    },
  };
  h.ctrl.attach({ dma: port, irq: { msix: (v) => h.irqs.push(v), intx: () => {} } });
  await h.ctrl.open();
  await h.enable();
  await h.createIoQueue(1, 64, 1);
  return { h, calls, state, file: h.ctrl.namespaces.get(1)!.path };
}

/** 20 KiB of `data` in scattered pages, PRP1 0x200 into the first, the rest through a PRP list: the command's PRP1 and PRP2. */
function scattered(h: TestHost, data: Uint8Array): { prp1: number; prp2: number } {
  const pages = Array.from({ length: 6 }, () => h.alloc(PAGE)).reverse();
  const list = h.alloc(PAGE) + 256;
  pages.slice(1).forEach((p, i) => h.mem.u64(list + 8 * i, p));
  let off = 0;
  pages.forEach((p, i) => {
    const n = i === 0 ? PAGE - 0x200 : Math.min(PAGE, data.length - off);
    h.mem.bytes.set(data.subarray(off, off + n), i === 0 ? p + 0x200 : p);
    off += n;
  });
  return { prp1: pages[0]! + 0x200, prp2: list };
}

test('a multi-page write is one scatter read into a namespace buffer, the bytes land in PRP order, the buffer serves the next write; a contiguous one too', async (t) => {
  const { h, calls, file } = await host(t);
  const a = pattern(20480, 1);
  expectOk(await h.submit(1, { opcode: WRITE, nsid: 1, cdw10: 100, cdw12: 39, ...scattered(h, a) }));
  t.is(calls.length, 1, 'one read for six pages');
  t.is(calls[0]!.segments.length, 6);
  t.deepEqual(readFileSync(file).subarray(100 * 512, 100 * 512 + 20480), Buffer.from(a));

  const b = pattern(20480, 2);
  expectOk(await h.submit(1, { opcode: WRITE, nsid: 1, cdw10: 300, cdw12: 39, ...scattered(h, b) }));
  t.is(calls[1]!.into, calls[0]!.into, 'the first buffer, given back, is reused');
  t.deepEqual(readFileSync(file).subarray(300 * 512, 300 * 512 + 20480), Buffer.from(b));
  t.deepEqual(readFileSync(file).subarray(100 * 512, 100 * 512 + 20480), Buffer.from(a), 'the first write is untouched');

  // Contiguous pages are one segment, read the same way into a namespace buffer (not fresh memory
  // per write), and that buffer too serves the next write of its size.
  const two = h.alloc(2 * PAGE);
  for (const [i, lba] of [[3, 500], [4, 600]] as const) {
    const c = pattern(2 * PAGE, i);
    h.mem.bytes.set(c, two);
    expectOk(await h.submit(1, { opcode: WRITE, nsid: 1, prp1: two, prp2: two + PAGE, cdw10: lba, cdw12: 15 }));
    t.deepEqual(readFileSync(file).subarray(lba * 512, lba * 512 + 2 * PAGE), Buffer.from(c));
  }
  t.is(calls.length, 4);
  t.deepEqual(calls.slice(2).map((c) => c.segments.length), [1, 1], 'one segment each');
  t.is(calls[3]!.into, calls[2]!.into, 'the one-segment write\'s buffer is reused too');
});

test('a failed scatter read fails the write with a data transfer error and leaves the file alone; the buffer is not reused', async (t) => {
  const { h, calls, state, file } = await host(t);
  const before = readFileSync(file).subarray(100 * 512, 100 * 512 + 20480);
  state.fail = true;
  const cqe = await h.submit(1, { opcode: WRITE, nsid: 1, cdw10: 100, cdw12: 39, ...scattered(h, pattern(20480, 4)) });
  t.is(cqe.status, Status.DataTransferError);
  t.deepEqual(readFileSync(file).subarray(100 * 512, 100 * 512 + 20480), before);
  state.fail = false;
  const d = pattern(20480, 5);
  expectOk(await h.submit(1, { opcode: WRITE, nsid: 1, cdw10: 100, cdw12: 39, ...scattered(h, d) }));
  t.not(calls[1]!.into, calls[0]!.into, 'a buffer a failed read had is dropped');
  t.deepEqual(readFileSync(file).subarray(100 * 512, 100 * 512 + 20480), Buffer.from(d));
});

test('a transport without scatter reads is served page by page', async (t) => {
  const h = new TestHost(t, { namespaces: [{ path: 'p.img', size: 1 << 20, lbaSize: 512 }] });
  await h.ctrl.open();
  await h.enable();
  await h.createIoQueue(1, 64, 1);
  const data = pattern(20480, 6);
  expectOk(await h.submit(1, { opcode: WRITE, nsid: 1, cdw10: 8, cdw12: 39, ...scattered(h, data) }));
  t.deepEqual(readFileSync(h.ctrl.namespaces.get(1)!.path).subarray(8 * 512, 8 * 512 + 20480), Buffer.from(data));
});
