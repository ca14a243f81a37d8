/**
 * The fabric's promise, checked on random scenarios: TLP streams both ways
 * through two endpoints and a switch, with random loss, duplication,
 * reordering, corruption and a link cut, arrive exactly once, in order,
 * intact. Simulated time keeps each scenario to about a millisecond of CPU.
 */

import { inspect, isDeepStrictEqual } from 'node:util';
import test from 'ava';
import fc from 'fast-check';
import { type Tlp, decodeTlp, encodeTlp } from '../../src/fabric/tlp/tlp.ts';
import { anyTlp, normalizeTlp } from './arbitraries.ts';
import { buildFabric } from './harness.ts';

const faults = fc.record({
  loss: fc.double({ min: 0, max: 0.3, noNaN: true }),
  duplicate: fc.double({ min: 0, max: 0.2, noNaN: true }),
  reorder: fc.double({ min: 0, max: 0.3, noNaN: true }),
  corrupt: fc.double({ min: 0, max: 0.2, noNaN: true }),
  jitter: fc.double({ min: 0, max: 0.2, noNaN: true }),
});

const scenario = fc.record({
  seed: fc.integer(),
  links: fc.integer({ min: 1, max: 3 }),
  fromA: fc.array(anyTlp(8), { maxLength: 12 }),
  fromB: fc.array(anyTlp(8), { maxLength: 12 }),
  faults,
  spacing: fc.double({ min: 0, max: 0.5, noNaN: true }),
  cut: fc.option(fc.record({ side: fc.boolean(), link: fc.nat(), at: fc.double({ min: 0, max: 5, noNaN: true }), heal: fc.option(fc.double({ min: 1, max: 40, noNaN: true })) })),
});

type Scenario = typeof scenario extends fc.Arbitrary<infer T> ? T : never;

function run(s: Scenario, inPlace?: 'keeping' | 'copying'): void {
  const f = buildFabric({ links: s.links, seed: s.seed, inPlace });
  for (const p of [...f.portsA, ...f.portsB]) p.set({ ...s.faults, latency: 0.01, reorderDelay: 0.15 });
  const wireA = s.fromA.map(encodeTlp);
  const wireB = s.fromB.map(encodeTlp);
  wireA.forEach((w, i) => f.clock.setTimer(1 + i * s.spacing, () => f.a.send(w)));
  wireB.forEach((w, i) => f.clock.setTimer(1 + i * s.spacing, () => f.b.send(w)));
  if (s.cut) {
    const { side, link, at, heal } = s.cut;
    // With one link a cut must heal, or nothing could be delivered at all.
    const port = (side ? f.portsA : f.portsB)[link % s.links]!;
    f.clock.setTimer(1 + at, () => port.set({ down: true }));
    const healAfter = heal ?? (s.links === 1 ? 20 : null);
    if (healAfter !== null) f.clock.setTimer(1 + at + healAfter, () => port.set({ down: false }));
  }
  const done = () => f.gotB.length >= wireA.length && f.gotA.length >= wireB.length;
  const ok = f.clock.runUntil(done, 20_000);
  // Keep going a while: a late duplicate must not be delivered either.
  f.clock.advance(30);
  f.close();
  if (!ok) throw new Error(`not delivered: B got ${f.gotB.length}/${wireA.length}, A got ${f.gotA.length}/${wireB.length}`);
  check(f.gotB, s.fromA);
  check(f.gotA, s.fromB);
}

function check(got: Buffer[], sent: Tlp[]): void {
  if (got.length !== sent.length) throw new Error(`delivered ${got.length} TLPs, sent ${sent.length}`);
  got.forEach((bytes, i) => {
    const r = decodeTlp(bytes);
    if (!r.ok) throw new Error(`TLP ${i} arrived damaged: ${r.error}`);
    if (!isDeepStrictEqual(normalizeTlp(r.value), normalizeTlp(sent[i]!))) {
      throw new Error(`TLP ${i} differs:\n${inspect(r.value)}\n${inspect(sent[i])}`);
    }
  });
}

// 4 × 2600 runs: more than 10^4 scenarios, split so ava can report progress.
for (const part of [1, 2, 3, 4]) {
  test(`every TLP delivered exactly once, in order, intact (part ${part})`, (t) => {
    t.notThrows(() => fc.assert(fc.property(scenario, (s) => run(s)), { numRuns: 2600, seed: part * 7919 + (Number(process.env.FABRIC_SEED ?? 0)) }));
  });
}

// Frames received in place (a memif ring slot, reused once the call returns): whatever the channel
// holds behind a gap, and whatever an application that keeps payloads is given, must be a copy.
for (const inPlace of ['keeping', 'copying'] as const) {
  test(`received in place, every TLP delivered exactly once, in order, intact (${inPlace} application)`, (t) => {
    t.notThrows(() => fc.assert(fc.property(scenario, (s) => run(s, inPlace)), { numRuns: 1300, seed: 104_729 + (inPlace === 'keeping' ? 1 : 2) + (Number(process.env.FABRIC_SEED ?? 0)) }));
  });
}
