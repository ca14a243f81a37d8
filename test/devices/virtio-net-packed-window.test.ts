// The packed ring's windowed reads (packed-queue.ts, refill): the device reads RING_WINDOW
// descriptors from the first position it has not read, in two reads when the window wraps;
// a chain that runs past the window, or across the ring's end, comes from a read issued after
// its head was seen available. Driven here on the queue itself, over memory whose reads are
// answered when the test says (each a snapshot of that moment), so the tests see which reads
// go out, how long they are, and what a read answered out of order would have shown; and, through
// the device, which ring it reads a window of.
import test from 'ava';
import fc from 'fast-check';
import { GuestMemory } from '../../src/devices/nvme/soft-host.ts';
import { availBits, PackedQueue, RING_WINDOW, wrapOf } from '../../src/devices/virtio-net/packed-queue.ts';
import { type Chain, DescFlag } from '../../src/devices/virtio-net/virtqueue.ts';
import { RX_QUEUE, TX_QUEUE } from '../../src/devices/virtio-net/net-device.ts';
import { SoftVirtioNetDriver } from '../../src/devices/virtio-net/soft-driver.ts';
import { frame } from './virtio-net-rig.ts';

const DESC = 0x1000;
const DRIVER = 0x100;
const DEVICE = 0x200;
const DATA = 0x10000;

/** Guest memory whose ring reads wait until answered, each reading memory as it is when answered (other reads answer at once). */
class HeldMemory extends GuestMemory {
  readonly waiting: { addr: number; len: number; answer: () => void }[] = [];
  held = true;

  override dmaRead(addr: number, len: number): Promise<Uint8Array> {
    if (!this.held || addr < DESC || addr >= DATA) return super.dmaRead(addr, len);
    return new Promise((resolve, reject) => this.waiting.push({ addr, len, answer: () => super.dmaRead(addr, len).then(resolve, reject) }));
  }

  /** The ring reads outstanding, as [first slot, descriptors]. */
  ringReads(): [number, number][] {
    return this.waiting.map((r) => [(r.addr - DESC) / 16, r.len / 16]);
  }

  /** Answers the outstanding read `k` (default: all, in order), then lets the queue act on it. */
  async answer(k?: number): Promise<void> {
    const rs = k === undefined ? this.waiting.splice(0) : this.waiting.splice(k, 1);
    for (const r of rs) r.answer();
    await settle();
  }
}

/** Lets the queue act until it waits on a read. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

/** A driver's side of a packed ring, writing as Linux 6.1 does: a chain's other descriptors (flags first), then its head's flags last. */
class Driver {
  next = 0;
  id = 0;
  constructor(readonly mem: GuestMemory, readonly size: number) {}

  /** The write steps of a chain of `n` descriptors at the next positions, in the driver's order; the buffer of descriptor k at DATA + 4096 * id + 64 * k. */
  chainSteps(n: number): { steps: (() => void)[]; id: number; first: number } {
    const id = this.id++ % this.size;
    const first = this.next;
    this.next += n;
    const v = this.mem.view;
    const slot = (p: number) => DESC + 16 * (p % this.size);
    const flags = (k: number) => availBits(wrapOf(first + k, this.size)) | (k + 1 < n ? DescFlag.Next : 0);
    const fields = (k: number) => () => {
      const at = slot(first + k);
      v.setUint32(at, DATA + 4096 * id + 64 * k, true);
      v.setUint32(at + 4, 0, true);
      v.setUint32(at + 8, 10 + k, true);
      v.setUint16(at + 12, id, true);
    };
    const steps: (() => void)[] = [];
    for (let k = 1; k < n; k++) steps.push(() => v.setUint16(slot(first + k) + 14, flags(k), true), fields(k));
    steps.push(fields(0), () => v.setUint16(slot(first) + 14, flags(0), true));
    return { steps, id, first };
  }

  add(n: number): number {
    const c = this.chainSteps(n);
    c.steps.forEach((s) => s());
    return c.id;
  }
}

/** What a chain should hold: n readable buffers, as Driver.chainSteps writes them. */
const expected = (id: number, n: number) => Array.from({ length: n }, (_, k) => ({ addr: DATA + 4096 * id + 64 * k, len: 10 + k }));

function rig(size: number, window?: number) {
  const mem = new HeldMemory(1 << 20);
  const q = new PackedQueue({ size, desc: DESC, driver: DRIVER, device: DEVICE }, mem, true, undefined, window);
  return { mem, q, driver: new Driver(mem, size) };
}

