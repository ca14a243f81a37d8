// REGION_WRITE and REGION_READ round trips per second through the vfio-user
// server (test device, BAR0 scratch register), against a raw unix-socket
// ping-pong of the same message size measured in the same run and process
// layout. Client and server share one Node process and event loop, so these
// numbers are an upper bound for the Node side; CPU placement is whatever
// the OS chose (run under `taskset -c 0` to pin).
//
//   node --import tsx bench/vfio-user.ts [seconds-per-case]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native, PollEvent } from '../native/index.ts';
import { TestDevice, TestReg } from '../src/devices/testdev/testdev.ts';
import { servePciFunction } from '../src/vfio-user/pci-adapter.ts';
import { VfioUserClient } from '../test/vfio-user/client.ts';

const seconds = Number(process.argv[2] ?? 2);

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
rmSync(dir, { recursive: true, force: true });
