// Port security and the bounded, aged MAC table of the switch core (on simulated time).
import test from 'ava';
import { FrameType, encodeFrame } from '../../src/fabric/wire/frame.ts';
import { BROADCAST_MAC } from '../../src/fabric/wire/mac.ts';
import { type Station, inProcessPort } from '../../src/fabric/wire/port.ts';
import { SimClock } from '../../src/fabric/sim-clock.ts';
import { EthernetSwitch, type PortSecurity, type SwitchOptions } from '../../src/fabric/switch/switch.ts';

function eth(dst: number, src: number, body = 'x'): Buffer {
  return encodeFrame({ dst, src, vlan: null, type: FrameType.Management, flags: 0, channel: 0, seq: 0, ack: 0, credits: 0 }, Buffer.from(body));
}

function rig(security: (PortSecurity | undefined)[], options: Partial<SwitchOptions> = {}) {
  const clock = new SimClock();
  const logs: string[] = [];
  const sw = new EthernetSwitch({ clock, agingMs: 1000, log: (l) => logs.push(l), ...options });
  const got: Buffer[][] = security.map(() => []);
  const stations: Station[] = security.map((s, i) => {
    const { port, station } = inProcessPort(clock);
    sw.addPort(port, { mode: 'access', vid: 1 }, `p${i}`, s);
    station.onFrame = (f) => got[i]!.push(f);
    return station;
  });
  const send = (port: number, frame: Buffer) => {
    stations[port]!.send(frame);
    clock.advance(0.001);
  };
  const counts = () => got.map((g) => g.length);
  return { clock, sw, got, send, counts, logs };
}

const A = 0x02_00_00_00_00_0a;
const B = 0x02_00_00_00_00_0b;
const C = 0x02_00_00_00_00_0c;
const D = 0x02_00_00_00_00_0d;

test('a station cannot use a MAC bound to another port, nor draw its traffic away', (t) => {
  // p0 is bound to A by configuration, p1 learns its first source and locks, p2 is open (a trunk).
  const r = rig([{ macs: [A] }, { learn: 1 }, undefined]);
  r.send(0, eth(BROADCAST_MAC, A, 'hello from A'));
  r.send(1, eth(BROADCAST_MAC, B, 'hello from B'));
  t.deepEqual(r.sw.stations(1), [B], 'p1 locked to its first source');
  t.deepEqual(r.counts(), [1, 1, 2]);

  // p1 forges A: dropped at ingress, counted, and A's table entry stays on p0.
  r.send(1, eth(BROADCAST_MAC, A, 'I am A'));
  r.send(1, eth(D, A, 'I am A, to D'));
  t.deepEqual(r.counts(), [1, 1, 2]);
  t.is(r.sw.lookup(1, A), 0);
  t.is(r.sw.counters(1).rxSourceViolations, 2);
  r.send(2, eth(A, D, 'to A'));
  t.deepEqual(r.counts(), [2, 1, 2], 'traffic for A still reaches p0 only');

  // A locked port takes no second source; an open port may not claim a bound one either.
  r.send(1, eth(BROADCAST_MAC, C, 'another of mine'));
  r.send(2, eth(BROADCAST_MAC, B, 'B via the trunk'));
  r.send(2, eth(BROADCAST_MAC, A, 'A via the trunk'));
  t.deepEqual(r.counts(), [2, 1, 2]);
  t.is(r.sw.counters(1).rxSourceViolations, 3);
  t.is(r.sw.counters(2).rxSourceViolations, 2);
  t.is(r.sw.lookup(1, B), 1);
  t.is(r.sw.counters(0).rxSourceViolations, 0);
  r.send(2, eth(BROADCAST_MAC, C, 'C is nobody\'s: the trunk may carry it'));
  t.deepEqual(r.counts(), [3, 2, 2]);
});

