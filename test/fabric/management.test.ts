// Discovery and management messages: every kind round-trips, any shortened message is
// rejected as truncated, arbitrary bytes never throw, and the shipped Wireshark dissector
// reads the same fields the codec wrote.
import test from 'ava';
import fc from 'fast-check';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FrameType, encodeFrame } from '../../src/fabric/wire/frame.ts';
import {
  AckStatus,
  MgmtKind,
  SlotState,
  StationRole,
  decodeManagement,
  decodeManagementFrame,
  encodeManagement,
  encodeManagementFrame,
  frameTypeOf,
  type MgmtMessage,
} from '../../src/fabric/wire/management.ts';
import { PcapWriter } from '../../src/fabric/wire/pcap.ts';
import { BROADCAST_MAC } from '../../src/fabric/wire/mac.ts';

const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const id = u16;
const name = fc.string({ maxLength: 20 }).filter((s) => Buffer.byteLength(s) <= 63);

const message: fc.Arbitrary<MgmtMessage> = fc.oneof(
  fc.record({ kind: fc.constant(MgmtKind.Solicit as const), id, manager: name }),
  fc.record({ kind: fc.constant(MgmtKind.Announce as const), id, role: fc.constantFrom(StationRole.Hi, StationRole.Di), links: u8, count: u8, name }),
  fc.record({ kind: fc.constant(MgmtKind.Heartbeat as const), id, epoch: fc.integer({ min: 0, max: 0xffffffff }), generation: u16, link: u8 }),
  fc.record({
    kind: fc.constant(MgmtKind.FunctionReport as const),
    id,
    functions: fc.array(
      fc.record({ index: u8, vendor: u16, device: u16, classCode: fc.integer({ min: 0, max: 0xffffff }), holderChannel: u16, holderBdf: u16, name }),
      { maxLength: 8 },
    ),
  }),
  fc.record({
    kind: fc.constant(MgmtKind.SlotReport as const),
    id,
    slots: fc.array(fc.record({ slot: u8, state: fc.constantFrom(SlotState.Free, SlotState.Mapped, SlotState.Releasing, SlotState.Lost), channel: u16, bdf: u16 }), { maxLength: 30 }),
  }),
  fc.record({ kind: fc.constant(MgmtKind.MapFunction as const), id, index: u8, channel: u16, bdf: u16 }),
  fc.record({ kind: fc.constant(MgmtKind.UnmapFunction as const), id, index: u8, channel: u16 }),
  fc.record({ kind: fc.constant(MgmtKind.MapSlot as const), id, slot: u8, channel: u16, bdf: u16 }),
  fc.record({ kind: fc.constant(MgmtKind.UnmapSlot as const), id, slot: u8, timeoutMs: u16 }),
  fc.record({ kind: fc.constant(MgmtKind.Ack as const), id, status: fc.constantFrom(AckStatus.Ok, AckStatus.Unknown, AckStatus.Busy, AckStatus.Timeout, AckStatus.Failed), detail: fc.string({ maxLength: 80 }) }),
);

test('every message kind round-trips', (t) => {
  fc.assert(
    fc.property(message, (m) => {
      const r = decodeManagement(encodeManagement(m));
      if (!r.ok) throw new Error(`${r.error}: ${r.detail}`);
      t.deepEqual(r.value, m);
    }),
    { numRuns: 3000 },
  );
});

test('a message cut short anywhere is rejected as truncated', (t) => {
  fc.assert(
    fc.property(message, fc.nat(), (m, pick) => {
      const b = encodeManagement(m);
      const cut = b.subarray(0, pick % b.length);
      const r = decodeManagement(cut);
      t.false(r.ok);
      if (!r.ok) t.is(r.error, 'truncated');
    }),
    { numRuns: 2000 },
  );
});

