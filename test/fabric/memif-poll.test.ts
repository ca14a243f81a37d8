import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import test from 'ava';
import { MemifPort, type MemifPortOptions } from '../../src/fabric/wire/memif/port.ts';
import { ReplyPoll, memifPollUs } from '../../src/fabric/wire/memif/reply-poll.ts';
import { until } from '../support/until.ts';

/** A station (client) polling `pollUs` after each send, and the switch end (server) it talks to. */
function pair(t: { teardown(fn: () => void): void }, pollUs: number, server: Partial<MemifPortOptions> = {}) {
  const socket = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'fabric-memif-poll-')), 'port.memif');
  const sw = new MemifPort({ socket, role: 'server', ...server });
  const station = new MemifPort({ socket, role: 'client', pollUs });
  t.teardown(() => {
    station.close();
    sw.close();
  });
  const got = { sw: [] as number[], station: [] as number[] };
  sw.attach((f) => got.sw.push(f.readUInt32BE(0)));
  station.attach((f) => got.station.push(f.readUInt32BE(0)));
  return { sw, station, got };
}

const frame = (i: number) => {
  const b = Buffer.alloc(64);
  b.writeUInt32BE(i, 0);
  return b;
};

/** A window far longer than any test: it closes on finding the reply, not on time. */
const LONG_US = 60_000_000;

test('a reply within the poll window is taken without its sender signalling, and signals are asked for again after', async (t) => {
  const { sw, station, got } = pair(t, LONG_US);
  await until(() => sw.connected && station.connected, 'memif handshake');
  station.transmit(frame(1));
  await until(() => got.sw.length === 1, 'the request at the switch end');
  t.false(sw.txRing!.consumerSleeps, 'the station polls, its interrupt masked');
  const signals = sw.counters.txSignals;
  sw.transmit(frame(2));
  await until(() => got.station.length === 1, 'the reply at the station');
  t.is(sw.counters.txSignals, signals, 'the reply cost its sender no eventfd write');
  t.true(station.counters.pollHits >= 1);
  t.is(station.counters.pollWindows, 1);
  // Nothing more was sent: the window closes and the station sleeps on its eventfd again.
  await until(() => sw.txRing!.consumerSleeps, 'the station asking for signals again');
  sw.transmit(frame(3));
  await until(() => got.station.length === 2, 'a later frame, by the eventfd');
  t.is(sw.counters.txSignals, signals + 1, 'a sleeping station is signalled');
  t.deepEqual(got.station, [2, 3]);
});

test('many short windows lose no frame: request and reply, each side sending as the other looks', async (t) => {
  // A window of 1 µs ends on the first turn that finds nothing, so frames keep arriving as windows close.
  const { sw, station, got } = pair(t, 1);
  await until(() => sw.connected && station.connected, 'memif handshake');
  sw.attach((f) => {
    const i = f.readUInt32BE(0);
    got.sw.push(i);
    // Replies on a later turn now and then, so some find the window closed.
    if (i % 3 === 0) setImmediate(() => sw.transmit(frame(i)));
    else sw.transmit(frame(i));
  });
  const N = 600;
  station.attach((f) => {
    const i = f.readUInt32BE(0);
    got.station.push(i);
    if (i + 1 < N) station.transmit(frame(i + 1));
  });
  station.transmit(frame(0));
  await until(() => got.station.length === N, `${N} round trips`);
  t.deepEqual(got.station, Array.from({ length: N }, (_, i) => i));
  t.true(station.counters.pollWindows > 0);
});

test('a port closed while its window is open stops polling', async (t) => {
  const { sw, station, got } = pair(t, LONG_US);
  await until(() => sw.connected && station.connected, 'memif handshake');
  station.transmit(frame(1));
  await until(() => got.sw.length === 1, 'the request');
  const looks = station.counters.pollHits;
  station.close();
  sw.transmit(frame(2));
  await until(() => sw.counters.txFrames === 1 || sw.counters.txNoPeer === 1, 'the reply sent or dropped');
  await new Promise((r) => setImmediate(r));
  t.is(station.counters.pollHits, looks, 'no turn looked at the ring after close');
  t.deepEqual(got.station, []);
});

test('ReplyPoll: a window that finds nothing ends once, with end(); a find closes it unless extended', async (t) => {
  const calls: string[] = [];
  let arrive = false;
  const poll = new ReplyPoll(1, () => {
    calls.push('look');
    const a = arrive;
    arrive = false;
    return a;
  }, () => calls.push('end'));
  t.true(poll.wants(1, 64));
  poll.extend(1, 64);
  t.true(poll.open);
  await until(() => !poll.open, 'the window to close');
  t.is(calls.at(-1), 'end');
  t.is(calls.filter((c) => c === 'end').length, 1);
  calls.length = 0;
  poll.extend(1, 64);
  arrive = true;
  await until(() => !poll.open, 'the window to close after a find');
  t.deepEqual(calls, ['look', 'look', 'end'], 'after a find, one more look, then end');
});

test('ReplyPoll: stop() during a look ends the turns without end()', async (t) => {
  const calls: string[] = [];
  const poll: ReplyPoll = new ReplyPoll(LONG_US, () => {
    calls.push('look');
    poll.stop();
    return true;
  }, () => calls.push('end'));
  poll.extend(1, 64);
  await until(() => calls.length > 0, 'a look');
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  t.deepEqual(calls, ['look']);
  t.false(poll.open);
});

test('ReplyPoll: a kind of send whose windows find nothing stops opening them, but is tried now and then', async (t) => {
  const poll = new ReplyPoll(1, () => false, () => {});
  t.true(poll.wants(3, 3 * 4000), 'a kind not seen yet opens a window');
  poll.extend(3, 3 * 4000);
  await until(() => !poll.open, 'the window to close');
  const asked = Array.from({ length: 64 }, () => poll.wants(3, 3 * 4000));
  t.is(asked.filter(Boolean).length, 2, 'a probe every 32nd send');
  t.true(poll.wants(1, 64), 'another kind still opens windows');
});

test('memifPollUs: the environment overrides the option; 0 or nothing is off', (t) => {
  t.is(memifPollUs(undefined, {}), 0);
  t.is(memifPollUs('150', {}), 150);
  t.is(memifPollUs('150', { PCIEOE_MEMIF_POLL_US: '0' }), 0);
  t.is(memifPollUs(undefined, { PCIEOE_MEMIF_POLL_US: '80' }), 80);
  t.throws(() => memifPollUs('-1', {}));
  t.throws(() => memifPollUs('x', {}));
});
