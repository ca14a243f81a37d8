import test from 'ava';
import fc from 'fast-check';
import { copyInOrder } from '../../src/vfio-user/ordered-copy.ts';

test('copyInOrder writes exactly the source bytes at any offset and length, and nothing around them', (t) => {
  t.notThrows(() => fc.assert(
    fc.property(fc.integer({ min: 0, max: 200 }), fc.uint8Array({ minLength: 0, maxLength: 150 }), (offset, src) => {
      const mem = new Uint8Array(512).fill(0xee);
      copyInOrder(mem.subarray(offset, offset + src.length), src);
      const want = new Uint8Array(512).fill(0xee);
      want.set(src, offset);
      return Buffer.from(mem).equals(Buffer.from(want));
    }),
    { numRuns: 2000 },
  ));
});

test('a 16-byte completion-sized write in one cache line takes the ordered path, correctly', (t) => {
  const mem = new Uint8Array(4096);
  const cqe = Uint8Array.from({ length: 16 }, (_, i) => 0xf0 + i);
  copyInOrder(mem.subarray(48, 64), cqe);
  t.deepEqual(mem.subarray(48, 64), cqe);
  t.is(mem[47], 0);
  t.is(mem[64], 0);
});
