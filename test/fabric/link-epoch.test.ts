// Link epochs and bounded misbehaviour, on simulated time: a restarted peer makes the channel start
// over (nothing delivered twice, nothing of the old stream reaches the new peer, traffic resumes);
// frames of an earlier incarnation are dropped; an ACK beyond what was sent is ignored; probes are
// answered at a bounded rate and never ping-pong; a peer sending too many bad frames is cut off
// while another channel of the same node runs on.
import test from 'ava';
import { Channel, type ChannelOptions, type ResetReason } from '../../src/fabric/link/channel.ts';
import { FabricNode } from '../../src/fabric/link/node.ts';
import { SimClock } from '../../src/fabric/sim-clock.ts';
import { type Frame, FrameFlags, FrameType, decodeFrame, encodeFrame } from '../../src/fabric/wire/frame.ts';
import type { Station } from '../../src/fabric/wire/port.ts';
import { numbered } from './harness.ts';

const MAC_A = 0x02_00_00_00_0a_00;
const MAC_B = 0x02_00_00_00_0b_00;
const TUNING = { replayTimeout: 1, ackDelay: 0.05, nakDelay: 0.05, heartbeatInterval: 2 } satisfies Partial<ChannelOptions>;

/**
 * A and B joined by a wire with `latency` ms each way. B can be killed (frames to it vanish) and
 * started again: a new Channel, so a new epoch, on the same addresses; frames in flight reach
 * whichever B is there when they arrive, as on a socket.
 */
function pair(opts: { latency?: number; a?: Partial<ChannelOptions>; b?: Partial<ChannelOptions> } = {}) {
  const clock = new SimClock();
  const latency = opts.latency ?? 0.2;
  const gotA: Buffer[] = [];
  const gotB: Buffer[][] = [];
  const resetsA: ResetReason[] = [];
  const toA: Frame[] = [];
  const toB: Frame[] = [];
  let b: Channel | null = null;
  const hooks = { onResetA: null as null | (() => void) };
  const a = new Channel({
    ...TUNING, ...opts.a, channel: 1, clock,
    links: [{ localMac: MAC_A, peerMac: MAC_B, vlan: null }],
    send: (_l, frame) => {
      toB.push(decoded(frame));
      clock.setTimer(latency, () => b?.receive(0, frame));
    },
    deliver: (p) => gotA.push(Buffer.from(p)),
    onReset: (r) => {
      resetsA.push(r);
      hooks.onResetA?.();
    },
  });
  const startB = () => {
    const got: Buffer[] = [];
    gotB.push(got);
    b = new Channel({
      ...TUNING, ...opts.b, channel: 1, clock,
      links: [{ localMac: MAC_B, peerMac: MAC_A, vlan: null }],
      send: (_l, frame) => {
        toA.push(decoded(frame));
        clock.setTimer(latency, () => a.receive(0, frame));
      },
      deliver: (p) => got.push(Buffer.from(p)),
    });
    return b;
  };
  const killB = () => {
    b?.close();
    b = null;
  };
  startB();
  return { clock, a, get b() { return b!; }, startB, killB, gotA, gotB, resetsA, toA, toB, hooks };
}

function decoded(frame: Uint8Array): Frame {
  const r = decodeFrame(frame);
  if (!r.ok) throw new Error(r.error);
  return { ...r.value, payload: Uint8Array.from(r.value.payload) };
}

/** A frame from `from` to its peer on channel 1, with `from`'s epochs unless overridden. */
function frameFrom(from: Channel, fromMac: number, toMac: number, fields: Partial<Frame>, payload = new Uint8Array(0)): Buffer {
  return encodeFrame({
    dst: toMac, src: fromMac, vlan: null, type: FrameType.Ack, flags: 0, channel: 1, seq: 0, ack: 0, credits: 0,
    epoch: from.epoch, peerEpoch: from.peerEpochHeard, ...fields,
  }, payload);
}

