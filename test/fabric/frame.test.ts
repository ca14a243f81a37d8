import test from 'ava';
import fc from 'fast-check';
import { crc32, crc32Table } from '../../src/fabric/wire/crc32.ts';
import {
  type FrameHeader, FrameType, MIN_FRAME_BYTES, PCIEOE_HEADER_BYTES, checkFrame, copyCheckedFrame, decodeFrame, encodeFrame, frameAck, frameChannel, frameCredits,
  frameDst, frameEpoch, frameError, frameFlags, framePayload, framePeerEpoch, frameSeq, frameSrc, frameType, frameVid, writeFrame,
} from '../../src/fabric/wire/frame.ts';
import { formatMac, parseMac } from '../../src/fabric/wire/mac.ts';

const header: fc.Arbitrary<FrameHeader> = fc.record({
  dst: fc.integer({ min: 0, max: 2 ** 48 - 1 }),
  src: fc.integer({ min: 0, max: 2 ** 48 - 1 }),
  vlan: fc.option(fc.record({ pcp: fc.integer({ min: 0, max: 7 }), dei: fc.boolean(), vid: fc.integer({ min: 0, max: 4095 }) })),
  type: fc.constantFrom(FrameType.Tlp, FrameType.Ack, FrameType.Nak, FrameType.Heartbeat, FrameType.Discovery, FrameType.Management),
  flags: fc.integer({ min: 0, max: 255 }),
  channel: fc.integer({ min: 0, max: 0xffff }),
  seq: fc.integer({ min: 0, max: 0xffff }),
  ack: fc.integer({ min: 0, max: 0xffff }),
  credits: fc.integer({ min: 0, max: 0xffff }),
  epoch: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  peerEpoch: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
});
const payload = fc.uint8Array({ maxLength: 300 });

test('round trip and minimum size', (t) => {
  fc.assert(
    fc.property(header, payload, (h, p) => {
      const buf = encodeFrame(h, p);
      t.true(buf.length >= MIN_FRAME_BYTES);
      const r = decodeFrame(buf);
      if (!r.ok) throw new Error(`${r.error}: ${r.detail}`);
      const { payload: got, ...rest } = r.value;
      t.deepEqual(rest, h);
      t.deepEqual(Buffer.from(got), Buffer.from(p));
    }),
    { numRuns: 3000 },
  );
});

test('any flipped bit in the PCIeOE header or payload is rejected', (t) => {
  fc.assert(
    fc.property(header, payload, fc.nat(), (h, p, pick) => {
      const buf = encodeFrame(h, p);
      const start = h.vlan ? 18 : 14;
      const bit = pick % ((PCIEOE_HEADER_BYTES + p.length) * 8);
      buf[start + (bit >> 3)]! ^= 1 << (bit & 7);
      t.false(decodeFrame(buf).ok);
    }),
    { numRuns: 3000 },
  );
});

test('checkFrame and the field readers see in place what decodeFrame decodes, and fail alike', (t) => {
  t.notThrows(() => fc.assert(
    fc.property(header, payload, fc.option(fc.nat()), fc.nat(80), (h, p, flip, cut) => {
      let buf = encodeFrame(h, p);
      if (flip !== null) buf[flip % buf.length]! ^= 1 << (flip % 8);
      if (cut > 60) buf = buf.subarray(0, cut - 60);
      const hdr = checkFrame(buf);
      const r = decodeFrame(buf);
      if (!r.ok) return hdr < 0 && frameError(hdr) === r.error;
      const f = r.value;
      return hdr === (f.vlan ? 18 : 14) && frameDst(buf) === f.dst && frameSrc(buf) === f.src && frameVid(buf, hdr) === (f.vlan ? f.vlan.vid : -1)
        && frameType(buf, hdr) === f.type && frameFlags(buf, hdr) === f.flags && frameChannel(buf, hdr) === f.channel && frameSeq(buf, hdr) === f.seq
        && frameAck(buf, hdr) === f.ack && frameCredits(buf, hdr) === f.credits && frameEpoch(buf, hdr) === f.epoch && framePeerEpoch(buf, hdr) === f.peerEpoch
        && Buffer.from(framePayload(buf, hdr)).equals(Buffer.from(f.payload))
        && (flip !== null || (f.dst === h.dst && f.seq === h.seq && Buffer.from(f.payload).equals(Buffer.from(p))));
    }),
    { numRuns: 3000 },
  ));
});

test('writeFrame encodes in place, anywhere in a larger buffer, the bytes encodeFrame gives', (t) => {
  t.notThrows(() => fc.assert(
    fc.property(header, payload, fc.nat(100), (h, p, at) => {
      const want = encodeFrame(h, p);
      const buf = Buffer.alloc(at + want.length + 16, 0xa5);
      writeFrame(buf, at, h, p);
      return buf.subarray(at, at + want.length).equals(want) && buf.subarray(0, at).every((x) => x === 0xa5) && buf.subarray(at + want.length).every((x) => x === 0xa5);
    }),
    { numRuns: 2000 },
  ));
});

