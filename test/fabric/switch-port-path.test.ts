// A switch port's frames pass the fault injector and the capture only while either is wanted
// (src/fabric/switch/port-path.ts): straight otherwise, through both once faults are set (for
// good) or while a capture runs.
import test from 'ava';
import { realClock } from '../../src/fabric/clock.ts';
import { seededRng } from '../../src/fabric/rng.ts';
import { PortPath } from '../../src/fabric/switch/port-path.ts';
import type { Ingress, PortTransport } from '../../src/fabric/wire/port.ts';

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

test('faults set at run time apply from the next frame, and the port keeps to the injector when they are cleared', (t) => {
  const r = rig();
  r.both(1);
  r.path.setFaults({ loss: 1 }, 'toSwitch');
  r.both(2);
  t.deepEqual(r.got.map((f) => f[0]), [1], 'the received frame was lost');
  t.deepEqual(r.w.sent.map((f) => f[0]), [101, 102], 'the other direction has no faults');
  t.is(r.path.faults.counters('toSwitch').lost, 1);
  r.path.setFaults({ loss: 0 });
  t.false(r.path.isStraight);
  r.both(3);
  t.deepEqual(r.got.map((f) => f[0]), [1, 3]);
  t.is(r.path.faults.counters('toSwitch').passed, 1, 'frame 3 passed the injector');
});
