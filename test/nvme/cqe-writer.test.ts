// Completion entries that come together go out a cache line per write, each landing once, in
// slot order, never across a line, and never held past the microtasks of their wave.
import test from 'ava';
import fc from 'fast-check';
import { CqeWriter } from '../../src/devices/nvme/cqe-writer.ts';
import { TestHost } from '../../src/devices/nvme/soft-host.ts';

interface Write {
  addr: number;
  data: Uint8Array;
}

function writer(fail?: (w: Write) => boolean): { w: CqeWriter; writes: Write[] } {
  const writes: Write[] = [];
  const w = new CqeWriter((addr, data) => {
    const x = { addr, data: data.slice() };
    writes.push(x);
    return fail?.(x) ? Promise.reject(new Error(`write at 0x${addr.toString(16)} failed`)) : Promise.resolve();
  });
  return { w, writes };
}

/** A 16-byte entry whose every byte is `tag`. */
const entry = (tag: number) => new Uint8Array(16).fill(tag);

test('four adjacent entries of one line posted together: one 64-byte write, in slot order', async (t) => {
  const { w, writes } = writer();
  const posted = [0, 1, 2, 3].map((i) => w.post(1, 0x1000 + 16 * i, entry(i + 1)));
  t.is(writes.length, 1, 'a full line goes out at once');
  await Promise.all(posted);
  t.is(writes[0]!.addr, 0x1000);
  t.deepEqual([...writes[0]!.data], [1, 2, 3, 4].flatMap((v) => Array(16).fill(v)));
  t.deepEqual(w.stats, { entries: 4, writes: 1 });
});

test('a lone entry is written before the next event-loop turn (queue depth 1 waits for nothing)', async (t) => {
  const { w, writes } = writer();
  const done = w.post(1, 0x1010, entry(7));
  await new Promise<void>((r) => setImmediate(r));
  t.is(writes.length, 1);
  t.deepEqual(writes[0], { addr: 0x1010, data: entry(7) });
  await done;
});

test('a gap, a line boundary or another CQ starts a new write', async (t) => {
  const { w, writes } = writer();
  await Promise.all([
    w.post(1, 0x1020, entry(1)),
    w.post(1, 0x1030, entry(2)), // line 0x1000 ends here
    w.post(1, 0x1040, entry(3)), // next line
    w.post(2, 0x2000, entry(4)), // another CQ, gathered apart
    w.post(1, 0x1060, entry(5)), // a gap after 0x1040
    w.post(2, 0x2010, entry(6)),
  ]);
  const seen = writes.map((x) => [x.addr, x.data.length]).sort((a, b) => a[0]! - b[0]!);
  t.deepEqual(seen, [[0x1020, 32], [0x1040, 16], [0x1060, 16], [0x2000, 32]]);
});

test('a failed write rejects every entry it carried, and only those', async (t) => {
  const { w } = writer((x) => x.addr === 0x1000);
  const a = w.post(1, 0x1000, entry(1));
  const b = w.post(1, 0x1010, entry(2));
  const c = w.post(1, 0x1040, entry(3));
  await t.throwsAsync(a, { message: /0x1000 failed/ });
  await t.throwsAsync(b, { message: /0x1000 failed/ });
  await t.notThrowsAsync(c);
});

test('a reset drops what is gathered, unwritten, and its posters go on', async (t) => {
  const { w, writes } = writer();
  const a = w.post(1, 0x1000, entry(1));
  w.reset();
  await a;
  await new Promise<void>((r) => setImmediate(r));
  t.is(writes.length, 0);
});

test('property: any posting order writes every entry exactly once, within one line, contiguous and in order', async (t) => {
  await t.notThrowsAsync(fc.assert(
    fc.asyncProperty(
      // Waves of (CQ, slot) posts; slots advance per CQ as a CQ's tail does, with waves in between.
      fc.array(fc.array(fc.integer({ min: 0, max: 2 }), { maxLength: 12 }), { minLength: 1, maxLength: 8 }),
      async (waves) => {
        const { w, writes } = writer();
        const tails = [0, 0, 0];
        const expected = new Map<number, number>();
        let tag = 1;
        for (const wave of waves) {
          const posted: Promise<void>[] = [];
          for (const cq of wave) {
            const addr = 0x10000 * (cq + 1) + 16 * tails[cq]!++;
            expected.set(addr, tag);
            posted.push(w.post(cq, addr, entry(tag++ & 0xff)));
          }
          await Promise.all(posted);
        }
        const got = new Map<number, number>();
        for (const x of writes) {
          if (Math.floor(x.addr / 64) !== Math.floor((x.addr + x.data.length - 1) / 64)) return false;
          for (let o = 0; o < x.data.length; o += 16) {
            if (got.has(x.addr + o)) return false;
            got.set(x.addr + o, x.data[o]!);
          }
        }
        return got.size === expected.size && [...expected].every(([addr, v]) => got.get(addr) === (v & 0xff));
      },
    ),
  ));
});

test('the controller: 64 commands in one doorbell complete in 16 writes, every completion seen', async (t) => {
  const h = new TestHost(t, { namespaces: [{ path: 'ns.img', size: 4 << 20, lbaSize: 512 }] });
  await h.ctrl.open();
  await h.enable();
  await h.createIoQueue(1, 256);
  const buf = h.alloc(64 * 512);
  const before = { ...h.ctrl.cqes.stats };
  const done = await h.submitMany(1, Array.from({ length: 64 }, (_, i) => ({ opcode: 0x02, nsid: 1, prp1: buf + 512 * i, cdw10: i, cdw12: 0 })));
  t.is(done.length, 64);
  t.true(done.every((e) => e.status === 0));
  t.is(h.ctrl.cqes.stats.entries - before.entries, 64);
  t.true(h.ctrl.cqes.stats.writes - before.writes <= 17, `${h.ctrl.cqes.stats.writes - before.writes} writes`);
});
