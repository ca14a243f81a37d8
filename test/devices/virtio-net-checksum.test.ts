// The virtio-net offloads: the Internet checksum (RFC 1071) the device completes on transmit
// (VIRTIO_NET_F_CSUM) and checks on receive (GUEST_CSUM → DATA_VALID), and TCP segmentation
// (HOST_TSO4), alone and through the device driven by the soft driver.
import test from 'ava';
import fc from 'fast-check';
import { completeChecksum, fold, l4ChecksumValid, onesSum } from '../../src/devices/virtio-net/checksum.ts';
import { NET_HDR_SIZE, NetFeature, netOptionsFromEnv, RX_QUEUE, TX_QUEUE, VirtioNet } from '../../src/devices/virtio-net/net-device.ts';
import { segmentTcpV4 } from '../../src/devices/virtio-net/segment.ts';
import { SoftVirtioNetDriver } from '../../src/devices/virtio-net/soft-driver.ts';
import { feature, TransportFeature } from '../../src/devices/virtio-net/virtio-pci.ts';

const TCP = 6;
const UDP = 17;

/**
 * An Ethernet/IPv4 frame carrying `payload` over TCP or UDP, its L4 checksum field holding
 * the folded pseudo-header sum as Linux leaves it for the device (CHECKSUM_PARTIAL).
 * Returns the frame, csum_start and csum_offset.
 */
function partialPacket(proto: number, payload: Uint8Array, vlan = false, tcpFlags = 0): { frame: Uint8Array; start: number; offset: number } {
  const l2 = vlan ? 18 : 14;
  const l4Header = proto === TCP ? 20 : 8;
  const l4Len = l4Header + payload.length;
  const f = new Uint8Array(l2 + 20 + l4Len);
  const v = new DataView(f.buffer);
  f.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
  if (vlan) v.setUint32(12, 0x81000005);
  v.setUint16(l2 - 2, 0x0800);
  const ip = l2;
  f[ip] = 0x45;
  v.setUint16(ip + 2, 20 + l4Len);
  v.setUint16(ip + 6, 0x4000); // DF
  f[ip + 8] = 64;
  f[ip + 9] = proto;
  f.set([10, 99, 0, 1, 10, 99, 0, 2], ip + 12);
  v.setUint16(ip + 10, ~fold(onesSum(f.subarray(ip, ip + 20))) & 0xffff);
  const l4 = ip + 20;
  v.setUint16(l4, 40000);
  v.setUint16(l4 + 2, 5001);
  if (proto === TCP) {
    f[l4 + 12] = 5 << 4;
    f[l4 + 13] = tcpFlags;
    v.setUint32(l4 + 4, 0xfffff000); // a sequence number that wraps within 64 KiB
  }
  else v.setUint16(l4 + 4, l4Len);
  f.set(payload, l4 + l4Header);
  const offset = proto === TCP ? 16 : 6;
  v.setUint16(l4 + offset, fold(onesSum(f.subarray(ip + 12, ip + 20), proto + l4Len)));
  return { frame: f, start: l4, offset };
}

test('RFC 1071 example: the sum of 0001 f203 f4f5 f6f7 folds to ddf2', (t) => {
  t.is(fold(onesSum(Uint8Array.of(0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7))), 0xddf2);
  t.is(fold(onesSum(Uint8Array.of(0xff))), 0xff00, 'an odd byte is the high half of a word');
});

test('property: the sum over any slice (at any byte offset, any length) is the big-endian word sum', (t) => {
  const byWords = (d: Uint8Array, sum: number) => {
    for (let i = 0; i < d.length; i += 2) sum += (d[i]! << 8) | (d[i + 1] ?? 0);
    return sum;
  };
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 3000 }), fc.nat(7), fc.nat(0x3ffff), (bytes, skip, start) => {
      const d = bytes.subarray(Math.min(skip, bytes.length));
      return fold(onesSum(d, start)) === fold(byWords(d, start));
    }),
  );
  t.is(fold(onesSum(new Uint8Array(65536).fill(0xff))), 0xffff, 'all ones over 64 KiB');
});

test('property: a completed partial checksum checks; any flipped bit of the L4 part fails the check', (t) => {
  t.notThrows(() =>
    fc.assert(
      fc.property(fc.constantFrom(TCP, UDP), fc.uint8Array({ maxLength: 1400 }), fc.boolean(), fc.nat(), fc.integer({ min: 0, max: 7 }), (proto, payload, vlan, pick, bit) => {
        const { frame, start, offset } = partialPacket(proto, payload, vlan);
        if (l4ChecksumValid(frame) && payload.length > 0) return false; // only the pseudo-header sum so far
        if (!completeChecksum(frame, start, offset) || !l4ChecksumValid(frame)) return false;
        const at = start + (pick % (frame.length - start));
        frame[at]! ^= 1 << bit;
        return !l4ChecksumValid(frame);
      }),
      { numRuns: 500 },
    ),
  );
});

