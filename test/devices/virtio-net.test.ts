// The virtio-net model driven by a software driver over its PciFunction: the
// PCI/virtio layout Linux looks for, feature negotiation, both data paths,
// interrupts and their suppression, and the bad input the issue lists.
import test from 'ava';
import fc from 'fast-check';
import { Cfg, CommandBit, StatusBit } from '../../src/pci/config-space.ts';
import { NET_HDR_SIZE, NetFeature, netOptionsFromEnv, QUEUE_MAX, RX_QUEUE, RX_QUIET_EAGER_MS, TX_QUEUE, VIRTIO_NET_CLASS } from '../../src/devices/virtio-net/net-device.ts';
import { SoftVirtioNetDriver } from '../../src/devices/virtio-net/soft-driver.ts';
import { CfgType, Common, DeviceStatus, feature, IsrBit, NO_VECTOR, TransportFeature } from '../../src/devices/virtio-net/virtio-pci.ts';
import { DescFlag, needEvent } from '../../src/devices/virtio-net/virtqueue.ts';
import { frame, needsReset, ready, RUNNING } from './virtio-net-rig.ts';

/** A 16-bit config register value as the bytes of a config write. */
const u16 = (v: number) => new Uint8Array([v & 0xff, v >> 8]);
const BASE = feature(TransportFeature.Version1) | feature(NetFeature.Mac) | feature(NetFeature.Status) | feature(NetFeature.Mtu);
const OFFERED = BASE | feature(TransportFeature.RingEventIdx) | feature(NetFeature.Csum) | feature(NetFeature.GuestCsum);
test('presents 1AF4:1041, class network, the four virtio capabilities and the device configuration', async (t) => {
  const d = new SoftVirtioNetDriver({ mac: '02:12:34:56:78:9a', mtu: 1400 });
  const cs = d.dev.config;
  t.is(cs.get16(Cfg.VendorId), 0x1af4);
  t.is(cs.get16(Cfg.DeviceId), 0x1041);
  t.is(cs.get8(Cfg.Revision), 1, 'modern devices have revision >= 1');
  t.is(cs.get32(Cfg.Revision) >>> 8, VIRTIO_NET_CLASS);
  t.deepEqual([...d.regions.keys()].sort(), [CfgType.Common, CfgType.Notify, CfgType.Isr, CfgType.Device]);
  t.true(d.regions.get(CfgType.Common)!.length >= Common.Length);
  t.is(d.regions.get(CfgType.Notify)!.multiplier, 4);
  const mac = [];
  for (let i = 0; i < 6; i++) mac.push(await d.read(CfgType.Device, i, 1));
  t.deepEqual(mac, [0x02, 0x12, 0x34, 0x56, 0x78, 0x9a]);
  t.is(await d.read(CfgType.Device, 6, 2), 1, 'link up');
  t.is(await d.read(CfgType.Device, 8, 2), 1, 'one queue pair');
  t.is(await d.read(CfgType.Device, 10, 2), 1400);
  t.is(await d.common(Common.NumQueues, 2), 2);
  t.is(await d.common(Common.QueueSize, 2), QUEUE_MAX);
  t.is(await d.deviceFeatures(), OFFERED);
});

test('features: a subset with VERSION_1 is accepted; anything else leaves FEATURES_OK clear', async (t) => {
  const d = new SoftVirtioNetDriver();
  t.is(await d.init({ features: feature(TransportFeature.Version1) }), RUNNING);
  t.is(d.dev.negotiatedFeatures, feature(TransportFeature.Version1));
  t.false(((await d.init({ features: feature(NetFeature.Mac) })) & DeviceStatus.FeaturesOk) !== 0, 'no VERSION_1');
  t.false(((await d.init({ features: OFFERED | feature(TransportFeature.RingIndirectDesc) })) & DeviceStatus.FeaturesOk) !== 0, 'not offered');
  t.is(await new SoftVirtioNetDriver({ eventIdx: false, csum: false }).deviceFeatures(), BASE, 'event index and checksum offloads turned off');
  t.is(await d.init(), RUNNING);
});