test('arbitrary bytes decode or fail, never throw; unknown kinds and bad fields are named', (t) => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (b) => void decodeManagement(b)), { numRuns: 5000 });
  t.like(decodeManagement(Uint8Array.of(0x7f, 0, 0, 1)), { ok: false, error: 'unknown-kind', detail: 'message kind 0x7f' });
  t.like(decodeManagement(Uint8Array.of(MgmtKind.Announce, 0, 0, 1, 9, 2, 2, 0)), { ok: false, error: 'bad-field', detail: 'role 9' });
  t.like(decodeManagement(Uint8Array.of(MgmtKind.Ack, 0, 0, 1, 99, 0)), { ok: false, error: 'bad-field', detail: 'status 99' });
});

test('values that do not fit are refused when encoding', (t) => {
  t.throws(() => encodeManagement({ kind: MgmtKind.MapSlot, id: 1, slot: 256, channel: 1, bdf: 0 }), { message: /256 does not fit a byte/ });
  t.throws(() => encodeManagement({ kind: MgmtKind.Solicit, id: 1, manager: 'm'.repeat(64) }), { message: /longer than 63 bytes/ });
});

test('a message travels in its frame: sender, kind and body come back; other frames are not management', (t) => {
  fc.assert(
    fc.property(message, fc.integer({ min: 0, max: 2 ** 48 - 1 }), (m, src) => {
      const r = decodeManagementFrame(encodeManagementFrame(BROADCAST_MAC, src, m));
      if (!r.ok) throw new Error(`${r.error}: ${r.detail}`);
      t.deepEqual(r.value, { src, dst: BROADCAST_MAC, message: m });
    }),
    { numRuns: 1000 },
  );
  const tlpFrame = encodeFrame({ dst: 1, src: 2, vlan: null, type: FrameType.Tlp, flags: 0, channel: 0, seq: 0, ack: 0, credits: 0 }, new Uint8Array(12));
  t.like(decodeManagementFrame(tlpFrame), { ok: false, error: 'not-management', detail: 'frame type 0 on channel 0' });
  const onChannel = encodeFrame({ dst: 1, src: 2, vlan: null, type: FrameType.Discovery, flags: 0, channel: 3, seq: 0, ack: 0, credits: 0 }, encodeManagement({ kind: MgmtKind.Solicit, id: 1, manager: 'm' }));
  t.like(decodeManagementFrame(onChannel), { ok: false, error: 'not-management' });
  const wrongType = encodeFrame({ dst: 1, src: 2, vlan: null, type: FrameType.Management, flags: 0, channel: 0, seq: 0, ack: 0, credits: 0 }, encodeManagement({ kind: MgmtKind.Solicit, id: 1, manager: 'm' }));
  t.like(decodeManagementFrame(wrongType), { ok: false, error: 'bad-field' });
});

const FIELDS = ['pcieoe.type', 'pcieoe.mgmt.kind', 'pcieoe.mgmt.id', 'pcieoe.mgmt.role', 'pcieoe.mgmt.name', 'pcieoe.mgmt.slot', 'pcieoe.mgmt.channel', 'pcieoe.mgmt.bdf', 'pcieoe.mgmt.function', 'pcieoe.mgmt.vendor', 'pcieoe.mgmt.class', 'pcieoe.mgmt.status', 'pcieoe.mgmt.count', 'pcieoe.mgmt.epoch', 'pcieoe.mgmt.generation', 'pcieoe.mgmt.link', 'pcieoe.mgmt.state'];

