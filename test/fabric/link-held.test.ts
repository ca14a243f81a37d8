// Frames held behind a gap: a transient payload (a memif ring slot, reused as soon as tlp() returns)
// is copied into a buffer of the receiver's own, delivered in order as transient, and that buffer
// serves the next held frame, so holding frames allocates nothing once warm.
import test from 'ava';
import fc from 'fast-check';
import { SimClock } from '../../src/fabric/sim-clock.ts';
import { lone } from './harness.ts';

const receiver = (deliver: (payload: Uint8Array, transient: boolean) => void) => lone({ clock: new SimClock(), deliver, transmit: (r) => r.sent() });

/** Frame `seq`'s bytes: its number over a length that varies with it (up to a 4 KiB TLP's). */
const bytesOf = (seq: number) => new Uint8Array(16 + ((seq * 997) % 4100)).fill(seq & 0xff);

test('transient frames arriving in any order within the window are delivered in order, intact, held ones as transient', (t) => {
  t.notThrows(() => fc.assert(
    fc.property(fc.array(fc.nat(), { minLength: 1, maxLength: 200 }), (keys) => {
      // Rounds of up to 48 frames (inside the 64-slot window), each round's arrival order from the keys.
      const order: number[] = [];
      for (let base = 0; base < keys.length; base += 48) {
        const round = keys.slice(base, base + 48).map((k, i) => ({ k, seq: base + i }));
        order.push(...round.sort((a, b) => a.k - b.k).map((x) => x.seq));
      }
      const got: { seq: number; ok: boolean; transient: boolean }[] = [];
      const buffers = new Set<ArrayBufferLike>();
      const { r, stats } = receiver((payload, transient) => {
        const seq = got.length;
        const want = bytesOf(seq);
        got.push({ seq, ok: payload.length === want.length && payload.every((b, i) => b === want[i]), transient });
        buffers.add(payload.buffer);
      });
      const slot = new Uint8Array(4200); // one ring slot, reused for every frame
      for (const seq of order) {
        const b = bytesOf(seq);
        slot.set(b);
        if (!r.tlp(seq, slot.subarray(0, b.length), true)) return false;
        slot.fill(0xee); // the ring moves on
      }
      if (got.length !== keys.length || !got.every((g) => g.ok && g.transient)) return false;
      // The ring's slot, and at most one buffer of ours per frame held at once (47 in a round of 48).
      return stats.rxOutOfOrder === 0 ? buffers.size === 1 : buffers.size <= 1 + Math.min(47, stats.rxOutOfOrder);
    }),
  ));
});

test('a held buffer is reused: a second round of reordered frames makes none new', (t) => {
  const seen: ArrayBufferLike[] = [];
  const { r } = receiver((payload) => seen.push(payload.buffer));
  const slot = new Uint8Array(4200);
  const send = (seq: number) => {
    slot.set(bytesOf(seq));
    r.tlp(seq, slot.subarray(0, bytesOf(seq).length), true);
  };
  for (const round of [[3, 2, 1, 0], [7, 6, 5, 4]]) for (const seq of round) send(seq);
  const ours = (from: number) => new Set(seen.slice(from).filter((b) => b !== slot.buffer));
  t.is(ours(0).size, 3, 'three frames were held at most at once in each round');
  const first = new Set(seen.slice(0, 4));
  t.true([...ours(4)].every((b) => first.has(b)), 'the second round held its frames in the first round\'s buffers');
});
