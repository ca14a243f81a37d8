import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import test from 'ava';
import { until } from '../support/until.ts';
import { capturePort } from '../../src/fabric/wire/capture.ts';
import { FaultyPort } from '../../src/fabric/wire/faults.ts';
import { FrameType, PCIEOE_HEADER_BYTES, decodeFrame, encodeFrame } from '../../src/fabric/wire/frame.ts';
import { BROADCAST_MAC } from '../../src/fabric/wire/mac.ts';
import { PcapWriter, readPcap } from '../../src/fabric/wire/pcap.ts';
import { type Station, inProcessPort } from '../../src/fabric/wire/port.ts';
import { seededRng } from '../../src/fabric/rng.ts';
import { SimClock } from '../../src/fabric/sim-clock.ts';
import { EthernetSwitch, type VlanMode } from '../../src/fabric/switch/switch.ts';
import { UdpStation, UdpSwitchPort } from '../../src/fabric/wire/udp-port.ts';

/** A plain Ethernet frame, tagged when `vid` is given. */
function eth(dst: number, src: number, body: string, vid?: number, pcp = 0): Buffer {
  const f = encodeFrame({ dst, src, vlan: vid === undefined ? null : { pcp, dei: false, vid }, type: FrameType.Management, flags: 0, channel: 0, seq: 0, ack: 0, credits: 0 }, Buffer.from(body));
  return f;
}

function rig(modes: VlanMode[]) {
  const clock = new SimClock();
  const sw = new EthernetSwitch({ clock, agingMs: 1000 });
  const got: Buffer[][] = modes.map(() => []);
  const stations: Station[] = modes.map((mode, i) => {
    const { port, station } = inProcessPort(clock);
    sw.addPort(port, mode);
    station.onFrame = (f) => got[i]!.push(f);
    return station;
  });
  const settle = () => clock.advance(0.001);
  return { clock, sw, got, stations, settle };
}

test('learns, floods unknown and broadcast, forwards known unicast, filters local', (t) => {
  const r = rig([{ mode: 'access', vid: 1 }, { mode: 'access', vid: 1 }, { mode: 'access', vid: 1 }]);
  r.stations[0]!.send(eth(0xb, 0xa, 'to unknown b'));
  r.settle();
  t.deepEqual(r.got.map((g) => g.length), [0, 1, 1], 'unknown unicast floods');
  r.stations[1]!.send(eth(0xa, 0xb, 'reply'));
  r.settle();
  t.deepEqual(r.got.map((g) => g.length), [1, 1, 1], 'a was learned on port 0');
  r.stations[0]!.send(eth(0xb, 0xa, 'now known'));
  r.settle();
  t.deepEqual(r.got.map((g) => g.length), [1, 2, 1]);
  r.stations[0]!.send(eth(BROADCAST_MAC, 0xa, 'all'));
  r.settle();
  t.deepEqual(r.got.map((g) => g.length), [1, 3, 2]);
  r.stations[0]!.send(eth(0xa, 0xc, 'back to its own port'));
  r.settle();
  t.deepEqual(r.got.map((g) => g.length), [1, 3, 2], 'not sent back where it came from');
  t.like(r.sw.counters(0), { rxFrames: 4, txFrames: 1 });
  t.like(r.sw.counters(1), { txFrames: 3, txFlooded: 2 });
  r.clock.advance(2000);
  t.is(r.sw.lookup(1, 0xb), undefined, 'entries age out');
});

test('VLANs: access ports are isolated, trunks tag, native VLAN leaves untagged', (t) => {
  const r = rig([
    { mode: 'access', vid: 10 },
    { mode: 'access', vid: 20 },
    { mode: 'trunk', vids: [10, 20] },
    { mode: 'trunk', vids: 'all', native: 10 },
  ]);
  r.stations[0]!.send(eth(BROADCAST_MAC, 0xa, 'v10', undefined));
  r.settle();
  t.deepEqual(r.got.map((g) => g.length), [0, 0, 1, 1]);
  t.like(decodeFrame(r.got[2]![0]!), { ok: true, value: { vlan: { vid: 10 } } });
  t.like(decodeFrame(r.got[3]![0]!), { ok: true, value: { vlan: null } }, 'native VLAN leaves the trunk untagged');
  r.stations[2]!.send(eth(BROADCAST_MAC, 0xc, 'v20 from trunk', 20, 6));
  r.settle();
  t.deepEqual(r.got.map((g) => g.length), [0, 1, 1, 2]);
  t.like(decodeFrame(r.got[1]![0]!), { ok: true, value: { vlan: null } }, 'access port strips the tag');
  t.like(decodeFrame(r.got[3]![1]!), { ok: true, value: { vlan: { vid: 20, pcp: 6 } } }, 'priority survives');
  r.stations[2]!.send(eth(BROADCAST_MAC, 0xc, 'v30 not allowed', 30));
  r.stations[0]!.send(eth(BROADCAST_MAC, 0xa, 'wrong tag on access', 20));
  r.stations[0]!.send(Buffer.alloc(10));
  r.settle();
  t.deepEqual(r.got.map((g) => g.length), [0, 1, 1, 2]);
  t.is(r.sw.counters(2).rxDropped, 1);
  t.is(r.sw.counters(0).rxDropped, 2);
});

