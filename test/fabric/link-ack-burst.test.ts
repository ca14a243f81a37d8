// Wake-ups the link layer saves a request/response exchange: an answer sent while a TLP is
// delivered carries its ACK (no standalone ACK after it), an ACK timer that fires early waits
// for the rest of the delay, and the frames of one turn keep to one link.
import test from 'ava';
import type { Clock } from '../../src/fabric/clock.ts';
import type { Receiver } from '../../src/fabric/link/receiver.ts';
import { SimClock } from '../../src/fabric/sim-clock.ts';
import { FrameType, decodeFrame } from '../../src/fabric/wire/frame.ts';
import { buildFabric, lone, macA, numbered } from './harness.ts';

function receiver(clock: Clock, onDeliver: (r: Receiver) => void = () => {}) {
  const acksAt: number[] = [];
  const { r, stats } = lone({
    clock,
    deliver: () => onDeliver(r),
    transmit: (rx, type) => {
      if (type === FrameType.Ack) acksAt.push(clock.now());
      rx.sent();
    },
  });
  return { r, stats, acksAt };
}

test('a TLP answered while it is delivered owes no ACK; one left unanswered is acknowledged after the delay', (t) => {
  const clock = new SimClock();
  const answered = receiver(clock, (r) => r.sent()); // the answer (a CplD, say) leaves during delivery
  answered.r.tlp(0, new Uint8Array(4));
  clock.advance(10);
  t.deepEqual(answered.acksAt, [], 'the answer carried the ACK');

  const silent = receiver(clock);
  clock.advance(0.25);
  silent.r.tlp(0, new Uint8Array(4));
  clock.advance(10);
  t.deepEqual(silent.acksAt, [10.25 + 1]);
});

test('an ACK timer that fires early (whole-ms timers on a stale loop time) waits out the rest of the delay', (t) => {
  const sim = new SimClock();
  // Node's way: a timer set at 0.95 ms for 1 ms fires when the loop's whole-ms time reaches 1.
  const coarse: Clock = {
    now: () => sim.now(),
    resolution: 1,
    setTimer: (ms, fn) => sim.setTimer(Math.floor(sim.now()) + ms - sim.now(), fn),
    clearTimer: (h) => sim.clearTimer(h),
  };
  const { r, acksAt } = receiver(coarse);
  sim.advance(0.95);
  r.tlp(0, new Uint8Array(4));
  sim.advance(5);
  t.is(acksAt.length, 1);
  t.true(acksAt[0]! >= 1.95, `ACK at ${acksAt[0]} ms, owed since 0.95 ms`);
});

/** A fabric of two links whose A side logs, per link, the sequence numbers of the TLP frames it sent. */
function twoLinks() {
  const byLink: number[][] = [[], []];
  const f = buildFabric({
    links: 2,
    capture: (side, link) =>
      side === 'a'
        ? {
            write: (frame) => {
              const d = decodeFrame(frame);
              if (d.ok && d.value.type === FrameType.Tlp && d.value.src === macA(link) && !byLink[link]!.includes(d.value.seq)) byLink[link]!.push(d.value.seq);
            },
          }
        : undefined,
  });
  f.clock.advance(1);
  /** A turn of n TLPs from A, then the event loop run until the peer has acknowledged them. */
  const turn = (n: number) => {
    for (const p of numbered(n)) f.a.send(p);
    return f.clock.runUntil(() => f.a.unacknowledged === 0, 100);
  };
  return { f, byLink, turn };
}

test('two links: the frames of one turn keep to one link, the next turn takes the other, a turn beyond 64 frames spreads', (t) => {
  const { f, byLink, turn } = twoLinks();
  t.true(turn(3));
  t.deepEqual(byLink, [[0, 1, 2], []], 'a turn of three frames on one link');
  t.true(turn(3));
  t.deepEqual(byLink, [[0, 1, 2], [3, 4, 5]], 'the next turn on the other');
  // A 64 KiB transfer's sixteen TLPs and a few more: one link, one wake-up of the switch and the peer.
  t.true(turn(20));
  t.deepEqual(byLink[0], [0, 1, 2, ...Array.from({ length: 20 }, (_, i) => 6 + i)], 'a turn of twenty on one link');
  t.deepEqual(byLink[1], [3, 4, 5]);
  t.true(turn(100));
  t.is(byLink[0]!.length + byLink[1]!.length, 126);
  t.is(byLink[1]!.length - 3, 64, 'the least loaded link takes the first 64 of a turn of 100');
  t.is(byLink[0]!.length - 23, 36, 'the other the rest');
  f.close();
});

test('two links: turns of uneven sizes still load both links evenly', (t) => {
  const { f, byLink, turn } = twoLinks();
  // A transfer's burst, then a lone frame, over and over: round robin by turn would put every burst on one link.
  for (let i = 0; i < 20; i++) {
    t.true(turn(16));
    t.true(turn(1));
  }
  t.is(byLink[0]!.length + byLink[1]!.length, 340);
  t.true(Math.abs(byLink[0]!.length - byLink[1]!.length) <= 16, `frames per link ${byLink[0]!.length} and ${byLink[1]!.length}`);
  t.true(byLink.every((l) => l.length >= 150), 'both links carry bursts');
  f.close();
});
