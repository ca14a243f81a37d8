// Fuzzing PCIeOE frames into a live Channel.receive (on simulated time): frames near and far from
// valid — every frame type and flag, sequence numbers, ACKs and credits around the channel's own,
// right, wrong, zero and stale epochs, random payloads and real TLPs — sent as the channel's peer
// from its own MAC (as port security lets only that peer do), some of them then bit-flipped,
// cut short or replaced by random bytes. Every frame is taken without an exception; what the
// channel sends back stays within a small bound per frame (no storm); what it delivers is only
// what a frame carried; and the node's other channel, with an honest peer streaming through the
// whole run, delivers its stream exactly once, in order. At the end an honest peer restarted on
// the fuzzed channel is heard and served again.
import test from 'ava';
import fc from 'fast-check';
import { Channel, type ChannelStats } from '../../src/fabric/link/channel.ts';
import { FabricNode } from '../../src/fabric/link/node.ts';
import { SimClock } from '../../src/fabric/sim-clock.ts';
import { encodeFrame } from '../../src/fabric/wire/frame.ts';
import type { Station } from '../../src/fabric/wire/port.ts';
import { encodeTlp } from '../../src/fabric/tlp/tlp.ts';
import { anyTlp } from '../fabric/arbitraries.ts';
import { numbered } from '../fabric/harness.ts';
import { fuzzParams } from '../support/fuzz.ts';

const MAC_N = 0x02_00_00_00_0d_00;
const MAC_P = 0x02_00_00_00_01_00;
const MAC_Q = 0x02_00_00_00_02_00;
const TUNING = { replayTimeout: 1, ackDelay: 0.05, nakDelay: 0.05, heartbeatInterval: 2 };

type EpochChoice = 'right' | 'zero' | 'random' | 'stale';

interface FuzzFrame {
  type: number;
  flags: number;
  seqDelta: number;
  ackDelta: number;
  creditsDelta: number;
  epoch: EpochChoice;
  peerEpoch: EpochChoice;
  randomEpoch: number;
  payload: Uint8Array;
  damage: { kind: 'none' } | { kind: 'flip'; bit: number } | { kind: 'cut'; at: number } | { kind: 'bytes'; bytes: Uint8Array };
}

const delta = fc.oneof({ weight: 4, arbitrary: fc.integer({ min: -4, max: 4 }) }, { weight: 1, arbitrary: fc.integer({ min: -0x8000, max: 0x7fff }) });
const fuzzFrame: fc.Arbitrary<FuzzFrame> = fc.record({
  type: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max: 5 }) }, { weight: 1, arbitrary: fc.integer({ min: 6, max: 15 }) }),
  flags: fc.oneof(fc.constantFrom(0, 1, 2, 3, 4, 5, 7), fc.integer({ min: 0, max: 255 })),
  seqDelta: delta,
  ackDelta: delta,
  creditsDelta: fc.oneof(fc.constant(1024), delta),
  epoch: fc.constantFrom<EpochChoice>('right', 'right', 'right', 'zero', 'random', 'stale'),
  peerEpoch: fc.constantFrom<EpochChoice>('right', 'right', 'right', 'zero', 'random', 'stale'),
  randomEpoch: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  payload: fc.oneof(anyTlp(8).map((tlp) => Uint8Array.from(encodeTlp(tlp))), fc.uint8Array({ maxLength: 80 })),
  damage: fc.oneof(
    { weight: 6, arbitrary: fc.constant({ kind: 'none' as const }) },
    { weight: 1, arbitrary: fc.nat().map((bit) => ({ kind: 'flip' as const, bit })) },
    { weight: 1, arbitrary: fc.nat().map((at) => ({ kind: 'cut' as const, at })) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 100 }).map((bytes) => ({ kind: 'bytes' as const, bytes })) },
  ),
});

/** Frames the channel sent, all kinds. */
const sent = (s: ChannelStats) => s.txTlp + s.txReplay + s.txAck + s.txNak + s.txHeartbeat + s.txControl;

