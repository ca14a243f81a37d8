import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import test from 'ava';
import { readPcap } from '../../src/fabric/wire/pcap.ts';
import { writeMac } from '../../src/fabric/wire/mac.ts';
import type { PortCounters } from '../../src/fabric/switch/switch.ts';
import { parseSwitchArgs, parseVlan } from '../../src/fabric/switch/main.ts';
import { TlpType, decodeTlp, encodeTlp, type MemWriteTlp } from '../../src/fabric/tlp/tlp.ts';
import { VLAN, macA, macB } from './harness.ts';
import { endpoint, peerArgs, startSwitch } from '../../src/fabric/switch/switch-process.ts';
import { until } from '../support/until.ts';

test('command line: ports, peers, VLANs, and usage errors', (t) => {
  const env = { LAB_SOCKET_DIR: '/run/lab' };
  const cfg = parseSwitchArgs(['--port', 'hi-a0', '--port', 'di0', '--peer', 'di0=/x/q.sock', '--vlan', 'di0=trunk:100,200:native=1', '--seed', '7'], env);
  t.deepEqual(cfg, {
    socketDir: '/run/lab',
    pcapDir: null,
    seed: 7,
    busyPollUs: 0,
    maxMacs: 4096,
    ports: [
      { name: 'hi-a0', kind: 'unix', peer: null, vlan: { mode: 'access', vid: 1 }, security: { learn: 1 } },
      { name: 'di0', kind: 'unix', peer: '/x/q.sock', vlan: { mode: 'trunk', vids: [100, 200], native: 1 }, security: { learn: 1 } },
    ],
  });
  t.like(parseSwitchArgs(['--port', 'a', '--port', 'b', '--station', 'a=02:00:00:00:00:01,02:00:00:00:00:02', '--station', 'b=learn:3', '--max-macs', '10'], env), {
    maxMacs: 10,
    ports: [{ security: { macs: [0x02_00_00_00_00_01, 0x02_00_00_00_00_02] } }, { security: { learn: 3 } }],
  });
  t.is(parseSwitchArgs(['--port', 'a', '--station', 'a=open'], env).ports[0]!.security, null);
  t.is(parseSwitchArgs(['--vxlan', 'wan=42,127.0.0.1:4789,10.0.0.2:4789'], env).ports[0]!.security, null, 'a tunnel is open by default');
  for (const bad of ['a=learn:0', 'a=learn:x', 'a=02:00', 'a=', 'b=open'])
    t.throws(() => parseSwitchArgs(['--port', 'a', '--station', bad], env), { message: /--station/ }, bad);
  t.throws(() => parseSwitchArgs(['--port', 'a', '--port', 'b', '--station', 'a=02:00:00:00:00:01', '--station', 'b=02:00:00:00:00:01'], env), { message: /two ports/ });
  t.throws(() => parseSwitchArgs(['--port', 'a', '--max-macs', '0'], env), { message: /--max-macs/ });
  t.deepEqual(parseVlan('trunk:all'), { mode: 'trunk', vids: 'all' });
  t.deepEqual(parseVlan('access:4094'), { mode: 'access', vid: 4094 });
  for (const bad of ['access:0', 'access:4095', 'access:1:2', 'trunk:1,x', 'trunk:5:5', 'hybrid:1', 'access'])
    t.throws(() => parseVlan(bad), undefined, bad);
  t.throws(() => parseSwitchArgs(['--port', 'a'], {}), { message: /LAB_SOCKET_DIR/ });
  t.throws(() => parseSwitchArgs(['--port', 'a', '--port', 'a'], env), { message: /twice/ });
  t.throws(() => parseSwitchArgs(['--port', '../a'], env), { message: /bad port name/ });
  t.throws(() => parseSwitchArgs(['--port', 'a', '--peer', 'b=/x'], env), { message: /one of the --port names/ });
  t.throws(() => parseSwitchArgs(['--port', 'control'], env), { message: /control socket/ });
  t.throws(() => parseSwitchArgs(['--port', 'a', '--bogus'], env));
  t.is(parseSwitchArgs(['--port', 'a', '--busy-poll', '200'], env).busyPollUs, 200);
  for (const bad of ['-1', '1.5', 'x', '2000000']) t.throws(() => parseSwitchArgs(['--port', 'a', '--busy-poll', bad], env), { message: /--busy-poll/ }, bad);
  t.like(parseSwitchArgs(['--vxlan', 'wan=42,127.0.0.1:4789,10.0.0.2:4789', '--vlan', 'wan=trunk:all'], env).ports[0], {
    name: 'wan', kind: 'vxlan', vni: 42, local: { address: '127.0.0.1', port: 4789 }, remote: { address: '10.0.0.2', port: 4789 },
  });
  for (const bad of ['wan=42,127.0.0.1:4789', 'wan=x,a:1,b:2', 'wan=16777216,a:1,b:2', 'wan=1,a:1,b:99999', 'wan=1,a,b:2'])
    t.throws(() => parseSwitchArgs(['--vxlan', bad], env), undefined, bad);
  t.throws(() => parseSwitchArgs(['--port', 'wan', '--vxlan', 'wan=1,a:1,b:2'], env), { message: /twice/ });
});