test('transmit: frames in one or two descriptors reach the wire unchanged; used ring and MSI-X vector follow', async (t) => {
  const d = await ready();
  const q = d.queues[TX_QUEUE]!;
  const a = frame(60, 1);
  const b = frame(1514, 2);
  const ha = await d.send(a);
  const hb = await d.send(b, NET_HDR_SIZE); // header and frame apart, as Linux does without headroom
  await d.dev.idle();
  t.deepEqual(d.wire.sent, [a, b]);
  t.deepEqual(d.reap(q).map((e) => e.id), [ha, hb]);
  t.true(d.irqs.includes(TX_QUEUE + 1));
  t.is(d.dev.counters.txFrames, 2);
  t.is(d.dev.counters.txBytes, 60 + 1514);
});

test('receive: a frame lands after a header with num_buffers 1; frames that find no buffer wait for one', async (t) => {
  const d = await ready();
  const q = d.queues[RX_QUEUE]!;
  const bufs = d.postRx(1);
  await d.kick(RX_QUEUE);
  const f1 = frame(98, 3);
  d.wire.deliver(f1);
  await d.dev.idle();
  let used = d.reap(q);
  t.is(used.length, 1);
  t.is(used[0]!.len, NET_HDR_SIZE + f1.length);
  const at = bufs.get(used[0]!.id)!;
  t.deepEqual([...d.mem.bytes.subarray(at, at + NET_HDR_SIZE)], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
  t.deepEqual(d.mem.bytes.slice(at + NET_HDR_SIZE, at + NET_HDR_SIZE + f1.length), f1);
  t.true(d.irqs.includes(RX_QUEUE + 1));

  // No buffer posted: the frame waits in the device until the driver refills and kicks.
  const f2 = frame(200, 4);
  d.wire.deliver(f2);
  await d.dev.idle();
  t.is(d.reap(q).length, 0);
  const more = d.postRx(2);
  await d.kick(RX_QUEUE);
  await d.dev.idle();
  used = d.reap(q);
  t.is(used.length, 1);
  t.deepEqual(d.mem.bytes.slice(more.get(used[0]!.id)! + NET_HDR_SIZE, more.get(used[0]!.id)! + NET_HDR_SIZE + f2.length), f2);
  t.is(d.dev.counters.rxFrames, 2);
});

test('batches: several chains per kick, on a 4-entry queue whose rings wrap many times, keep their order both ways', async (t) => {
  const d = new SoftVirtioNetDriver();
  t.is(await d.init({ queueSize: 4 }), RUNNING);
  const tx = d.queues[TX_QUEUE]!;
  const rx = d.queues[RX_QUEUE]!;
  const sent: Uint8Array[] = [];
  for (let round = 0; round < 7; round++) {
    const heads = [];
    for (let k = 0; k < 3; k++) {
      const f = frame(60 + round * 10 + k, round * 3 + k);
      const at = d.alloc(NET_HDR_SIZE + f.length);
      d.mem.bytes.set(f, at + NET_HDR_SIZE);
      heads.push(d.addChain(tx, [{ addr: at, len: NET_HDR_SIZE + f.length }]));
      sent.push(f);
    }
    await d.kick(TX_QUEUE);
    const bufs = d.postRx(3);
    await d.kick(RX_QUEUE);
    const arriving = [frame(100, round), frame(200, round), frame(300, round)];
    arriving.forEach((f) => d.wire.deliver(f));
    await d.dev.idle();
    t.deepEqual(d.reap(tx).map((e) => e.id), heads);
    const used = d.reap(rx);
    t.deepEqual(used.map((e) => e.len), arriving.map((f) => NET_HDR_SIZE + f.length));
    used.forEach((e, k) => t.deepEqual(d.mem.bytes.slice(bufs.get(e.id)! + NET_HDR_SIZE, bufs.get(e.id)! + e.len), arriving[k]));
  }
  t.deepEqual(d.wire.sent, sent);
});

test('interrupts: NO_INTERRUPT in the avail flags suppresses them (no event index); a vector beyond the table reads back NO_VECTOR', async (t) => {
  const d = new SoftVirtioNetDriver();
  t.is(await d.init({ features: BASE }), RUNNING);
  d.setAvailFlags(d.queues[TX_QUEUE]!, 1);
  await d.send(frame(64));
  await d.dev.idle();
  t.is(d.wire.sent.length, 1);
  t.deepEqual(d.irqs, []);
  await d.setCommon(Common.QueueSelect, 2, TX_QUEUE);
  await d.setCommon(Common.QueueMsixVector, 2, 7);
  t.is(await d.common(Common.QueueMsixVector, 2), NO_VECTOR);
  await d.setCommon(Common.ConfigMsixVector, 2, 3);
  t.is(await d.common(Common.ConfigMsixVector, 2), NO_VECTOR);
});

// ---- RING_EVENT_IDX (virtio 1.2 §2.7.7, §2.7.10) ----

test('property: needEvent says whether moving an index from old to next passes event (16-bit wrap)', async (t) => {
  t.notThrows(() =>
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), (old, steps, event) => {
        const next = (old + steps) & 0xffff;
        const passed = ((event - old) & 0xffff) < steps; // event is one of old, old+1, ..., next-1
        return needEvent(event, next, old) === passed;
      }),
      { numRuns: 5000 },
    ),
  );
  t.true(needEvent(0xffff, 0, 0xffff), 'across the wrap');
  t.false(needEvent(5, 5, 5), 'nothing moved');
});