test('fuzz: PCIeOE frames into a live Channel.receive: no exception, bounded answers, nothing invented, the other channel exact', (t) => {
  const clock = new SimClock();
  const peers = new Map<number, (f: Buffer) => void>();
  const station: Station = { onFrame: null, send: (frame) => clock.setTimer(0.05, () => peers.get(frame.readUIntBE(0, 6))?.(frame)) };
  const node = new FabricNode([{ station, mac: MAC_N }], clock, null, TUNING);
  const gotN1: Buffer[] = [];
  const gotN2: Buffer[] = [];
  const n1 = node.addChannel(1, [MAC_P], (x) => gotN1.push(Buffer.from(x)));
  const n2 = node.addChannel(2, [MAC_Q], (x) => gotN2.push(Buffer.from(x)), { maxBadFramesPerSecond: 200, cutOffMs: 20 });
  const toN = (frame: Buffer) => clock.setTimer(0.05, () => station.onFrame!(frame));
  const p = new Channel({ ...TUNING, channel: 1, clock, links: [{ localMac: MAC_P, peerMac: MAC_N, vlan: null }], send: (_l, f) => toN(f), deliver: () => {} });
  peers.set(MAC_P, (f) => p.receive(0, f));
  peers.set(MAC_Q, () => {}); // the fuzzer plays Q and ignores what N says back
  clock.advance(1);

  /** The honest stream on channel 1: TLP i is i in its first 4 bytes. */
  const item = (i: number) => {
    const b = Buffer.alloc(16, i & 0xff);
    b.writeUInt32BE(i, 0);
    return b;
  };
  let streamed = 0;
  let payloads = new Set<string>();
  const staleEpoch = 0x5eed_0001;
  let qEpoch = 0x0b0b_0b0b;
  let cases = 0;
  let checked = 0;
  fc.assert(
    fc.property(fc.array(fuzzFrame, { minLength: 1, maxLength: 6 }), (frames) => {
      cases++;
      p.send(item(streamed++));
      const before = sent(n2.stats);
      const ticks = clock.now();
      for (const f of frames) {
        const choose = (c: EpochChoice, right: number) => ({ right, zero: 0, random: f.randomEpoch, stale: staleEpoch })[c];
        if (f.epoch === 'random' && f.randomEpoch !== 0) qEpoch = f.randomEpoch; // a "restart": later frames keep it
        let frame: Buffer = encodeFrame({
          dst: MAC_N, src: MAC_Q, vlan: null, type: f.type, flags: f.flags, channel: 2,
          seq: (f.seqDelta + 0x10000) & 0xffff, ack: (f.ackDelta + 0x10000) & 0xffff, credits: (f.creditsDelta + 0x10000) & 0xffff,
          epoch: choose(f.epoch, qEpoch), peerEpoch: choose(f.peerEpoch, n2.epoch),
        }, f.payload);
        if (f.damage.kind === 'flip') frame[(f.damage.bit >> 3) % frame.length]! ^= 1 << (f.damage.bit & 7);
        if (f.damage.kind === 'cut') frame = frame.subarray(0, f.damage.at % frame.length);
        if (f.damage.kind === 'bytes') frame = Buffer.concat([frame.subarray(0, 12), f.damage.bytes]);
        payloads.add(Buffer.from(f.payload).toString('hex'));
        n2.receive(0, frame);
      }
      clock.advance(0.5);
      // Answers: at most a few frames per frame received, plus heartbeats and timers for the time that passed.
      const answered = sent(n2.stats) - before;
      const elapsed = clock.now() - ticks;
      if (answered > 3 * frames.length + 4 + elapsed) throw new Error(`${answered} frames sent back for ${frames.length}`);
      for (const d of gotN2.splice(0)) if (!payloads.has(d.toString('hex'))) throw new Error('delivered a payload no frame carried');
      if (payloads.size > 10_000) payloads = new Set();
      // The honest channel: a prefix of the stream, in order.
      while (checked < gotN1.length) if (!gotN1[checked]!.equals(item(checked++))) throw new Error('channel 1 broke order or invented TLPs');
      if (gotN1.length > streamed) throw new Error('channel 1 delivered more than was sent');
    }),
    fuzzParams(t, 2000),
  );
  t.true(clock.runUntil(() => gotN1.length === streamed, clock.now() + 1000), `${gotN1.length} of ${streamed} delivered on channel 1`);
  t.true(gotN1.every((x, i) => x.equals(item(i))), 'channel 1: every TLP exactly once, in order');
  t.is(n1.stats.peerRestarts + n1.stats.cutOffs, 0, 'channel 1 was never reset');
  t.log(`${cases} cases; channel 2: ${n2.stats.peerRestarts} peer restarts, ${n2.stats.cutOffs} cut-offs, ${n2.stats.rxStaleEpoch} stale, ${n2.stats.rxAckBeyondSent} ACKs beyond sent, ${n2.stats.rxOutsideWindow} outside the window`);

  // An honest Q (a new incarnation) is served on channel 2 afterwards.
  clock.advance(50); // past any cut-off
  const gotQ: Buffer[] = [];
  const q = new Channel({ ...TUNING, channel: 2, clock, links: [{ localMac: MAC_Q, peerMac: MAC_N, vlan: null }], send: (_l, f) => toN(f), deliver: (x) => gotQ.push(Buffer.from(x)) });
  peers.set(MAC_Q, (f) => q.receive(0, f));
  const hello = numbered(50);
  for (const x of hello) q.send(x);
  t.true(clock.runUntil(() => gotN2.length === hello.length, clock.now() + 1000), `${gotN2.length} of ${hello.length} from the honest Q`);
  t.deepEqual(gotN2, hello);
  node.close();
  p.close();
  q.close();
});
