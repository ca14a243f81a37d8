// The HI's slot presence on simulated time (src/hi/slot-state.ts): a DI silent past the grace
// period is a surprise removal of its slots only (presence and link down, both Changed bits,
// one interrupt); silence shorter than the grace changes nothing; the DI back restores
// presence with another interrupt; the host clears the Changed bits (RW1C). Any sequence of
// peer states keeps presence equal to "the peer has not been silent for the grace period".
import test from 'ava';
import fc from 'fast-check';
import { SimClock } from '../../src/fabric/sim-clock.ts';
import { LINK_STATUS_DLL_ACTIVE, SlotPresence, SlotStatus } from '../../src/hi/slot-state.ts';

const CHANGED = SlotStatus.PresenceDetectChanged | SlotStatus.DataLinkLayerStateChanged;

function rig(graceMs = 1000) {
  const clock = new SimClock();
  const raised: [number, string, boolean][] = [];
  const p = new SlotPresence({ clock, graceMs, raise: (slot, eep, present) => raised.push([slot, eep, present]) });
  p.add(0, 'eep0', 1);
  p.add(1, 'eep1', 2);
  return { clock, raised, p };
}

test('a DI silent past the grace period: its slot loses presence and link, both Changed bits set, one interrupt; the other slot is untouched', (t) => {
  const { clock, raised, p } = rig();
  p.peerState(1, false);
  clock.advance(999);
  t.deepEqual(raised, []);
  t.true(p.present(0));
  clock.advance(2);
  t.deepEqual(raised, [[0, 'eep0', false]]);
  const [s0, s1] = p.view();
  t.like(s0, { present: false, slotStatus: CHANGED, linkStatus: 0, removals: 1 });
  t.like(s1, { present: true, slotStatus: SlotStatus.PresenceDetectState, linkStatus: LINK_STATUS_DLL_ACTIVE, removals: 0 });

  p.acknowledge(0, CHANGED);
  t.is(p.view()[0]!.slotStatus, 0, 'the host cleared the Changed bits');
  p.peerState(1, true);
  t.deepEqual(raised.at(-1), [0, 'eep0', true]);
  t.like(p.view()[0], { present: true, slotStatus: SlotStatus.PresenceDetectState | CHANGED, linkStatus: LINK_STATUS_DLL_ACTIVE, returns: 1 });
});

test('silence shorter than the grace period changes nothing', (t) => {
  const { clock, raised, p } = rig();
  p.peerState(1, false);
  clock.advance(500);
  p.peerState(1, true);
  clock.advance(5000);
  t.deepEqual(raised, []);
  t.like(p.view()[0], { present: true, slotStatus: SlotStatus.PresenceDetectState, removals: 0, returns: 0 });
});

test('any sequence of peer states: presence is "not silent for the grace period", one interrupt per change', (t) => {
  fc.assert(
    fc.property(fc.array(fc.record({ alive: fc.boolean(), after: fc.integer({ min: 0, max: 2500 }) }), { maxLength: 40 }), (steps) => {
      const { clock, raised, p } = rig();
      let silentSince: number | undefined;
      let changes = 0;
      let present = true;
      for (const { alive, after } of steps) {
        p.peerState(1, alive);
        if (!alive) silentSince ??= clock.now();
        else silentSince = undefined;
        clock.advance(after);
        const expect = silentSince === undefined || clock.now() - silentSince < 1000;
        if (expect !== present) changes++;
        present = expect;
        t.is(p.present(0), expect, `at ${clock.now()} ms`);
      }
      t.is(raised.length, changes);
      t.true(raised.every(([slot]) => slot === 0));
      p.close();
    }),
    { numRuns: 300 },
  );
});
