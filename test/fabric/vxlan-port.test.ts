import * as dgram from 'node:dgram';
import test from 'ava';
import { realClock } from '../../src/fabric/clock.ts';
import { FaultyPort } from '../../src/fabric/wire/faults.ts';
import { FrameType, encodeFrame } from '../../src/fabric/wire/frame.ts';
import { Channel } from '../../src/fabric/link/channel.ts';
import { inProcessPort } from '../../src/fabric/wire/port.ts';
import { seededRng } from '../../src/fabric/rng.ts';
import { EthernetSwitch } from '../../src/fabric/switch/switch.ts';
import { VxlanPort, vxlanHeader } from '../../src/fabric/wire/vxlan-port.ts';
import { VLAN, macA, macB, numbered } from './harness.ts';
import { until } from '../support/until.ts';

const LOOPBACK = '127.0.0.1';

/** Two VTEPs on loopback pointing at each other. */
async function tunnel(vni = 42) {
  const x = await VxlanPort.open({ vni });
  const y = await VxlanPort.open({ vni });
  x.setRemote(y.local);
  y.setRemote(x.local);
  return [x, y] as const;
}

function udp(address = LOOPBACK): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  return new Promise((resolve) => s.bind(0, address, () => resolve(s)));
}

test('header: I flag, 24-bit VNI, reserved bits zero', (t) => {
  t.deepEqual(vxlanHeader(0xabcdef), Buffer.from('08000000abcdef00', 'hex'));
  t.throws(() => vxlanHeader(1 << 24));
  t.throws(() => vxlanHeader(-1));
});

test('frames cross the tunnel as RFC 7348 datagrams; bad ones are dropped and counted', async (t) => {
  const vtep = await VxlanPort.open({ vni: 7 });
  const peer = await udp();
  const got: Buffer[] = [];
  vtep.attach((f) => got.push(Buffer.from(f)));
  vtep.setRemote({ address: LOOPBACK, port: peer.address().port });
  const seen = new Promise<Buffer>((resolve) => peer.once('message', resolve));
  const frame = Buffer.from('ffffffffffff02000000000108004142', 'hex');
  vtep.transmit(frame);
  t.deepEqual(await seen, Buffer.concat([vxlanHeader(7), frame]), 'header then the frame, untouched');

  const send = (s: dgram.Socket, b: Buffer) => new Promise<void>((r) => s.send(b, vtep.local.port, LOOPBACK, () => r()));
  await send(peer, Buffer.concat([Buffer.from('0f00ffff000007ff', 'hex'), frame])); // reserved bits set: ignored, accepted
  await send(peer, Buffer.from('080000', 'hex')); // truncated header
  await send(peer, Buffer.concat([Buffer.from('0000000000000700', 'hex'), frame])); // no I flag
  await send(peer, Buffer.concat([vxlanHeader(8), frame])); // another VNI
  const other = await udp('127.0.0.2');
  await send(other, Buffer.concat([vxlanHeader(7), frame])); // another host
  // A second socket on the peer's address: a different source port is the same VTEP (flow entropy).
  const samePeerOtherPort = await udp();
  await send(samePeerOtherPort, Buffer.concat([vxlanHeader(7), frame]));
  await until(() => vtep.counters.rxFrames + vtep.counters.rxBadHeader + vtep.counters.rxWrongVni + vtep.counters.rxForeign === 6, 'all datagrams', { timeoutMs: 5000 });
  t.deepEqual(got, [frame, frame]);
  t.like(vtep.counters, { rxFrames: 2, rxBadHeader: 2, rxWrongVni: 1, rxForeign: 1, txFrames: 1 });
  vtep.setRemote(null);
  vtep.transmit(frame);
  t.is(vtep.counters.txNoRemote, 1);
  for (const s of [peer, other, samePeerOtherPort]) s.close();
  vtep.close();
});

test('two switches joined by a lossy VXLAN tunnel: MAC learning across it, and TLPs exactly once, in order', async (t) => {
  const [vx1, vx2] = await tunnel();
  const rng = seededRng(3);
  const sides = [vx1, vx2].map((vx, k) => {
    const sw = new EthernetSwitch({ clock: realClock });
    const faulty = new FaultyPort(vx, realClock, rng);
    sw.addPort(faulty, { mode: 'trunk', vids: 'all' }, 'vxlan');
    const { port, station } = inProcessPort(realClock);
    sw.addPort(port, { mode: 'trunk', vids: [VLAN.vid] }, `station${k}`);
    return { sw, faulty, station };
  });
  sides[0]!.faulty.set({ loss: 0.05 }, 'toStation');
  sides[1]!.faulty.set({ loss: 0.05, duplicate: 0.02 }, 'toStation');
  const got: Buffer[][] = [[], []];
  const channels = sides.map((side, k) => {
    const ch = new Channel({
      channel: 3,
      links: [{ localMac: k ? macB(0) : macA(0), peerMac: k ? macA(0) : macB(0), vlan: VLAN }],
      send: (_, f) => side.station.send(f),
      deliver: (p) => got[k]!.push(Buffer.from(p)),
      clock: realClock,
    });
    side.station.onFrame = (f) => ch.receive(0, f);
    return ch;
  });
  const there = numbered(800, 1024);
  const back = numbered(300, 64);
  there.forEach((p) => channels[0]!.send(p));
  back.forEach((p) => channels[1]!.send(p));
  await until(() => got[1]!.length >= there.length && got[0]!.length >= back.length, 'delivery', { timeoutMs: 30_000 });
  t.deepEqual(got[1], there);
  t.deepEqual(got[0], back);
  t.true(channels[0]!.stats.txReplay > 0, 'loss on the tunnel was repaired');
  t.is(sides[0]!.sw.lookup(VLAN.vid, macB(0)), 0, 'switch 1 learned B behind the tunnel port');
  t.is(sides[1]!.sw.lookup(VLAN.vid, macA(0)), 0);
  t.is(vx1.counters.rxBadHeader + vx1.counters.rxForeign + vx2.counters.rxBadHeader + vx2.counters.rxForeign, 0);

  // Plain Ethernet shares the tunnel: a broadcast from one side reaches the other's station.
  const bcast = encodeFrame({ dst: 0xffff_ffff_ffff, src: 0x02_00_00_00_00_99, vlan: VLAN, type: FrameType.Discovery, flags: 0, channel: 0, seq: 0, ack: 0, credits: 0 });
  sides[0]!.faulty.set({ loss: 0 }, 'toStation');
  let heard = false;
  sides[1]!.station.onFrame = (f) => (heard ||= f.equals(bcast));
  sides[0]!.station.send(bcast);
  await until(() => heard, 'broadcast across the tunnel', { timeoutMs: 5000 });
  t.true(heard, 'the broadcast reached the far station');
  for (const ch of channels) ch.close();
  for (const s of sides) s.sw.close();
});
