import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setImmediate } from 'node:timers/promises';
import test from 'ava';
import { native } from '../../native/index.ts';
import { type Clock, realClock } from '../../src/fabric/clock.ts';
import { UnixDgramPort } from '../../src/fabric/wire/unix-dgram-port.ts';
import { until } from '../support/until.ts';

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'fabric-udgram-'));
}

/** A bound socket nobody reads until the test says so: a peer whose queue fills. */
function rawPeer(p: string) {
  const fd = native.unixDgram(p);
  const buf = Buffer.alloc(70_000);
  return {
    fd,
    /** Everything queued right now. */
    readAll(): Buffer[] {
      const out: Buffer[] = [];
      for (let n; (n = native.recv(fd, buf)) >= 0; ) out.push(Buffer.from(buf.subarray(0, n)));
      return out;
    },
    close() {
      native.close(fd);
      fs.rmSync(p, { force: true });
    },
  };
}

const frame = (i: number, size = 64) => {
  const b = Buffer.alloc(size, i & 0xff);
  b.writeUInt32BE(i, 0);
  return b;
};

test('two ports exchange frames both ways, intact and in order', async (t) => {
  const dir = tmpDir();
  const a = new UnixDgramPort({ path: path.join(dir, 'a.sock'), peer: path.join(dir, 'b.sock') });
  const b = new UnixDgramPort({ path: path.join(dir, 'b.sock'), peer: path.join(dir, 'a.sock') });
  const gotA: Buffer[] = [];
  const gotB: Buffer[] = [];
  a.attach((f) => gotA.push(f));
  b.attach((f) => gotB.push(f));
  const sizes = [60, 1514, 4200, 9000];
  const sent = Array.from({ length: 400 }, (_, i) => frame(i, sizes[i % sizes.length]));
  for (const f of sent) a.transmit(f);
  for (const f of sent.slice(0, 50)) b.transmit(f);
  await until(() => gotB.length === sent.length && gotA.length === 50, 'every frame both ways');
  t.deepEqual(gotB, sent);
  t.deepEqual(gotA, sent.slice(0, 50));
  t.like(a.counters, { txFrames: 400, rxFrames: 50, txNoPeer: 0, txQueueDrops: 0, txErrors: 0 });
  t.is(b.counters.rxBytes, sent.reduce((s, f) => s + f.length, 0));
  // One turn's frames leave in a few batched system calls, and arrive in a few.
  t.true(a.counters.txCalls <= 400 / 16, `${a.counters.txCalls} sendmmsg calls for 400 frames`);
  t.true(b.counters.rxCalls < 400 / 4, `${b.counters.rxCalls} recvmmsg calls for 400 frames`);
  a.close();
  b.close();
  t.false(fs.existsSync(path.join(dir, 'a.sock')), 'close removes the socket file');
});

test('a full peer queue defers frames in order, then tail-drops beyond the bound', async (t) => {
  const dir = tmpDir();
  const peer = rawPeer(path.join(dir, 'peer.sock'));
  const port = new UnixDgramPort({ path: path.join(dir, 'p.sock'), peer: path.join(dir, 'peer.sock'), txQueueFrames: 16 });
  const sent = Array.from({ length: 40 }, (_, i) => frame(i));
  for (const f of sent) port.transmit(f);
  t.is(port.txQueued, 16, 'one turn queues up to the bound');
  const dropped = port.counters.txQueueDrops;
  t.is(dropped, 24);
  await setImmediate();
  // This peer is not connected back, so its queue takes net.unix.max_dgram_qlen (10 here) and the rest waits.
  t.true(port.txQueued > 0 && port.counters.txDeferred > 0, 'back-pressure path exercised');
  const got: Buffer[] = [];
  await until(() => {
    got.push(...peer.readAll());
    return port.txQueued === 0 && got.length === sent.length - dropped;
  }, 'the queued frames to drain');
  // The frames sent at once and then the queued ones: a prefix of what was sent; the tail was dropped.
  t.deepEqual(got, sent.slice(0, sent.length - dropped));
  port.close();
  peer.close();
});

test('oversize datagrams are dropped and counted; a throwing consumer does not stop the port', async (t) => {
  const dir = tmpDir();
  const port = new UnixDgramPort({ path: path.join(dir, 'p.sock'), maxFrame: 100 });
  const got: Buffer[] = [];
  port.attach((f) => {
    if (f[0] === 0xee) throw new Error('consumer bug');
    got.push(Buffer.from(f));
  });
  const tx = native.unixDgram();
  native.sendTo(tx, Buffer.alloc(101, 1), port.path);
  native.sendTo(tx, Buffer.alloc(100, 0xee), port.path);
  native.sendTo(tx, Buffer.alloc(100, 2), port.path);
  native.sendTo(tx, Buffer.alloc(0), port.path);
  await until(() => port.counters.rxFrames === 3, 'three received frames');
  t.deepEqual(got, [Buffer.alloc(100, 2), Buffer.alloc(0)]);
  t.like(port.counters, { rxOversize: 1, ingressErrors: 1, rxBytes: 200 });
  t.regex(port.error ?? '', /consumer bug/);
  native.close(tx);
  port.close();
});