/** Gives back every chain taken (so positions may be reused), and publishes them. */
async function giveBack(q: PackedQueue, chains: Chain[]): Promise<void> {
  for (const c of chains) q.push(c.head, 0);
  const wish = await q.publish();
  if (typeof wish !== 'boolean') await wish.later;
}

test('a ring read covers RING_WINDOW descriptors from the next position, not the whole ring', async (t) => {
  const { mem, q, driver } = rig(256);
  const ids = [driver.add(1), driver.add(3), driver.add(2)];
  const batch = q.popBatch();
  await settle(); // the device event write is posted; the window and the driver's event go out
  t.deepEqual(mem.ringReads(), [[0, RING_WINDOW]]);
  await mem.answer();
  const chains = await batch;
  t.deepEqual(chains.map((c) => c.head), ids);
  t.deepEqual(chains[1]!.readable, expected(ids[1]!, 3));
  const next = q.popBatch();
  await settle();
  t.deepEqual(mem.ringReads(), [[6, RING_WINDOW]], 'the next read starts past the chains taken');
  await mem.answer();
  t.deepEqual(await next, []);
});

test('a window that wraps is two reads at once; chains wholly in either part are taken from them', async (t) => {
  const { mem, q, driver } = rig(16, 8);
  // Move the device to position 13: chains of 5, 4, 4 taken and given back.
  for (const n of [5, 4, 4]) {
    driver.add(n);
    mem.held = false;
    await giveBack(q, await q.popBatch());
    mem.held = true;
  }
  const ids = [driver.add(3), driver.add(2), driver.add(1)]; // positions 13-15 | 16-17, 18
  const batch = q.popBatch();
  await settle();
  t.deepEqual(mem.ringReads(), [[13, 3], [0, 5]]);
  await mem.answer();
  const chains = await batch;
  t.deepEqual(chains.map((c) => c.head), ids);
  t.deepEqual(chains.map((c) => c.readable), [expected(ids[0]!, 3), expected(ids[1]!, 2), expected(ids[2]!, 1)]);
});

test('a chain across the ring\'s end is taken only from a read issued after its head was seen available', async (t) => {
  const { mem, q, driver } = rig(16, 8);
  for (const n of [7, 7]) {
    driver.add(n);
    mem.held = false;
    await giveBack(q, await q.popBatch());
    mem.held = true;
  }
  // Position 14: a chain of 4 (14, 15 | 16, 17), written by the driver while the device reads.
  const chain = driver.chainSteps(4);
  const batch = q.popBatch();
  await settle();
  t.deepEqual(mem.ringReads(), [[14, 2], [0, 6]]);
  // The read of the ring's start is answered first, having seen the other flags but not their
  // addresses; the driver then finishes, and the read of the end sees the head available.
  for (const k of [0, 2, 4]) chain.steps[k]!();
  await mem.answer(mem.waiting.findIndex((r) => r.addr === DESC));
  chain.steps.forEach((s) => s());
  await mem.answer();
  t.deepEqual(mem.ringReads(), [[14, 2], [0, 6]], 'the window read again from the head');
  await mem.answer();
  const chains = await batch;
  t.is(chains.length, 1);
  t.deepEqual(chains[0]!.readable, expected(chain.id, 4), 'the addresses the driver wrote, not what the first read of the ring\'s start showed');
});

test('a window that ends in an available chain yields the chains before it; the chain comes whole with the next read', async (t) => {
  const { mem, q, driver } = rig(64, 4);
  const ids = [driver.add(2), driver.add(3)]; // positions 0-1, 2-4: the second runs past the window
  mem.held = false;
  t.deepEqual((await q.popBatch()).map((c) => c.head), [ids[0]]);
  mem.held = true;
  const next = q.popBatch();
  await settle();
  t.deepEqual(mem.ringReads(), [[2, 4]]);
  await mem.answer();
  t.deepEqual((await next).map((c) => c.readable), [expected(ids[1]!, 3)]);
});

test('a chain longer than the window is read again with a window twice as long, from its head', async (t) => {
  const { mem, q, driver } = rig(64, 4);
  const id = driver.add(11);
  const batch = q.popBatch();
  await settle();
  t.deepEqual(mem.ringReads(), [[0, 4]]);
  await mem.answer();
  t.deepEqual(mem.ringReads(), [[0, 8]]);
  await mem.answer();
  t.deepEqual(mem.ringReads(), [[0, 16]]);
  await mem.answer();
  t.deepEqual((await batch).map((c) => c.readable), [expected(id, 11)]);
});

