// The addon's frame-check helpers: crc32 with a zeroed hole (a frame's own CRC
// field) and crc32Copy (copy and CRC in one pass), against the bytewise reference.
import { spawnSync } from 'node:child_process';
import test from 'ava';
import fc from 'fast-check';
import { native } from '../../native/index.ts';
import { crc32Table } from '../../src/fabric/wire/crc32.ts';
import { FrameType, encodeFrame } from '../../src/fabric/wire/frame.ts';

test('crc32 with zeroAt equals the reference over the range with those four bytes zero', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 4, maxLength: 5000 }), fc.nat(), fc.nat(), fc.nat(), fc.integer({ min: 0, max: 0xffffffff }), (data, a, b, c, init) => {
      const start = a % (data.length - 3);
      const end = start + 4 + (b % (data.length - start - 3));
      const hole = start + (c % (end - start - 3));
      const zeroed = Uint8Array.from(data.subarray(start, end));
      zeroed.fill(0, hole - start, hole - start + 4);
      return native.crc32(data, init, start, end, hole) === crc32Table(zeroed, init);
    }),
    { numRuns: 2000 },
  );
  t.throws(() => native.crc32(Buffer.alloc(16), 0, 4, 12, 2), { instanceOf: RangeError });
  t.throws(() => native.crc32(Buffer.alloc(16), 0, 4, 12, 9), { instanceOf: RangeError });
});

test('crc32Copy copies src into dst at offset and returns its CRC, overlapping views too', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 5000 }), fc.nat(64), fc.nat(64), fc.integer({ min: 0, max: 0xffffffff }), (src, before, after, init) => {
      const dst = new Uint8Array(before + src.length + after).fill(0xa5);
      const crc = native.crc32Copy(dst, before, src, init);
      const untouched = dst.subarray(0, before).every((x) => x === 0xa5) && dst.subarray(before + src.length).every((x) => x === 0xa5);
      return crc === crc32Table(src, init) && Buffer.from(dst.subarray(before, before + src.length)).equals(src) && untouched;
    }),
    { numRuns: 1000 },
  );
  // One buffer, source and destination overlapping: the result is a memmove, the CRC that of the bytes moved.
  const buf = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff);
  const moved = Uint8Array.from(buf.subarray(0, 256));
  t.is(native.crc32Copy(buf, 10, buf.subarray(0, 256)), crc32Table(moved));
  t.deepEqual(buf.subarray(10, 266), moved);
  t.throws(() => native.crc32Copy(Buffer.alloc(8), 4, Buffer.alloc(5)), { instanceOf: RangeError });
});

test('copyCrc32 copies a range and returns the CRC of a sub-range with four bytes as zero', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 4, maxLength: 5000 }), fc.nat(), fc.nat(), fc.nat(), fc.nat(), fc.nat(), fc.nat(32), (src, a, b, c, d, e, at) => {
      // start <= crcStart <= hole, hole + 4 <= crcEnd <= end
      const start = a % (src.length - 3);
      const end = start + 4 + (b % (src.length - start - 3));
      const crcStart = start + (c % (end - start - 3));
      const crcEnd = crcStart + 4 + (d % (end - crcStart - 3));
      const hole = crcStart + (e % (crcEnd - crcStart - 3));
      const dst = new Uint8Array(at + end - start + 8).fill(0xa5);
      const crc = native.copyCrc32(dst, at, src, start, end, crcStart, crcEnd, hole);
      const zeroed = Uint8Array.from(src.subarray(crcStart, crcEnd));
      zeroed.fill(0, hole - crcStart, hole - crcStart + 4);
      const copied = Buffer.from(dst.subarray(at, at + end - start)).equals(src.subarray(start, end));
      const untouched = dst.subarray(0, at).every((x) => x === 0xa5) && dst.subarray(at + end - start).every((x) => x === 0xa5);
      return crc === crc32Table(zeroed) && copied && untouched;
    }),
    { numRuns: 2000 },
  );
  const buf = new Uint8Array(64);
  t.throws(() => native.copyCrc32(new Uint8Array(8), 0, buf, 0, 16, 0, 16, 4), { instanceOf: RangeError }); // does not fit dst
  t.throws(() => native.copyCrc32(new Uint8Array(64), 0, buf, 8, 32, 4, 32, 8), { instanceOf: RangeError }); // CRC range starts before the copy
  t.throws(() => native.copyCrc32(new Uint8Array(64), 0, buf, 0, 32, 0, 32, 30), { instanceOf: RangeError }); // hole past the CRC range
  t.throws(() => native.copyCrc32(buf, 0, buf, 8, 40, 8, 40, 8), { instanceOf: RangeError }); // overlapping
});

/** Lengths around each stage of the folding: 64-byte blocks, four 256-byte blocks in flight, 16-byte tails, a 4 KiB TLP's frame. */
const FOLD_LENGTHS = [0, 15, 16, 63, 64, 65, 79, 80, 127, 128, 191, 192, 255, 256, 257, 271, 319, 320, 448, 511, 512, 767, 1024, 4111, 4112, 4113, 4136, 9000];