test('a group source address is refused on a secured port; a learning port does not lock to one', (t) => {
  const r = rig([{ learn: 1 }, undefined]);
  r.send(0, eth(BROADCAST_MAC, 0x01_00_5e_00_00_01));
  t.deepEqual(r.sw.stations(0), []);
  t.is(r.sw.counters(0).rxSourceViolations, 1);
  r.send(0, eth(BROADCAST_MAC, A));
  t.deepEqual(r.sw.stations(0), [A]);
  t.deepEqual(r.counts(), [0, 1]);
});

test('binding a MAC twice or a group MAC is refused; removing a port frees its MACs', (t) => {
  const clock = new SimClock();
  const sw = new EthernetSwitch({ clock });
  const p0 = sw.addPort(inProcessPort(clock).port, undefined, 'p0', { macs: [A] });
  t.throws(() => sw.addPort(inProcessPort(clock).port, undefined, 'p1', { macs: [A] }), { message: /bound to p0 already/ });
  t.throws(() => sw.addPort(inProcessPort(clock).port, undefined, 'p2', { macs: [BROADCAST_MAC] }), { message: /group address/ });
  t.throws(() => sw.addPort(inProcessPort(clock).port, undefined, 'p3', { learn: 0 }), { message: /learn 0/ });
  sw.removePort(p0);
  t.notThrows(() => sw.addPort(inProcessPort(clock).port, undefined, 'p4', { macs: [A] }));
  sw.close();
});

test('the MAC table is bounded: beyond it nothing is learned and unknown destinations flood', (t) => {
  const r = rig([undefined, undefined, undefined], { maxMacs: 3 });
  for (let i = 0; i < 10; i++) r.send(0, eth(BROADCAST_MAC, 0x02_00_00_00_01_00 + i));
  t.like(r.sw.tableStats, { entries: 3, max: 3, refused: 7 });
  t.is(r.sw.lookup(1, 0x02_00_00_00_01_09), undefined);
  r.send(1, eth(0x02_00_00_00_01_09, B, 'to one not learned'));
  t.deepEqual(r.counts(), [1, 10, 11], 'flooded to p0 and p2');
  t.like(r.sw.tableStats, { entries: 3, refused: 8 }, 'B was refused too');
});

test('entries age out on a timer, without lookups; the timer stops when the table is empty', (t) => {
  const r = rig([undefined, { learn: 1 }]);
  r.send(0, eth(BROADCAST_MAC, A));
  r.send(1, eth(BROADCAST_MAC, B));
  t.is(r.sw.tableStats.entries, 2);
  r.clock.advance(800);
  r.send(1, eth(BROADCAST_MAC, B)); // B stays fresh
  r.clock.advance(800);
  t.like(r.sw.tableStats, { entries: 1, aged: 1 }, 'A aged, B was seen 800 ms ago');
  r.clock.advance(2000);
  t.like(r.sw.tableStats, { entries: 0, aged: 2 });
  t.is(r.clock.pending, 0, 'no timer left running');
  t.deepEqual(r.sw.stations(1), [B], 'aging forgets where a station is, not what its port is bound to');
  r.send(1, eth(BROADCAST_MAC, C));
  t.is(r.sw.counters(1).rxSourceViolations, 1);
  r.sw.close();
});

test('rejected frames are counted one by one but logged at a bounded rate', (t) => {
  const r = rig([{ macs: [A] }, { macs: [B] }]);
  for (let i = 0; i < 1000; i++) r.send(1, eth(BROADCAST_MAC, A));
  t.is(r.sw.counters(1).rxSourceViolations, 1000);
  t.true(r.logs.length <= 5, `${r.logs.length} log lines for 1000 drops within a second`);
  t.regex(r.logs[0]!, /p1 dropped a frame from 02:00:00:00:00:0a/);
  r.clock.advance(1000);
  r.send(1, eth(BROADCAST_MAC, A));
  t.true(r.logs.some((l) => /995 more like the above left out/.test(l)), r.logs.join('\n'));
  t.deepEqual(r.counts(), [0, 0]);
});