/** Where the driver writes used_event and reads avail_event (after the rings' entries). */
const usedEventAt = (q: { avail: number; size: number }) => q.avail + 4 + 2 * q.size;
const availEventAt = (q: { used: number; size: number }) => q.used + 4 + 8 * q.size;

for (const eager of [false, true]) {
  test(`event index: used_event decides the interrupts; NO_INTERRUPT is ignored${eager ? '; eager: once passed, every publish interrupts' : ''}`, async (t) => {
    const d = await ready({ eagerInterrupts: eager });
    t.is(d.dev.negotiatedFeatures, OFFERED);
    const q = d.queues[TX_QUEUE]!;
    d.setAvailFlags(q, 1); // ignored with the event index
    d.mem.view.setUint16(usedEventAt(q), 2, true); // interrupt once used entry 2 is published
    const txIrqs = () => d.irqs.filter((v) => v === TX_QUEUE + 1).length;
    const seen: number[] = [];
    for (let k = 0; k < 5; k++) {
      await d.send(frame(64, k));
      await d.dev.idle();
      seen.push(txIrqs());
    }
    if (eager) t.deepEqual(seen, [0, 0, 1, 2, 3], 'the third used entry and, used_event not seen to move, each after it');
    else t.deepEqual(seen, [0, 0, 1, 1, 1], 'only the third used entry interrupts');
    t.is(d.dev.counters.interrupts, eager ? 3 : 1);
    t.is(d.dev.counters.wishWaits, eager ? 2 : 4, 'a read of used_event only while it lies ahead');
    t.is(d.dev.counters.notifications, 5);
    t.is(d.wire.sent.length, 5);
  });
}

