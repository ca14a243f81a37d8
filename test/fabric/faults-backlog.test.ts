import test from 'ava';
import { FaultyPort, MAX_BACKLOG_MS } from '../../src/fabric/wire/faults.ts';
import { FrameType, encodeFrame } from '../../src/fabric/wire/frame.ts';
import { inProcessPort } from '../../src/fabric/wire/port.ts';
import { seededRng } from '../../src/fabric/rng.ts';
import { SimClock } from '../../src/fabric/sim-clock.ts';

test('a slow shaped port tail-drops past its egress buffer instead of queueing without bound', (t) => {
  const clock = new SimClock();
  const { port, station } = inProcessPort(clock);
  const faulty = new FaultyPort(port, clock, seededRng(1));
  let arrived = 0;
  faulty.attach(() => arrived++);
  faulty.set({ rateGbps: 0.001 }, 'toSwitch'); // 1 Mb/s
  const frame = encodeFrame({ dst: 1, src: 2, vlan: null, type: FrameType.Management, flags: 0, channel: 0, seq: 0, ack: 0, credits: 0 }, Buffer.alloc(1000));
  const perFrameMs = (frame.length * 8) / 1e3;
  for (let i = 0; i < 10_000; i++) station.send(frame);
  clock.advance(1);
  const k = faulty.counters('toSwitch');
  // What fits in the buffer passes (one frame may start past it), the rest is counted as dropped.
  const fits = Math.floor(MAX_BACKLOG_MS / perFrameMs) + 1;
  t.true(k.passed >= fits && k.passed <= fits + 1, `${k.passed} passed, ${fits} fit`);
  t.is(k.passed + k.queueDropped, 10_000);
  clock.advance(MAX_BACKLOG_MS + 2 * perFrameMs);
  t.is(arrived, k.passed, 'everything accepted is delivered');
});
