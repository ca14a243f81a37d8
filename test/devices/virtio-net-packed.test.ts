// The virtio-net model with packed virtqueues (VIRTIO_F_RING_PACKED, virtio 1.2 §2.8) driven by
// the soft driver: negotiation, both data paths on rings whose size is not a power of two and
// that wrap many times, chains across the wrap, event suppression both ways, and the bad input
// the issue lists (descriptors outside guest memory, chain loops, oversize packets).
import test from 'ava';
import fc from 'fast-check';
import { NET_HDR_SIZE, netOptionsFromEnv, QUEUE_MAX, RX_QUEUE, TX_QUEUE, VirtioNet } from '../../src/devices/virtio-net/net-device.ts';
import { availBits, EventFlag, eventPosition, offWrap, passesEvent, wrapOf } from '../../src/devices/virtio-net/packed-queue.ts';
import { SoftVirtioNetDriver } from '../../src/devices/virtio-net/soft-driver.ts';
import { Common, DeviceStatus, feature, TransportFeature } from '../../src/devices/virtio-net/virtio-pci.ts';
import { DescFlag } from '../../src/devices/virtio-net/virtqueue.ts';
import { frame, needsReset, ready, RUNNING } from './virtio-net-rig.ts';

const PACKED = { packed: true };

test('packed rings are offered only when configured, and taken per device', async (t) => {
  t.is((await new SoftVirtioNetDriver().deviceFeatures()) & feature(TransportFeature.RingPacked), 0n);
  const d = await ready(PACKED);
  t.true(d.packedRings);
  t.true((d.dev.negotiatedFeatures & feature(TransportFeature.RingPacked)) !== 0n);
  const split = await ready(PACKED);
  t.is(await split.init({ features: (await split.deviceFeatures()) & ~feature(TransportFeature.RingPacked) }), RUNNING);
  t.false(split.packedRings, 'a driver that leaves the bit gets split rings from the same model');
  const f = frame(300, 5);
  await split.send(f);
  await split.dev.idle();
  t.deepEqual(split.wire.sent, [f]);
});

test('process entries offer packed rings unless VIRTIO_NET_PACKED=0', (t) => {
  const wire = { transmit: () => {}, attach: () => {} };
  const offered = (env: Record<string, string>) => new VirtioNet({ mac: '02:00:00:00:00:01', wire, ...netOptionsFromEnv(env) }).offered & feature(TransportFeature.RingPacked);
  t.not(offered({}), 0n);
  t.is(offered({ VIRTIO_NET_PACKED: '0' }), 0n);
  t.not(offered({ VIRTIO_NET_PACKED: '1' }), 0n);
});

test('packed: frames in one or two descriptors both ways, on a 5-entry ring that wraps many times, chains across the wrap', async (t) => {
  const d = await ready(PACKED, 5);
  const tx = d.queues[TX_QUEUE]!;
  const rx = d.queues[RX_QUEUE]!;
  const sent: Uint8Array[] = [];
  for (let round = 0; round < 11; round++) {
    const ids = [];
    for (let k = 0; k < 2; k++) {
      const f = frame(60 + 37 * round + k, round + k);
      sent.push(f);
      const at = d.alloc(NET_HDR_SIZE + f.length);
      d.mem.bytes.set(f, at + NET_HDR_SIZE);
      // Header and frame apart on odd rounds: two-descriptor chains that sometimes straddle the ring's end.
      const segs = round & 1 ? [{ addr: at, len: NET_HDR_SIZE }, { addr: at + NET_HDR_SIZE, len: f.length }] : [{ addr: at, len: NET_HDR_SIZE + f.length }];
      ids.push(d.addChain(tx, segs));
    }
    await d.kick(TX_QUEUE);
    const bufs = d.postRx(2);
    await d.kick(RX_QUEUE);
    const arriving = [frame(100 + round, round), frame(1514, round)];
    arriving.forEach((f) => d.wire.deliver(f));
    await d.dev.idle();
    t.deepEqual(d.reap(tx).map((e) => e.id), ids);
    const used = d.reap(rx);
    t.deepEqual(used.map((e) => e.len), arriving.map((f) => NET_HDR_SIZE + f.length));
    used.forEach((e, k) => t.deepEqual(d.mem.bytes.slice(bufs.get(e.id)! + NET_HDR_SIZE, bufs.get(e.id)! + e.len), arriving[k]));
  }
  t.deepEqual(d.wire.sent, sent);
  t.true(tx.availIdx > 5 * 4, 'the transmit ring wrapped more than four times');
  t.is(d.dev.deviceStatus, RUNNING);
});