test('a restarted peer: the channel starts over, the old stream never reaches the new peer, traffic resumes', (t) => {
  const p = pair();
  const old = numbered(1000);
  const fresh = numbered(300).map((b) => Buffer.concat([Buffer.from('new:'), b]));
  p.clock.advance(1);
  const b1Epoch = p.b.epoch;
  // A streams; B dies with some delivered, some in flight, some still queued at A for want of credit.
  old.forEach((x, i) => p.clock.setTimer(i * 0.01, () => p.a.send(x)));
  p.clock.advance(4);
  const deliveredBefore = p.gotB[0]!.length;
  t.true(deliveredBefore > 100 && deliveredBefore < old.length, `${deliveredBefore} delivered before the kill`);
  p.killB();
  p.clock.advance(7); // A keeps sending into the void; its replay timer probes
  t.true(p.a.unacknowledged + p.a.queued > 0, 'A has TLPs nobody acknowledged');
  t.is(p.a.stats.peerRestarts, 0);

  let resetAt = -1;
  const b2 = p.startB();
  t.not(b2.epoch, b1Epoch);
  // The application answers a reset as the HI does: it starts again with fresh requests.
  p.hooks.onResetA = () => {
    resetAt = p.clock.now();
    t.is(p.a.unacknowledged, 0, 'nothing of the old stream is kept for resending');
    t.is(p.a.queued, 0, 'nor queued');
    fresh.forEach((x) => p.a.send(x));
  };
  b2.send(Buffer.from('hello from the new B'));
  t.true(p.clock.runUntil(() => p.gotB[1]!.length === fresh.length && p.a.unacknowledged === 0, p.clock.now() + 2000), `${p.gotB[1]!.length} delivered to the new B`);
  t.deepEqual(p.resetsA, ['peer-restarted']);
  t.is(p.a.stats.peerRestarts, 1);
  t.is(b2.stats.peerRestarts, 0, 'the new B met A for the first time');
  t.deepEqual(p.gotB[1], fresh, 'the new B got exactly what was sent after the reset, in order, once');
  t.deepEqual(p.gotB[0], old.slice(0, p.gotB[0]!.length), 'the old B got a prefix of the old stream, in order');
  t.deepEqual(p.gotA.map(String), ['hello from the new B']);
  t.true(resetAt > 0);
  p.a.close();
  b2.close();
});

test('frames of an earlier incarnation are dropped, in both directions, without a second reset', (t) => {
  const p = pair();
  p.clock.advance(1);
  p.a.send(Buffer.from('to B1'));
  p.b.send(Buffer.from('to A from B1'));
  p.clock.advance(2);
  const fromB1 = p.toA.at(-1)!;
  const toB1 = p.toB.at(-1)!;
  p.killB();
  const b2 = p.startB();
  p.clock.advance(2);
  t.is(p.a.stats.peerRestarts, 1);
  const stale = p.a.stats.rxStaleEpoch;
  p.a.receive(0, encodeFrame({ ...fromB1, type: FrameType.Tlp, seq: 0, ack: 0 }, Buffer.from('old B, seq 0')));
  t.is(p.a.stats.rxStaleEpoch, stale + 1);
  t.is(p.a.stats.peerRestarts, 1, 'an old epoch does not count as a restart');
  t.is(p.gotA.length, 1, 'and its TLP is not delivered');
  const b2Stale = b2.stats.rxStaleEpoch;
  b2.receive(0, encodeFrame({ ...toB1, type: FrameType.Tlp, seq: 0, ack: 0 }, Buffer.from('for B1, seq 0')));
  t.is(b2.stats.rxStaleEpoch, b2Stale + 1, 'a frame for the old B is not for the new one');
  t.deepEqual(p.gotB[1], []);
  p.a.send(Buffer.from('to B2'));
  t.true(p.clock.runUntil(() => p.gotB[1]!.length === 1, p.clock.now() + 100));
  t.deepEqual(p.gotB[1]!.map(String), ['to B2']);
  p.a.close();
  b2.close();
});

test('an ACK or NAK beyond what was sent is ignored and counted; a peer that never takes a probe gets no resend storm', (t) => {
  const p = pair();
  p.clock.advance(1);
  p.killB(); // from here on, B's side is played by hand
  for (const x of numbered(10)) p.a.send(x);
  p.clock.advance(0.001);
  const forgedB = { epoch: p.a.peerEpochHeard, peerEpoch: p.a.epoch };
  const inject = (fields: Partial<Frame>) =>
    p.a.receive(0, encodeFrame({ dst: MAC_A, src: MAC_B, vlan: null, type: FrameType.Ack, flags: 0, channel: 1, seq: 0, ack: 0, credits: 2048, ...forgedB, ...fields }));
  inject({ ack: 500 });
  t.is(p.a.stats.rxAckBeyondSent, 1);
  t.is(p.a.unacknowledged, 10, 'nothing was released');
  inject({ type: FrameType.Nak, ack: 700 });
  t.is(p.a.stats.rxNakBeyondSent, 1);
  // The hostile B answers every probe at once, as a ProbeAnswer that takes nothing.
  const replaysBefore = p.a.stats.txReplay;
  let answered = 0;
  const answer = () => {
    for (const f of p.toB.splice(0)) {
      if (f.type === FrameType.Tlp && f.flags & FrameFlags.Replay && f.flags & FrameFlags.AckNow) {
        answered++;
        p.clock.setTimer(0.01, () => inject({ flags: FrameFlags.ProbeAnswer, ack: 0 }));
      }
    }
    p.clock.setTimer(0.01, answer);
  };
  answer();
  p.clock.advance(1000);
  const replays = p.a.stats.txReplay - replaysBefore;
  // The replay timer backs off to 8 × its 1-10 ms: a few hundred resends a second at most, not one per 20 µs round trip.
  t.true(replays < 400, `${replays} resends in one second (${answered} probe answers)`);
  t.true(replays > 10, 'the timer keeps probing');
  p.a.close();
});

