import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import test from 'ava';
import { native } from '../../native/index.ts';
import { MemifPort } from '../../src/fabric/wire/memif/port.ts';
import { stationOf } from '../../src/fabric/link/node.ts';
import { MemifRing } from '../../src/fabric/wire/memif/ring.ts';
import { MEMIF_MESSAGE_BYTES, type MemifMessage, decodeMemifMessage, encodeMemifMessage } from '../../src/fabric/wire/memif/messages.ts';
import { until } from '../support/until.ts';
import { FrameType, type OutgoingFrame, decodeFrame, encodeFrame } from '../../src/fabric/wire/frame.ts';

function socketPath(): string {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'fabric-memif-')), 'port.memif');
}

const frame = (i: number, size: number) => {
  const b = Buffer.alloc(size);
  for (let k = 0; k < size; k++) b[k] = (i * 7 + k) & 0xff;
  b.writeUInt32BE(i, 0);
  return b;
};

function pair(t: { teardown(fn: () => void): void }, client: Partial<ConstructorParameters<typeof MemifPort>[0]> = {}) {
  const socket = socketPath();
  const server = new MemifPort({ socket, role: 'server' });
  const station = new MemifPort({ socket, role: 'client', ...client });
  t.teardown(() => {
    station.close();
    server.close();
  });
  const got = { server: [] as Buffer[], station: [] as Buffer[] };
  server.attach((f) => got.server.push(Buffer.from(f)));
  station.attach((f) => got.station.push(Buffer.from(f)));
  return { socket, server, station, got };
}

/** A raw control connection: what a misbehaving peer sends, and what it hears back. */
function rawClient(socket: string) {
  const fd = native.unixConnect(socket, 'seqpacket');
  const buf = Buffer.alloc(256);
  return {
    fd,
    send(bytes: Buffer, fds?: number[]) {
      native.sendmsg(fd, bytes, fds);
    },
    /** Next message, null when none is queued; 'closed' once the server has hung up. */
    recv(): ReturnType<typeof decodeMemifMessage> | null | 'closed' {
      const fds: number[] = [];
      const n = native.recvmsg(fd, buf, fds);
      for (const f of fds) native.close(f);
      if (n < 0) return null;
      if (n === 0) return 'closed';
      return decodeMemifMessage(buf.subarray(0, n));
    },
    close() {
      native.close(fd);
    },
  };
}

/** Every message the server sends until it hangs up, and the reason its DISCONNECT gave. */
async function untilHangUp(c: ReturnType<typeof rawClient>, what: string): Promise<{ messages: MemifMessage[]; reason: string }> {
  const messages: MemifMessage[] = [];
  let closed = false;
  await until(() => {
    for (let r; !closed && (r = c.recv()) !== null; ) {
      if (r === 'closed') closed = true;
      else messages.push(r);
    }
    return closed;
  }, `${what}: the server hangs up`);
  const d = messages.find((m) => m.type === 'disconnect');
  return { messages, reason: d?.type === 'disconnect' ? d.reason : '(no DISCONNECT before the hang-up)' };
}

test('frames cross a memif port both ways, intact and in order, small, chained and jumbo', async (t) => {
  const { server, station, got } = pair(t, { bufferBytes: 2048 });
  await until(() => server.connected && station.connected, 'memif handshake');
  const sizes = [60, 64, 1500, 2048, 2049, 4200, 9000, 65_535];
  const sent = sizes.flatMap((s, i) => [frame(i, s), frame(100 + i, s)]);
  for (const f of sent) station.transmit(f);
  for (const f of sent) server.transmit(f);
  await until(() => got.server.length === sent.length && got.station.length === sent.length, 'all frames both ways');
  t.deepEqual(got.server, sent);
  t.deepEqual(got.station, sent);
});

