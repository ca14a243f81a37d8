import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { realClock } from '../../src/fabric/clock.ts';
import { openStation } from '../../src/fabric/station.ts';
import { parseSwitchArgs } from '../../src/fabric/switch/main.ts';
import { VLAN, endpoint, macA, macB, startSwitch } from '../../src/fabric/switch/switch-process.ts';
import { type Tlp, TlpType, encodeTlp } from '../../src/fabric/tlp/tlp.ts';
import { until } from '../support/until.ts';

/** n posted writes of 4 B to 4 KiB, to consecutive pages from `base`. */
const writes = (n: number, base: bigint) =>
  Array.from({ length: n }, (_, i) => {
    const data = Buffer.alloc(4 << (i % 11), (i * 13) & 0xff);
    return encodeTlp({ type: TlpType.MWr64, tc: 0, attr: 0, poisoned: false, requesterId: 0x0100, tag: i & 0x3ff, firstBe: 0xf, lastBe: data.length > 4 ? 0xf : 0, address: base + BigInt(i) * 0x1000n, data });
  });

test('command line: memif ports as server (default path or given) and as client', (t) => {
  const env = { LAB_SOCKET_DIR: '/run/lab' };
  const cfg = parseSwitchArgs(['--port', 'a0=memif', '--port', 'b0=memif:server:/tmp/x.memif', '--port', 'c0=memif:client:/tmp/dpdk.sock', '--port', 'd0'], env);
  t.like(cfg.ports[0], { name: 'a0', kind: 'memif', role: 'server', socket: '/run/lab/a0.memif', security: { learn: 1 } });
  t.like(cfg.ports[1], { name: 'b0', kind: 'memif', role: 'server', socket: '/tmp/x.memif' });
  t.like(cfg.ports[2], { name: 'c0', kind: 'memif', role: 'client', socket: '/tmp/dpdk.sock' });
  t.like(cfg.ports[3], { name: 'd0', kind: 'unix' });
  t.throws(() => parseSwitchArgs(['--port', 'a0=memif:client'], env), { message: /needs the server's socket path/ });
  t.throws(() => parseSwitchArgs(['--port', 'a0=tap'], env), { message: /NAME=memif/ });
  t.throws(() => parseSwitchArgs(['--port', 'a0=memif', '--peer', 'a0=/x'], env), { message: /memif port's peer/ });
  t.throws(() => parseSwitchArgs(['--port', 'a0=memif', '--port', 'a0'], env), { message: /twice/ });
});

/**
 * Endpoints A and B on memif ports a0 and b0 of a switch process, `toB` and `toA` posted writes
 * sent each way: resolves once as many arrived as were sent (the test compares them).
 */
async function exchange(t: ExecutionContext, o: { toB: number; toA: number; switchArgs?: string[]; faults?: object; channel?: object }) {
  const sw = await startSwitch({ ports: [], args: ['--port', 'a0=memif', '--port', 'b0=memif', '--vlan', `a0=trunk:${VLAN.vid}`, '--vlan', `b0=trunk:${VLAN.vid}`, ...(o.switchArgs ?? [])] });
  t.teardown(() => void sw.stop());
  // Toward both stations: damage lands on frames a station copies out of its ring and checks there.
  if (o.faults) for (const port of ['a0', 'b0']) await sw.control.must({ port, dir: 'tx', set: o.faults });
  const got = { a: [] as Buffer[], b: [] as Buffer[] };
  const side = (name: 'a' | 'b') =>
    endpoint({ dir: sw.dir, name, links: 1, mac: name === 'a' ? macA : macB, peerMac: name === 'a' ? macB : macA, vlan: VLAN, memif: true, channel: { ...o.channel, deliver: (p) => got[name].push(Buffer.from(p)) } });
  const a = side('a');
  const b = side('b');
  t.teardown(() => {
    a.close();
    b.close();
  });
  const toB = writes(o.toB, 0x1_0000_0000n);
  const toA = writes(o.toA, 0x2_0000_0000n);
  for (const p of toB) a.channel.send(p);
  for (const p of toA) b.channel.send(p);
  await until(() => got.a.length >= toA.length && got.b.length >= toB.length, 'every TLP across the switch', { timeoutMs: 40_000 });
  return { sw, a, b, got, toA, toB };
}

test('the switch process carries TLPs between two memif stations, both ways, intact and in order', async (t) => {
  const { sw, got, toA, toB } = await exchange(t, { toB: 300, toA: 300 });
  t.deepEqual(got.b, toB);
  t.deepEqual(got.a, toA);
  const c = (await sw.control.must({ counters: true })) as { ports: Record<string, { peer: string; socket: { rxFrames: number } }> };
  t.regex(c.ports.a0!.peer, /memif server .*a0\.memif connected/);
  t.true(c.ports.b0!.socket.rxFrames > 0);
});

test('over lossy, duplicating and corrupting memif links TLPs still arrive exactly once and in order; damaged frames are dropped and counted', async (t) => {
  const { a, b, got, toA, toB } = await exchange(t, {
    toB: 1000, toA: 300, switchArgs: ['--seed', '3'], faults: { loss: 0.03, duplicate: 0.02, corrupt: 0.05 }, channel: { replayTimeout: 5, heartbeatInterval: 20 },
  });
  t.deepEqual(got.b, toB);
  t.deepEqual(got.a, toA);
  t.true(b.channel.stats.rxBadFrame['bad-crc'] > 0 && a.channel.stats.rxBadFrame['bad-crc'] > 0, 'damaged frames were caught by their CRC');
  t.true(a.channel.stats.txReplay > 0 && b.channel.stats.rxDuplicate > 0, 'the injected loss and duplication happened');
});

/** Stations A and B opened on the link specs given; 50 posted writes A → B arrive intact and in order. */
async function postedWritesArrive(t: ExecutionContext, dir: string, linkA: string, linkB: string) {
  const [ma, mb] = ['02:00:00:00:0a:00', '02:00:00:00:0b:00'];
  const options = { clock: realClock, completionTimeoutMs: 2000, log: () => {} };
  const a = openStation({ link: [`${ma}@${linkA}`], channel: [`1=${mb}`], 'socket-dir': dir }, { ...options, peerName: 'B' });
  const b = openStation({ link: [`${mb}@${linkB}`], channel: [`1=${ma}`], 'socket-dir': dir }, { ...options, peerName: 'A' });
  t.teardown(() => {
    a.close();
    b.close();
  });
  const got: Tlp[] = [];
  b.ports[0]!.serve((tlp) => void got.push(tlp));
  const data = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  for (let i = 0; i < 50; i++) {
    a.ports[0]!.channel.send(encodeTlp({ type: TlpType.MWr64, tc: 0, attr: 0, poisoned: false, requesterId: 0x0100, tag: 0, firstBe: 0xf, lastBe: 0xf, address: 0x1_0000_0000n + BigInt(i) * 256n, data }));
  }
  await until(() => got.length === 50, 'the writes at station B', { timeoutMs: 30_000 });
  got.forEach((tlp, i) => t.like(tlp, { type: TlpType.MWr64, address: 0x1_0000_0000n + BigInt(i) * 256n, data }));
}

test('stations attach over memif (--link MAC@memif:PATH) and carry posted writes through the switch process', async (t) => {
  const sw = await startSwitch({ ports: [], args: ['--port', 'a0=memif', '--port', 'b0=memif'] });
  t.teardown(() => void sw.stop());
  await postedWritesArrive(t, sw.dir, `memif:${path.join(sw.dir, 'a0.memif')}`, `memif:${path.join(sw.dir, 'b0.memif')}`);
});

test('two stations cabled back to back over memif (MAC@memif-serve:PATH and MAC@memif:PATH) carry posted writes without a switch', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'b2b-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cable = path.join(dir, 'cable.memif');
  await postedWritesArrive(t, dir, `memif:${cable}`, `memif-serve:${cable}`);
});