test('checks: not IPv4 TCP/UDP, a fragment, a UDP packet without checksum or a field out of the frame are not valid', (t) => {
  const { frame, start, offset } = partialPacket(UDP, Uint8Array.of(1, 2, 3));
  t.false(completeChecksum(frame, frame.length - 1, 0), 'field beyond the frame');
  t.false(completeChecksum(frame, frame.length, 0));
  completeChecksum(frame, start, offset);
  t.true(l4ChecksumValid(frame));
  const frag = frame.slice();
  frag[14 + 6] = 0x20; // MF
  t.false(l4ChecksumValid(frag));
  const none = frame.slice();
  none[start + 6] = 0;
  none[start + 7] = 0;
  t.false(l4ChecksumValid(none));
  const v6 = frame.slice();
  v6[12] = 0x86;
  v6[13] = 0xdd;
  t.false(l4ChecksumValid(v6));
  t.false(l4ChecksumValid(frame.subarray(0, frame.length - 1)), 'IPv4 length beyond the frame');
});

const CSUM = feature(TransportFeature.Version1) | feature(NetFeature.Mac) | feature(NetFeature.Csum) | feature(NetFeature.GuestCsum);

/** Queues a transmit packet with header `hdr` (flags, gso_type, gso_size, csum_start, csum_offset) and `frame`. */
async function sendWithHeader(d: SoftVirtioNetDriver, frame: Uint8Array, hdr: { flags: number; gso?: number; mss?: number; start?: number; offset?: number }) {
  const at = d.alloc(NET_HDR_SIZE + frame.length);
  d.mem.bytes.fill(0, at, at + NET_HDR_SIZE);
  d.mem.bytes[at] = hdr.flags;
  d.mem.bytes[at + 1] = hdr.gso ?? 0;
  d.mem.view.setUint16(at + 4, hdr.mss ?? 0, true);
  d.mem.view.setUint16(at + 6, hdr.start ?? 0, true);
  d.mem.view.setUint16(at + 8, hdr.offset ?? 0, true);
  d.mem.bytes.set(frame, at + NET_HDR_SIZE);
  d.addChain(d.queues[TX_QUEUE]!, [{ addr: at, len: NET_HDR_SIZE + frame.length }]);
  await d.kick(TX_QUEUE);
  await d.dev.idle();
  return at;
}

test('transmit with CSUM: NEEDS_CSUM packets leave with their checksum completed, the driver memory untouched', async (t) => {
  const d = new SoftVirtioNetDriver();
  await d.init({ features: CSUM });
  const p = partialPacket(TCP, new TextEncoder().encode('pcieoe checksum offload'));
  const at = await sendWithHeader(d, p.frame, { flags: 1, start: p.start, offset: p.offset });
  t.is(d.wire.sent.length, 1);
  t.true(l4ChecksumValid(d.wire.sent[0]!));
  t.deepEqual(d.mem.bytes.slice(at + NET_HDR_SIZE, at + NET_HDR_SIZE + p.frame.length), p.frame, 'the device writes no driver buffer');
  // Out of the frame, or a segmentation offload that was never offered: dropped and counted.
  await sendWithHeader(d, p.frame, { flags: 1, start: p.frame.length, offset: 0 });
  await sendWithHeader(d, p.frame, { flags: 0, gso: 1 });
  t.is(d.wire.sent.length, 1);
  t.is(d.dev.counters.txBadHeader, 2);
});

test('transmit without CSUM negotiated: a NEEDS_CSUM packet is dropped and counted', async (t) => {
  const d = new SoftVirtioNetDriver();
  await d.init({ features: feature(TransportFeature.Version1) });
  const p = partialPacket(UDP, Uint8Array.of(9));
  await sendWithHeader(d, p.frame, { flags: 1, start: p.start, offset: p.offset });
  t.is(d.wire.sent.length, 0);
  t.is(d.dev.counters.txBadHeader, 1);
});

test('receive with GUEST_CSUM: a right checksum is marked DATA_VALID, a wrong one or no GUEST_CSUM is left to the driver', async (t) => {
  for (const [features, corrupt, flags] of [[CSUM, false, 2], [CSUM, true, 0], [feature(TransportFeature.Version1), false, 0]] as const) {
    const d = new SoftVirtioNetDriver();
    await d.init({ features });
    const bufs = d.postRx(1);
    await d.kick(RX_QUEUE);
    const p = partialPacket(UDP, Uint8Array.of(1, 2, 3, 4, 5));
    completeChecksum(p.frame, p.start, p.offset);
    if (corrupt) p.frame[p.frame.length - 1]! ^= 0x80;
    d.wire.deliver(p.frame);
    await d.dev.idle();
    const used = d.reap(d.queues[RX_QUEUE]!);
    const at = bufs.get(used[0]!.id)!;
    t.is(d.mem.bytes[at], flags, `features 0x${features.toString(16)}, corrupt ${corrupt}`);
    t.deepEqual(d.mem.bytes.slice(at + NET_HDR_SIZE, at + used[0]!.len), p.frame, 'the frame itself unchanged');
  }
});

