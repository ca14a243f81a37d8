// The switch's native memif-to-memif path (src/fabric/switch/memif-forward.ts): frames between
// memif stations of a real switch process pass slot to slot once the core has routed them, in
// order with whatever the JavaScript path still carries, counted as before; faults switch a
// port back to the JavaScript path mid-stream; a malformed peer is cut off alone.
import test, { type ExecutionContext } from 'ava';
import * as path from 'node:path';
import { native } from '../../native/index.ts';
import { startSwitch } from '../../src/fabric/switch/switch-process.ts';
import { BROADCAST_MAC, type Mac, readMac, writeMac } from '../../src/fabric/wire/mac.ts';
import { MemifPort } from '../../src/fabric/wire/memif/port.ts';
import { until } from '../support/until.ts';

const ETHERTYPE = 0x88b5; // IEEE local experimental
const mac = (n: number): Mac => 0x02_00_00_00_5e_00 + n;

/** A frame from `src` to `dst` carrying `seq`, `bytes` long (its tail a pattern of seq). */
function frame(dst: Mac, src: Mac, seq: number, bytes: number): Buffer {
  const f = Buffer.alloc(bytes, seq & 0xff);
  writeMac(f, 0, dst);
  writeMac(f, 6, src);
  f.writeUInt16BE(ETHERTYPE, 12);
  f.writeUInt32BE(seq, 14);
  return f;
}

interface Station {
  mac: Mac;
  port: MemifPort;
  /** Frames received other than the stations' hellos. */
  got: Buffer[];
}

type Report = { ports: Record<string, { peer: string; switch: Record<string, number>; socket: Record<string, number>; fastPath: Record<string, number> | null; faults: Record<'tx' | 'rx', { passed: number; lost: number }> }> };

/** A switch process with memif ports `<name>0`, one raw memif station on each, every station's MAC learned. */
async function rig(t: ExecutionContext, names: string[], buffers: Record<string, number> = {}) {
  const sw = await startSwitch({ ports: [], args: names.flatMap((n) => ['--port', `${n}0=memif`]) });
  t.teardown(() => void sw.stop());
  const st: Record<string, Station> = {};
  names.forEach((n, i) => {
    const port = new MemifPort({ socket: path.join(sw.dir, `${n}0.memif`), role: 'client', bufferBytes: buffers[n] });
    const s: Station = { mac: mac(i), port, got: [] };
    port.attach((f) => {
      if (f.readUInt32BE(14) !== 0xffff_ffff) s.got.push(Buffer.from(f));
    });
    st[n] = s;
  });
  t.teardown(() => Object.values(st).forEach((s) => s.port.close()));
  await until(() => Object.values(st).every((s) => s.port.connected), 'every station connected', { timeoutMs: 20_000 });
  // Each says hello (broadcast, seq 0xffffffff): the switch learns and locks its MAC.
  for (const s of Object.values(st)) s.port.transmit(frame(BROADCAST_MAC, s.mac, 0xffff_ffff, 60));
  await until(async () => (await report(sw)).every((p) => p.switch.rxFrames >= 1), 'every hello at the switch', { timeoutMs: 30_000 });
  return { sw, st };
}

async function report(sw: Awaited<ReturnType<typeof startSwitch>>, port?: string) {
  const r = (await sw.control.must({ counters: true, ...(port ? { port } : {}) })) as Report;
  return Object.values(r.ports);
}
const counters = async (sw: Awaited<ReturnType<typeof startSwitch>>) => ((await sw.control.must({ counters: true })) as Report).ports;

/** Send `frames` from `from`, in bursts of `burst` with the event loop run between (the ring holds 1024 slots). */
async function send(from: Station, frames: Buffer[], burst = 200): Promise<void> {
  for (let i = 0; i < frames.length; i += burst) {
    for (const f of frames.slice(i, i + burst)) from.port.transmit(f);
    await until(() => from.port.txWaiting === 0, 'the burst in the ring');
  }
}