test('no peer, a missing peer and a peer that goes away are counted, never thrown; a returning peer is found again', async (t) => {
  const dir = tmpDir();
  // The reconnect back-off runs on the test's time.
  let now = 0;
  const clock: Clock = { ...realClock, now: () => now };
  const port = new UnixDgramPort({ path: path.join(dir, 'p.sock'), clock });
  port.transmit(frame(0));
  t.is(port.counters.txNoPeer, 1, 'no peer set');
  const peerPath = path.join(dir, 'peer.sock');
  port.setPeer(peerPath);
  port.transmit(frame(1));
  t.is(port.counters.txNoPeer, 2, 'peer socket does not exist yet');
  let peer = rawPeer(peerPath);
  port.transmit(frame(2));
  await setImmediate();
  t.deepEqual(peer.readAll(), [], 'within the reconnect back-off the port does not try again');
  t.is(port.counters.txNoPeer, 3);
  now += 150; // past the reconnect back-off
  port.transmit(frame(2));
  await setImmediate(); // sends go out at the end of the turn
  t.deepEqual(peer.readAll(), [frame(2)]);
  peer.close();
  port.transmit(frame(3));
  await setImmediate();
  t.is(port.counters.txErrors, 1, 'the peer went away');
  peer = rawPeer(peerPath);
  now += 150;
  port.transmit(frame(4));
  await setImmediate();
  t.deepEqual(peer.readAll(), [frame(4)]);
  port.close();
  peer.close();
});

test('a stale socket file is replaced; any other file at the path is refused', (t) => {
  const dir = tmpDir();
  const p = path.join(dir, 's.sock');
  native.close(native.unixDgram(p)); // leaves the socket file behind, as a crashed switch would
  const port = new UnixDgramPort({ path: p });
  port.close();
  fs.writeFileSync(p, 'not a socket');
  t.throws(() => new UnixDgramPort({ path: p }), { message: /not a socket/ });
  t.is(fs.readFileSync(p, 'utf8'), 'not a socket');
});

test('two ports connected to each other are not held to the 10-datagram receive queue', async (t) => {
  const dir = tmpDir();
  const a = new UnixDgramPort({ path: path.join(dir, 'a.sock'), peer: path.join(dir, 'b.sock') });
  const b = new UnixDgramPort({ path: path.join(dir, 'b.sock'), peer: path.join(dir, 'a.sock') });
  let got = 0;
  b.attach(() => got++);
  // 200 frames in one turn: far above net.unix.max_dgram_qlen, far below a 1 MiB send buffer.
  for (let i = 0; i < 200; i++) a.transmit(frame(i));
  await setImmediate();
  t.is(a.counters.txDeferred, 0);
  t.is(a.counters.txFrames, 200);
  await until(() => got === 200, '200 frames');
  a.close();
  b.close();
});

test('without a fixed peer the port answers the last sender, forgets it when it goes, and learns the next', async (t) => {
  const dir = tmpDir();
  const port = new UnixDgramPort({ path: path.join(dir, 'p.sock') });
  port.attach((f) => port.transmit(Buffer.concat([Buffer.from('re:'), f])));
  t.is(port.peer, null);
  const first = rawPeer(path.join(dir, 'first.sock'));
  native.sendTo(first.fd, Buffer.from('one'), port.path);
  const got: Buffer[] = [];
  await until(() => (got.push(...first.readAll()), got.length > 0), 'reply to the first sender');
  t.deepEqual(got, [Buffer.from('re:one')]);
  t.is(port.peer, path.join(dir, 'first.sock'));
  // Connected, the port hears only its peer: others are refused by the kernel.
  const second = rawPeer(path.join(dir, 'second.sock'));
  t.throws(() => native.sendTo(second.fd, Buffer.from('two'), port.path), { code: 'EPERM' } as never);
  // The first peer goes away without a word; the port notices on its own (about once a second).
  first.close();
  await until(() => port.peer === null, 'the port to forget its vanished peer');
  native.sendTo(second.fd, Buffer.from('two'), port.path);
  got.length = 0;
  await until(() => (got.push(...second.readAll()), got.length > 0), 'reply to the second sender');
  t.deepEqual(got, [Buffer.from('re:two')]);
  t.is(port.peer, path.join(dir, 'second.sock'));
  // A fixed peer wins over learning.
  port.setPeer(path.join(dir, 'nobody.sock'));
  t.is(port.peer, path.join(dir, 'nobody.sock'));
  port.close();
  second.close();
});