test('event index, receive queue quiet for rxQuietEagerMs: a passed used_event interrupts at once; sooner, it is read first; tune() changes it while running', async (t) => {
  let clock = 0;
  const d = await ready({ eagerInterrupts: false, rxQuietEagerMs: 1, now: () => clock });
  const q = d.queues[RX_QUEUE]!;
  d.mem.view.setUint16(usedEventAt(q), 0, true); // the first used entry interrupts; the driver then leaves used_event there (as Linux does)
  d.postRx(8);
  await d.kick(RX_QUEUE);
  const rxIrqs: number[] = [];
  const arrive = async (at: number) => {
    clock = at;
    d.wire.deliver(frame(64, at));
    await d.dev.idle();
    rxIrqs.push(d.irqs.filter((v) => v === RX_QUEUE + 1).length);
  };
  await arrive(0); // asked for
  await arrive(0.5); // passed, 0.5 ms after the last publish: used_event is read (it says no)
  await arrive(2); // passed, quiet for 1.5 ms: at once
  await arrive(2.2);
  d.dev.tune({ rxQuietEagerMs: Infinity });
  await arrive(10);
  t.deepEqual(rxIrqs, [1, 1, 2, 2, 2]);
  t.is(d.dev.counters.wishWaits, 3, 'used_event read for each publish that was not quiet, and for all once tuned off');
  t.is(d.dev.counters.rxFrames, 5);
  t.deepEqual(d.dev.counters.rxWishQuiet.not, [1, 0, 1, 0, 0, 1], 'the reads by how long the queue had been quiet');
});

test('process entries: eager receive interrupts after a quiet RX_QUIET_EAGER_MS unless VIRTIO_NET_RX_QUIET_MS says other ms or off', (t) => {
  t.is(netOptionsFromEnv({}).rxQuietEagerMs, RX_QUIET_EAGER_MS);
  t.is(netOptionsFromEnv({ VIRTIO_NET_RX_QUIET_MS: '2.5' }).rxQuietEagerMs, 2.5);
  t.is(netOptionsFromEnv({ VIRTIO_NET_RX_QUIET_MS: 'off' }).rxQuietEagerMs, Infinity);
  for (const bad of ['', 'soon', '-1']) t.throws(() => netOptionsFromEnv({ VIRTIO_NET_RX_QUIET_MS: bad }), { message: /VIRTIO_NET_RX_QUIET_MS/ });
});

test('event index: avail_event asks for a doorbell at the first entry the device has not read', async (t) => {
  const d = await ready();
  const q = d.queues[TX_QUEUE]!;
  for (let k = 0; k < 3; k++) d.addChain(q, [{ addr: d.alloc(NET_HDR_SIZE + 64), len: NET_HDR_SIZE + 64 }]);
  await d.kick(TX_QUEUE);
  await d.dev.idle();
  t.is(d.wire.sent.length, 3);
  t.is(d.mem.view.getUint16(availEventAt(q), true), 3);
  // The driver's test for its next entry (index 3): a doorbell is due; for the one after it, not.
  t.true(needEvent(3, 4, 3));
  t.false(needEvent(3, 5, 4));
});

test('property: a driver that rings only when avail_event asks, adding while the device works, never strands a frame', async (t) => {
  await t.notThrowsAsync(fc.assert(
    fc.asyncProperty(fc.array(fc.record({ frames: fc.integer({ min: 1, max: 5 }), wait: fc.boolean() }), { minLength: 1, maxLength: 12 }), async (steps) => {
      const d = new SoftVirtioNetDriver();
      if ((await d.init({ queueSize: 16 })) !== RUNNING) return false;
      const q = d.queues[TX_QUEUE]!;
      const sent: Uint8Array[] = [];
      let kicks = 0;
      for (const [i, s] of steps.entries()) {
        // Reuse descriptors only once the device gave them back (at most 16 in flight).
        while (q.availIdx - q.lastUsed + s.frames > q.size) {
          await d.dev.idle();
          d.reap(q);
        }
        const old = q.availIdx;
        for (let k = 0; k < s.frames; k++) {
          const f = frame(60 + k, i);
          const at = d.alloc(NET_HDR_SIZE + f.length);
          d.mem.bytes.set(f, at + NET_HDR_SIZE);
          d.addChain(q, [{ addr: at, len: NET_HDR_SIZE + f.length }]);
          sent.push(f);
        }
        if (needEvent(d.mem.view.getUint16(availEventAt(q), true), q.availIdx, old)) {
          kicks++;
          void d.kick(TX_QUEUE); // not awaited: the driver goes on while the device works
        }
        if (s.wait) await d.dev.idle();
        d.reap(q);
      }
      await d.dev.idle();
      await new Promise((r) => setImmediate(r));
      await d.dev.idle();
      return d.wire.sent.length === sent.length && d.wire.sent.every((f, k) => Buffer.compare(f, sent[k]!) === 0) && kicks <= steps.length;
    }),
    { numRuns: 150 },
  ));
});