const seqs = (fs: Buffer[]) => fs.map((f) => f.readUInt32BE(14));

/**
 * One frame `from` → `to` on drained rings with the route in place takes the native path: how
 * many frames of a burst do depends on timing (frames queue in JS while a station is slow to
 * drain its ring), one alone after the burst does not.
 */
async function oneGoesNatively(t: ExecutionContext, sw: Awaited<ReturnType<typeof startSwitch>>, from: [string, Station], to: Station, seq: number) {
  const [port, station] = from;
  const before = (await counters(sw))[port]!.fastPath!.rxFrames;
  const had = to.got.length;
  await send(station, [frame(to.mac, station.mac, seq, 100)]);
  await until(() => to.got.length === had + 1, `frame ${seq} across`);
  t.is(to.got[had]!.readUInt32BE(14), seq);
  t.is((await counters(sw))[port]!.fastPath!.rxFrames, before + 1, `frame ${seq} from ${port} went natively`);
}

test('memif to memif: frames pass natively, intact and in order, chained ones too, and are counted as before', async (t) => {
  // a's ring buffers are 2 KiB: its longer frames arrive chained, and longer frames to it leave chained.
  const { sw, st } = await rig(t, ['a', 'b'], { a: 2048 });
  const { a, b } = st as Record<'a' | 'b', Station>;
  const sizes = (i: number) => [60, 1514, 4200, 9000, 64, 2048, 2049][i % 7]!;
  const toB = Array.from({ length: 1500 }, (_, i) => frame(b.mac, a.mac, i, sizes(i)));
  const toA = Array.from({ length: 1500 }, (_, i) => frame(a.mac, b.mac, i, sizes(i + 3)));
  await Promise.all([send(a, toB), send(b, toA)]);
  await until(() => a.got.length >= toA.length && b.got.length >= toB.length, 'every frame across', { timeoutMs: 30_000 });
  t.deepEqual(b.got, toB);
  t.deepEqual(a.got, toA);
  const c = await counters(sw);
  for (const [name, s] of [['a0', a], ['b0', b]] as const) {
    t.is(c[name]!.switch.rxFrames, s.port.counters.txFrames, `${name}: switch rxFrames`);
    t.is(c[name]!.switch.txFrames, s.port.counters.rxFrames, `${name}: switch txFrames`);
    t.is(c[name]!.switch.rxBytes, s.port.counters.txBytes, `${name}: switch rxBytes`);
    t.is(c[name]!.switch.txBytes, s.port.counters.rxBytes, `${name}: switch txBytes`);
    t.is(c[name]!.socket.rxFrames, s.port.counters.txFrames, `${name}: socket rxFrames`);
    t.is(c[name]!.socket.txFrames, s.port.counters.rxFrames, `${name}: socket txFrames`);
  }
  await oneGoesNatively(t, sw, ['a0', a], b, 9000);
  await oneGoesNatively(t, sw, ['b0', b], a, 9001);
});

test('frames the JS path takes (broadcast, unknown destination) keep their place among natively forwarded ones', async (t) => {
  const { sw, st } = await rig(t, ['a', 'b', 'c']);
  const { a, b, c } = st as Record<'a' | 'b' | 'c', Station>;
  const unknown = mac(99);
  const dst = (i: number) => (i % 7 === 3 ? BROADCAST_MAC : i % 11 === 5 ? unknown : i % 5 === 1 ? c.mac : b.mac);
  const frames = Array.from({ length: 4000 }, (_, i) => frame(dst(i), a.mac, i, 100 + (i % 900)));
  const toB = frames.filter((_, i) => dst(i) !== c.mac);
  const toC = frames.filter((_, i) => dst(i) !== b.mac);
  await send(a, frames, 300);
  await until(() => b.got.length >= toB.length && c.got.length >= toC.length, 'every frame at b and c', { timeoutMs: 30_000 });
  t.deepEqual(seqs(b.got), seqs(toB));
  t.deepEqual(b.got, toB);
  t.deepEqual(c.got, toC);
  const r = await counters(sw);
  t.true(r.b0!.switch.txFlooded > 0, 'some were flooded by the core');
  t.is(r.b0!.switch.txFrames, b.port.counters.rxFrames);
  t.is(r.c0!.switch.txFrames, c.port.counters.rxFrames);
  await oneGoesNatively(t, sw, ['a0', a], b, 9000);
});