/** CRC, crc32Copy's CRC and whether its copy matched, for each length at offsets 0-2 of a fixed pseudo-random buffer. */
const FOLD_SCRIPT = `
  import { native } from ${JSON.stringify(new URL('../../native/index.ts', import.meta.url).href)};
  const data = Buffer.alloc(9100);
  for (let i = 0, x = 1; i < data.length; i++) data[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
  const out = [];
  for (const n of ${JSON.stringify(FOLD_LENGTHS)}) for (let at = 0; at < 3; at++) {
    const src = data.subarray(at, at + n);
    const dst = Buffer.alloc(n + 1);
    out.push([native.crc32(src, 0x1234567), native.crc32Copy(dst, 1, src, 0x1234567), dst.subarray(1).equals(src)]);
  }
  console.log(JSON.stringify(out));
`;

test('crc32 and crc32Copy agree with the reference with 512-bit folding and with the 128-bit code (PCIEOE_CRC_FOLD=128)', (t) => {
  const data = Buffer.alloc(9100);
  for (let i = 0, x = 1; i < data.length; i++) data[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
  const expected = FOLD_LENGTHS.flatMap((n) => [0, 1, 2].map((at) => crc32Table(data.subarray(at, at + n), 0x1234567)));
  for (const fold of ['', '128']) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', FOLD_SCRIPT], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, PCIEOE_CRC_FOLD: fold } });
    t.is(r.status, 0, r.stderr);
    const got = JSON.parse(r.stdout) as [number, number, boolean][];
    t.deepEqual(got.map((x) => x[0]), expected, `PCIEOE_CRC_FOLD=${fold}: crc32`);
    t.deepEqual(got.map((x) => x[1]), expected, `PCIEOE_CRC_FOLD=${fold}: crc32Copy`);
    t.true(got.every((x) => x[2]), `PCIEOE_CRC_FOLD=${fold}: copies`);
  }
});

test('sealFrame copies the payload behind the header and writes the CRC of both (CRC field as zero) into the field, big-endian', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 24, maxLength: 24 }), fc.uint8Array({ maxLength: 5000 }), fc.nat(64), fc.nat(64), (header, payload, before, after) => {
      const buf = new Uint8Array(before + 24 + payload.length + after).fill(0xa5);
      buf.set(header, before);
      const crc = native.sealFrame(buf, before, payload);
      const expected = Uint8Array.from([...header, ...payload]);
      expected.fill(0, 12, 16);
      const field = Buffer.from(buf.buffer, buf.byteOffset + before + 12, 4).readUInt32BE(0);
      const copied = Buffer.from(buf.subarray(before + 24, before + 24 + payload.length)).equals(payload);
      const headerKept = Buffer.from(buf.subarray(before, before + 12)).equals(header.subarray(0, 12)) && Buffer.from(buf.subarray(before + 16, before + 24)).equals(header.subarray(16));
      const untouched = buf.subarray(0, before).every((x) => x === 0xa5) && buf.subarray(before + 24 + payload.length).every((x) => x === 0xa5);
      return crc === crc32Table(expected) && field === crc && copied && headerKept && untouched;
    }),
    { numRuns: 1000 },
  );
  // The payload already in place (a view of the same bytes): the CRC is that of what is there.
  const buf = Uint8Array.from({ length: 24 + 300 }, (_, i) => i & 0xff);
  const expected = Uint8Array.from(buf);
  expected.fill(0, 12, 16);
  t.is(native.sealFrame(buf, 0, buf.subarray(24)), crc32Table(expected));
  t.throws(() => native.sealFrame(new Uint8Array(30), 0, new Uint8Array(7)), { instanceOf: RangeError });
  t.throws(() => native.sealFrame(new Uint8Array(30), 8, new Uint8Array(0)), { instanceOf: RangeError });
});

test('framesCrcOk tells, for each span of a region, whether it is a PCIeOE frame whose CRC holds', (t) => {
  fc.assert(
    fc.property(fc.array(fc.record({ size: fc.nat(5000), tagged: fc.boolean(), damage: fc.boolean(), gap: fc.nat(64) }), { minLength: 1, maxLength: 12 }), (specs) => {
      const frames = specs.map((s, i) => {
        const f = encodeFrame({ dst: 0x0200_0000_0b00, src: 0x0200_0000_0a00, vlan: s.tagged ? { pcp: 0, dei: false, vid: 5 } : null, type: FrameType.Tlp, flags: 0, channel: 1, seq: i, ack: 0, credits: 0 }, Buffer.alloc(s.size, i + 1));
        const hdr = s.tagged ? 18 : 14;
        if (s.damage) f[s.size > 0 ? hdr + 24 + s.size - 1 : hdr + 16]! ^= 0x20; // the payload's last byte, or the header's epoch
        return f;
      });
      const spans = new Uint32Array(2 * frames.length + 4);
      const region = new Uint8Array(frames.reduce((n, f, i) => n + f.length + specs[i]!.gap, 0) + 100);
      let at = 0;
      frames.forEach((f, i) => {
        at += specs[i]!.gap;
        region.set(f, at);
        spans[2 * i] = at;
        spans[2 * i + 1] = at += f.length;
      });
      // Two more: zeros (not a PCIeOE frame) and a span past the region's end.
      spans.set([region.length - 100, region.length - 40, region.length - 50, region.length + 10], 2 * frames.length);
      const ok = new Uint8Array(frames.length + 2).fill(7);
      native.framesCrcOk(region, new Uint8Array(spans.buffer), frames.length + 2, ok);
      return [...ok].join() === [...specs.map((s) => (s.damage ? 0 : 1)), 0, 0].join();
    }),
    { numRuns: 300 },
  );
  t.throws(() => native.framesCrcOk(new Uint8Array(64), new Uint8Array(8), 2, new Uint8Array(2)), { instanceOf: RangeError });
});