test('copyCheckedFrame vouches for an intact PCIeOE frame only; the copy is exact either way', (t) => {
  fc.assert(
    fc.property(header, payload, fc.nat(64), fc.option(fc.nat()), (h, p, at, flip) => {
      const frame = encodeFrame(h, p);
      const src = Buffer.alloc(at + frame.length + 8, 0x5a);
      frame.copy(src, at);
      const start = h.vlan ? 18 : 14;
      // Any bit from the Ethertype to the payload's end flipped: not vouched for (not PCIeOE, or a bad CRC).
      if (flip !== null) {
        const bit = flip % ((2 + PCIEOE_HEADER_BYTES + p.length) * 8);
        src[at + start - 2 + (bit >> 3)]! ^= 1 << (bit & 7);
      }
      const dst = Buffer.alloc(frame.length);
      const checked = copyCheckedFrame(dst, src, at, at + frame.length);
      t.true(dst.equals(src.subarray(at, at + frame.length)));
      t.is(checked, flip === null);
      // What decodeFrame says of the copy with the verdict agrees with what it finds checking itself.
      t.is(decodeFrame(dst, checked).ok, decodeFrame(dst).ok);
    }),
    { numRuns: 3000 },
  );
  // Not PCIeOE, or too short to be: copied, not vouched for.
  for (const bytes of [Buffer.alloc(60, 1), Buffer.alloc(20, 0)]) {
    const dst = Buffer.alloc(bytes.length);
    t.false(copyCheckedFrame(dst, bytes, 0, bytes.length));
    t.true(dst.equals(bytes));
  }
});

test('decoder never throws on random bytes, with or without a valid prefix', (t) => {
  const prefix = encodeFrame({ dst: 1, src: 2, vlan: { pcp: 0, dei: false, vid: 5 }, type: FrameType.Tlp, flags: 0, channel: 1, seq: 0, ack: 0, credits: 0 }).subarray(0, 18 + PCIEOE_HEADER_BYTES);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 120 }), fc.nat({ max: 18 + PCIEOE_HEADER_BYTES }), (bytes, keep) => {
      const buf = Buffer.concat([prefix.subarray(0, keep), bytes]);
      const r = decodeFrame(buf);
      t.is(typeof r.ok, 'boolean');
    }),
    { numRuns: 5000 },
  );
});

test('each kind of bad frame is named', (t) => {
  const h: FrameHeader = { dst: 1, src: 2, vlan: { pcp: 3, dei: false, vid: 10 }, type: FrameType.Tlp, flags: 0, channel: 7, seq: 1, ack: 2, credits: 3 };
  const good = encodeFrame(h, Buffer.from('hello, fabric'));
  t.true(decodeFrame(good).ok);
  t.like(decodeFrame(good.subarray(0, 20)), { ok: false, error: 'truncated' });
  const longLen = Buffer.from(good);
  longLen.writeUInt16BE(200, 28);
  t.like(decodeFrame(longLen), { ok: false, error: 'truncated' });
  const ipv4 = Buffer.from(good);
  ipv4.writeUInt16BE(0x0800, 16);
  t.like(decodeFrame(ipv4), { ok: false, error: 'bad-ethertype' });
  const v1 = Buffer.from(good);
  v1[18] = 0x10; // version 1 had no epochs
  t.like(decodeFrame(v1), { ok: false, error: 'bad-version' });
  const crc = Buffer.from(good);
  crc[40]! ^= 0x10;
  t.like(decodeFrame(crc), { ok: false, error: 'bad-crc' });
  const unknown = encodeFrame({ ...h, type: 9 as FrameType });
  t.like(decodeFrame(unknown), { ok: false, error: 'unknown-type' });
  const epochs = encodeFrame({ ...h, epoch: 0xdead_beef, peerEpoch: 7 });
  t.is(epochs.readUInt32BE(34), 0xdead_beef, 'sender epoch at 34 (tagged)');
  t.is(epochs.readUInt32BE(38), 7, 'receiver epoch at 38');
  t.like(decodeFrame(epochs), { ok: true, value: { epoch: 0xdead_beef, peerEpoch: 7 } });
  t.like(decodeFrame(good), { ok: true, value: { epoch: 0, peerEpoch: 0 } }, 'epochs default to 0');
});

test('CRC: native and table-driven agree with the IEEE check value', (t) => {
  t.is(crc32(Buffer.from('123456789')), 0xcbf43926);
  t.is(crc32Table(Buffer.from('123456789')), 0xcbf43926);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ maxLength: 50 }), (a, b) => {
      t.is(crc32Table(b, crc32Table(a)), crc32(b, crc32(a)));
      t.is(crc32(Buffer.concat([a, b])), crc32(b, crc32(a)));
    }),
    { numRuns: 500 },
  );
});

test('MAC text round trip', (t) => {
  t.is(formatMac(parseMac('02:00:5e:10:00:ff')), '02:00:5e:10:00:ff');
  t.is(parseMac('ff:ff:ff:ff:ff:ff'), 2 ** 48 - 1);
  t.throws(() => parseMac('02:00:5e'));
});
