// Frame-path tracing (src/fabric/trace.ts): with PCIEOE_TRACE a process writes its frame events at
// exit, each frame named by its PCIeOE header in every process; without it nothing is written.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import test from 'ava';

/** One heartbeat frame from one unix datagram port to another, in a child process that has exited on return. */
function exchange(env: Record<string, string>): void {
  const script = `
    import { UnixDgramPort } from './src/fabric/wire/unix-dgram-port.ts';
    import { encodeFrame } from './src/fabric/wire/frame.ts';
    const dir = ${JSON.stringify(env.SOCKETS)};
    const a = new UnixDgramPort({ path: dir + '/a.sock', peer: dir + '/b.sock' });
    const b = new UnixDgramPort({ path: dir + '/b.sock', peer: dir + '/a.sock' });
    b.attach(() => { a.close(); b.close(); });
    a.transmit(encodeFrame({ dst: 2, src: 0x0a01, vlan: null, type: 3, flags: 0, channel: 7, seq: 300, ack: 5, credits: 9, epoch: 1, peerEpoch: 0 }, new Uint8Array(0)));
  `;
  execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env: { ...process.env, ...env }, cwd: path.resolve(import.meta.dirname, '../..') });
}

test('PCIEOE_TRACE: the frame is recorded as given, sent, woken for and received, by its header', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pcieoe-trace-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  exchange({ SOCKETS: dir, PCIEOE_TRACE: dir, PCIEOE_TRACE_NAME: 'rig' });
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.trace'));
  t.is(files.length, 1);
  t.regex(files[0]!, /^rig-\d+\.trace$/);
  const lines = fs.readFileSync(path.join(dir, files[0]!), 'utf8').trim().split('\n').map((l) => l.split(' '));
  const events = lines.map(([, what, ...id]) => `${what} ${id.join(' ')}`.trim());
  // channel 7, heartbeat (3), flags 0, seq 300, ack 5, source MAC's last byte 01, no TLP
  t.deepEqual(events, ['tx 7 3 0 300 5 1 -', 'out 7 3 0 300 5 1 -', 'wake', 'rx 7 3 0 300 5 1 -']);
  const times = lines.map(([ns]) => Number(ns));
  t.deepEqual([...times].sort((x, y) => x - y), times, 'in time order');
});

test('without PCIEOE_TRACE nothing is written', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pcieoe-trace-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  exchange({ SOCKETS: dir, PCIEOE_TRACE: '' });
  t.deepEqual(fs.readdirSync(dir).filter((f) => f.endsWith('.trace')), []);
});