test('a window never reaches past the positions the driver may have reused (the next used one + size)', async (t) => {
  const { mem, q, driver } = rig(8, 64);
  driver.add(3);
  mem.held = false;
  const taken = await q.popBatch();
  mem.held = true;
  const next = q.popBatch();
  await settle();
  t.deepEqual(mem.ringReads(), [[3, 5]], 'positions 3-7: position 8 is 0 again, still in use');
  await mem.answer();
  t.deepEqual(await next, []);
  await giveBack(q, taken);
  const again = q.popBatch();
  await settle();
  t.deepEqual(mem.ringReads(), [[3, 5], [0, 3]]);
  await mem.answer();
  t.deepEqual(await again, []);
});

test('property: whatever order reads are answered in and however the driver\'s writes fall between them, the device takes every chain whole, in order, with what the driver wrote', async (t) => {
  await t.notThrowsAsync(fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 2, max: 20 }),
      fc.integer({ min: 1, max: 12 }),
      fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 30 }),
      fc.array(fc.nat(), { minLength: 200, maxLength: 200 }),
      async (size, window, lengths, choices) => {
        const { mem, q, driver } = rig(size, window);
        lengths = lengths.map((n) => Math.min(n, size));
        const want: { id: number; n: number }[] = [];
        const got: Chain[] = [];
        let pending = lengths.slice();
        let steps: (() => void)[] = [];
        let c = 0;
        let batch: Promise<Chain[]> | undefined;
        let inUse = 0;
        for (let rounds = 0; rounds < 5000 && (got.length < lengths.length); rounds++) {
          const pick = choices[c++ % choices.length]! + rounds;
          if (!batch) {
            batch = q.popBatch();
            void batch.then(async (chains) => {
              got.push(...chains);
              // Given back at once, so the driver can go on round the ring.
              await giveBack(q, chains);
              inUse -= chains.reduce((s, ch) => s + ch.readable.length, 0);
              batch = undefined;
            });
          }
          if (steps.length === 0 && pending.length && inUse + pending[0]! <= size) {
            const n = pending.shift()!;
            const ch = driver.chainSteps(n);
            want.push({ id: ch.id, n });
            inUse += n;
            steps = ch.steps;
          }
          if (steps.length && (pick % 2 === 0 || mem.waiting.length === 0)) steps.shift()!();
          else if (mem.waiting.length) await mem.answer(pick % mem.waiting.length);
          else await new Promise((r) => setImmediate(r));
        }
        return got.length === want.length && got.every((ch, k) => ch.head === want[k]!.id && JSON.stringify(ch.readable) === JSON.stringify(expected(want[k]!.id, want[k]!.n)));
      },
    ),
    { numRuns: 300 },
  ));
});

test('the device reads its transmit ring a window at a time and its receive ring whole (every buffer held spares a frame a wait)', async (t) => {
  const mem = new (class extends GuestMemory {
    reads: { addr: number; len: number }[] = [];
    override dmaRead(addr: number, len: number): Promise<Uint8Array> {
      this.reads.push({ addr, len });
      return super.dmaRead(addr, len);
    }
  })(4 << 20);
  const d = new SoftVirtioNetDriver({ packed: true }, mem);
  await d.init();
  const [rx, tx] = [d.queues[RX_QUEUE]!, d.queues[TX_QUEUE]!];
  const ringReads = (q: { desc: number; size: number }) => mem.reads.filter((r) => r.addr >= q.desc && r.addr < q.desc + 16 * q.size).map((r) => r.len / 16);
  mem.reads = [];
  d.postRx(4);
  await d.kick(RX_QUEUE);
  d.wire.deliver(frame(100));
  const f = frame(200);
  await d.send(f);
  await d.dev.idle();
  t.deepEqual(d.wire.sent, [f]);
  t.true(ringReads(rx).length > 0 && ringReads(rx).every((n) => n === rx.size), `receive ring reads: ${ringReads(rx)}`);
  t.true(ringReads(tx).length > 0 && ringReads(tx).every((n) => n === RING_WINDOW), `transmit ring reads: ${ringReads(tx)}`);
});