test('property: TSO cuts a TCP/IPv4 packet into MSS-sized segments a receiver accepts as the same byte stream', (t) => {
  t.notThrows(() =>
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 20000 }), fc.integer({ min: 1, max: 1460 }), fc.boolean(), fc.constantFrom(0x18, 0x19, 0x98, 0x10), (len, mss, vlan, flags) => {
        const payload = Uint8Array.from({ length: len }, (_, i) => (i * 7) & 0xff);
        const { frame } = partialPacket(TCP, payload, vlan, flags);
        const segs = segmentTcpV4(frame, mss)!;
        const ip = vlan ? 18 : 14;
        const tcp = ip + 20;
        const got: number[] = [];
        return (
          segs.length === Math.ceil(len / mss) &&
          segs.every((s, k) => {
            const v = new DataView(s.buffer, s.byteOffset, s.byteLength);
            const body = s.subarray(tcp + 20);
            got.push(...body);
            const last = k === segs.length - 1;
            return (
              l4ChecksumValid(s) &&
              fold(onesSum(s.subarray(ip, ip + 20))) === 0xffff && // IPv4 header checksum
              v.getUint16(ip + 2) === 40 + body.length &&
              body.length === (last ? len - mss * k : mss) &&
              v.getUint32(tcp + 4) === ((0xfffff000 + k * mss) >>> 0) &&
              s[tcp + 13] === (last ? flags : flags & ~0x09) - (k > 0 ? flags & 0x80 : 0)
            );
          }) &&
          Buffer.compare(Buffer.from(got), payload) === 0
        );
      }),
      { numRuns: 200 },
    ),
  );
  t.is(segmentTcpV4(partialPacket(UDP, Uint8Array.of(1)).frame, 100), undefined, 'not TCP');
  t.is(segmentTcpV4(partialPacket(TCP, new Uint8Array(0)).frame, 100), undefined, 'no payload');
});

test('transmit with HOST_TSO4: a TCPV4 packet leaves as segments; without TSO negotiated, or segments beyond the MTU, it is dropped and counted', async (t) => {
  const d = new SoftVirtioNetDriver({ tso: true, mtu: 1500 });
  await d.init({ features: CSUM | feature(NetFeature.HostTso4) });
  const p = partialPacket(TCP, Uint8Array.from({ length: 4000 }, (_, i) => i & 0xff));
  const send = (mss: number) => sendWithHeader(d, p.frame, { flags: 1, gso: 1, mss, start: p.start, offset: p.offset });
  await send(1448);
  t.deepEqual(d.wire.sent.map((f) => f.length), [14 + 40 + 1448, 14 + 40 + 1448, 14 + 40 + 1104]);
  t.true(d.wire.sent.every((f) => l4ChecksumValid(f)));
  await send(3000); // segments longer than the MTU allows
  t.is(d.wire.sent.length, 3);
  t.is(d.dev.counters.txBadHeader, 1);
  const plain = new SoftVirtioNetDriver();
  await plain.init({ features: CSUM });
  await sendWithHeader(plain, p.frame, { flags: 1, gso: 1, mss: 1448, start: p.start, offset: p.offset });
  t.is(plain.wire.sent.length, 0);
  t.true(plain.dev.counters.txBadHeader + plain.dev.counters.txOversize === 1);
});

test('process entries offer the event index, the checksum offloads and TSO unless VIRTIO_NET_*=0 turns one off', (t) => {
  const wire = { transmit: () => {}, attach: () => {} };
  const offered = (env: Record<string, string>) => new VirtioNet({ mac: '02:00:00:00:00:01', wire, ...netOptionsFromEnv(env) }).offered;
  const all = offered({});
  for (const bit of [TransportFeature.RingEventIdx, NetFeature.Csum, NetFeature.GuestCsum, NetFeature.HostTso4]) t.not(all & feature(bit), 0n, `bit ${bit}`);
  t.is(offered({ VIRTIO_NET_EVENT_IDX: '0' }), all & ~feature(TransportFeature.RingEventIdx));
  t.is(offered({ VIRTIO_NET_TSO: '0' }), all & ~feature(NetFeature.HostTso4));
  t.is(offered({ VIRTIO_NET_CSUM: '0' }) & (feature(NetFeature.Csum) | feature(NetFeature.GuestCsum) | feature(NetFeature.HostTso4)), 0n, 'no TSO without CSUM');
});
