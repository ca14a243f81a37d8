import test from 'ava';
import {
  DmaRwLayout, Errno, HEADER_SIZE, MsgFlag, ProtocolError, RegionFlag, buildMessage, decodeDmaAccess, decodeDmaMap, decodeDmaUnmap, decodeHeader,
  decodeIrqSet, decodeRegionAccess, decodeRegionInfo, decodeSparseMmap, decodeVersion, encodeDmaAccess, encodeHeader, errorReply, getU64,
  regionInfoPayload, versionPayload, IrqSetFlag,
} from '../../src/vfio-user/protocol.ts';

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));

test('header: 16 bytes little-endian, round trip', (t) => {
  const b = new Uint8Array(16);
  encodeHeader(b, { id: 0x1234, command: 10, size: 36, flags: MsgFlag.NoReply, error: 0 });
  t.deepEqual([...b], [0x34, 0x12, 10, 0, 36, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0]);
  t.deepEqual(decodeHeader(b), { id: 0x1234, command: 10, size: 36, flags: 0x10, error: 0 });
  const e = errorReply(5, 9, Errno.EINVAL);
  t.deepEqual(decodeHeader(e), { id: 5, command: 9, size: 16, flags: MsgFlag.Reply | MsgFlag.Error, error: 22 });
});

test('DMA_UNMAP payload as QEMU 11 sends it (from the decoded trace)', (t) => {
  // "DMA_UNMAP size=40 ... 1800000000000000 0000000000000000 0000002000000000"
  const u = decodeDmaUnmap(hex('18000000 00000000 0000000000000000 0000002000000000'));
  t.deepEqual(u, { argsz: 24, flags: 0, iova: 0, size: 0x20000000 });
  const u2 = decodeDmaUnmap(hex('18000000 00000000 0000100000000000 0000f01f00000000'));
  t.deepEqual(u2, { argsz: 24, flags: 0, iova: 0x100000, size: 0x1ff00000 });
});

test('DMA_MAP: argsz checked against the struct and the message', (t) => {
  const p = new Uint8Array(32);
  const v = new DataView(p.buffer);
  v.setUint32(0, 32, true);
  v.setUint32(4, 3, true);
  v.setBigUint64(16, 0xfffc0000n, true);
  v.setBigUint64(24, 0x40000n, true);
  t.like(decodeDmaMap(p), { flags: 3, iova: 0xfffc0000, size: 0x40000 });
  v.setUint32(0, 31, true);
  t.throws(() => decodeDmaMap(p), { instanceOf: ProtocolError, message: /argsz 31 < 32/ });
  v.setUint32(0, 48, true);
  t.throws(() => decodeDmaMap(p), { message: /argsz 48 > payload 32/ });
  t.throws(() => decodeDmaMap(p.subarray(0, 20)), { message: /need 32 B/ });
});

test('u64 above 2^53 is refused rather than rounded', (t) => {
  const b = new Uint8Array(8).fill(0xff);
  t.throws(() => getU64(new DataView(b.buffer), 0), { instanceOf: ProtocolError, message: /exceeds 2\^53/ });
});

test('VERSION: NUL-terminated JSON both ways; bad JSON is EINVAL', (t) => {
  const p = versionPayload({ major: 0, minor: 0, json: { capabilities: { max_msg_fds: 8 } } });
  t.is(p[p.length - 1], 0);
  t.deepEqual(decodeVersion(p).json, { capabilities: { max_msg_fds: 8 } });
  const bad = new Uint8Array([0, 0, 0, 0, 0x7b, 0x7b]);
  const err = t.throws(() => decodeVersion(bad), { instanceOf: ProtocolError });
  t.is(err.errno, Errno.EINVAL);
  t.throws(() => decodeVersion(new Uint8Array([0, 0, 0, 0, 0x5b, 0x5d])), { message: /must be a JSON object/ });
});

test('GET_REGION_INFO with a sparse mmap cap: short argsz asks for more, as in the trace (32 -> 80)', (t) => {
  const areas = [{ offset: 0, size: 0x1000 }, { offset: 0x3000, size: 0x1000 }];
  const short = regionInfoPayload({ flags: RegionFlag.Read | RegionFlag.Write | RegionFlag.Mmap, index: 1, size: 0x4000, offset: 0 }, areas, 32);
  t.is(short.length, 32);
  const s = decodeRegionInfo(short);
  t.is(s.argsz, 80);
  t.is(s.flags, 0x7);
  t.is(s.capOffset, 0);
  const full = regionInfoPayload({ flags: 0x7, index: 1, size: 0x4000, offset: 0 }, areas, 80);
  t.is(full.length, 80);
  const f = decodeRegionInfo(full);
  t.is(f.flags, 0xf);
  t.is(f.capOffset, 0x20);
  t.deepEqual(decodeSparseMmap(full, f), areas);
});

test('SET_IRQS DATA_BOOL needs count bytes', (t) => {
  const p = new Uint8Array(22);
  const v = new DataView(p.buffer);
  v.setUint32(0, 22, true);
  v.setUint32(4, IrqSetFlag.DataBool | IrqSetFlag.ActionTrigger, true);
  v.setUint32(16, 2, true);
  p[20] = 1;
  t.deepEqual([...decodeIrqSet(p).bools!], [1, 0]);
  v.setUint32(16, 3, true);
  t.throws(() => decodeIrqSet(p), { message: /DATA_BOOL needs 3 data bytes/ });
});

test('REGION_WRITE: data length must equal count', (t) => {
  const p = new Uint8Array(20);
  new DataView(p.buffer).setUint32(12, 4, true);
  t.is(decodeRegionAccess(p, true).data.length, 4);
  t.throws(() => decodeRegionAccess(p, false), { message: /4 data bytes for count 4/ });
  t.throws(() => decodeRegionAccess(p.subarray(0, 18), true), { message: /2 data bytes for count 4/ });
});

test('DMA_READ/WRITE layouts: QEMU puts data at byte 28 with a u32 count, the spec at 32 with a u64 count', (t) => {
  const data = new Uint8Array([0xaa, 0xbb, 0xcc]);
  for (const [layout, at] of [[DmaRwLayout.Qemu, 28], [DmaRwLayout.Spec, 32]] as const) {
    const e = encodeDmaAccess(0x1234, 3, data, layout);
    const msg = buildMessage({ id: 1, command: 12, flags: 0, error: 0 }, e.size, e.fill);
    // QEMU accepts a DMA_WRITE only if size >= count + 32 (its padded struct).
    t.is(msg.length, 3 + 32);
    t.deepEqual([...msg.subarray(at, at + 3)], [0xaa, 0xbb, 0xcc]);
    t.is(new DataView(msg.buffer).getUint32(24, true), 3, 'a u32 reader sees the count');
    const d = decodeDmaAccess(msg.subarray(HEADER_SIZE), layout, true);
    t.deepEqual({ address: d.address, count: d.count, data: [...d.data] }, { address: 0x1234, count: 3, data: [0xaa, 0xbb, 0xcc] });
  }
  const short = new Uint8Array(14);
  new DataView(short.buffer).setUint32(8, 5, true);
  t.throws(() => decodeDmaAccess(short, DmaRwLayout.Qemu, true), { message: /2 data bytes for count 5/ });
});
