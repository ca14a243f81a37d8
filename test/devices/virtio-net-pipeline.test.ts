// The virtio-net model over a fabric where every DMA read is a round trip (PCIeOE): guest
// memory that holds each read until the test lets the round trip end, so the tests count
// round trips, not time. What they pin down: a transmitted batch is given back and
// signalled as soon as it is sent (three round trips from the doorbell: avail ring,
// descriptors, data — no extra empty read, no wait for the interrupt wish when the driver
// already asked), the next batch is taken while a batch's data is in flight, ring order
// holds throughout, and a driver that re-enables interrupts is never left waiting. A packed
// ring's batch costs two round trips (descriptor ring, data). On
// receive, buffers are read ahead of the frames: a frame that comes finds one at hand.
import test from 'ava';
import { GuestMemory } from '../../src/devices/nvme/soft-host.ts';
import { NET_HDR_SIZE, NetFeature, RX_QUEUE, TX_QUEUE } from '../../src/devices/virtio-net/net-device.ts';
import { SoftVirtioNetDriver } from '../../src/devices/virtio-net/soft-driver.ts';
import { DeviceStatus, feature, TransportFeature } from '../../src/devices/virtio-net/virtio-pci.ts';

const RUNNING = DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.FeaturesOk | DeviceStatus.DriverOk;
const BASE = feature(TransportFeature.Version1) | feature(NetFeature.Mac) | feature(NetFeature.Status) | feature(NetFeature.Mtu);

/** Guest memory whose reads, once `held`, wait for roundTrip(); writes land at once (posted). */
class FabricMemory extends GuestMemory {
  held = false;
  private waiting: { addr: number; len: number; go: () => void }[] = [];

  override async dmaRead(addr: number, len: number): Promise<Uint8Array> {
    if (this.held) await new Promise<void>((go) => this.waiting.push({ addr, len, go }));
    return super.dmaRead(addr, len);
  }

  /** The reads issued and not yet answered. */
  get outstanding(): readonly { addr: number; len: number }[] {
    return this.waiting;
  }

  /** Answers every read outstanding now, and lets the device act on the answers until it waits again. */
  async roundTrip(): Promise<void> {
    for (const r of this.waiting.splice(0)) r.go();
    await new Promise((r) => setImmediate(r));
  }
}

function frame(len: number, seed: number): Uint8Array {
  const f = new Uint8Array(len);
  f.set([0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00]);
  for (let i = 14; i < len; i++) f[i] = (i * 7 + seed) & 0xff;
  return f;
}

async function rig(features = BASE) {
  const mem = new FabricMemory(4 << 20);
  // The measured options on, as these tests were written for them (the model's defaults are off).
  const d = new SoftVirtioNetDriver({ rxPrefetch: true, eagerInterrupts: true, packed: true }, mem);
  if ((await d.init({ features })) !== RUNNING) throw new Error('device not running');
  mem.held = true;
  const tx = d.queues[TX_QUEUE]!;
  /** Puts frames in the transmit ring (no doorbell); returns their heads. */
  const queue = (frames: Uint8Array[]) =>
    frames.map((f) => {
      const at = d.alloc(NET_HDR_SIZE + f.length);
      d.mem.bytes.set(f, at + NET_HDR_SIZE);
      return d.addChain(tx, [{ addr: at, len: NET_HDR_SIZE + f.length }]);
    });
  const what = (r: { addr: number; len: number }) =>
    r.addr === tx.desc ? 'desc' : r.addr === tx.avail ? (r.len > 2 ? 'avail' : 'flags') : r.addr === tx.avail + 4 + 2 * tx.size ? 'used_event' : 'data';
  const reads = () => mem.outstanding.map(what);
  return { mem, d, tx, queue, reads };
}

for (const [name, features] of [['flags', BASE], ['event index', BASE | feature(TransportFeature.RingEventIdx)]] as const) {
  test(`transmit (${name}): a batch is sent, given back and signalled three round trips after the doorbell`, async (t) => {
    const { mem, d, tx, queue, reads } = await rig(features);
    const frames = [frame(60, 1), frame(1514, 2), frame(700, 3)];
    const heads = queue(frames);
    await d.kick(TX_QUEUE);
    t.deepEqual(reads(), ['avail']);
    await mem.roundTrip();
    t.deepEqual(reads(), ['desc']);
    await mem.roundTrip();
    t.deepEqual(reads(), ['data', 'data', 'data', 'avail'], 'the next avail read goes out beside the data reads');
    await mem.roundTrip();
    t.deepEqual(d.wire.sent, frames);
    t.deepEqual(d.reap(tx).map((e) => e.id), heads, 'given back in ring order');
    t.deepEqual(d.irqs, [TX_QUEUE + 1], 'the driver asked for interrupts when the ring was read: no round trip to ask again');
    await mem.roundTrip();
    await mem.roundTrip();
    await d.dev.idle();
    t.deepEqual(d.irqs, [TX_QUEUE + 1]);
  });
}