test('PCIeOE frames given as header and payload are encoded into the ring (chained when they do not fit a slot); a station vouches for the CRCs it checked', async (t) => {
  const socket = socketPath();
  const server = new MemifPort({ socket, role: 'server' });
  const station = new MemifPort({ socket, role: 'client', bufferBytes: 2048 });
  t.teardown(() => {
    station.close();
    server.close();
  });
  const got = { server: [] as [Buffer, boolean | undefined][], station: [] as [Buffer, boolean | undefined][] };
  server.attach((f, checked) => got.server.push([Buffer.from(f), checked]));
  station.attach((f, checked) => got.station.push([Buffer.from(f), checked]));
  await until(() => server.connected && station.connected, 'memif handshake');
  const out = (i: number, size: number, vlan: OutgoingFrame['vlan']): OutgoingFrame => ({
    dst: 0x0200_0000_0b00, src: 0x0200_0000_0a00, vlan, type: FrameType.Tlp, flags: 0, channel: 1, seq: i, ack: 0, credits: 0, epoch: 9, peerEpoch: 0, payload: frame(i, size),
  });
  const frames = [out(0, 4, null), out(1, 100, { pcp: 0, dei: false, vid: 5 }), out(2, 1900, null), out(3, 4112, { pcp: 0, dei: false, vid: 5 })];
  const encoded = frames.map((f) => encodeFrame(f, f.payload));
  for (const f of frames) station.transmitFrame(f);
  // The other way round, encoded frames: intact ones, one with a payload bit flipped, one not PCIeOE at all.
  const damaged = Buffer.from(encoded[2]!);
  damaged[damaged.length - 1]! ^= 0x10;
  const toStation = [encoded[1]!, damaged, frame(9, 200), encoded[2]!, encoded[3]!];
  for (const f of toStation) server.transmit(f);
  await until(() => got.server.length === frames.length && got.station.length === toStation.length, 'all frames both ways');
  t.deepEqual(got.server.map(([f]) => f), encoded);
  // The server (a switch) forwards frames unread: it checks nothing.
  t.deepEqual(got.server.map(([, c]) => c), [false, false, false, false]);
  t.deepEqual(got.station.map(([f]) => f), toStation);
  // In one slot: checked (true when intact); the 4 KiB frame was chained across 2 KiB buffers: left to the decoder.
  t.deepEqual(got.station.map(([, c]) => c), [true, false, false, true, false]);
  t.false(decodeFrame(got.station[1]![0], false).ok);
});

test('attached in place, a station checks the CRCs of a receive pass in one go: intact one-slot PCIeOE frames vouched for, the rest left to the decoder', async (t) => {
  const { server, station } = pair(t, { bufferBytes: 2048 });
  const got: { copy: Buffer; checked: boolean | undefined; transient: boolean | undefined }[] = [];
  station.attach((f, checked, transient) => got.push({ copy: Buffer.from(f), checked, transient }), true);
  await until(() => server.connected && station.connected, 'memif handshake');
  const vlan = { pcp: 0, dei: false, vid: 5 };
  const encoded = [[100, vlan], [1900, null], [4112, vlan]].map(([size, v], i) =>
    encodeFrame({ dst: 0x0200_0000_0b00, src: 0x0200_0000_0a00, vlan: v as typeof vlan | null, type: FrameType.Tlp, flags: 0, channel: 1, seq: i, ack: 0, credits: 0, epoch: 9 }, frame(i, size as number)),
  );
  const damaged = Buffer.from(encoded[1]!);
  damaged[30]! ^= 0x01; // in the header, beside the CRC field
  // Intact, damaged, not PCIeOE, intact, chained (4 KiB across 2 KiB buffers: copied, left to the decoder), intact after the chain.
  const toStation = [encoded[0]!, damaged, frame(9, 200), encoded[1]!, encoded[2]!, encoded[0]!];
  for (const f of toStation) server.transmit(f);
  await until(() => got.length === toStation.length, 'all frames');
  t.deepEqual(got.map((g) => g.copy), toStation);
  t.deepEqual(got.map((g) => g.transient), [true, true, true, true, false, true]);
  t.deepEqual(got.map((g) => g.checked), [true, false, false, true, false, true]);
  t.false(decodeFrame(got[1]!.copy, false).ok);
});

test('a burst larger than the ring waits for room and arrives whole', async (t) => {
  const { server, station, got } = pair(t, { log2RingSize: 4 });
  await until(() => server.connected && station.connected, 'memif handshake');
  const sent = Array.from({ length: 500 }, (_, i) => frame(i, 1024));
  for (const f of sent) station.transmit(f);
  for (const f of sent) server.transmit(f);
  await until(() => got.server.length === sent.length && got.station.length === sent.length, 'the whole burst both ways');
  t.deepEqual(got.server, sent);
  t.deepEqual(got.station, sent);
  t.true(station.counters.txDeferred > 0);
});

