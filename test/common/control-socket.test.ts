// Control sockets take requests from anyone who reaches them: a CPU profile lands only in the
// process's state directory, a switch port is aimed only at a socket in the lab's socket tree,
// and shaping rates stay within bounds.
import test from 'ava';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as net from 'node:net';
import { cpuProfileControl, serveLineControl } from '../../src/common/control-socket.ts';
import { parseSwitchArgs, runSwitch } from '../../src/fabric/switch/main.ts';

function tempDir(t: import('ava').ExecutionContext, prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test('CPU profiles are written only as new plain-named files in the state directory', async (t) => {
  const dir = tempDir(t, 'pcieoe-prof-');
  const outside = tempDir(t, 'pcieoe-prof-out-');
  const prof = cpuProfileControl(dir);
  t.is(prof({ stats: true }), undefined, 'not a profile request');
  await prof({ profile: 'start' });
  for (const file of [join(outside, 'x.cpuprofile'), '../x.cpuprofile', 'sub/x.cpuprofile', '.hidden.cpuprofile', 'x.json']) {
    await t.throwsAsync(prof({ profile: 'stop', file })!, { message: /expected a plain name like "run1.cpuprofile"/ }, file);
  }
  writeFileSync(join(outside, 'victim'), 'keep');
  symlinkSync(join(outside, 'victim'), join(dir, 'link.cpuprofile'));
  await t.throwsAsync(prof({ profile: 'stop', file: 'link.cpuprofile' })!, { code: 'EEXIST' }, 'a symlink at the name is not followed');
  t.is(readFileSync(join(outside, 'victim'), 'utf8'), 'keep');
  const r = await prof({ profile: 'stop', file: 'run1.cpuprofile' })!;
  t.is(r['written'], join(dir, 'run1.cpuprofile'));
  t.truthy((JSON.parse(readFileSync(join(dir, 'run1.cpuprofile'), 'utf8')) as { nodes?: unknown[] }).nodes?.length);
  await t.throwsAsync(prof({ profile: 'stop', file: 'run2.cpuprofile' })!, { message: 'not profiling' });
  t.false(existsSync(join(dir, 'run2.cpuprofile')));
});

test('switch control: a port is aimed only at a socket path in the lab\'s socket tree; rates are bounded', async (t) => {
  const root = tempDir(t, 'pcieoe-swctl-');
  const socketDir = join(root, 'sw');
  const sw = await runSwitch(parseSwitchArgs(['--port', 'a', '--port', 'b'], { LAB_SOCKET_DIR: socketDir }), () => {});
  t.teardown(() => sw.close());
  t.is(statSync(join(socketDir, 'control.sock')).mode & 0o777, 0o600, 'the control socket is the owner\'s alone');
  const peer = (p: string | null) => sw.handle({ port: 'a', peer: p });
  const refused = (r: Record<string, unknown>, error: RegExp) => {
    t.false(r['ok']);
    t.regex(String(r['error']), error);
  };
  t.like(peer('/etc/passwd'), { ok: false, error: `peer "/etc/passwd": must lie under ${root}, where the lab's sockets are` });
  refused(peer(`${root}/sw/../../x.sock`), /must be an absolute path without/);
  refused(peer('relative.sock'), /must be an absolute path/);
  refused(peer(`${root}/${'x'.repeat(120)}`), /bad request/);
  mkdirSync(join(root, 'hi'));
  writeFileSync(join(root, 'hi', 'file'), '');
  refused(peer(join(root, 'hi', 'file')), /is there but is not a socket/);
  symlinkSync(join(socketDir, 'b.sock'), join(root, 'hi', 'link.sock'));
  refused(peer(join(root, 'hi', 'link.sock')), /is there but is not a socket/);
  t.like(peer(join(root, 'hi', 'link0.sock')), { ok: true, peer: join(root, 'hi', 'link0.sock') }, 'not bound yet: the station binds it later');
  t.like(peer(join(socketDir, 'b.sock')), { ok: true });
  t.like(peer(null), { ok: true, peer: null });

  const rate = (rateGbps: number) => sw.handle({ port: 'a', set: { rateGbps } });
  refused(rate(1e-9), /rateGbps: 0 \(unlimited\) or 0.001-1000/);
  t.like(rate(5000), { ok: false });
  t.like(rate(-1), { ok: false });
  t.like(rate(0.5), { ok: true });
  t.like(rate(0), { ok: true });
});

test('closing a control server hangs up on clients still connected: a client that never leaves cannot hold a shutdown', async (t) => {
  const path = join(tempDir(t, 'pcieoe-ctl-'), 'control.sock');
  const server = await serveLineControl(path, () => ({ pong: true }));
  const client = net.connect(path);
  const ended = new Promise<void>((resolve) => client.on('close', () => resolve()));
  client.on('error', () => {});
  const reply = await new Promise<string>((resolve) => {
    client.once('data', (d) => resolve(d.toString()));
    client.write('{}\n');
  });
  t.deepEqual(JSON.parse(reply), { ok: true, pong: true });
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await ended;
  t.true(client.destroyed);
});