test('probes are answered at a bounded rate', (t) => {
  const p = pair();
  p.clock.advance(1);
  p.a.send(Buffer.from('x'));
  p.clock.advance(1);
  const acks = p.b.stats.txAck;
  // A flood of replayed, AckNow-flagged copies of a delivered TLP: each one asks for an answer at once.
  const probe = frameFrom(p.a, MAC_A, MAC_B, { type: FrameType.Tlp, flags: FrameFlags.Replay | FrameFlags.AckNow, seq: 0, ack: 0, credits: 1024 }, Buffer.from('x'));
  for (let i = 0; i < 10_000; i++) p.clock.setTimer(i * 0.001, () => p.b.receive(0, probe));
  p.clock.advance(10);
  const answers = p.b.stats.txAck - acks;
  // 64 at once, 4 per ms, plus the ACK owed for the duplicates (one per ackDelay at most).
  t.true(answers <= 64 + 4 * 10 + 10 / TUNING.ackDelay + 2, `${answers} answers to 10 000 probes in 10 ms`);
  t.true(p.b.stats.probeAnswersWithheld > 9000);
  t.is(p.gotB[0]!.length, 1, 'delivered once');
  p.a.close();
  p.b.close();
});

test('a peer sending too many bad frames is cut off and the channel starts over; another channel of the node runs on', (t) => {
  const clock = new SimClock();
  // Node N (two channels on one link) and two peers on one wire: an honest P (channel 1) and a bad Q (channel 2).
  const MAC_N = 0x02_00_00_00_0d_00;
  const MAC_P = 0x02_00_00_00_01_00;
  const MAC_Q = 0x02_00_00_00_02_00;
  const peers = new Map<number, (f: Buffer) => void>();
  const station: Station = {
    onFrame: null,
    send: (frame) => clock.setTimer(0.1, () => peers.get(decoded(frame).dst)?.(frame)),
  };
  const node = new FabricNode([{ station, mac: MAC_N }], clock, null, TUNING);
  const gotN1: Buffer[] = [];
  const resets: ResetReason[] = [];
  const n1 = node.addChannel(1, [MAC_P], (x) => gotN1.push(Buffer.from(x)));
  const n2 = node.addChannel(2, [MAC_Q], () => {}, { maxBadFramesPerSecond: 50, cutOffMs: 200, onReset: (r) => resets.push(r) });
  const toN = (frame: Buffer) => clock.setTimer(0.1, () => station.onFrame!(frame));
  const gotP: Buffer[] = [];
  const p = new Channel({ ...TUNING, channel: 1, clock, links: [{ localMac: MAC_P, peerMac: MAC_N, vlan: null }], send: (_l, f) => toN(f), deliver: (x) => gotP.push(Buffer.from(x)) });
  const gotQ: Buffer[] = [];
  const q = new Channel({ ...TUNING, channel: 2, clock, links: [{ localMac: MAC_Q, peerMac: MAC_N, vlan: null }], send: (_l, f) => toN(f), deliver: (x) => gotQ.push(Buffer.from(x)) });
  peers.set(MAC_P, (f) => p.receive(0, f));
  peers.set(MAC_Q, (f) => q.receive(0, f));
  clock.advance(1);
  const epochBefore = n2.epoch;

  // P streams to N the whole time; Q sends TLPs far outside the window N granted it, 100 a second's worth in 10 ms.
  const stream = numbered(2000);
  stream.forEach((x, i) => clock.setTimer(i * 0.1, () => p.send(x)));
  const junk = frameFrom(q, MAC_Q, MAC_N, { channel: 2, type: FrameType.Tlp, seq: 20_000, credits: 1024 }, Buffer.from('junk'));
  for (let i = 0; i < 100; i++) clock.setTimer(5 + i * 0.1, () => toN(junk));
  clock.advance(20);
  t.is(n2.stats.cutOffs, 1);
  t.deepEqual(resets, ['peer-cut-off']);
  t.not(n2.epoch, epochBefore, 'N started over under a new epoch');
  t.true(n2.stats.rxWhileCutOff > 0, 'and ignores Q for a while');
  t.is(q.stats.peerRestarts, 1, 'Q saw the new epoch and started over too');

  // After the cut-off, an honest Q is heard again; P was never disturbed.
  clock.advance(300);
  q.send(Buffer.from('Q again'));
  t.true(clock.runUntil(() => gotN1.length === stream.length, clock.now() + 1000));
  t.deepEqual(gotN1, stream, 'channel 1 delivered everything, in order, once');
  t.is(n1.stats.cutOffs + n1.stats.peerRestarts, 0);
  t.true(clock.runUntil(() => n2.stats.rxDelivered === 1, clock.now() + 100), 'Q is heard again after the cut-off');
  node.close();
  p.close();
  q.close();
});