test('a station that goes away is noticed; a new one connects and carries frames', async (t) => {
  const { socket, server, station, got } = pair(t);
  await until(() => server.connected, 'first station connected');
  station.close();
  await until(() => !server.connected, 'server notices the station left');
  t.is(server.counters.disconnects, 1);
  server.transmit(frame(1, 100));
  t.is(server.counters.txNoPeer, 1);
  const second = new MemifPort({ socket, role: 'client' });
  t.teardown(() => second.close());
  const heard: Buffer[] = [];
  second.attach((f) => heard.push(Buffer.from(f)));
  await until(() => server.connected && second.connected, 'second station connected');
  second.transmit(frame(2, 300));
  server.transmit(frame(3, 300));
  await until(() => got.server.length === 1 && heard.length === 1, 'frames on the new connection');
  t.deepEqual(got.server[0], frame(2, 300));
  t.deepEqual(heard[0], frame(3, 300));
});

test('a station reconnects after its server restarts', async (t) => {
  const { socket, server, station } = pair(t);
  await until(() => station.connected, 'connected');
  server.close();
  await until(() => !station.connected, 'station notices');
  const again = new MemifPort({ socket, role: 'server' });
  t.teardown(() => again.close());
  const got: Buffer[] = [];
  again.attach((f) => got.push(Buffer.from(f)));
  await until(() => station.connected && again.connected, 'station reconnected');
  station.transmit(frame(9, 500));
  await until(() => got.length === 1, 'frame after reconnect');
  t.deepEqual(got[0], frame(9, 500));
});