async function freeUdpPorts(n: number): Promise<number[]> {
  const sockets = await Promise.all(Array.from({ length: n }, () => new Promise<dgram.Socket>((resolve) => {
    const s = dgram.createSocket('udp4');
    s.bind(0, '127.0.0.1', () => resolve(s));
  })));
  const ports = sockets.map((s) => s.address().port);
  await Promise.all(sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

test('two switch processes joined by a VXLAN tunnel carry a channel end to end', async (t) => {
  const [u1, u2] = await freeUdpPorts(2);
  const trunk = `trunk:${VLAN.vid}`;
  const dirs = [0, 1].map(() => fs.mkdtempSync(path.join(os.tmpdir(), 'fabric-vxlan-')));
  const sw1 = await startSwitch({ dir: dirs[0], ports: ['a0'], args: [...peerArgs(dirs[0]!, 'a', 1), '--vxlan', `wan=5,127.0.0.1:${u1},127.0.0.1:${u2}`, '--vlan', `a0=${trunk}`, '--vlan', `wan=${trunk}`] });
  t.teardown(() => void sw1.stop());
  const sw2 = await startSwitch({ dir: dirs[1], ports: ['b0'], args: [...peerArgs(dirs[1]!, 'b', 1), '--vxlan', `wan=5,127.0.0.1:${u2},127.0.0.1:${u1}`, '--vlan', `b0=${trunk}`, '--vlan', `wan=${trunk}`] });
  t.teardown(() => void sw2.stop());
  const got: Buffer[] = [];
  const a = endpoint({ dir: dirs[0]!, name: 'a', links: 1, mac: macA, peerMac: macB, vlan: VLAN, channel: { deliver: () => {} } });
  const b = endpoint({ dir: dirs[1]!, name: 'b', links: 1, mac: macB, peerMac: macA, vlan: VLAN, channel: { deliver: (p) => got.push(Buffer.from(p)) } });
  t.teardown(() => {
    a.close();
    b.close();
  });
  await sw1.control.must({ port: 'wan', dir: 'tx', set: { loss: 0.05 } });
  t.like(await sw1.control.request({ port: 'wan', peer: '/x' }), { ok: false });
  const sent = writes(400, 0x3_0000_0000n);
  for (const p of sent) a.channel.send(p);
  await until(() => got.length >= sent.length, 'delivery across the tunnel', { timeoutMs: 30_000 });
  t.deepEqual(got, sent);
  const c = (await sw2.control.must({ counters: true, port: 'wan' })) as { ports: { wan: { peer: string; socket: { rxFrames: number; rxForeign: number } } } };
  t.regex(c.ports.wan.peer, new RegExp(`vxlan 5 127.0.0.1:${u2} -> 127.0.0.1:${u1}`));
  t.true(c.ports.wan.socket.rxFrames > 0 && c.ports.wan.socket.rxForeign === 0);
  t.is(await sw1.stop(), 0);
  t.is(await sw2.stop(), 0);
});

/** MWr TLPs with distinct addresses and data of 4 to 4096 bytes. */
function writes(n: number, base: bigint): Buffer[] {
  return Array.from({ length: n }, (_, i) => {
    const data = Buffer.alloc(4 << (i % 11), i & 0xff);
    const tlp: MemWriteTlp = {
      type: TlpType.MWr64, tc: 0, attr: 0, poisoned: false, requesterId: 0x0100, tag: i & 0x3ff, firstBe: 0xf, lastBe: data.length > 4 ? 0xf : 0,
      address: base + BigInt(i) * 0x1000n, data,
    };
    return encodeTlp(tlp);
  });
}

test('two endpoints through the switch process: exactly once, in order, under loss set at run time; counters; clean exit', async (t) => {
  const links = 1;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fabric-switch-'));
  const pcapDir = path.join(dir, 'pcap');
  // Port a0's peer is given on the command line, b0's over the control socket. The switch busy-polls.
  const sw = await startSwitch({
    dir,
    ports: ['a0', 'b0'],
    args: [...peerArgs(dir, 'a', links), '--vlan', `a0=trunk:${VLAN.vid}`, '--vlan', `b0=trunk:${VLAN.vid}`, '--pcap-dir', pcapDir, '--seed', '5', '--busy-poll', '200'],
  });
  t.teardown(() => void sw.stop());
  await sw.control.must({ port: 'b0', peer: path.join(dir, 'b0-station.sock') });
  await sw.control.must({ port: 'a0', dir: 'rx', set: { loss: 0.05 } });
  await sw.control.must({ port: 'b0', dir: 'tx', set: { loss: 0.05, duplicate: 0.02 } });
  t.like(await sw.control.request({ port: 'a0', set: { loss: 1.5 } }), { ok: false });
  t.like(await sw.control.request({ port: 'nope', set: { loss: 0 } }), { ok: false, error: 'no port "nope"' });

  const gotA: Buffer[] = [];
  const gotB: Buffer[] = [];
  const common = { replayTimeout: 5, heartbeatInterval: 20 };
  const a = endpoint({ dir, name: 'a', links, mac: macA, peerMac: macB, vlan: VLAN, channel: { ...common, deliver: (p) => gotA.push(Buffer.from(p)) } });
  const b = endpoint({ dir, name: 'b', links, mac: macB, peerMac: macA, vlan: VLAN, channel: { ...common, deliver: (p) => gotB.push(Buffer.from(p)) } });
  t.teardown(() => {
    a.close();
    b.close();
  });
  const toB = writes(1500, 0x1_0000_0000n);
  const toA = writes(500, 0x2_0000_0000n);
  for (const p of toB) a.channel.send(p);
  for (const p of toA) b.channel.send(p);
  await until(() => gotB.length >= toB.length && gotA.length >= toA.length, 'delivery', { timeoutMs: 40_000 });
  t.deepEqual(gotB, toB);
  t.deepEqual(gotA, toA);
  t.true(gotB.every((p) => decodeTlp(p).ok));
  t.true(a.channel.stats.txReplay > 0 && b.channel.stats.rxDuplicate > 0, 'the injected loss and duplication happened');

  // Junk on a0's wire (a port connected to its station hears nobody else): a runt is dropped by the switch;
  // a non-PCIeOE frame is flooded and dropped by the endpoint. The injected loss goes first, or it
  // could eat the junk before the switch counts it.
  await sw.control.must({ port: 'a0', dir: 'rx', set: { loss: 0 } });
  await sw.control.must({ port: 'b0', dir: 'tx', set: { loss: 0, duplicate: 0 } });
  a.ports[0]!.transmit(Buffer.alloc(9, 0xff));
  const junk = Buffer.concat([Buffer.from('ffffffffffff000000000000810000640800', 'hex'), Buffer.alloc(50)]);
  writeMac(junk, 6, macA(0)); // from a0's own station: port security drops any other source
  a.ports[0]!.transmit(junk);
  await until(() => b.channel.stats.rxBadFrame['bad-ethertype'] > 0, 'junk frame at b', { timeoutMs: 5000 });

  const reply = (await sw.control.must({ counters: true })) as { ports: Record<string, {
    switch: PortCounters; socket: { rxFrames: number; txFrames: number }; faults: { rx: { lost: number }; tx: { lost: number; duplicated: number } };
  }> };
  const { a0, b0 } = reply.ports;
  t.true(a0!.faults.rx.lost > 0 && b0!.faults.tx.lost > 0 && b0!.faults.tx.duplicated > 0);
  t.is(a0!.switch.rxDropped, 1, 'the runt');
  t.is(a0!.socket.rxFrames, a0!.switch.rxFrames + a0!.faults.rx.lost, 'every datagram reached the switch or was dropped by the fault injector');
  t.true(b0!.switch.txFlooded >= 1, 'the unknown-destination junk was flooded');
  t.is(a0!.switch.rxSourceViolations, 0, 'a0 carried only its station\'s frames');

  a.close();
  b.close();
  const final = (await sw.control.must({ counters: true, port: 'a0' })) as typeof reply;
  t.is(await sw.stop(), 0, 'SIGTERM ends the switch cleanly');
  for (const s of ['a0', 'b0', 'control']) t.false(fs.existsSync(sw.portPath(s)), `${s}.sock removed`);
  // The capture holds every frame the switch saw on a0, both ways, after the rx fault injector.
  const records = readPcap(fs.readFileSync(path.join(pcapDir, 'a0.pcap')));
  const c = final.ports.a0!.switch;
  t.true(records.length >= c.rxFrames + c.txFrames, `${records.length} records, counters ${c.rxFrames}+${c.txFrames} before the last heartbeats`);
  t.regex(sw.output(), /2 ports/);
});

test('a sub-millisecond latency set over the control socket holds every frame that long in the switch process, in order', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fabric-switch-'));
  const sw = await startSwitch({ dir, ports: ['a0', 'b0'], args: [...peerArgs(dir, 'a', 1), ...peerArgs(dir, 'b', 1), '--vlan', `a0=trunk:${VLAN.vid}`, '--vlan', `b0=trunk:${VLAN.vid}`] });
  t.teardown(() => void sw.stop());
  const latencyMs = 0.3; // below Node's 1 ms timers, which released it at once (a frame crosses this switch in well under that)
  await sw.control.must({ port: 'b0', dir: 'tx', set: { latency: latencyMs } });
  const got: { at: number; p: Buffer }[] = [];
  const a = endpoint({ dir, name: 'a', links: 1, mac: macA, peerMac: macB, vlan: VLAN, channel: { deliver: () => {} } });
  const b = endpoint({ dir, name: 'b', links: 1, mac: macB, peerMac: macA, vlan: VLAN, channel: { deliver: (p) => got.push({ at: performance.now(), p: Buffer.from(p) }) } });
  t.teardown(() => {
    a.close();
    b.close();
  });
  const sent = writes(40, 0x3_0000_0000n);
  const sentAt: number[] = [];
  for (const p of sent) {
    sentAt.push(performance.now());
    a.channel.send(p);
    const n = sentAt.length;
    await until(() => got.length >= n, 'delivery', { timeoutMs: 10_000 });
  }
  t.deepEqual(got.map((g) => g.p), sent);
  const quickest = Math.min(...got.map((g, i) => g.at - sentAt[i]!));
  t.true(quickest >= latencyMs - 0.002, `the quickest took ${(quickest * 1000).toFixed(0)} µs`);
  t.is(await sw.stop(), 0);
});

test('control socket: each port\'s egress queue (txQueued) and a CPU profile of the switch into its directory', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fabric-switch-'));
  const sw = await startSwitch({ dir, ports: ['a0', 'b0'], args: [] });
  t.teardown(() => void sw.stop());
  const counters = (await sw.control.must({ counters: true })) as { ports: Record<string, { txQueued: number }> };
  t.deepEqual(Object.values(counters.ports).map((p) => p.txQueued), [0, 0], 'nothing waits on an idle switch');
  t.like(await sw.control.requestLine(JSON.stringify({ profile: 'start' })), { ok: true, profiling: true });
  // A few requests for the profile to sample.
  for (let i = 0; i < 20; i++) await sw.control.must({ counters: true });
  t.like(await sw.control.requestLine(JSON.stringify({ profile: 'stop', file: '../x.cpuprofile' })), { ok: false });
  t.like(await sw.control.requestLine(JSON.stringify({ profile: 'stop', file: 'sw.cpuprofile' })), { ok: true, written: path.join(dir, 'sw.cpuprofile') });
  const profile = JSON.parse(fs.readFileSync(path.join(dir, 'sw.cpuprofile'), 'utf8')) as { nodes: unknown[]; samples: unknown[] };
  t.true(profile.nodes.length > 0 && Array.isArray(profile.samples));
  t.is(await sw.stop(), 0);
});
