import test from 'ava';
import { FrameType, encodeFrame } from '../../src/fabric/wire/frame.ts';
import { seqAdd, seqDiff } from '../../src/fabric/link/seq.ts';
import { ReplayBuffer } from '../../src/fabric/link/replay-buffer.ts';
import { VLAN, buildFabric, macA, macB, numbered } from './harness.ts';

test('sequence arithmetic wraps', (t) => {
  t.is(seqDiff(0, 0xffff), 1);
  t.is(seqDiff(0xffff, 0), -1);
  t.is(seqDiff(0x7fff, 0), 0x7fff);
  t.is(seqAdd(0xffff, 2), 1);
});

test('replay buffer releases exactly what a cumulative ACK covers', (t) => {
  const r = new ReplayBuffer(4);
  for (let i = 0; i < 4; i++) r.push(Buffer.from([i]));
  t.true(r.full);
  t.is(r.acknowledge(2), 2);
  t.is(r.oldest, 2);
  t.deepEqual(r.get(3), Buffer.from([3]));
  t.is(r.get(1), undefined);
  t.is(r.acknowledge(9), -1, 'an ACK beyond what was sent is refused');
  t.is(r.acknowledge(1), -1, 'an old ACK releases nothing');
});

test('clean link: in order, no replays, few standalone ACKs', (t) => {
  const f = buildFabric();
  const sent = numbered(3000);
  f.clock.advance(1);
  for (const p of sent) f.a.send(p);
  t.true(f.clock.runUntil(() => f.gotB.length === sent.length && f.a.unacknowledged === 0, 1000));
  t.deepEqual(f.gotB, sent);
  t.is(f.a.stats.txReplay, 0);
  t.is(f.b.stats.rxOutOfOrder + f.b.stats.rxDuplicate, 0);
  t.true(f.b.stats.txAck < sent.length / 20, `${f.b.stats.txAck} standalone ACKs`);
  f.close();
});

test('sequence numbers wrap past 65535 without a hiccup', (t) => {
  const f = buildFabric({ a: { replayCapacity: 2048 }, b: { rxSlots: 1024 } });
  const sent = numbered(70_000, 4);
  f.clock.advance(1);
  for (const p of sent) f.a.send(p);
  t.true(f.clock.runUntil(() => f.gotB.length === sent.length, 10_000));
  t.deepEqual(f.gotB, sent);
  t.is(f.a.stats.txReplay, 0);
  f.close();
});

test('request/response load piggybacks ACKs: standalone ACKs ≤ 5 % of frames', (t) => {
  let f = null as unknown as ReturnType<typeof buildFabric>;
  f = buildFabric({ onDeliverB: (p) => f.b.send(p) }); // B answers each TLP at once
  const sent = numbered(2000);
  f.clock.advance(1);
  for (let i = 0; i < sent.length; i++) f.clock.setTimer(i * 0.01, () => f.a.send(sent[i]!));
  t.true(f.clock.runUntil(() => f.gotA.length === sent.length && f.a.unacknowledged === 0 && f.b.unacknowledged === 0, 1000));
  t.deepEqual(f.gotA, sent);
  const frames = (c: typeof f.a) => c.stats.txTlp + c.stats.txAck + c.stats.txNak + c.stats.txHeartbeat;
  const acks = f.a.stats.txAck + f.b.stats.txAck;
  t.true(acks <= 0.05 * (frames(f.a) + frames(f.b)), `${acks} standalone ACKs of ${frames(f.a) + frames(f.b)} frames`);
  f.close();
});

test('a slow receiver throttles the sender: nothing dropped, nothing replayed', (t) => {
  const f = buildFabric({ b: { rxSlots: 16, manualRelease: true } });
  const sent = numbered(200);
  f.clock.advance(1);
  let maxQueued = 0;
  for (const p of sent) f.a.send(p);
  maxQueued = f.a.queued;
  // The application drains one TLP every 0.5 ms, far slower than the link.
  let released = 0;
  const drain = () => {
    if (released < f.gotB.length) {
      f.b.release(1);
      released++;
    }
    if (released < sent.length) f.clock.setTimer(0.5, drain);
  };
  drain();
  t.true(f.clock.runUntil(() => released === sent.length && f.a.queued === 0, 1000));
  t.true(maxQueued >= sent.length - 16, 'the sender held back what the receiver had no room for');
  t.deepEqual(f.gotB, sent);
  t.is(f.b.stats.rxOutsideWindow, 0);
  t.is(f.a.stats.txReplay, 0);
  t.true(f.gotB.length - released <= 16);
  f.close();
});