test('tshark decodes every message kind with the shipped dissector', (t) => {
  const samples: MgmtMessage[] = [
    { kind: MgmtKind.Solicit, id: 1, manager: 'mgr' },
    { kind: MgmtKind.Announce, id: 2, role: StationRole.Hi, links: 2, count: 3, name: 'hia' },
    { kind: MgmtKind.FunctionReport, id: 3, functions: [{ index: 1, vendor: 0x1234, device: 0x4e56, classCode: 0x010802, holderChannel: 2, holderBdf: 0x0101, name: 'fn1' }] },
    { kind: MgmtKind.SlotReport, id: 4, slots: [{ slot: 1, state: SlotState.Mapped, channel: 2, bdf: 0x0101 }] },
    { kind: MgmtKind.MapFunction, id: 5, index: 1, channel: 2, bdf: 0x0101 },
    { kind: MgmtKind.UnmapFunction, id: 6, index: 1, channel: 2 },
    { kind: MgmtKind.MapSlot, id: 7, slot: 1, channel: 2, bdf: 0x0101 },
    { kind: MgmtKind.UnmapSlot, id: 8, slot: 1, timeoutMs: 5000 },
    { kind: MgmtKind.Ack, id: 9, status: AckStatus.Busy, detail: 'held by host-b' },
    { kind: MgmtKind.Heartbeat, id: 10, epoch: 0xdeadbeef, generation: 7, link: 1 },
    { kind: MgmtKind.SlotReport, id: 11, slots: [{ slot: 0, state: SlotState.Lost, channel: 1, bdf: 0x0100 }] },
  ];
  const file = join(mkdtempSync(join(tmpdir(), 'mgmt-tshark-')), 'mgmt.pcap');
  const w = new PcapWriter(file);
  for (const m of samples) {
    const frame = encodeFrame({ dst: 0x020000000001, src: 0x020000030000, vlan: null, type: frameTypeOf(m.kind) as FrameType, flags: 0, channel: 0, seq: 0, ack: 0, credits: 0 }, encodeManagement(m));
    w.write(frame);
  }
  w.close();
  const out = execFileSync('tshark', ['-r', file, '-X', 'lua_script:lab/wireshark/pcieoe.lua', '-T', 'fields', '-E', 'separator=/t', '-E', 'occurrence=f', ...FIELDS.flatMap((x) => ['-e', x])], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const rows = out.trimEnd().split('\n').map((line) => Object.fromEntries(line.split('\t').map((v, k) => [FIELDS[k]!, v])));
  t.is(rows.length, samples.length);
  const num = (s: string | undefined) => (s ? Number(s) : undefined);
  samples.forEach((m, i) => {
    const row = rows[i]!;
    t.is(num(row['pcieoe.type']), frameTypeOf(m.kind), `row ${i}`);
    t.is(num(row['pcieoe.mgmt.kind']), m.kind, `row ${i}`);
    t.is(num(row['pcieoe.mgmt.id']), m.id, `row ${i}`);
  });
  t.is(rows[0]!['pcieoe.mgmt.name'], 'mgr');
  t.like(rows[1], { 'pcieoe.mgmt.role': '1', 'pcieoe.mgmt.name': 'hia', 'pcieoe.mgmt.count': '3' });
  t.like(rows[2], { 'pcieoe.mgmt.function': '1', 'pcieoe.mgmt.vendor': '0x1234', 'pcieoe.mgmt.class': '0x010802', 'pcieoe.mgmt.channel': '2', 'pcieoe.mgmt.bdf': '0x0101', 'pcieoe.mgmt.name': 'fn1' });
  t.like(rows[3], { 'pcieoe.mgmt.slot': '1', 'pcieoe.mgmt.channel': '2', 'pcieoe.mgmt.bdf': '0x0101' });
  t.like(rows[4], { 'pcieoe.mgmt.function': '1', 'pcieoe.mgmt.channel': '2', 'pcieoe.mgmt.bdf': '0x0101' });
  t.like(rows[6], { 'pcieoe.mgmt.slot': '1', 'pcieoe.mgmt.channel': '2' });
  t.like(rows[8], { 'pcieoe.mgmt.status': '2' });
  t.like(rows[9], { 'pcieoe.mgmt.epoch': '0xdeadbeef', 'pcieoe.mgmt.generation': '7', 'pcieoe.mgmt.link': '1' });
  t.like(rows[10], { 'pcieoe.mgmt.slot': '0', 'pcieoe.mgmt.state': '3' });
});
