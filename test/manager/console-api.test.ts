// The manager's read and fault API, its web console's files and the `lab console`, `lab links`,
// `lab fault` and `lab capture` commands, against real processes: the `hotplug` topology's
// switch, DI, HIs and manager without guests (console-support.ts).
import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { decodeFrame } from '../../src/fabric/wire/frame.ts';
import { readPcap } from '../../src/fabric/wire/pcap.ts';
import { ManagerClient, ManagerError } from '../../src/manager/client.ts';
import type { LinkView } from '../../src/manager/links.ts';
import type { StationsFile } from '../../src/manager/station-link.ts';
import { until } from '../support/until.ts';
import { GuestlessLab } from './console-support.ts';

const lab = new GuestlessLab();
const labBin = fileURLToPath(new URL('../../bin/lab.mjs', import.meta.url));
test.before(() => lab.start());
test.after.always(() => lab.stop());

async function labOk(args: string[]) {
  const r = await lab.lab(args);
  if (r.code !== 0) throw new Error(`lab ${args.join(' ')}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}
const links = async () => JSON.parse(await labOk(['links', '--json'])) as LinkView[];

test.serial('lab console prints the URL with the token; the page and its script are served, the API only with the token', async (t) => {
  const { url } = JSON.parse(await labOk(['console', '--json'])) as { url: string };
  const token = readFileSync(join(lab.managerDir, 'token'), 'utf8').trim();
  t.regex(url, new RegExp(`^http://127\\.0\\.0\\.1:\\d+/#token=${token}$`));
  t.is((await labOk(['console'])).trim(), url);
  t.regex(await labOk(['console', '--help']), /usage: lab console \[--json\]/);
  const page = await fetch(url);
  t.is(page.status, 200);
  t.regex(await page.text(), /<svg id="fabric"/);
  const script = await fetch(new URL('/console.js', url));
  t.regex(script.headers.get('content-type')!, /javascript/);
  t.regex(await script.text(), /new WebSocket/);
  t.is((await fetch(new URL('/api.json', url))).status, 404);
  // A browser gives the token as a subprotocol; a wrong one is refused before a socket exists.
  const ws = (protocol: string) =>
    new Promise<string>((resolve) => {
      const s = new WebSocket(url.replace('http', 'ws').replace(/#.*/, ''), [protocol]);
      s.once('open', () => (resolve(`open ${s.protocol}`), s.close()));
      s.once('unexpected-response', (_q, res) => resolve(`refused ${res.statusCode}`));
    });
  t.is(await ws(`token.${token}`), `open token.${token}`);
  t.is(await ws('token.0000'), 'refused 401');
});

test.serial('links: each HI and DI link with the switch counters, which move as the stations talk', async (t) => {
  const first = await links();
  t.deepEqual(first.map((l) => `${l.kind} ${l.station} ${l.port}`).sort(), ['di di di0', 'di di di1', 'hi hi-host-a hi-host-a0', 'hi hi-host-a hi-host-a1', 'hi hi-host-b hi-host-b0', 'hi hi-host-b hi-host-b1', 'manager manager manager0']);
  t.like(first.find((l) => l.port === 'hi-host-a0'), { host: 'host-a', up: true, mac: '02:00:00:01:00:00' });
  const before = first.reduce((n, l) => n + l.rxFrames, 0);
  await until(async () => (await links()).reduce((n, l) => n + l.rxFrames, 0) > before, 'frames counted on the links', { timeoutMs: 30_000, everyMs: 300 });
  t.regex(await labOk(['links']), /^di0 +DI di +up +rx \d+ tx \d+ frames, \d+ dropped; no faults$/m);
});

test.serial('lab fault sets loss, delay and down on a link through the manager; clear takes them away', async (t) => {
  t.is((await labOk(['fault', 'di0', 'loss=10%', 'delay=5ms'])).trim(), 'di0: tx loss 0.1, latency 5 ms; rx loss 0.1, latency 5 ms');
  t.like((await links()).find((l) => l.port === 'di0')!.faults, { tx: { loss: 0.1, latency: 5 }, rx: { loss: 0.1, latency: 5 } });
  const down = JSON.parse(await labOk(['fault', 'hi-host-b', 'down', '--dir', 'tx', '--json']));
  t.deepEqual(Object.keys(down), ['hi-host-b0', 'hi-host-b1'], 'a station name means all its links');
  t.like(down['hi-host-b0'], { tx: { down: true }, rx: { down: false } });
  t.false((await links()).find((l) => l.port === 'hi-host-b1')!.up);
  await labOk(['fault', 'hi-host-b', 'clear']);
  await labOk(['fault', 'di0', 'clear']);
  t.true((await links()).every((l) => l.up && l.faults.tx.loss === 0 && l.faults.rx.latency === 0));

  const bad = await lab.lab(['fault', 'di0', 'loss=lots']);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /loss=lots: expected a number/);
  const range = await lab.lab(['fault', 'di0', 'loss=2']);
  t.is(range.code, 1);
  t.regex(range.stderr, /switch: bad request: .*loss/s);
  const unknown = await lab.lab(['fault', 'nope0', 'down']);
  t.is(unknown.code, 1);
  t.regex(unknown.stderr, /no link "nope0" \(links: .*hi-host-a0, .*; or an HI, DI or host name for all its links\)/);
  t.regex(await labOk(['fault', '--help']), /loss=P duplicate=P/);
});

test.serial('lab capture writes the link\'s frames as pcap, or prints a line per frame', async (t) => {
  const file = join(lab.state, 'di0.pcap');
  const r = JSON.parse(await labOk(['capture', 'di0', '-w', file, '--seconds', '3', '--json']));
  t.like(r, { link: 'di0', ports: ['di0'], file });
  t.true(r.frames > 0, 'the DI heartbeats its hosts');
  const records = readPcap(readFileSync(file));
  t.is(records.length, r.frames);
  const decoded = records.map((x) => decodeFrame(x.data));
  t.true(decoded.every((d) => d.ok), 'every frame is PCIeOE');
  const printed = await labOk(['capture', 'all', '--seconds', '2']);
  t.regex(printed, /^\d\d:\d\d:\d\d\.\d{6} 02:00:00:0[12]:00:0[01] > \S+ \S+ ch \d+ seq \d+ ack \d+ payload \d+, \d+ bytes$/m);
  t.regex((await lab.lab(['capture', 'nope'])).stderr, /no link "nope"/);
});

test.serial('lab capture ends with Ctrl-C: the capture is stopped and the file written', async (t) => {
  const file = join(lab.state, 'sigint.pcap');
  const child = spawn(process.execPath, [labBin, 'capture', 'hi-host-a0', '-w', file], { env: lab.env });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  await until(() => stderr.includes('capturing hi-host-a0'), 'the capture to start', { timeoutMs: 60_000, everyMs: 50 });
  // Until the switch has written a frame of it.
  await until(() => existsSync(file) || readdirSync(join(lab.state, 'sockets', 'sw')).some((f) => f.endsWith('.pcap') && statSync(join(lab.state, 'sockets', 'sw', f)).size > 24), 'a captured frame', { timeoutMs: 30_000, everyMs: 100 });
  child.kill('SIGINT');
  const code = await new Promise((resolve) => child.once('exit', resolve));
  t.is(code, 0, stderr);
  const frames = Number(/(\d+) frames in /.exec(stderr)?.[1]);
  t.true(frames > 0, stderr);
  t.is(readPcap(readFileSync(file)).length, frames);
  t.deepEqual(readdirSync(join(lab.state, 'sockets', 'sw')).filter((f) => f.endsWith('.pcap')), [], "the switch's capture file is removed");
});

test.serial('a capture whose client goes away without stopping it is stopped and its file removed', async (t) => {
  const swDir = join(lab.state, 'sockets', 'sw');
  const c = await ManagerClient.connect(lab.managerDir);
  const { file } = await c.call<{ file: string }>({ op: 'capture', link: 'all' });
  t.true(existsSync(file));
  c.close();
  await until(() => !existsSync(file), 'the capture file removed', { timeoutMs: 10_000, everyMs: 50 });
  t.deepEqual(readdirSync(swDir).filter((f) => f.endsWith('.pcap')), []);
});

test.serial('assign through the API without a guest: the error comes back, nothing changed', async (t) => {
  const c = await ManagerClient.connect(lab.managerDir);
  try {
    const err = await t.throwsAsync(c.call({ op: 'assign', host: 'host-a', function: 'di/fn0' }));
    t.true(err instanceof ManagerError);
    t.regex(err!.message, /host-a/);
    t.deepEqual((await c.call<{ assignments: unknown[] }>({ op: 'list' })).assignments, []);
    const bad = await t.throwsAsync(c.call({ op: 'fault', link: 'di0', set: { loss: 'x' } } as never));
    t.is((bad as ManagerError).code, 'bad-request');
  } finally {
    c.close();
  }
});

test.serial('list over the API carries what the manager discovered on the wire: both HIs with their slots, the DI with its functions', async (t) => {
  const c = await ManagerClient.connect(lab.managerDir);
  try {
    type Listed = { discovery?: StationsFile };
    const alive = (l: Listed) =>
      ['hi-host-a', 'hi-host-b', 'di'].every((n) => {
        const s = l.discovery?.stations.find((x) => x.name === n);
        return s?.alive === true && (s.slots ?? s.functions) !== undefined;
      });
    let listed: Listed = {};
    await until(async () => alive((listed = await c.call<Listed>({ op: 'list' }))), 'list showing both HIs and the DI alive with their reports', { timeoutMs: 30_000, everyMs: 200 });
    const d = listed.discovery!;
    t.is(d.manager.mac, '02:00:00:04:00:00');
    t.deepEqual(d.stations.map((s) => [s.name, s.role, s.links.length]), [['hi-host-a', 'hi', 2], ['hi-host-b', 'hi', 2], ['di', 'di', 2]]);
    for (const hi of ['hi-host-a', 'hi-host-b']) t.deepEqual(d.stations.find((s) => s.name === hi)!.slots, [{ slot: 0, state: 'free' }, { slot: 1, state: 'free' }]);
    const di = d.stations.find((s) => s.name === 'di')!;
    t.not(di.epoch, 0);
    t.deepEqual(di.functions!.map((f) => [f.name, f.class]), [['fn0', '0x010802'], ['fn1', '0x010802']]);
  } finally {
    c.close();
  }
});