test('loss is repaired by NAK and replay', (t) => {
  const f = buildFabric({ seed: 42 });
  f.portsA[0]!.set({ loss: 0.2 }, 'toSwitch');
  const sent = numbered(500);
  f.clock.advance(1);
  for (const p of sent) f.a.send(p);
  t.true(f.clock.runUntil(() => f.gotB.length === sent.length, 5000));
  t.deepEqual(f.gotB, sent);
  t.true(f.a.stats.txReplay > 0);
  t.true(f.b.stats.txNak > 0);
  t.true(f.a.stats.rxNak > 0);
  f.close();
});

test('a late ACK costs a one-frame probe per replay timeout, not a window of duplicates', (t) => {
  const f = buildFabric();
  // ACKs take 3 ms back while the replay timeout starts at 1 ms: the early timeouts are all spurious.
  f.portsB[0]!.set({ latency: 3 }, 'toSwitch');
  const sent = numbered(200);
  f.clock.advance(1);
  for (const p of sent) f.a.send(p);
  t.true(f.clock.runUntil(() => f.gotB.length === sent.length && f.a.unacknowledged === 0, 1000));
  t.deepEqual(f.gotB, sent);
  t.true(f.a.stats.replayTimeouts > 0, 'the timer fired');
  t.is(f.a.stats.txReplay, f.a.stats.replayTimeouts, 'each timeout resent one TLP');
  t.is(f.b.stats.rxDuplicate, f.a.stats.txReplay);
  f.close();
});

test('a lost tail is found by the timeout probe and only the lost TLPs are resent', (t) => {
  // Heartbeats, which carry the next sequence number and so reveal a lost tail too, come only later.
  const slow = { heartbeatInterval: 50 };
  const f = buildFabric({ a: slow, b: slow });
  const sent = numbered(100);
  f.clock.advance(1);
  for (const p of sent.slice(0, 90)) f.a.send(p);
  t.true(f.clock.runUntil(() => f.a.unacknowledged === 0, 100));
  // The last 10 TLPs vanish and nothing follows them that would reveal the gap to the receiver.
  f.portsA[0]!.set({ loss: 1 }, 'toSwitch');
  for (const p of sent.slice(90)) f.a.send(p);
  f.clock.advance(0.01);
  f.portsA[0]!.set({ loss: 0 }, 'toSwitch');
  t.true(f.clock.runUntil(() => f.gotB.length === sent.length && f.a.unacknowledged === 0, 1000));
  t.deepEqual(f.gotB, sent);
  t.is(f.a.stats.replayTimeouts, 1);
  t.is(f.a.stats.txReplay, 10, 'the probe, then the 9 TLPs its answer showed missing');
  t.is(f.b.stats.rxDuplicate, 0);
  f.close();
});

test('two links with skew: a late frame on the slower link is not NAKed, a lost one is NAKed once both links pass it', (t) => {
  const lazy = { nakDelay: 50, replayTimeout: 20 }; // neither the fallback nor the timer may be what repairs it
  const f = buildFabric({ links: 2, a: lazy, b: lazy });
  f.portsA[1]!.set({ latency: 3 }, 'toSwitch');
  const sent = numbered(200);
  f.clock.advance(1);
  sent.forEach((p, i) => f.clock.setTimer(i * 0.01, () => f.a.send(p)));
  t.true(f.clock.runUntil(() => f.gotB.length === sent.length && f.a.unacknowledged === 0, 1000));
  t.deepEqual(f.gotB, sent);
  t.true(f.b.stats.rxOutOfOrder > 0, 'the skew reordered frames');
  t.is(f.b.stats.txNak, 0);
  t.is(f.a.stats.txReplay, 0);

  f.portsA[0]!.set({ loss: 1 }, 'toSwitch');
  const more = numbered(50);
  const start = f.clock.now();
  f.a.send(more[0]!); // link 0 (round robin): lost
  f.clock.advance(0.01);
  f.portsA[0]!.set({ loss: 0 }, 'toSwitch');
  more.slice(1).forEach((p, i) => f.clock.setTimer(i * 0.01, () => f.a.send(p)));
  t.true(f.clock.runUntil(() => f.gotB.length === sent.length + more.length, 1000));
  t.deepEqual(f.gotB.slice(sent.length), more);
  t.is(f.b.stats.txNak, 1);
  t.is(f.a.stats.replayTimeouts, 0);
  t.true(f.clock.now() - start < 10, 'repaired within the skew, long before nakDelay or the replay timer');
  f.close();
});