test('fault injection: loss, duplication, corruption and down are applied and counted', (t) => {
  const clock = new SimClock();
  const { port, station } = inProcessPort(clock);
  const faulty = new FaultyPort(port, clock, seededRng(3));
  const got: Buffer[] = [];
  faulty.attach((f) => got.push(f));
  const frame = eth(1, 2, 'x'.repeat(40));
  faulty.set({ loss: 0.5 }, 'toSwitch');
  for (let i = 0; i < 1000; i++) station.send(frame);
  clock.advance(1);
  const c = faulty.counters('toSwitch');
  t.is(c.lost + c.passed, 1000);
  t.true(c.lost > 400 && c.lost < 600, `${c.lost} lost`);
  t.is(got.length, c.passed);
  faulty.set({ loss: 0, duplicate: 1, corrupt: 1 }, 'toSwitch');
  got.length = 0;
  station.send(frame);
  clock.advance(1);
  t.is(got.length, 2);
  t.notDeepEqual(got[0], frame);
  t.is(frame.toString('latin1', 14 + PCIEOE_HEADER_BYTES, 54 + PCIEOE_HEADER_BYTES), 'x'.repeat(40), "the sender's buffer is untouched");
  faulty.set({ down: true });
  station.send(frame);
  clock.advance(1);
  t.is(got.length, 2);
  t.is(faulty.counters('toSwitch').downDropped, 1);
  t.is(faulty.counters('toStation').passed, 0);
});

test('fault injection: latency, reordering and rate shaping delay frames', (t) => {
  const clock = new SimClock();
  const { port, station } = inProcessPort(clock);
  const faulty = new FaultyPort(port, clock, seededRng(5));
  const arrivals: [number, number][] = [];
  faulty.attach((f) => arrivals.push([f.readUInt8(14 + PCIEOE_HEADER_BYTES), clock.now()])); // untagged: payload after 14 + header
  faulty.set({ latency: 2, rateGbps: 1 }, 'toSwitch');
  const frames = [0, 1, 2].map((i) => eth(1, 2, String.fromCharCode(65 + i).repeat(1000)));
  for (const f of frames) station.send(f);
  clock.advance(10);
  // At 1 Gb/s a frame of n bytes takes 8n ns, and frames queue one after another.
  const serialise = (frames[0]!.length * 8) / 1e6;
  t.deepEqual(arrivals.map(([c]) => c), [65, 66, 67]);
  t.true(Math.abs(arrivals[2]![1] - arrivals[0]![1] - 2 * serialise) < 1e-9);
  t.true(arrivals[0]![1] >= 2);
  arrivals.length = 0;
  faulty.set({ latency: 0, rateGbps: 0, reorder: 1, reorderDelay: 1 }, 'toSwitch');
  station.send(eth(1, 2, 'A'));
  clock.advance(0.1);
  faulty.set({ reorder: 0 }, 'toSwitch');
  station.send(eth(1, 2, 'B'));
  clock.advance(2);
  t.deepEqual(arrivals.map(([c]) => String.fromCharCode(c)), ['B', 'A']);
});

test('capture writes a pcap of both directions', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fabric-pcap-'));
  const file = path.join(dir, 'port0.pcap');
  const clock = new SimClock();
  const sw = new EthernetSwitch({ clock });
  const writer = new PcapWriter(file);
  const a = inProcessPort(clock);
  const b = inProcessPort(clock);
  sw.addPort(capturePort(a.port, writer, () => 1_700_000_000_000 + clock.now()));
  sw.addPort(b.port);
  a.station.send(eth(0xb, 0xa, 'out'));
  clock.advance(1);
  b.station.send(eth(0xa, 0xb, 'back'));
  clock.advance(1);
  writer.close();
  const recs = readPcap(fs.readFileSync(file));
  t.is(recs.length, 2);
  t.like(decodeFrame(recs[0]!.data), { ok: true, value: { src: 0xa } });
  t.like(decodeFrame(recs[1]!.data), { ok: true, value: { src: 0xb } });
  t.is(recs[1]!.time, 1_700_000_000_001);
  fs.rmSync(dir, { recursive: true });
});

test('UDP ports on loopback carry frames through the switch for real', async (t) => {
  const { realClock } = await import('../../src/fabric/clock.ts');
  const sw = new EthernetSwitch({ clock: realClock });
  const pa = await UdpSwitchPort.open();
  const pb = await UdpSwitchPort.open();
  sw.addPort(pa);
  const idB = sw.addPort(pb);
  const a = await UdpStation.connect(pa.port);
  const b = await UdpStation.connect(pb.port);
  const gotB = new Promise<Buffer>((resolve) => (b.onFrame = resolve));
  b.send(eth(BROADCAST_MAC, 0xb, 'hello, I am b')); // lets the port learn b's socket address
  await until(() => sw.counters(idB).rxFrames === 1, "b's hello at the switch");
  a.send(eth(0xb, 0xa, 'over udp'));
  const frame = await gotB;
  t.like(decodeFrame(frame), { ok: true, value: { src: 0xa, dst: 0xb } });
  a.close();
  b.close();
  sw.close();
});