test('malformed control messages: DISCONNECT naming the fault, that peer dropped, the connected station undisturbed', async (t) => {
  const { socket, server, station, got } = pair(t);
  await until(() => server.connected, 'station connected');
  // A second client while one is connected.
  const extra = rawClient(socket);
  t.teardown(() => extra.close());
  let m: ReturnType<typeof extra.recv> = null;
  await until(() => (m = extra.recv()) !== null, 'answer to a second client');
  t.like(m, { type: 'disconnect', reason: 'already connected' });

  station.close();
  await until(() => !server.connected, 'station left');
  const cases: [string, (c: ReturnType<typeof rawClient>) => void, RegExp][] = [
    ['short packet', (c) => c.send(Buffer.alloc(10)), /10 bytes, expected 128/],
    ['unknown type', (c) => c.send(Buffer.concat([Buffer.from([99, 0]), Buffer.alloc(126)])), /unknown control message type 99/],
    ['ADD_RING before INIT', (c) => c.send(encodeMemifMessage({ type: 'add-ring', c2s: true, index: 0, region: 0, offset: 0, log2RingSize: 4, privateHeaderSize: 0 })), /add-ring before INIT/],
    ['wrong version', (c) => c.send(encodeMemifMessage({ type: 'init', version: 0x0100, id: 0, mode: 0, secret: '', name: 'x' })), /incompatible memif version 1\.0/],
    ['wrong id', (c) => c.send(encodeMemifMessage({ type: 'init', version: 0x0200, id: 7, mode: 0, secret: '', name: 'x' })), /no interface with id 7/],
    ['region without fd', (c) => {
      c.send(encodeMemifMessage({ type: 'init', version: 0x0200, id: 0, mode: 0, secret: '', name: 'x' }));
      c.send(encodeMemifMessage({ type: 'add-region', index: 0, size: 4096n }));
    }, /ADD_REGION without a memfd/],
    ['unsealed region', (c) => {
      c.send(encodeMemifMessage({ type: 'init', version: 0x0200, id: 0, mode: 0, secret: '', name: 'x' }));
      const fd = native.memfdCreate('unsealed', 4096);
      c.send(encodeMemifMessage({ type: 'add-region', index: 0, size: 4096n }), [fd]);
      native.close(fd);
    }, /not sealed against shrinking/],
    ['region larger than its file', (c) => {
      c.send(encodeMemifMessage({ type: 'init', version: 0x0200, id: 0, mode: 0, secret: '', name: 'x' }));
      const fd = native.sealedMemfd('small', 4096);
      c.send(encodeMemifMessage({ type: 'add-region', index: 0, size: 1n << 20n }), [fd]);
      native.close(fd);
    }, /1048576 bytes, its file has 4096/],
    ['ring outside its region', (c) => {
      c.send(encodeMemifMessage({ type: 'init', version: 0x0200, id: 0, mode: 0, secret: '', name: 'x' }));
      const fd = native.sealedMemfd('small', 4096);
      c.send(encodeMemifMessage({ type: 'add-region', index: 0, size: 4096n }), [fd]);
      native.close(fd);
      const ev = native.eventfd();
      c.send(encodeMemifMessage({ type: 'add-ring', c2s: true, index: 0, region: 0, offset: 0, log2RingSize: 10, privateHeaderSize: 0 }), [ev]);
      native.close(ev);
    }, /does not fit region 0/],
    ['ring wake-up that is not an eventfd', (c) => {
      c.send(encodeMemifMessage({ type: 'init', version: 0x0200, id: 0, mode: 0, secret: '', name: 'x' }));
      const fd = native.sealedMemfd('region', 4096);
      c.send(encodeMemifMessage({ type: 'add-region', index: 0, size: 4096n }), [fd]);
      c.send(encodeMemifMessage({ type: 'add-ring', c2s: true, index: 0, region: 0, offset: 0, log2RingSize: 4, privateHeaderSize: 0 }), [fd]);
      native.close(fd);
    }, /ADD_RING fd is not an eventfd/],
    ['CONNECT without rings', (c) => {
      c.send(encodeMemifMessage({ type: 'init', version: 0x0200, id: 0, mode: 0, secret: '', name: 'x' }));
      c.send(encodeMemifMessage({ type: 'connect', interfaceName: 'x' }));
    }, /CONNECT before a ring each way/],
  ];
  for (const [what, act, reason] of cases) {
    const c = rawClient(socket);
    act(c);
    const heard = await untilHangUp(c, what);
    c.close();
    t.regex(heard.reason, reason, what);
    t.is(heard.messages[0]?.type, 'hello', `${what}: HELLO first`);
  }
  // The port still serves a proper station.
  const good = new MemifPort({ socket, role: 'client' });
  t.teardown(() => good.close());
  await until(() => good.connected && server.connected, 'a good station connects after the bad ones');
  good.transmit(frame(5, 200));
  await until(() => got.server.length === 1, 'its frame arrives');
  t.deepEqual(got.server[0], frame(5, 200));
  t.is(MEMIF_MESSAGE_BYTES, 128);
});

test('a client whose ring points outside its region is disconnected with the reason; the port serves the next client', async (t) => {
  const socket = socketPath();
  const server = new MemifPort({ socket, role: 'server' });
  t.teardown(() => server.close());
  const got: Buffer[] = [];
  server.attach((f) => got.push(Buffer.from(f)));
  // A hand-made client: one region with both rings and a few buffers, the handshake in lock-step.
  const size = 1 << 16;
  const memfd = native.sealedMemfd('bad-client', size);
  const region = Buffer.from(native.mmap(memfd, 0, size, true));
  const c2s = new MemifRing([region], 0, 0, 4);
  const s2c = new MemifRing([region], 0, 1024, 4);
  c2s.initialise(0, (slot) => 4096 + slot * 2048, 2048);
  s2c.initialise(0, (slot) => 4096 + (16 + slot) * 2048, 2048);
  const [e1, e2] = [native.eventfd(), native.eventfd()];
  const c = rawClient(socket);
  t.teardown(() => {
    c.close();
    for (const fd of [memfd, e1, e2]) native.close(fd);
  });
  const next = async () => {
    let m: ReturnType<typeof c.recv> = null;
    await until(() => (m = c.recv()) !== null, 'a control message');
    return m!;
  };
  t.like(await next(), { type: 'hello' });
  const steps: [Buffer, number[] | undefined][] = [
    [encodeMemifMessage({ type: 'init', version: 0x0200, id: 0, mode: 0, secret: '', name: 'bad' }), undefined],
    [encodeMemifMessage({ type: 'add-region', index: 0, size: BigInt(size) }), [memfd]],
    [encodeMemifMessage({ type: 'add-ring', c2s: true, index: 0, region: 0, offset: 0, log2RingSize: 4, privateHeaderSize: 0 }), [e1]],
    [encodeMemifMessage({ type: 'add-ring', c2s: false, index: 0, region: 0, offset: 1024, log2RingSize: 4, privateHeaderSize: 0 }), [e2]],
  ];
  for (const [m, fds] of steps) {
    c.send(m, fds);
    t.like(await next(), { type: 'ack' });
  }
  c.send(encodeMemifMessage({ type: 'connect', interfaceName: 'bad' }));
  t.like(await next(), { type: 'connected' });
  await until(() => server.connected, 'server connected');
  // One good frame, then one whose descriptor points past the end of the region.
  region.fill(0x5a, 4096, 4096 + 100);
  region.writeUInt32LE(100, 128 + 4); // slot 0 length
  region.writeUInt32LE(100, 128 + 16 + 4); // slot 1 length
  region.writeUInt32LE(size - 10, 128 + 16 + 8); // slot 1 offset: 100 bytes from there leave the region
  region.writeUInt16LE(2, 6); // head
  native.eventfdWrite(e1);
  const { reason } = await untilHangUp(c, 'bad descriptor');
  t.regex(reason, /bad descriptor from the peer: descriptor 1: 100 bytes at 65526 of region 0 are outside it/);
  t.deepEqual(got, [Buffer.alloc(100, 0x5a)]);
  t.false(server.connected);
  const good = new MemifPort({ socket, role: 'client' });
  t.teardown(() => good.close());
  await until(() => server.connected && good.connected, 'the next client connects');
});