test('a dead link is detected, traffic fails over, and the link comes back', (t) => {
  const events: string[] = [];
  const f = buildFabric({ links: 2, a: { onLinkState: (i, up) => events.push(`a${i}${up ? '+' : '-'}`) } });
  const sent = numbered(400);
  f.clock.advance(1);
  sent.forEach((p, i) => f.clock.setTimer(i * 0.05, () => f.a.send(p)));
  f.clock.setTimer(5, () => f.portsA[0]!.set({ down: true }));
  t.true(f.clock.runUntil(() => f.gotB.length === sent.length, 5000));
  t.deepEqual(f.gotB, sent);
  t.deepEqual(f.a.linkStates, [false, true]);
  t.deepEqual(events, ['a0-']);
  f.portsA[0]!.set({ down: false });
  f.clock.advance(20);
  t.deepEqual(f.a.linkStates, [true, true]);
  t.deepEqual(events, ['a0-', 'a0+']);
  f.close();
});

test('losing every link reports the peer dead', (t) => {
  const peer: boolean[] = [];
  const f = buildFabric({ links: 2, a: { onPeerState: (alive) => peer.push(alive) } });
  f.clock.advance(5);
  for (const p of f.portsB) p.set({ down: true });
  f.clock.advance(30);
  t.false(f.a.isPeerAlive);
  for (const p of f.portsB) p.set({ down: false });
  f.clock.advance(10);
  t.true(f.a.isPeerAlive);
  t.deepEqual(peer, [false, true]);
  f.close();
});

test('a silence shorter than peerDeadInterval takes the links down but leaves the peer reachable; what was sent meanwhile arrives', (t) => {
  const peer: boolean[] = [];
  const f = buildFabric({ links: 2, a: { onPeerState: (alive) => peer.push(alive), peerDeadInterval: 60 } });
  f.clock.advance(5);
  for (const p of f.portsB) p.set({ down: true });
  f.clock.advance(30);
  t.deepEqual(f.a.linkStates, [false, false], 'each link is dead past deadInterval');
  t.true(f.a.isPeerAlive, 'the peer is not gone before peerDeadInterval');
  const sent = numbered(20);
  for (const p of sent) f.a.send(p);
  for (const p of f.portsB) p.set({ down: false });
  t.true(f.clock.runUntil(() => f.gotB.length === sent.length && f.a.unacknowledged === 0, 1000));
  t.deepEqual(f.gotB, sent);
  f.clock.advance(10); // a heartbeat on each link
  t.deepEqual(f.a.linkStates, [true, true]);
  t.deepEqual(peer, [], 'the peer never looked gone');
  // A longer silence does take the peer, once, and its return brings it back.
  for (const p of f.portsB) p.set({ down: true });
  f.clock.advance(40);
  t.deepEqual(peer, []);
  f.clock.advance(40);
  t.deepEqual(peer, [false]);
  for (const p of f.portsB) p.set({ down: false });
  f.clock.advance(10);
  t.deepEqual(peer, [false, true]);
  f.close();
});

test('bad, foreign and out-of-window frames are counted and dropped', (t) => {
  const f = buildFabric();
  f.clock.advance(1);
  const base = { dst: macB(0), src: macA(0), vlan: VLAN, type: FrameType.Tlp, flags: 0, channel: 7, seq: 0, ack: 0, credits: 0, epoch: f.a.epoch, peerEpoch: f.b.epoch };
  f.b.receive(0, Buffer.from('garbage'));
  const corrupt = encodeFrame(base, Buffer.from('tlp'));
  corrupt[corrupt.length - 30]! ^= 1; // inside the payload
  f.b.receive(0, corrupt);
  f.b.receive(0, encodeFrame({ ...base, channel: 8 }, Buffer.from('x')));
  f.b.receive(0, encodeFrame({ ...base, src: 0x02_00_00_00_0c_00 }, Buffer.from('x')));
  f.b.receive(0, encodeFrame({ ...base, vlan: { ...VLAN, vid: 101 } }, Buffer.from('x')));
  f.b.receive(0, encodeFrame({ ...base, seq: 5000 }, Buffer.from('x')));
  t.is(f.b.stats.rxBadFrame.truncated + f.b.stats.rxBadFrame['bad-ethertype'], 1);
  t.is(f.b.stats.rxBadFrame['bad-crc'], 1);
  t.is(f.b.stats.rxWrongChannel, 1);
  t.is(f.b.stats.rxWrongBinding, 2);
  t.is(f.b.stats.rxOutsideWindow, 1);
  t.is(f.gotB.length, 0);
  f.close();
});