test('transmit (packed ring, event index): a batch is sent, given back and signalled two round trips after the doorbell', async (t) => {
  const { mem, d, tx, queue } = await rig(BASE | feature(TransportFeature.RingEventIdx) | feature(TransportFeature.RingPacked));
  const reads = () => mem.outstanding.map((r) => (r.addr >= tx.desc && r.addr < tx.desc + 16 * tx.size ? 'ring' : r.addr === tx.avail ? 'driver event' : 'data'));
  const frames = [frame(60, 1), frame(1514, 2), frame(700, 3)];
  const ids = queue(frames);
  await d.kick(TX_QUEUE);
  await new Promise((r) => setImmediate(r)); // the worker issues its reads
  t.deepEqual(reads(), ['ring', 'driver event'], 'the descriptors and the interrupt wish, in one round trip');
  await mem.roundTrip();
  t.deepEqual(reads(), ['data', 'data', 'data', 'ring', 'driver event'], 'the next ring read goes out beside the data reads');
  await mem.roundTrip();
  t.deepEqual(d.wire.sent, frames);
  t.deepEqual(d.reap(tx).map((e) => e.id), ids, 'given back in ring order');
  t.deepEqual(d.irqs, [TX_QUEUE + 1], 'the driver asked for interrupts when the ring was read: no round trip to ask again');
  while (mem.outstanding.length) await mem.roundTrip();
  await d.dev.idle();
  t.deepEqual(d.irqs, [TX_QUEUE + 1]);
});

test('transmit: chains added while a batch is in flight are taken beside its data reads and keep ring order', async (t) => {
  const { mem, d, tx, queue, reads } = await rig();
  const first = [frame(100, 1), frame(200, 2)];
  const later = [frame(300, 3), frame(400, 4)];
  const heads = queue(first);
  await d.kick(TX_QUEUE);
  await mem.roundTrip(); // avail
  await mem.roundTrip(); // descriptors
  heads.push(...queue(later));
  await d.kick(TX_QUEUE); // the worker is running: it reads on
  t.deepEqual(reads(), ['data', 'data', 'avail']);
  await mem.roundTrip(); // the first batch's data, and the avail ring with the later chains
  t.deepEqual(d.wire.sent, first);
  t.deepEqual(d.reap(tx).map((e) => e.id), heads.slice(0, 2), 'the first batch is given back before the second is read');
  t.deepEqual(reads(), ['desc', 'flags'], "the second batch's descriptors, and what the driver wants now (not awaited)");
  while (mem.outstanding.length) await mem.roundTrip();
  await d.dev.idle();
  t.deepEqual(d.wire.sent, [...first, ...later]);
  t.deepEqual(d.reap(tx).map((e) => e.id), heads.slice(2));
  t.is(d.irqs.filter((v) => v === TX_QUEUE + 1).length, 2, 'one interrupt per batch');
});

test('interrupts: with NO_INTERRUPT seen, the flags are read again after the used index is written, and decide', async (t) => {
  const { mem, d, tx, queue, reads } = await rig();
  d.setAvailFlags(tx, 1);
  const heads = queue([frame(90, 5)]);
  await d.kick(TX_QUEUE);
  await mem.roundTrip(); // avail: NO_INTERRUPT
  await mem.roundTrip(); // descriptors
  await mem.roundTrip(); // data: sent, given back; the next avail read sees NO_INTERRUPT too
  t.deepEqual(d.reap(tx).map((e) => e.id), heads);
  t.deepEqual(d.irqs, []);
  t.deepEqual(reads(), ['flags']);
  // The driver re-enables interrupts and finds the used ring unchanged (it looked before the
  // device wrote): the read that follows the device's write sees the wish.
  d.setAvailFlags(tx, 0);
  await mem.roundTrip();
  t.deepEqual(d.irqs, [TX_QUEUE + 1]);
  await d.dev.idle();
  const c = d.dev.counters;
  t.deepEqual([c.wishLate, c.wishLateOff, c.wishLateAhead, c.wishLatePassed], [1, 1, 0, 0], 'counted late, after a wish seen with interrupts off');
});