test('attached in place, a station is handed each one-slot frame as the ring slot itself (transient), and a chained one as a copy', async (t) => {
  const socket = socketPath();
  const server = new MemifPort({ socket, role: 'server' });
  const station = new MemifPort({ socket, role: 'client', bufferBytes: 2048, log2RingSize: 4 });
  t.teardown(() => {
    station.close();
    server.close();
  });
  const got: { copy: Buffer; view: Buffer; transient: boolean | undefined; checked: boolean | undefined }[] = [];
  station.attach((f, checked, transient) => got.push({ copy: Buffer.from(f), view: f, transient, checked }), true);
  server.attach(() => {});
  await until(() => server.connected && station.connected, 'memif handshake');
  // Three times the ring's 16 slots: the slots are offered again and refilled while the test keeps the views.
  const sent = Array.from({ length: 48 }, (_, i) => frame(i, i === 5 ? 3000 : 1000));
  for (const f of sent) server.transmit(f);
  await until(() => got.length === sent.length, 'all frames');
  t.deepEqual(got.map((g) => g.copy), sent, 'intact during the call');
  t.deepEqual(got.map((g) => g.transient), sent.map((_, i) => i !== 5), 'the chained frame was copied out');
  t.true(got.every((g) => g.checked === false), 'not PCIeOE frames: nothing vouched for');
  // A view kept past its call is a slot the server has written again since: what the contract forbids.
  t.true(got.slice(0, 16).some((g, i) => i !== 5 && !g.view.equals(sent[i]!)), 'early views were overwritten by later frames');
  t.true(got[5]!.view.equals(sent[5]!), 'the copy stays');
});

test('stationOf hands ring slots only to an onFrame that copies what it keeps; any other keeps intact copies', async (t) => {
  const socket = socketPath();
  const server = new MemifPort({ socket, role: 'server' });
  const station = stationOf(new MemifPort({ socket, role: 'client', log2RingSize: 4 }));
  t.teardown(() => {
    station.close();
    server.close();
  });
  const kept: { frame: Buffer; transient: boolean | undefined }[] = [];
  station.onFrame = (f, _checked, transient) => kept.push({ frame: f, transient });
  server.attach(() => {});
  await until(() => server.connected, 'memif handshake');
  const sent = Array.from({ length: 48 }, (_, i) => frame(i, 1000));
  for (const f of sent) server.transmit(f);
  await until(() => kept.length === sent.length, 'all frames');
  t.deepEqual(kept.map((k) => k.frame), sent, 'kept frames intact after the ring wrapped three times');
  t.true(kept.every((k) => !k.transient));
});
