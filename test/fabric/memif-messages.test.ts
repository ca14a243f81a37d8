import test from 'ava';
import fc from 'fast-check';
import { MEMIF_MESSAGE_BYTES, type MemifMessage, MemifProtocolError, decodeMemifMessage, encodeMemifMessage } from '../../src/fabric/wire/memif/messages.ts';

/** NUL-free text that fits a field of `bytes` (one byte for the terminator). */
const text = (bytes: number) => fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-._ '.split('')), maxLength: bytes - 1 });
const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });

const message: fc.Arbitrary<MemifMessage> = fc.oneof(
  fc.constant({ type: 'ack' as const }),
  fc.record({ type: fc.constant('hello' as const), name: text(32), minVersion: u16, maxVersion: u16, maxRegion: u16, maxS2cRing: u16, maxC2sRing: u16, maxLog2RingSize: u8 }),
  fc.record({ type: fc.constant('init' as const), version: u16, id: u32, mode: u8, secret: text(24), name: text(32) }),
  fc.record({ type: fc.constant('add-region' as const), index: u16, size: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
  fc.record({ type: fc.constant('add-ring' as const), c2s: fc.boolean(), index: u16, region: u16, offset: u32, log2RingSize: u8, privateHeaderSize: u16 }),
  fc.record({ type: fc.constant('connect' as const), interfaceName: text(32) }),
  fc.record({ type: fc.constant('connected' as const), interfaceName: text(32) }),
  fc.record({ type: fc.constant('disconnect' as const), code: u32, reason: text(96) }),
);

test('every message encodes to 128 bytes and decodes to itself', (t) => {
  fc.assert(
    fc.property(message, (m) => {
      const b = encodeMemifMessage(m);
      t.is(b.length, MEMIF_MESSAGE_BYTES);
      t.deepEqual(decodeMemifMessage(b), m);
    }),
  );
});

test('any 128-byte packet decodes to a message or a MemifProtocolError, and a decoded one re-encodes to the same fields', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 128, maxLength: 128 }), fc.integer({ min: 0, max: 12 }), (bytes, type) => {
      const b = Buffer.from(bytes);
      b.writeUInt16LE(type, 0);
      let m: MemifMessage;
      try {
        m = decodeMemifMessage(b);
      } catch (err) {
        t.true(err instanceof MemifProtocolError);
        t.true(type === 0 || type > 8, `type ${type} refused`);
        return;
      }
      t.deepEqual(decodeMemifMessage(encodeMemifMessage(m)), m);
    }),
  );
});

test('byte layout: the fields sit where VPP and DPDK put them', (t) => {
  const hello = encodeMemifMessage({ type: 'hello', name: 'vpp', minVersion: 0x0200, maxVersion: 0x0200, maxRegion: 255, maxS2cRing: 1, maxC2sRing: 2, maxLog2RingSize: 14 });
  t.is(hello.readUInt16LE(0), 2);
  t.is(hello.toString('latin1', 2, 5), 'vpp');
  t.deepEqual([hello.readUInt16LE(34), hello.readUInt16LE(36), hello.readUInt16LE(38), hello.readUInt16LE(40), hello.readUInt16LE(42), hello[44]], [0x200, 0x200, 255, 1, 2, 14]);
  const ring = encodeMemifMessage({ type: 'add-ring', c2s: true, index: 3, region: 1, offset: 0x1234, log2RingSize: 10, privateHeaderSize: 0 });
  t.deepEqual([ring.readUInt16LE(0), ring.readUInt16LE(2), ring.readUInt16LE(4), ring.readUInt16LE(6), ring.readUInt32LE(8), ring[12]], [5, 1, 3, 1, 0x1234, 10]);
  const init = encodeMemifMessage({ type: 'init', version: 0x0200, id: 7, mode: 0, secret: 's', name: 'n' });
  t.deepEqual([init.readUInt16LE(2), init.readUInt32LE(4), init[8], init[9], init[33]], [0x200, 7, 0, 's'.charCodeAt(0), 'n'.charCodeAt(0)]);
  const region = encodeMemifMessage({ type: 'add-region', index: 2, size: 1n << 33n });
  t.deepEqual([region.readUInt16LE(2), region.readBigUInt64LE(4)], [2, 1n << 33n]);
  const d = encodeMemifMessage({ type: 'disconnect', code: 9, reason: 'bye' });
  t.deepEqual([d.readUInt32LE(2), d.toString('latin1', 6, 9)], [9, 'bye']);
});

test('wrong sizes are refused with the size named', (t) => {
  for (const n of [0, 2, 127, 129, 256]) t.throws(() => decodeMemifMessage(Buffer.alloc(n)), { instanceOf: MemifProtocolError, message: new RegExp(`${n} bytes, expected 128`) });
});
