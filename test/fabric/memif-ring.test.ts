import test from 'ava';
import { FrameType, encodeFrame } from '../../src/fabric/wire/frame.ts';
import { DESC_FLAG_NEXT, MemifDescriptorError, MemifRing } from '../../src/fabric/wire/memif/ring.ts';

const REGION = 1 << 16;
const BUFFERS = 4096;
const BUFFER_BYTES = 2048;

/** A c2s ring of 16 slots in a plain region, each slot's buffer at BUFFERS + slot * BUFFER_BYTES; the test is the client. */
function ring() {
  const region = Buffer.alloc(REGION);
  const r = new MemifRing([region], 0, 0, 4);
  r.initialise(0, (slot) => BUFFERS + slot * BUFFER_BYTES, BUFFER_BYTES);
  let head = 0;
  /** Publish `bytes` in slot `head` (NEXT set with `next`; `offset` to point the descriptor elsewhere). */
  const put = (bytes: Uint8Array, next = false, offset = BUFFERS + (head & 15) * BUFFER_BYTES) => {
    const d = 128 + (head & 15) * 16;
    region.set(bytes, offset);
    region.writeUInt16LE(next ? DESC_FLAG_NEXT : 0, d);
    region.writeUInt32LE(bytes.length, d + 4);
    region.writeUInt32LE(offset, d + 8);
    head++;
  };
  const publish = () => region.writeUInt16LE(head, 6);
  return { region, r, put, publish };
}

const pcieoe = (seq: number) =>
  encodeFrame({ dst: 0x0200_0000_0b00, src: 0x0200_0000_0a00, vlan: null, type: FrameType.Tlp, flags: 0, channel: 1, seq, ack: 0, credits: 0 }, Buffer.alloc(300, seq));

test('an in-place receive pass: one-slot frames checked ahead and handed over as the slot, a chain copied whole', (t) => {
  const { r, put, publish } = ring();
  const [a, b, c] = [pcieoe(1), pcieoe(2), pcieoe(3)];
  put(a);
  put(b.subarray(0, 100), true);
  put(b.subarray(100), false);
  put(c);
  publish();
  const got: { frame: Buffer; checked?: boolean; transient?: boolean }[] = [];
  const n = r.serverReceive((frame, checked, transient) => got.push({ frame: Buffer.from(frame), checked, transient }), (bytes) => Buffer.alloc(bytes), 64, true, true);
  t.is(n, 3);
  t.deepEqual(got.map((g) => g.frame), [a, b, c]);
  t.deepEqual(got.map((g) => g.transient), [true, false, true]);
  // The chain is the decoder's to check; the one-slot frames on both sides of it were checked ahead.
  t.deepEqual(got.map((g) => g.checked), [true, false, true]);
  t.is(r.tail, 4, 'every slot handed back');
});

test('an in-place receive pass hands over the frames before a malformed chain, then throws at it', (t) => {
  const cases: [string, (x: ReturnType<typeof ring>) => void, RegExp][] = [
    ['a chained descriptor outside its region', ({ region, put }) => {
      put(Buffer.alloc(100, 7), true);
      put(Buffer.alloc(100, 8));
      region.writeUInt32LE(REGION - 10, 128 + 2 * 16 + 8); // slot 2's offset: its 100 bytes leave the region
    }, /descriptor 2: 100 bytes at 65526 of region 0 are outside it/],
    ['a chain past the last published slot', ({ put }) => put(Buffer.alloc(100, 7), true), /chained past the last published slot/],
  ];
  for (const [what, bad, message] of cases) {
    const x = ring();
    const a = pcieoe(1);
    x.put(a);
    bad(x);
    x.publish();
    const got: { frame: Buffer; checked?: boolean }[] = [];
    const err = t.throws(() => x.r.serverReceive((frame, checked) => got.push({ frame: Buffer.from(frame), checked }), (bytes) => Buffer.alloc(bytes), 64, true, true), { instanceOf: MemifDescriptorError }, what);
    t.regex(err!.message, message, what);
    t.deepEqual(got, [{ frame: a, checked: true }], `${what}: the frame before it delivered, checked`);
  }
});