test('transmit: a chain of several buffers (headers, then page fragments) is read in one round trip', async (t) => {
  const { mem, d, tx, reads } = await rig();
  const f = frame(1514, 9);
  const at = d.alloc(NET_HDR_SIZE + f.length);
  d.mem.bytes.set(f, at + NET_HDR_SIZE);
  const cuts = [0, NET_HDR_SIZE + 54, 700, 1100, NET_HDR_SIZE + f.length];
  const head = d.addChain(tx, cuts.slice(1).map((end, k) => ({ addr: at + cuts[k]!, len: end - cuts[k]! })));
  await d.kick(TX_QUEUE);
  await mem.roundTrip(); // avail
  await mem.roundTrip(); // descriptors
  t.deepEqual(reads(), ['data', 'data', 'data', 'data', 'avail']);
  await mem.roundTrip();
  t.deepEqual(d.wire.sent, [f]);
  t.deepEqual(d.reap(tx).map((e) => e.id), [head]);
  while (mem.outstanding.length) await mem.roundTrip();
  await d.dev.idle();
});

test('interrupts: while the wish read after a used index is out, the queue goes on (the next batch is not held behind it)', async (t) => {
  const { mem, d, tx, queue, reads } = await rig();
  d.setAvailFlags(tx, 1);
  const heads = queue([frame(90, 6)]);
  await d.kick(TX_QUEUE);
  await mem.roundTrip(); // avail: NO_INTERRUPT
  await mem.roundTrip(); // descriptors
  await mem.roundTrip(); // data: sent and given back; the wish read goes out, with the next avail read
  t.deepEqual(reads(), ['flags']);
  heads.push(...queue([frame(120, 7)]));
  await d.kick(TX_QUEUE);
  t.deepEqual(reads(), ['flags', 'avail'], 'the next avail read does not wait for the wish');
  d.setAvailFlags(tx, 0);
  while (mem.outstanding.length) await mem.roundTrip();
  await d.dev.idle();
  t.deepEqual(d.wire.sent.length, 2);
  t.deepEqual(d.reap(tx).map((e) => e.id), heads);
  t.true(d.irqs.length >= 1, 'the driver that asked again is woken');
});

for (const [name, features] of [['flags', BASE], ['event index', BASE | feature(TransportFeature.RingEventIdx)]] as const) {
  test(`receive (${name}): posted buffers are read ahead at the doorbell; frames then land before any read ends`, async (t) => {
    const { mem, d } = await rig(features);
    const rx = d.queues[RX_QUEUE]!;
    const settle = async () => {
      while (mem.outstanding.length) await mem.roundTrip();
      await d.dev.idle();
    };
    /** Delivers frames and lets the device act with every read held: what lands, lands with posted writes only. */
    const deliver = async (frames: Uint8Array[]) => {
      for (const f of frames) d.wire.deliver(f);
      for (let k = 0; k < 3; k++) await new Promise((r) => setImmediate(r));
      return d.reap(rx);
    };
    const bufs = d.postRx(4);
    await d.kick(RX_QUEUE);
    t.is(mem.outstanding.length, 1, 'the avail ring');
    await mem.roundTrip();
    t.is(mem.outstanding.length, 1, 'the descriptors');
    await settle();
    const frames = [frame(98, 1), frame(1514, 2)];
    const used = await deliver(frames);
    t.deepEqual(used.map((e) => e.len), frames.map((f) => NET_HDR_SIZE + f.length), 'both frames landed with no round trip');
    used.forEach((e, k) => t.deepEqual(d.mem.bytes.slice(bufs.get(e.id)! + NET_HDR_SIZE, bufs.get(e.id)! + e.len), frames[k]));
    t.true(d.irqs.includes(RX_QUEUE + 1));
    await settle();
    if (name === 'event index') t.is(d.mem.view.getUint16(rx.used + 4 + 8 * rx.size, true), 4, 'avail_event: the first entry not read, so the next post rings');
    // Two held, fewer than half the ring: the driver's new buffers are read ahead at its doorbell.
    const more = d.postRx(2);
    await d.kick(RX_QUEUE);
    await settle();
    const later = [frame(60, 3), frame(70, 4), frame(80, 5), frame(90, 6)];
    const got = await deliver(later);
    const at = (id: number) => (bufs.get(id) ?? more.get(id))! + NET_HDR_SIZE;
    t.deepEqual(got.map((e) => d.mem.bytes.slice(at(e.id), at(e.id) + e.len - NET_HDR_SIZE)), later);
    await settle();
    t.is(d.dev.counters.rxWaits, 0, 'no frame waited for a ring read');
  });
}