test('faults set mid-stream move a port to the JS path without loss or reordering', async (t) => {
  const { sw, st } = await rig(t, ['a', 'b']);
  const { a, b } = st as Record<'a' | 'b', Station>;
  const frames = Array.from({ length: 3000 }, (_, i) => frame(b.mac, a.mac, i, 64 + (i % 1400)));
  await send(a, frames.slice(0, 1000));
  await until(() => b.got.length === 1000, 'the first frames at b');
  await oneGoesNatively(t, sw, ['a0', a], b, 9000);
  b.got.pop();
  // Without waiting for them to arrive: later frames meet the injector (1 ms of latency, then jitter on the way in).
  const sending = send(a, frames.slice(1000), 100);
  await sw.control.must({ port: 'b0', dir: 'tx', set: { latency: 1 } });
  await sw.control.must({ port: 'a0', dir: 'rx', set: { jitter: 0 } });
  await sending;
  await until(() => b.got.length >= frames.length, 'every frame at b', { timeoutMs: 30_000 });
  t.deepEqual(seqs(b.got), seqs(frames));
  t.deepEqual(b.got, frames);
  const r = await counters(sw);
  t.true(r.b0!.faults.tx.passed > 0, 'later frames passed the injector');
  t.is(r.b0!.switch.txFrames, b.port.counters.rxFrames);
  // Once both ports are under the injector, nothing more goes natively.
  const settled = r.b0!.fastPath!.txFrames;
  await send(a, [frame(b.mac, a.mac, 5000, 100)]);
  await until(() => b.got.length === frames.length + 1, 'one more frame');
  t.is((await counters(sw)).b0!.fastPath!.txFrames, settled);
});

test('loss alone keeps the ports native: frames dropped at about that rate in from a station and out to one, the rest intact and in order, every drop counted', async (t) => {
  const { sw, st } = await rig(t, ['a', 'b']);
  const { a, b } = st as Record<'a' | 'b', Station>;
  await send(a, [frame(b.mac, a.mac, 0, 100)]);
  await until(() => b.got.length === 1, 'the first frame at b');
  await oneGoesNatively(t, sw, ['a0', a], b, 1);
  const n = 4000;
  for (const [port, dir] of [['b0', 'tx'], ['a0', 'rx']] as const) {
    await sw.control.must({ port, dir, set: { loss: 0.1 } });
    const had = b.got.length;
    const before = await counters(sw);
    const faults = (r: Awaited<ReturnType<typeof counters>>) => r[port]!.faults[dir];
    const base = 10_000 * (dir === 'tx' ? 1 : 2);
    const frames = Array.from({ length: n }, (_, i) => frame(b.mac, a.mac, base + i, 64 + (i % 1400)));
    await send(a, frames, 100);
    let lost = 0;
    await until(async () => (lost = faults(await counters(sw)).lost - faults(before).lost) + b.got.length - had === n, `every frame at b or lost (${port} ${dir})`, { timeoutMs: 30_000 });
    const after = await counters(sw);
    // Binomial(4000, 0.1): 400 ± 19; the bounds are six deviations wide.
    t.true(lost > 285 && lost < 515, `${lost} of ${n} lost on ${port} ${dir}`);
    t.is(faults(after).passed - faults(before).passed, n - lost, `${port} ${dir}: every frame lost or passed`);
    const got = b.got.slice(had);
    const index = new Map(frames.map((f, i) => [f.readUInt32BE(14), i]));
    t.true(got.every((f, i) => i === 0 || index.get(f.readUInt32BE(14))! > index.get(got[i - 1]!.readUInt32BE(14))!), 'in order');
    t.true(got.every((f) => f.equals(frames[index.get(f.readUInt32BE(14))!]!)), 'intact');
    t.true(after.a0!.fastPath!.rxFrames - before.a0!.fastPath!.rxFrames > n / 2, `${port} ${dir}: most frames natively`);
    await sw.control.must({ port, dir, set: { loss: 0 } });
  }
});