test('INTx when MSI-X is off: the ISR says why and reading it lowers the line', async (t) => {
  const d = await ready();
  d.dev.setMsixEnabled(false);
  await d.send(frame(64));
  await d.dev.idle();
  t.deepEqual(d.intx, [true]);
  t.is(await d.read(CfgType.Isr, 0, 1), IsrBit.Queue);
  t.deepEqual(d.intx, [true, false]);
  t.is(await d.read(CfgType.Isr, 0, 1), 0, 'read to clear');
});

test('INTx: pin A, a configuration change sets ISR bit 1, Status.Interrupt follows the level, INTx_Disable gates it, MSI-X on keeps it low', async (t) => {
  const d = await ready();
  t.is(d.dev.config.get8(Cfg.InterruptPin), 1, 'INTA');
  d.dev.setMsixEnabled(false);
  d.dev.setLink(false);
  t.deepEqual(d.intx, [true]);
  t.truthy(d.dev.config.get16(Cfg.Status) & StatusBit.InterruptStatus);
  // Interrupt Disable lowers the line as delivered; the level (Status bit 3) stays until the ISR read.
  const cmd = d.dev.config.get16(Cfg.Command);
  d.dev.configWrite(Cfg.Command, u16(cmd | CommandBit.IntxDisable));
  t.deepEqual(d.intx, [true, false]);
  t.truthy(d.dev.config.get16(Cfg.Status) & StatusBit.InterruptStatus);
  d.dev.configWrite(Cfg.Command, u16(cmd));
  t.deepEqual(d.intx, [true, false, true], 'still pending: asserted again');
  t.is(await d.read(CfgType.Isr, 0, 1), IsrBit.Config);
  t.deepEqual(d.intx, [true, false, true, false]);
  t.falsy(d.dev.config.get16(Cfg.Status) & StatusBit.InterruptStatus);
  // With MSI-X enabled the configuration change goes to its vector, never to INTx.
  d.dev.setMsixEnabled(true);
  d.dev.setLink(true);
  t.deepEqual(d.intx, [true, false, true, false]);
});

test('link state: a change shows in STATUS, bumps config_generation and raises the configuration vector', async (t) => {
  const d = await ready();
  const gen = await d.common(Common.ConfigGeneration, 1);
  d.dev.setLink(false);
  t.is(await d.read(CfgType.Device, 6, 2), 0);
  t.not(await d.common(Common.ConfigGeneration, 1), gen);
  t.deepEqual(d.irqs, [0]);
  await d.send(frame(64));
  await d.dev.idle();
  t.is(d.wire.sent.length, 0, 'no carrier: nothing on the wire');
  d.dev.setLink(true);
  t.is(await d.read(CfgType.Device, 6, 2), 1);
});