test('property: off_wrap positions — an event a lap behind or in the lap ahead is placed next to the device, and passes only inside (old, next]', (t) => {
  t.notThrows(() =>
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 0, max: 299 }), fc.integer({ min: -299, max: 299 }), (size, old, steps, delta) => {
        steps %= size + 1; // a publish moves at most a ring's worth
        delta %= size;
        const next = old + steps;
        const event = Math.max(0, next + delta); // within a lap of the device, either side
        const field = offWrap(event, size);
        const placed = eventPosition(field, next, size);
        // Ahead of `next` the event is placed a lap early (not yet due); at or behind it, where it is.
        if (event >= next ? placed !== event && placed !== event - 2 * size : placed !== event) return false;
        return passesEvent(field, next, old, size) === (event >= old && event < next);
      }),
      { numRuns: 5000 },
    ),
  );
});

test('property: a driver that rings only when the device event asks, adding chains of 1-3 descriptors while the device works, never strands a frame; ids and order hold over many wraps', async (t) => {
  await t.notThrowsAsync(fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 3, max: 13 }),
      fc.array(fc.record({ chains: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 4 }), wait: fc.boolean() }), { minLength: 1, maxLength: 20 }),
      async (size, steps) => {
        const d = await ready(PACKED, size);
        const q = d.queues[TX_QUEUE]!;
        const sent: Uint8Array[] = [];
        const ids: number[] = [];
        const reaped: number[] = [];
        let old = q.availIdx;
        /** The doorbell as Linux rings it: when the chains added since the last one pass the device's event. */
        const notify = () => {
          const ev = d.mem.view.getUint16(q.used, true);
          if (d.mem.view.getUint16(q.used + 2, true) !== EventFlag.Desc || passesEvent(ev, q.availIdx, old, q.size)) void d.kick(TX_QUEUE);
          old = q.availIdx;
        };
        for (const [i, s] of steps.entries()) {
          for (const [k, parts] of s.chains.entries()) {
            // Reuse positions only once the device gave them back (a full ring: ring for what is in it, then wait).
            for (let tries = 0; q.availIdx + parts - q.lastUsed > q.size; tries++) {
              if (tries > 3) return false; // stranded: the device is idle and holds positions it never read
              if (tries === 0) notify();
              await new Promise((r) => setImmediate(r)); // the doorbell (not awaited) lands
              await d.dev.idle();
              reaped.push(...d.reap(q).map((e) => e.id));
            }
            const f = frame(60 + k + 3 * i, i);
            const at = d.alloc(NET_HDR_SIZE + f.length);
            d.mem.bytes.set(f, at + NET_HDR_SIZE);
            const cut = Math.floor((NET_HDR_SIZE + f.length) / parts);
            ids.push(d.addChain(q, Array.from({ length: parts }, (_, j) => ({ addr: at + j * cut, len: j + 1 < parts ? cut : NET_HDR_SIZE + f.length - j * cut }))));
            sent.push(f);
          }
          notify();
          if (s.wait) await d.dev.idle();
          reaped.push(...d.reap(q).map((e) => e.id));
        }
        await d.dev.idle();
        await new Promise((r) => setImmediate(r));
        await d.dev.idle();
        reaped.push(...d.reap(q).map((e) => e.id));
        return d.dev.deviceStatus === RUNNING && d.wire.sent.length === sent.length && d.wire.sent.every((f, k) => Buffer.compare(f, sent[k]!) === 0) &&
          reaped.length === ids.length && reaped.every((id, k) => id === ids[k]);
      },
    ),
    { numRuns: 150 },
  ));
});