test('faults cleared mid-stream: once the frames they held have left, the ports go native again, nothing lost or reordered', async (t) => {
  const { sw, st } = await rig(t, ['a', 'b']);
  const { a, b } = st as Record<'a' | 'b', Station>;
  const frames = Array.from({ length: 2000 }, (_, i) => frame(b.mac, a.mac, i, 64 + (i % 1400)));
  await sw.control.must({ port: 'b0', dir: 'tx', set: { latency: 2 } });
  // Cleared while frames are still held on b0's wire: those after must queue behind them.
  const sending = send(a, frames.slice(0, 1000), 100);
  await until(() => b.got.length > 0, 'the first delayed frames at b');
  await sw.control.must({ port: 'b0', dir: 'tx', set: { latency: 0 } });
  await sending;
  await send(a, frames.slice(1000), 100);
  await until(() => b.got.length === frames.length, 'every frame at b', { timeoutMs: 30_000 });
  t.deepEqual(b.got, frames);
  t.true((await counters(sw)).b0!.faults.tx.passed > 0, 'the first frames passed the injector');
  await oneGoesNatively(t, sw, ['a0', a], b, 9000);
});

test('a station whose ring turns malformed after native routes exist is cut off; the other ports carry on', async (t) => {
  const { sw, st } = await rig(t, ['a', 'b', 'c']);
  const { a, b, c } = st as Record<'a' | 'b' | 'c', Station>;
  const first = Array.from({ length: 300 }, (_, i) => frame(b.mac, a.mac, i, 200));
  await send(a, first);
  await until(() => b.got.length === first.length, 'a -> b');
  t.deepEqual(b.got, first);
  // a publishes a frame whose descriptor points far outside its region.
  const ring = a.port.txRing!;
  const bytes = ring.bytes;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const head = view.getUint16(6, true);
  const d = 128 + (head & (ring.size - 1)) * 16;
  view.setUint16(d, 0, true);
  view.setUint16(d + 2, 0, true);
  view.setUint32(d + 4, 100, true);
  view.setUint32(d + 8, 0xffff_ff00, true);
  view.setUint16(6, (head + 1) & 0xffff, true);
  native.eventfdWrite(a.port.txEventFd);
  await until(() => /bad descriptor/.test(sw.output()), 'the switch cuts a off');
  // Meanwhile and after, c and b exchange frames natively, intact and in order.
  const cb = Array.from({ length: 1000 }, (_, i) => frame(b.mac, c.mac, 10_000 + i, 60 + i));
  const bc = Array.from({ length: 1000 }, (_, i) => frame(c.mac, b.mac, 20_000 + i, 1060 - i));
  await Promise.all([send(c, cb), send(b, bc)]);
  await until(() => b.got.length === first.length + cb.length && c.got.length === bc.length, 'b <-> c', { timeoutMs: 30_000 });
  t.deepEqual(b.got.slice(first.length), cb);
  t.deepEqual(c.got, bc);
  t.is(readMac(c.got[0]!, 6), b.mac);
  await oneGoesNatively(t, sw, ['c0', c], b, 30_000);
  await oneGoesNatively(t, sw, ['b0', b], c, 30_001);
});