test('oversize frames are dropped and counted, both ways; the buffer goes back to the driver', async (t) => {
  const d = await ready({ mtu: 1500 });
  const head = await d.send(frame(1500 + 18 + 1));
  await d.send(frame(10)); // no room for an Ethernet header
  await d.dev.idle();
  t.is(d.wire.sent.length, 0);
  t.is(d.dev.counters.txOversize, 1);
  t.is(d.dev.counters.txRunt, 1);
  t.is(d.reap(d.queues[TX_QUEUE]!)[0]!.id, head);
  d.postRx(1);
  d.wire.deliver(frame(1500 + 18 + 1));
  await d.dev.idle();
  t.is(d.dev.counters.rxOversize, 1);
  t.is(d.reap(d.queues[RX_QUEUE]!).length, 0);
  // A buffer too small for an MTU-sized frame is handed back empty.
  await d.kick(RX_QUEUE);
  const q = d.queues[RX_QUEUE]!;
  const small = d.alloc(64);
  d.addChain(q, [{ addr: small, len: 64, write: true }]);
  d.wire.deliver(frame(1000));
  await d.dev.idle();
  t.is(d.dev.counters.rxBufferTooSmall, 0, 'the first (large) buffer took it');
  d.wire.deliver(frame(1000));
  await d.dev.idle();
  t.is(d.dev.counters.rxBufferTooSmall, 1);
  t.deepEqual(d.reap(q).map((e) => e.len), [NET_HDR_SIZE + 1000, 0]);
  t.is(d.dev.deviceStatus, RUNNING);
});

// Set-up errors come before DRIVER_OK, when the device may not interrupt: the driver reads the status.
test('bad input: a queue larger than the device allows', (t) => needsReset(t, (d) => d.init({ queueSize: QUEUE_MAX * 2 }), /beyond the maximum/, false));

test('bad input: a queue size that is not a power of two', (t) => needsReset(t, (d) => d.init({ queueSize: 100 }), /power of two/, false));

test('bad input: a head beyond the queue', (t) =>
  needsReset(t, async (d) => {
    const q = d.queues[TX_QUEUE]!;
    d.makeAvailable(q, q.size + 3);
    await d.kick(TX_QUEUE);
  }, /beyond the queue size/));

test('bad input: a loop of chained descriptors', (t) =>
  needsReset(t, async (d) => {
    const q = d.queues[TX_QUEUE]!;
    const buf = d.alloc(64);
    d.writeDesc(q, 0, buf, 32, DescFlag.Next, 1);
    d.writeDesc(q, 1, buf + 32, 32, DescFlag.Next, 0);
    d.makeAvailable(q, 0);
    await d.kick(TX_QUEUE);
  }, /loop/));

test('bad input: a descriptor table outside guest memory', (t) =>
  needsReset(t, async (d) => {
    await d.init({ txRing: { desc: d.mem.size + 4096, avail: d.alloc(1024), used: d.alloc(4096) } });
    d.makeAvailable(d.queues[TX_QUEUE]!, 0);
    await d.kick(TX_QUEUE);
  }, /outside guest memory/));

test('bad input: a buffer outside guest memory', (t) =>
  needsReset(t, async (d) => {
    d.addChain(d.queues[TX_QUEUE]!, [{ addr: d.mem.size - 16, len: 200 }]);
    await d.kick(TX_QUEUE);
  }, /outside guest memory/));

test('bad input: an avail index more than the queue size ahead', (t) =>
  needsReset(t, async (d) => {
    const q = d.queues[TX_QUEUE]!;
    d.mem.view.setUint16(q.avail + 2, q.size + 1, true);
    await d.kick(TX_QUEUE);
  }, /more than the queue size/));

test('bad input: a used ring outside guest memory (the device writes avail_event and the used elements there)', (t) =>
  needsReset(t, async (d) => {
    await d.setCommon(Common.DeviceStatus, 1, 0);
    await d.init({ txRing: { desc: d.alloc(16 * 256), avail: d.alloc(6 + 2 * 256), used: d.mem.size - 64 } });
    await d.send(frame(64));
  }, /outside guest memory/));

test('bad input: a writable buffer in a transmit chain, a readable one in a receive chain', async (t) => {
  await needsReset(t, async (d) => {
    d.addChain(d.queues[TX_QUEUE]!, [{ addr: d.alloc(100), len: 100 }, { addr: d.alloc(100), len: 100, write: true }]);
    await d.kick(TX_QUEUE);
  }, /writable buffer/);
  const d = await ready();
  d.addChain(d.queues[RX_QUEUE]!, [{ addr: d.alloc(2000), len: 2000 }]);
  d.wire.deliver(frame(64));
  await d.dev.idle();
  t.regex(d.dev.lastError ?? '', /readable buffer/);
});

