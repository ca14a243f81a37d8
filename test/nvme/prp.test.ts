// PRP1/PRP2 and PRP lists to host memory segments (NVMe 1.4 §4.3), against a host memory of
// list pages: what a buffer covers, in order, adjacent pages merged, and each malformed pointer
// refused with the status the spec gives it and a message naming the entry.
import test from 'ava';
import fc from 'fast-check';
import { prpSegments, type Segment } from '../../src/devices/nvme/prp.ts';
import { NvmeError, Status } from '../../src/devices/nvme/status.ts';

const PAGE = 4096;

/** Host memory holding PRP list entries: address -> 64-bit value; reads outside it reject. */
function lists(entries: Map<number, number>) {
  const reads: [number, number][] = [];
  const read = async (addr: number, length: number): Promise<Uint8Array> => {
    reads.push([addr, length]);
    const out = new Uint8Array(length);
    const v = new DataView(out.buffer);
    for (let at = 0; at < length; at += 8) {
      const e = entries.get(addr + at);
      if (e === undefined) throw new Error(`no memory at 0x${(addr + at).toString(16)}`);
      v.setUint32(at, e % 0x1_0000_0000, true);
      v.setUint32(at + 4, Math.floor(e / 0x1_0000_0000), true);
    }
    return out;
  };
  return { read, reads };
}

/** The bytes a segment list covers, page by page (to compare against the pages the host named). */
const pagesOf = (segs: Segment[]) => segs.flatMap((s) => Array.from({ length: Math.ceil(s.len / PAGE) }, (_, i) => s.addr + i * PAGE));

test('a list of scattered pages, one read of its entries, adjacent pages merged', async (t) => {
  const pages = [0x10000, 0x11000, 0x30000, 0x50000, 0x51000];
  const list = 0x9000_0100; // unaligned: Linux takes small lists from a 256-byte pool
  const m = lists(new Map(pages.slice(1).map((p, i) => [list + 8 * i, p])));
  const segs = await prpSegments(pages[0]!, list, 5 * PAGE, PAGE, m.read);
  t.deepEqual(segs, [{ addr: 0x10000, len: 2 * PAGE }, { addr: 0x30000, len: PAGE }, { addr: 0x50000, len: 2 * PAGE }]);
  t.deepEqual(m.reads, [[list, 32]]);
});

test('a list that fills its page chains through the last slot to the next list page', async (t) => {
  // A list starting 16 bytes before its page's end has room for two slots: one data entry, one chain.
  const first = 0x8000_0ff0;
  const next = 0x7000_0000;
  const m = lists(new Map([[first, 0x21000], [first + 8, next], [next, 0x40000], [next + 8, 0x41000]]));
  const segs = await prpSegments(0x20000 + 0x800, first, 0x800 + 3 * PAGE, PAGE, m.read);
  t.deepEqual(segs, [{ addr: 0x20800, len: 0x800 + PAGE }, { addr: 0x40000, len: 2 * PAGE }]);
  t.deepEqual(m.reads, [[first, 16], [next, 16]]);
});

test('malformed pointers: each refused with its status and a message naming it', async (t) => {
  const list = 0x9000_0000;
  const cases: [string, Map<number, number>, number, RegExp][] = [
    ['a list entry with a page offset', new Map([[list, 0x11000], [list + 8, 0x12008], [list + 16, 0x13000]]), Status.PrpOffsetInvalid, /PRP entry 1 of list 0x90000000 0x12008 has a page offset/],
    ['a chain pointer not qword aligned', new Map([[list + 0xff8 - 8, 0x11000], [list + 0xff8, 0x7000_0004]]), Status.PrpOffsetInvalid, /chained PRP list pointer 0x70000004/],
    ['a list outside host memory', new Map(), Status.DataTransferError, /PRP list at 0x90000000: no memory/],
  ];
  for (const [what, entries, status, message] of cases) {
    const start = what.startsWith('a chain') ? list + 0xff8 - 8 : list;
    const err = await t.throwsAsync(prpSegments(0x10000, start, 4 * PAGE, PAGE, lists(entries).read), { instanceOf: NvmeError }, what);
    t.is(err?.status, status, what);
    t.regex(err?.message ?? '', message, what);
  }
  await t.throwsAsync(prpSegments(0x10000, list + 4, 4 * PAGE, PAGE, lists(new Map()).read), { message: /PRP list pointer 0x90000004 is not qword aligned/ });
});

test('property: any list of page-aligned entries covers exactly the pages it names, in order', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 0, max: PAGE / 4 - 1 }).map((d) => d * 4),
      fc.array(fc.integer({ min: 1, max: 64 }).map((p) => p * PAGE), { minLength: 3, maxLength: 40 }),
      fc.integer({ min: 0, max: PAGE / 8 - 1 }).map((s) => s * 8),
      async (offset, pages, listStart) => {
        // The buffer: offset into the first page, then whole pages up to its last byte.
        const length = pages.length * PAGE - offset;
        // Lay the entries after the first into list pages from listStart, chaining at each page's last slot.
        const entries = new Map<number, number>();
        let at = 0x1000_0000 + listStart;
        let nextList = 0x2000_0000;
        for (let i = 1; i < pages.length; i++) {
          const lastSlot = at % PAGE === PAGE - 8;
          if (lastSlot && i < pages.length - 1) {
            entries.set(at, nextList);
            at = nextList;
            nextList += 2 * PAGE;
          }
          entries.set(at, pages[i]!);
          at += 8;
        }
        const segs = await prpSegments(pages[0]! + offset, 0x1000_0000 + listStart, length, PAGE, lists(entries).read);
        t.is(segs.reduce((a, s) => a + s.len, 0), length);
        t.deepEqual(pagesOf([{ addr: segs[0]!.addr - offset, len: segs[0]!.len + offset }, ...segs.slice(1)]), pages);
        for (let i = 1; i < segs.length; i++) t.not(segs[i - 1]!.addr + segs[i - 1]!.len, segs[i]!.addr, 'adjacent pages are one segment');
      },
    ),
    { numRuns: 200 },
  );
});
