// A device's scatter read of guest memory (DmaTable.readInto, the direct-attach DmaPort.dmaReadInto):
// segments land back to back in the buffer given, across a mapped region and a pread one.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { writeSync } from 'node:fs';
import { native } from '../../native/index.ts';
import { DmaError, DmaTable } from '../../src/vfio-user/dma.ts';
import { DMA_MAP_SIZE, DmaFlag } from '../../src/vfio-user/protocol.ts';

const SIZE = 0x4000;
const A = 0x10_0000; // a sealed memfd: mapped
const B = A + SIZE; // right after it, an unsealed one: reached with pread

function guest(t: import('ava').ExecutionContext): { table: DmaTable; bytes: Uint8Array } {
  const table = new DmaTable(8);
  t.teardown(() => table.clear());
  const bytes = new Uint8Array(randomBytes(2 * SIZE));
  const fds = [native.sealedMemfd('ram-a', SIZE), native.memfdCreate('ram-b', SIZE)];
  fds.forEach((fd, i) => {
    writeSync(fd, bytes, i * SIZE, SIZE, 0);
    const how = table.map({ argsz: DMA_MAP_SIZE, flags: DmaFlag.Read | DmaFlag.Write, offset: 0, iova: A + i * SIZE, size: SIZE }, fd);
    t.is(how, i === 0 ? 'mmap' : 'pread');
  });
  return { table, bytes };
}

test('segments across a mapped and a pread region land back to back, as reads of each would', async (t) => {
  const { table, bytes } = guest(t);
  const segments = [
    { addr: A + 0x100, len: 0x200 },
    { addr: B - 0x80, len: 0x100 }, // straddles the two regions
    { addr: B + 0x1000, len: 0x1000 },
    { addr: A, len: 1 },
  ];
  const into = new Uint8Array(segments.reduce((n, s) => n + s.len, 0)).fill(0xee);
  t.is(await table.readInto(segments, into), into, 'resolves with the buffer it was given');
  let at = 0;
  for (const s of segments) {
    const want = bytes.subarray(s.addr - A, s.addr - A + s.len);
    t.deepEqual(into.subarray(at, at + s.len), want, `segment at 0x${s.addr.toString(16)}`);
    t.deepEqual(await table.read(s.addr, s.len), want, 'read() agrees');
    at += s.len;
  }
});

test('a segment outside guest memory or a buffer of another size is refused, naming it', async (t) => {
  const { table } = guest(t);
  await t.throwsAsync(table.readInto([{ addr: B + SIZE - 0x10, len: 0x20 }], new Uint8Array(0x20)), { instanceOf: DmaError, message: /not mapped/ });
  await t.throwsAsync(table.readInto([{ addr: A, len: 0x20 }], new Uint8Array(0x10)), { instanceOf: RangeError, message: 'segments of 32 bytes into a buffer of 16' });
  t.deepEqual(await table.readInto([], new Uint8Array(0)), new Uint8Array(0));
});

test('a segment refused after one read by DMA_READ messages settles only once that read has landed', async (t) => {
  let answer: (() => void) | undefined;
  const messenger = {
    maxTransfer: 0x1000,
    read: (_iova: number, length: number) => new Promise<Uint8Array>((resolve) => (answer = () => resolve(new Uint8Array(length).fill(0x5a)))),
    write: () => Promise.resolve(),
  };
  const table = new DmaTable(8, messenger);
  // No fd: the client answers DMA_READ messages for this range.
  table.map({ argsz: DMA_MAP_SIZE, flags: DmaFlag.Read, offset: 0, iova: A, size: SIZE }, undefined);
  const into = new Uint8Array(0x20);
  let settled = false;
  const read = table.readInto([{ addr: A, len: 0x10 }, { addr: A + SIZE, len: 0x10 }], into).finally(() => (settled = true));
  await new Promise((r) => setImmediate(r));
  t.false(settled, 'still waiting for the message read');
  answer!();
  await t.throwsAsync(read, { instanceOf: DmaError, message: /not mapped/ });
  t.deepEqual(into.subarray(0, 0x10), new Uint8Array(0x10).fill(0x5a), 'the message read landed before it settled');
});