test('function-level reset returns the device to power-on state', async (t) => {
  const d = await ready();
  d.dev.reset();
  t.is(d.dev.deviceStatus, 0);
  t.is(await d.common(Common.QueueEnable, 2), 0);
});

test('property: any split of a frame over descriptors, either way, moves it unchanged', async (t) => {
  await t.notThrowsAsync(fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 14, max: 1514 }),
      fc.array(fc.integer({ min: 0, max: 1600 }), { minLength: 0, maxLength: 6 }),
      fc.integer({ min: 0, max: 255 }),
      async (len, cuts, seed) => {
        const d = await ready();
        const f = frame(len, seed);
        const total = NET_HDR_SIZE + len;
        // Transmit: the header and frame cut at random points (zero-length pieces included).
        const points = [...new Set(cuts.map((c) => c % (total + 1)))].sort((a, b) => a - b);
        const bounds = [0, ...points, total];
        const src = d.alloc(total);
        d.mem.bytes.set(f, src + NET_HDR_SIZE);
        d.addChain(d.queues[TX_QUEUE]!, bounds.slice(1).map((end, i) => ({ addr: src + bounds[i]!, len: end - bounds[i]! })));
        await d.kick(TX_QUEUE);
        // Receive: buffers of random sizes that together hold the packet.
        const sizes = cuts.map((c) => 1 + (c % 700));
        while (sizes.reduce((a, b) => a + b, 0) < total) sizes.push(700);
        const bufs = sizes.map((s) => ({ addr: d.alloc(s), len: s, write: true }));
        d.addChain(d.queues[RX_QUEUE]!, bufs);
        await d.kick(RX_QUEUE);
        d.wire.deliver(f);
        await d.dev.idle();
        const got = new Uint8Array(total);
        let at = 0;
        for (const b of bufs) {
          const n = Math.min(b.len, total - at);
          got.set(d.mem.bytes.subarray(b.addr, b.addr + n), at);
          at += n;
        }
        return (
          d.wire.sent.length === 1 &&
          Buffer.compare(d.wire.sent[0]!, f) === 0 &&
          Buffer.compare(got.subarray(NET_HDR_SIZE), f) === 0 &&
          d.reap(d.queues[RX_QUEUE]!)[0]!.len === total
        );
      },
    ),
    { numRuns: 60 },
  ));
});

test('property: a descriptor table of arbitrary bytes either transmits or sets NEEDS_RESET; the device never hangs', async (t) => {
  await t.notThrowsAsync(fc.assert(
    fc.asyncProperty(fc.uint8Array({ minLength: 16 * 8, maxLength: 16 * 8 }), fc.integer({ min: 0, max: 15 }), async (table, head) => {
      const d = await ready();
      const q = d.queues[TX_QUEUE]!;
      // Keep addresses inside or just past memory so both outcomes happen.
      const v = new DataView(table.buffer);
      for (let i = 0; i < 8; i++) {
        v.setUint32(16 * i, v.getUint32(16 * i, true) % (d.mem.size + 8192), true);
        v.setUint32(16 * i + 4, 0, true);
        v.setUint32(16 * i + 8, v.getUint32(16 * i + 8, true) % 4096, true);
      }
      d.mem.bytes.set(table, q.desc);
      d.makeAvailable(q, head);
      await d.kick(TX_QUEUE);
      await d.dev.idle();
      const reset = (d.dev.deviceStatus & DeviceStatus.NeedsReset) !== 0;
      const c = d.dev.counters;
      const accounted = c.txFrames + c.txOversize + c.txRunt;
      return reset ? accounted === 0 : accounted === 1 && d.reap(q).length === 1;
    }),
    { numRuns: 200 },
  ));
});
