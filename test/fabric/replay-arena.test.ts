// The replay arena (src/fabric/link/replay-arena.ts): TLPs encoded in memory that is reused in
// ACK order. What is reserved and not yet released is never handed out again, and a channel
// whose TLPs live in a small arena still delivers each one intact across loss and replays.
import test from 'ava';
import fc from 'fast-check';
import { ReplayArena } from '../../src/fabric/link/replay-arena.ts';
import { buildFabric } from './harness.ts';

/** Fill `view` with a pattern of `id`, and check it is still there. */
const fill = (view: Uint8Array, id: number) => {
  for (let i = 0; i < view.length; i++) view[i] = (id * 7 + i) & 0xff;
};
const intact = (view: Uint8Array, id: number) => view.every((b, i) => b === ((id * 7 + i) & 0xff));

test('reserved memory is not handed out again until released, in order, and is then reused', (t) => {
  // Steps: reserve a size, or release the oldest few.
  const step = fc.oneof(fc.record({ reserve: fc.integer({ min: 1, max: 3000 }) }), fc.record({ release: fc.integer({ min: 1, max: 4 }) }));
  t.notThrows(() => fc.assert(fc.property(fc.array(step, { maxLength: 200 }), (steps) => {
    const arena = new ReplayArena(8192);
    const live: { view: Uint8Array; id: number }[] = [];
    let id = 0;
    for (const s of steps) {
      if ('reserve' in s) {
        const view = arena.reserve(s.reserve);
        if (view.length !== s.reserve) throw new Error(`asked ${s.reserve}, got ${view.length}`);
        fill(view, ++id);
        live.push({ view, id });
      } else {
        for (const l of live.splice(0, s.release)) {
          if (!intact(l.view, l.id)) throw new Error(`view ${l.id} was overwritten while reserved`);
          arena.release(l.view);
        }
      }
    }
    for (const l of live) if (!intact(l.view, l.id)) throw new Error(`view ${l.id} was overwritten while reserved`);
  }), { numRuns: 2000 }));
});

test('an emptied arena starts again at its beginning; a reservation it has no room for comes from elsewhere', (t) => {
  const arena = new ReplayArena(4096);
  const a = arena.reserve(3000);
  const b = arena.reserve(2000);
  t.is(a.buffer.byteLength, 4096, 'the first fits the arena');
  t.not(b.buffer, a.buffer, 'no room for the second: not from the arena');
  arena.release(a);
  arena.release(b);
  t.is(arena.used, 0);
  const c = arena.reserve(1000);
  t.is(c.buffer, a.buffer);
  t.is(c.byteOffset, 0, 'back at the start, where the memory was used last');
  // Wrapping: a reservation that does not fit behind the head goes to the start once that is free.
  const d = arena.reserve(3000);
  t.is(d.byteOffset, 1000);
  t.not(arena.reserve(500).buffer, a.buffer, 'no room behind the head, nor yet before it');
  arena.release(c);
  const e = arena.reserve(500);
  t.is(e.buffer, a.buffer);
  t.is(e.byteOffset, 0);
  t.not(arena.reserve(600).buffer, a.buffer, 'wrapped: only the room up to the tail is free');
  arena.release(d);
  arena.release(e);
  t.is(arena.used, 0);
});

test('TLPs encoded in a small arena arrive intact through loss, duplication and reordering', (t) => {
  const faults = fc.record({
    loss: fc.double({ min: 0, max: 0.2, noNaN: true }),
    duplicate: fc.double({ min: 0, max: 0.1, noNaN: true }),
    reorder: fc.double({ min: 0, max: 0.3, noNaN: true }),
  });
  const scenario = fc.record({ seed: fc.integer(), links: fc.integer({ min: 1, max: 2 }), sizes: fc.array(fc.integer({ min: 4, max: 1500 }), { minLength: 1, maxLength: 60 }), faults });
  t.notThrows(() => fc.assert(fc.property(scenario, (s) => {
    const f = buildFabric({ links: s.links, seed: s.seed, a: { replayArenaBytes: 8192 } });
    for (const p of [...f.portsA, ...f.portsB]) p.set({ ...s.faults, latency: 0.01, reorderDelay: 0.15 });
    s.sizes.forEach((size, i) => f.clock.setTimer(1 + i * 0.05, () => {
      const view = f.a.reserve(size);
      fill(view, i);
      f.a.send(view);
    }));
    const ok = f.clock.runUntil(() => f.gotB.length >= s.sizes.length, 20_000);
    f.clock.advance(30);
    f.close();
    if (!ok) throw new Error(`delivered ${f.gotB.length}/${s.sizes.length}`);
    if (f.gotB.length !== s.sizes.length) throw new Error(`delivered ${f.gotB.length}, sent ${s.sizes.length}`);
    f.gotB.forEach((p, i) => {
      if (p.length !== s.sizes[i] || !intact(p, i)) throw new Error(`TLP ${i} arrived changed`);
    });
  }), { numRuns: 300 }));
});
