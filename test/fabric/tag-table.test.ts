import test from 'ava';
import fc from 'fast-check';
import { TagTable } from '../../src/fabric/tlp/tag-table.ts';

type Op = { kind: 'set'; pick: number } | { kind: 'delete'; pick: number } | { kind: 'clear' };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('set' as const), pick: fc.nat() }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('delete' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('clear' as const) }) },
);

test('a tag table agrees with a Map kept in issue order, whatever the sets, deletes and clears', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 8 }), fc.array(op, { maxLength: 400 }), (tags, ops) => {
      const table = new TagTable<{ id: number }>(tags);
      const model = new Map<number, { id: number }>();
      const shared = { id: -1 };
      let id = 0;
      for (const o of ops) {
        if (o.kind === 'clear') {
          table.clear();
          model.clear();
        } else if (o.kind === 'set') {
          const free = Array.from({ length: tags }, (_, i) => i).filter((i) => !model.has(i));
          if (free.length === 0) continue;
          const tag = free[o.pick % free.length]!;
          // The same object again now and then: a reused entry must not show up twice.
          const entry = o.pick % 3 === 0 && model.size > 0 ? shared : { id: id++ };
          table.set(tag, entry);
          model.set(tag, entry);
        } else {
          const tag = o.pick % tags;
          if (table.delete(tag) !== model.get(tag)) return false;
          model.delete(tag);
        }
        if (table.size !== model.size) return false;
        const order = [...table];
        const expected = [...model];
        if (order.length !== expected.length || order.some(([tag, e], i) => tag !== expected[i]![0] || e !== expected[i]![1])) return false;
        for (let tag = 0; tag < tags; tag++) if (table.get(tag) !== model.get(tag)) return false;
      }
      return true;
    }),
    { numRuns: 300 },
  );
  t.is(new TagTable(4).size, 0);
});

test('entries deleted while iterating end the iteration cleanly, oldest first', (t) => {
  const table = new TagTable<string>(4);
  for (const [tag, v] of [[2, 'a'], [0, 'b'], [3, 'c']] as const) table.set(tag, v);
  const seen: string[] = [];
  for (const [tag, v] of table) {
    seen.push(v);
    table.delete(tag);
  }
  t.deepEqual(seen, ['a', 'b', 'c']);
  t.is(table.size, 0);
});

test('a tag in use or outside the table is refused by name', (t) => {
  const table = new TagTable<string>(4);
  table.set(1, 'x');
  t.throws(() => table.set(1, 'y'), { message: 'tag 1 is in use' });
  t.throws(() => table.set(4, 'y'), { message: 'tag 4 outside 0..3' });
  t.throws(() => table.set(-1, 'y'), { instanceOf: RangeError });
});

test('one request outstanding while thousands come and go keeps the issue list short', (t) => {
  const table = new TagTable<number>(256);
  table.set(0, -1);
  for (let i = 0; i < 100_000; i++) {
    table.set(1 + (i % 255), i);
    table.delete(1 + (i % 255));
  }
  t.deepEqual([...table], [[0, -1]]);
  // Compaction bounds the list at 4 × the tags, whatever went through it.
  t.true((table as unknown as { orderTags: number[] }).orderTags.length <= 4 * 256 + 1);
});
