/**
 * Interoperability with DPDK's own memif driver (net_memif): dpdk-testpmd in
 * MAC-forward mode on one memif port, cabled to the lab switch's memif port,
 * first with testpmd as memif server (the switch port its client), then the
 * other way round. A memif station on another switch port sends frames to an
 * unknown MAC (flooded to testpmd's port); testpmd sends each back addressed
 * to the station, with its own source MAC: every frame must come back with
 * the rest of its bytes intact.
 *
 * Needs dpdk-testpmd and the memif PMD (lab setup installs them:
 * dpdk, dpdk-dev, librte-net-memif23, librte-mempool-ring23).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { startSwitch } from '../../src/fabric/switch/switch-process.ts';
import { MemifPort } from '../../src/fabric/wire/memif/port.ts';
import { until } from '../support/until.ts';

const testpmd = spawnSync('sh', ['-c', 'command -v dpdk-testpmd'], { encoding: 'utf8' }).stdout.trim();
const STATION = Buffer.from('020000000001', 'hex');
const UNKNOWN = Buffer.from('020000000099', 'hex');

function startTestpmd(role: 'server' | 'client', socket: string): { proc: ChildProcess; output(): string; stop(): Promise<void> } {
  // EAL keeps its runtime files in /var/run/dpdk/<prefix> (--in-memory, which would not, refuses --no-huge).
  const prefix = `pcieoe-memif-${process.pid}-${role}`;
  const proc = spawn(testpmd, [
    '-l', '0-1', '--no-huge', '-m', '256', '--no-pci', `--file-prefix=${prefix}`,
    '-d', 'librte_mempool_ring.so', '-d', 'librte_net_memif.so',
    `--vdev=net_memif0,role=${role},socket=${socket},socket-abstract=no`,
    '--', '--forward-mode=mac', `--eth-peer=0,${[...STATION].map((b) => b.toString(16).padStart(2, '0')).join(':')}`, '--auto-start', '--total-num-mbufs=16384',
  ], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  return {
    proc,
    output: () => out,
    async stop() {
      // testpmd without -i runs until a line on stdin ("Press enter to exit").
      if (proc.exitCode === null) proc.stdin!.end('\n');
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
      fs.rmSync(path.join('/var/run/dpdk', prefix), { recursive: true, force: true });
    },
  };
}

function frames(): Buffer[] {
  return Array.from({ length: 200 }, (_, i) => {
    const f = Buffer.alloc(60 + ((i * 37) % 1455));
    UNKNOWN.copy(f, 0);
    STATION.copy(f, 6);
    f.writeUInt16BE(0x88b5, 12); // local experimental EtherType
    f.writeUInt32BE(i, 14);
    for (let k = 18; k < f.length; k++) f[k] = (i + k) & 0xff;
    return f;
  });
}

async function interop(t: ExecutionContext, testpmdRole: 'server' | 'client'): Promise<void> {
  if (!testpmd) {
    // lab setup installs it (host package dpdk-dev); a missing testpmd must not pass as interop.
    t.fail('dpdk-testpmd is not installed: run `lab setup` (or apt-get install --no-install-recommends dpdk-dev)');
    return;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fabric-memif-dpdk-'));
  const dpdkSocket = path.join(dir, 'dpdk.memif');
  const switchRole = testpmdRole === 'server' ? 'client' : 'server';
  let pmd: ReturnType<typeof startTestpmd> | null = null;
  if (testpmdRole === 'server') {
    pmd = startTestpmd('server', dpdkSocket);
    await until(() => fs.existsSync(dpdkSocket) || pmd!.proc.exitCode !== null, 'testpmd listening', { timeoutMs: 30_000 });
  }
  const sw = await startSwitch({ dir, ports: [], args: ['--port', 'st0=memif', '--port', `dpdk0=memif:${switchRole}:${dpdkSocket}`, '--station', 'dpdk0=open'] });
  if (testpmdRole === 'client') pmd = startTestpmd('client', dpdkSocket);
  const station = new MemifPort({ socket: path.join(dir, 'st0.memif'), role: 'client' });
  t.teardown(async () => {
    station.close();
    await pmd!.stop();
    await sw.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const got: Buffer[] = [];
  station.attach((f) => got.push(Buffer.from(f)));
  const linked = async () => {
    const c = (await sw.control.must({ counters: true, port: 'dpdk0' })) as { ports: { dpdk0: { peer: string } } };
    return / connected$/.test(c.ports.dpdk0.peer);
  };
  await until(async () => station.connected && (await linked()), `switch memif port ${switchRole} connected to testpmd`, { timeoutMs: 30_000, everyMs: 50 }).catch((err) => {
    throw new Error(`${(err as Error).message}\ntestpmd: ${pmd!.output().slice(-2000)}\nswitch: ${sw.output().slice(-2000)}`);
  });
  // testpmd polls its port once forwarding has started: until then a probe frame may be lost, so wait for one to come back.
  const probe = frames()[0]!;
  await until(() => {
    if (got.length === 0) station.transmit(probe);
    return got.length > 0;
  }, 'a first frame back from testpmd', { timeoutMs: 30_000, everyMs: 100 });
  got.length = 0;
  const sent = frames();
  for (const f of sent) station.transmit(f);
  await until(() => got.length >= sent.length, `${sent.length} frames back from testpmd`, { timeoutMs: 30_000 });
  t.is(got.length, sent.length);
  got.forEach((f, i) => {
    t.deepEqual(f.subarray(0, 6), STATION, `frame ${i} addressed to the station`);
    t.notDeepEqual(f.subarray(6, 12), STATION, `frame ${i} from testpmd's MAC`);
    t.deepEqual(f.subarray(12), sent[i]!.subarray(12), `frame ${i} intact`);
  });
}

test.serial('DPDK testpmd as memif server, the lab switch port as its client: frames forwarded both ways intact', (t) => interop(t, 'server'));
test.serial('DPDK testpmd as memif client of the lab switch port: frames forwarded both ways intact', (t) => interop(t, 'client'));
