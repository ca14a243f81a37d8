// REGION_WRITE and REGION_READ round trips per second through the vfio-user
// server (test device, BAR0 scratch register), against a raw unix-socket
// ping-pong of the same message size measured in the same run and process
// layout. First client and server share one Node process and event loop (an
// upper bound for the Node side; placement is whatever the OS chose), then the
// server runs as a separate process (src/direct-attach/testdev-main.ts), pinned to
// the client's CPU and then to another one.
//
//   node --import tsx bench/vfio-user.ts [seconds-per-case]
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import { availableParallelism, tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { native, PollEvent } from '../native/index.ts';
import { TestDevice, TestReg } from '../src/devices/testdev/testdev.ts';
import { servePciFunction } from '../src/direct-attach/adapter.ts';
import { VfioUserClient } from '../src/vfio-user/client.ts';
import { record } from './lib/results.ts';

// run.ts passes flags (--quick) on: the seconds are the first argument that is not one.
const seconds = Number(process.argv.slice(2).find((a) => !a.startsWith('--')) ?? 2);
/** Where the server runs, for the figures recorded into the run's results. */
let scope = 'one process';

async function timed(name: string, once: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 1000; i++) await once(); // warm-up
  const end = performance.now() + seconds * 1000;
  let n = 0;
  const start = performance.now();
  while (performance.now() < end) {
    for (let i = 0; i < 256; i++) await once();
    n += 256;
  }
  const rate = n / ((performance.now() - start) / 1000);
  record({ kind: 'value', bench: 'vfio-user', name: `${scope}: ${name.trim()}`, value: 1e6 / rate, unit: 'µs per round trip' });
  console.log(`${name.padEnd(34)} ${Math.round(rate).toString().padStart(8)} round trips/s  ${(1e6 / rate).toFixed(1).padStart(6)} µs each`);
  return rate;
}

/** Raw baseline: a 36-byte request echoed by a peer watching its socket with Poll. */
function rawPingPong(): { once: () => Promise<void>; close: () => void } {
  const [a, b] = native.socketpair('stream');
  const bufB = new Uint8Array(4096);
  const peer = new native.Poll(b, () => {
    const n = native.recvmsg(b, bufB, []);
    if (n > 0) native.sendmsg(b, bufB.subarray(0, 32));
  });
  peer.start(PollEvent.Readable);
  const msg = new Uint8Array(36);
  const bufA = new Uint8Array(4096);
  let wake: (() => void) | undefined;
  const self = new native.Poll(a, () => {
    if (native.recvmsg(a, bufA, []) > 0) wake?.();
  });
  self.start(PollEvent.Readable);
  return {
    once: () =>
      new Promise<void>((resolve) => {
        wake = resolve;
        native.sendmsg(a, msg);
      }),
    close: () => {
      peer.close();
      self.close();
      native.close(a);
      native.close(b);
    },
  };
}

const dir = mkdtempSync(join(tmpdir(), 'pcieoe-bench-'));
const server = servePciFunction(new TestDevice(), { path: join(dir, 'bench.sock'), name: 'bench', log: () => {} });
const client = new VfioUserClient(server.path);
await client.version();
const data = new Uint8Array([1, 2, 3, 4]);

console.log(`vfio-user round trips, ${seconds} s per case, client and server in one Node ${process.version} process`);
const raw = rawPingPong();
const rawRate = await timed('raw unix socket (36 B echo)', raw.once);
raw.close();
const wr = await timed('REGION_WRITE 4 B (BAR0)', () => client.regionWrite(0, TestReg.Scratch, data));
const rd = await timed('REGION_READ 4 B (BAR0)', () => client.regionRead(0, TestReg.Scratch, 4));
const cfg = await timed('REGION_READ 4 B (config)', () => client.regionRead(7, 0, 4));
console.log(`relative to raw: write ${(wr / rawRate).toFixed(2)}x, read ${(rd / rawRate).toFixed(2)}x, config read ${(cfg / rawRate).toFixed(2)}x`);
client.close();
server.close();

// The same round trips with the server in its own process (the lab's testdev entry),
// as QEMU sees it: placement decides (design §8: cross-CPU wake-ups cost ~25 µs here).
const cpus = availableParallelism();
const placements: [string, string, string][] = [['pinned together', '0', '0']];
if (cpus > 1) placements.push(['spread', '0', '1']);
const mainTs = fileURLToPath(new URL('../src/direct-attach/testdev-main.ts', import.meta.url));
for (const [label, clientCpu, serverCpu] of placements) {
  // -a: every thread of this process (the event loop runs on the main one, libuv's pool too).
  execFileSync('taskset', ['-a', '-p', '-c', clientCpu, String(process.pid)], { stdio: 'ignore' });
  const child = spawn('taskset', ['-c', serverCpu, process.execPath, '--import', 'tsx', mainTs, '--socket-dir', dir, 'sep'], { stdio: 'ignore' });
  const sock = join(dir, 'sep.sock');
  const deadline = Date.now() + 20_000;
  while (!existsSync(sock)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('testdev server process did not come up');
    await new Promise((r) => setTimeout(r, 50));
  }
  const c = new VfioUserClient(sock);
  await c.version();
  scope = `server process, ${label}`;
  console.log(`server in its own process, ${label} (client CPU ${clientCpu}, server CPU ${serverCpu}):`);
  await timed(`  REGION_WRITE 4 B (BAR0)`, () => c.regionWrite(0, TestReg.Scratch, data));
  await timed(`  REGION_READ 4 B (BAR0)`, () => c.regionRead(0, TestReg.Scratch, 4));
  c.close();
  child.kill('SIGTERM');
  await once(child, 'exit');
}
rmSync(dir, { recursive: true, force: true });