test('one frame at a time on idle rings: the switch serves each wake-up in native code, JavaScript not entered', async (t) => {
  const { sw, st } = await rig(t, ['a', 'b']);
  const { a, b } = st as Record<'a' | 'b', Station>;
  // The first frames go through the core, which installs the routes, and let the JS pass open both ports.
  for (let i = 0; i < 4; i++) {
    await send(a, [frame(b.mac, a.mac, i, 100)]);
    await until(() => b.got.length === i + 1, `warm-up frame ${i} at b`);
    await send(b, [frame(a.mac, b.mac, i, 100)]);
    await until(() => a.got.length === i + 1, `warm-up frame ${i} at a`);
  }
  const before = await counters(sw);
  const n = 20;
  for (let i = 4; i < 4 + n; i++) {
    await send(a, [frame(b.mac, a.mac, i, 100 + i)]);
    await until(() => b.got.length === i + 1, `frame ${i} at b`);
    await send(b, [frame(a.mac, b.mac, i, 1000 + i)]);
    await until(() => a.got.length === i + 1, `frame ${i} at a`);
  }
  t.deepEqual(seqs(b.got), Array.from({ length: 4 + n }, (_, i) => i));
  t.deepEqual(seqs(a.got), Array.from({ length: 4 + n }, (_, i) => i));
  const after = await counters(sw);
  for (const p of ['a0', 'b0']) {
    t.is(after[p]!.fastPath!.rxFrames - before[p]!.fastPath!.rxFrames, n, `${p}: every frame natively`);
    // Each frame woke the sleeping switch; the 50 ms sweep may take some through the JS pass instead
    // (more of them on a loaded machine), so most, not all, are served natively.
    const wakes = after[p]!.fastPath!.rxWakes! - before[p]!.fastPath!.rxWakes!;
    t.true(wakes >= n / 2 && wakes <= n, `${p}: ${wakes} of ${n} wake-ups served natively`);
    // The port's own count (JS wake-ups) is what the socket report shows beyond them.
    const js = after[p]!.socket.rxSignals! - before[p]!.socket.rxSignals! - wakes;
    t.true(js >= 0 && js <= n - wakes, `${p}: ${js} wake-ups through JavaScript`);
  }
});

test('a station that goes and comes back while routes to it exist: frames meanwhile are not written to its old rings, and flow natively to the new session', async (t) => {
  const { sw, st } = await rig(t, ['a', 'b']);
  const { a, b } = st as Record<'a' | 'b', Station>;
  const first = Array.from({ length: 200 }, (_, i) => frame(b.mac, a.mac, i, 300));
  await send(a, first);
  await until(() => b.got.length === first.length, 'a -> b');
  await oneGoesNatively(t, sw, ['a0', a], b, 1000);
  // b goes: the switch ends its session and unmaps its rings; a keeps sending to it.
  b.port.close();
  await until(async () => /not connected/.test((await report(sw, 'b0'))[0]!.peer), 'the switch sees b gone');
  await send(a, Array.from({ length: 50 }, (_, i) => frame(b.mac, a.mac, 2000 + i, 300)));
  await until(async () => (await report(sw, 'a0'))[0]!.switch.rxFrames >= 1 + first.length + 1 + 50, 'the switch took them');
  // b comes back with the same MAC.
  const again = new MemifPort({ socket: path.join(sw.dir, 'b0.memif'), role: 'client' });
  t.teardown(() => again.close());
  const got: Buffer[] = [];
  again.attach((f) => got.push(Buffer.from(f)));
  await until(() => again.connected, 'b connected again', { timeoutMs: 20_000 });
  const later = Array.from({ length: 300 }, (_, i) => frame(b.mac, a.mac, 3000 + i, 64 + i));
  await send(a, later);
  await until(() => got.length === later.length, 'a -> the new b');
  t.deepEqual(got, later);
  const nb: Station = { mac: b.mac, port: again, got };
  await oneGoesNatively(t, sw, ['a0', a], nb, 4000);
  t.is(sw.proc.exitCode, null, 'the switch is alive');
});