test('packed event suppression: DISABLE stops interrupts, DESC interrupts when its position is used; the device asks for a doorbell at the first position it has not read', async (t) => {
  const d = await ready({ ...PACKED, eagerInterrupts: false }, 8);
  const q = d.queues[TX_QUEUE]!;
  const txIrqs = () => d.irqs.filter((v) => v === TX_QUEUE + 1).length;
  d.setAvailFlags(q, EventFlag.Disable);
  await d.send(frame(64, 1));
  await d.dev.idle();
  t.is(txIrqs(), 0);
  t.is(d.wire.sent.length, 1);
  t.is(d.mem.view.getUint16(q.used, true), offWrap(1, 8), 'doorbell wanted at position 1');
  t.is(d.mem.view.getUint16(q.used + 2, true), EventFlag.Desc);
  d.reap(q);
  // Interrupt when the used descriptor at position 11 (second lap, slot 3) is written.
  d.setUsedEvent(q, 11);
  const seen: number[] = [];
  for (let k = 0; k < 12; k++) {
    await d.send(frame(64, k));
    await d.dev.idle();
    d.reap(q);
    seen.push(txIrqs());
  }
  // Positions 1..12 used in turn: the one at 11 is the 11th send.
  t.deepEqual(seen, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
  t.is(d.mem.view.getUint16(q.used, true), offWrap(13, 8));
  t.is(wrapOf(13, 8), 0, 'second lap: wrap counter 0');
  d.setAvailFlags(q, EventFlag.Enable);
  await d.send(frame(64, 99));
  await d.dev.idle();
  t.is(txIrqs(), 2, 'ENABLE: every publish');
});

test('packed, no event index: the device event stays ENABLE', async (t) => {
  const d = await ready({ ...PACKED, eventIdx: false });
  const used = d.alloc(4);
  d.mem.view.setUint32(used, 0xffffffff, true); // a driver's memory need not start zeroed
  t.is(await d.init({ txRing: { desc: d.alloc(16 * QUEUE_MAX), avail: d.alloc(4), used } }), RUNNING);
  const q = d.queues[TX_QUEUE]!;
  await d.send(frame(64));
  await d.dev.idle();
  t.is(d.mem.view.getUint32(q.used, true), EventFlag.Enable << 16);
  t.true(d.irqs.includes(TX_QUEUE + 1));
});

test('packed: oversize frames are dropped and counted, their buffers given back; a buffer too small for a frame is given back empty', async (t) => {
  const d = await ready({ ...PACKED, mtu: 1500 });
  const id = await d.send(frame(1500 + 18 + 1));
  await d.dev.idle();
  t.is(d.dev.counters.txOversize, 1);
  t.deepEqual(d.reap(d.queues[TX_QUEUE]!), [{ id, len: 0 }]);
  const q = d.queues[RX_QUEUE]!;
  const small = d.addChain(q, [{ addr: d.alloc(64), len: 64, write: true }]);
  await d.kick(RX_QUEUE);
  d.wire.deliver(frame(1500 + 18 + 1));
  d.wire.deliver(frame(1000));
  await d.dev.idle();
  t.is(d.dev.counters.rxOversize, 1);
  t.is(d.dev.counters.rxBufferTooSmall, 1);
  t.deepEqual(d.reap(q), [{ id: small, len: 0 }]);
  t.is(d.dev.deviceStatus, RUNNING);
});

// ---- bad input: DEVICE_NEEDS_RESET, and a reset (to packed rings again) recovers ----

/** Makes `n` descriptors from the next position available as one chain, NEXT on every one if `loop`. */
function rawChain(d: SoftVirtioNetDriver, n: number, o: { loop?: boolean; id?: number; flags?: number; addr?: number; len?: number } = {}): void {
  const q = d.queues[TX_QUEUE]!;
  const buf = d.alloc(64);
  for (let k = n - 1; k >= 0; k--) {
    const p = q.availIdx + k;
    const next = o.loop || k + 1 < n ? DescFlag.Next : 0;
    d.writePackedDesc(q, p % q.size, o.addr ?? buf, o.len ?? 64, o.id ?? 0, availBits(wrapOf(p, q.size)) | next | (o.flags ?? 0));
  }
  q.availIdx += n;
}

test('bad input (packed): a chain with NEXT all round the ring (a loop)', (t) =>
  needsReset(t, async (d) => {
    rawChain(d, d.queues[TX_QUEUE]!.size, { loop: true });
    await d.kick(TX_QUEUE);
  }, /runs past .* \(a loop\)/, true, PACKED));

test('bad input (packed): an INDIRECT descriptor (not negotiated)', (t) =>
  needsReset(t, async (d) => {
    rawChain(d, 1, { flags: DescFlag.Indirect });
    await d.kick(TX_QUEUE);
  }, /INDIRECT/, true, PACKED));

test('bad input (packed): a buffer id beyond the queue size, and one made available twice', async (t) => {
  await needsReset(t, async (d) => {
    rawChain(d, 1, { id: QUEUE_MAX });
    await d.kick(TX_QUEUE);
  }, /beyond the queue size/, true, PACKED);
  await needsReset(t, async (d) => {
    // Both in one ring read: the second names an id the first holds.
    rawChain(d, 1, { id: 7, len: 20 });
    rawChain(d, 1, { id: 7, len: 20 });
    await d.kick(TX_QUEUE);
  }, /id 7 made available again while in use/, true, PACKED);
});

test('bad input (packed): a head available whose chain is not', (t) =>
  needsReset(t, async (d) => {
    const q = d.queues[TX_QUEUE]!;
    rawChain(d, 2);
    d.mem.view.setUint16(q.desc + 16 * 1 + 14, availBits(wrapOf(0, q.size) ^ 1), true); // the second: last lap's
    await d.kick(TX_QUEUE);
  }, /head is available, a later descriptor of it not/, true, PACKED));

test('bad input (packed): a buffer outside guest memory', (t) =>
  needsReset(t, async (d) => {
    d.addChain(d.queues[TX_QUEUE]!, [{ addr: d.mem.size - 16, len: 200 }]);
    await d.kick(TX_QUEUE);
  }, /outside guest memory/, true, PACKED));

test('bad input (packed): a ring outside guest memory', (t) =>
  needsReset(t, async (d) => {
    await d.init({ txRing: { desc: d.mem.size - 256, avail: d.alloc(4), used: d.alloc(4) } });
    await d.kick(TX_QUEUE);
  }, /outside guest memory/, true, PACKED));

test('bad input (packed): a queue size beyond the maximum; a misaligned event structure', async (t) => {
  await needsReset(t, (d) => d.init({ queueSize: QUEUE_MAX + 1 }), /beyond the maximum/, false, PACKED);
  await needsReset(t, (d) => d.init({ txRing: { desc: d.alloc(4096), avail: d.alloc(8) + 2, used: d.alloc(4) } }), /misaligned/, false, PACKED);
});

test('property (packed): a ring of arbitrary bytes either transmits what its chains hold or sets NEEDS_RESET; the device never hangs', async (t) => {
  await t.notThrowsAsync(fc.assert(
    fc.asyncProperty(fc.uint8Array({ minLength: 16 * 8, maxLength: 16 * 8 }), async (ring) => {
      const d = await ready(PACKED, 8);
      const q = d.queues[TX_QUEUE]!;
      const v = new DataView(ring.buffer);
      for (let i = 0; i < 8; i++) {
        // Addresses inside or just past memory, ids mostly in range, so every outcome happens.
        v.setUint32(16 * i, v.getUint32(16 * i, true) % (d.mem.size + 8192), true);
        v.setUint32(16 * i + 4, 0, true);
        v.setUint32(16 * i + 8, v.getUint32(16 * i + 8, true) % 4096, true);
        v.setUint16(16 * i + 12, v.getUint16(16 * i + 12, true) % 10, true);
      }
      v.setUint16(14, (v.getUint16(14, true) & ~((1 << 7) | (1 << 15))) | availBits(1), true); // the head is available
      d.mem.bytes.set(ring, q.desc);
      await d.kick(TX_QUEUE);
      await d.dev.idle();
      const c = d.dev.counters;
      const accounted = c.txOversize + c.txRunt + c.txBadHeader + (c.txFrames ? 1 : 0);
      if (d.dev.deviceStatus & DeviceStatus.NeedsReset) return true;
      return accounted >= 1 && d.dev.deviceStatus === RUNNING;
    }),
    { numRuns: 200 },
  ));
});

test('packed: the common configuration reads back a size that is not a power of two', async (t) => {
  const d = await ready(PACKED, 100);
  await d.setCommon(Common.QueueSelect, 2, TX_QUEUE);
  t.is(await d.common(Common.QueueSize, 2), 100);
  const f = frame(200);
  await d.send(f);
  await d.dev.idle();
  t.deepEqual(d.wire.sent, [f]);
});
