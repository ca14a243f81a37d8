// A switch port's frames pass the fault injector and the capture only while either is wanted
// (src/fabric/switch/port-path.ts): straight otherwise, through both while faults are set (and
// until the frames they held back have left) or while a capture runs.
import test from 'ava';
import { realClock } from '../../src/fabric/clock.ts';
import { seededRng } from '../../src/fabric/rng.ts';
import { PortPath } from '../../src/fabric/switch/port-path.ts';
import type { Ingress, PortTransport } from '../../src/fabric/wire/port.ts';
import { until } from '../support/until.ts';

/** A transport whose received frames the test hands in and whose sent frames it reads. */
function wire() {
  let ingress: Ingress | null = null;
  const sent: Buffer[] = [];
  const t: PortTransport = {
    transmit: (f) => sent.push(f),
    attach: (i) => {
      ingress = i;
    },
    close: () => {},
  };
  return { t, sent, receive: (f: Buffer) => ingress?.(f) };
}

function rig() {
  const w = wire();
  const captured: Uint8Array[] = [];
  let capturing = false;
  const path = new PortPath(w.t, realClock, seededRng(1), { write: (f) => captured.push(f) }, () => capturing);
  const got: Buffer[] = [];
  path.attach((f) => got.push(f));
  const both = (n: number) => {
    w.receive(Buffer.from([n]));
    path.transmit(Buffer.from([n + 100]));
  };
  return { w, path, got, captured, both, capture: (on: boolean) => ((capturing = on), path.update()) };
}

test('no faults, no capture: frames pass straight both ways, the injector sees none', (t) => {
  const r = rig();
  t.true(r.path.isStraight);
  r.both(1);
  r.both(2);
  t.deepEqual(r.got.map((f) => f[0]), [1, 2]);
  t.deepEqual(r.w.sent.map((f) => f[0]), [101, 102]);
  t.is(r.path.faults.counters('toSwitch').passed + r.path.faults.counters('toStation').passed, 0);
  t.is(r.captured.length, 0);
});

test('a capture records both directions while it runs, and the port goes straight again after', (t) => {
  const r = rig();
  r.both(1);
  r.capture(true);
  t.false(r.path.isStraight);
  r.both(2);
  r.capture(false);
  r.both(3);
  t.deepEqual(r.captured.map((f) => f[0]), [2, 102]);
  t.deepEqual(r.got.map((f) => f[0]), [1, 2, 3]);
  t.deepEqual(r.w.sent.map((f) => f[0]), [101, 102, 103]);
  t.true(r.path.isStraight);
});

test('faults set at run time apply from the next frame; cleared, the port goes straight again at once when nothing is held', (t) => {
  const r = rig();
  r.both(1);
  r.path.setFaults({ loss: 1 }, 'toSwitch');
  t.false(r.path.isStraight);
  r.both(2);
  t.deepEqual(r.got.map((f) => f[0]), [1], 'the received frame was lost');
  t.deepEqual(r.w.sent.map((f) => f[0]), [101, 102], 'the other direction has no faults');
  t.is(r.path.faults.counters('toSwitch').lost, 1);
  r.path.setFaults({ loss: 0 });
  t.true(r.path.isStraight);
  r.both(3);
  t.deepEqual(r.got.map((f) => f[0]), [1, 3]);
  t.is(r.path.faults.counters('toSwitch').passed, 0, 'frame 3 went straight, past the injector');
});

test('latency cleared while frames are held: the port keeps to the injector until they leave, in order, then goes straight', async (t) => {
  const r = rig();
  let told = 0;
  r.path.held = () => told++;
  r.path.setFaults({ latency: 20 });
  r.both(1);
  r.both(2);
  t.deepEqual(r.got, [], 'held on the wire');
  r.path.setFaults({ latency: 0 });
  t.false(r.path.isStraight, 'frames are still held');
  r.both(3); // behind the held ones, not past them
  t.deepEqual(r.got, []);
  await until(() => r.got.length === 3 && r.w.sent.length === 3, 'the held frames to leave');
  t.deepEqual(r.got.map((f) => f[0]), [1, 2, 3]);
  t.deepEqual(r.w.sent.map((f) => f[0]), [101, 102, 103]);
  t.true(r.path.isStraight, 'nothing held, no faults: straight');
  t.true(told > 0, 'the fast path was told to look again');
  const passed = r.path.faults.counters('toSwitch').passed;
  r.both(4);
  t.deepEqual(r.got.map((f) => f[0]), [1, 2, 3, 4]);
  t.is(r.path.faults.counters('toSwitch').passed, passed, 'frame 4 went straight');
});

test('jitter cleared with frames on timers of their own: straight only once the last has left', async (t) => {
  const r = rig();
  r.path.setFaults({ jitter: 15 }, 'toStation');
  for (let i = 1; i <= 5; i++) r.path.transmit(Buffer.from([i]));
  r.path.setFaults({ jitter: 0 }, 'toStation');
  t.false(r.path.isStraight);
  await until(() => r.w.sent.length === 5, 'the jittered frames to leave');
  t.deepEqual(r.w.sent.map((f) => f[0]).sort(), [1, 2, 3, 4, 5]);
  t.true(r.path.isStraight);
});
