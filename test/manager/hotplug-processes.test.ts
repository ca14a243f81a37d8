// The HI's and DI's halves of hot-plug as real processes, without QEMU: the switch, a DI and
// an HI started from the `hotplug` topology's derived argv (nothing assigned), then the
// control requests the manager sends: the DI maps a function, the HI serves its endpoint
// (its socket appears), unmap takes both back, and a repeat or a clash gets a clear answer.
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { controlCall, controlRequest } from '../../src/lab/control-client.ts';
import { loadTopology } from '../../src/lab/topology.ts';
import { CapId } from '../../src/pci/config-space.ts';
import { VfioUserClient } from '../../src/vfio-user/client.ts';
import { PciIrq, PciRegion } from '../../src/vfio-user/protocol.ts';
import { until } from '../support/until.ts';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const state = mkdtempSync(join('/run', 'lab-hpp-'));
const data = mkdtempSync(join(tmpdir(), 'lab-hpp-data-'));
const children: ChildProcess[] = [];
test.after.always(() => {
  for (const c of children) c.kill('SIGTERM');
  for (const d of [state, data]) rmSync(d, { recursive: true, force: true });
});

const topo = loadTopology(join(repo, 'lab/topologies/hotplug.yaml'));
const sockets = (name: string) => join(state, 'sockets', name);

test.before(async () => {
  for (const p of topo.processes.filter((x) => ['sw', 'di', 'hi-host-a'].includes(x.name))) {
    mkdirSync(sockets(p.name), { recursive: true });
    const args = p.args.map((a) => a.replace('${LAB_STATE}', state));
    const child = spawn(process.execPath, ['--import', 'tsx', join(repo, p.run), ...args], {
      env: { ...process.env, LAB_SOCKET_DIR: sockets(p.name), LAB_STATE: state, LAB_DATA: data, LAB_TOPOLOGY: 'hotplug' },
      stdio: 'ignore',
    });
    children.push(child);
    await until(() => existsSync(join(sockets(p.name), 'control.sock')), `${p.name} control socket`, { timeoutMs: 60_000, everyMs: 50 });
  }
});

test('map: the DI gives the function to the host, the HI serves it; unmap takes both back', async (t) => {
  const fabric = topo.fabric!;
  const channel = fabric.hosts[0]!.channels.di!;
  const di = join(sockets('di'), 'control.sock');
  const hi = join(sockets('hi-host-a'), 'control.sock');
  // Before the DI maps it, the HI cannot enumerate it: the DI answers UR.
  const early = await controlRequest(hi, { map: { eep: 'eep0', channel, bdf: '01:00.0' } }, 30_000);
  t.like(early, { ok: false });
  t.false(existsSync(join(sockets('hi-host-a'), 'eep0.sock')));

  t.like(await controlCall('DI', di, { map: { function: 'fn0', channel, bdf: '01:00.0' } }), { function: 'fn0', channel });
  t.like(await controlCall('DI', di, { map: { function: 'fn0', channel, bdf: '01:00.0' } }), { function: 'fn0' }, 'a repeat is ok');
  t.like(await controlRequest(di, { map: { function: 'fn0', channel: channel + 1, bdf: '01:00.0' } }), { ok: false, error: `fn0 is held by channel ${channel} (as 01:00.0)` });
  t.like(await controlRequest(di, { map: { function: 'nope', channel, bdf: '01:00.0' } }), { ok: false, error: 'no function nope' });

  t.like(await controlCall('HI', hi, { map: { eep: 'eep0', channel, bdf: '01:00.0' } }, 30_000), { eep: 'eep0' });
  t.true(existsSync(join(sockets('hi-host-a'), 'eep0.sock')), 'the endpoint is served');
  const stats = await controlCall('HI', hi, { stats: true });
  t.deepEqual(Object.keys(stats.eeps as object), ['eep0']);

  t.like(await controlCall('HI', hi, { unmap: { eep: 'eep0' } }), { served: false });
  t.like(await controlCall('DI', di, { unmap: { function: 'fn0', channel } }), { channel: null });
  t.deepEqual(Object.keys((await controlCall('HI', hi, { stats: true })).eeps as object), []);
  // Mapped again after an unmap: the HI forgot the old endpoint.
  await controlCall('DI', di, { map: { function: 'fn0', channel, bdf: '01:00.0' } });
  t.like(await controlCall('HI', hi, { map: { eep: 'eep1', channel, bdf: '01:00.0' } }, 30_000), { eep: 'eep1' });

  // QEMU sees the hot-plugged function without MSI-X (QEMU 11.1.3 aborts removing a
  // vfio-user-pci that has it; src/hi/hotplug-control.ts): the capability list skips it,
  // MSI is there, and the MSI-X IRQ index has no vectors.
  const client = new VfioUserClient(join(sockets('hi-host-a'), 'eep1.sock'));
  try {
    await client.version();
    const config = await client.regionRead(PciRegion.Config, 0, 256);
    const ids: number[] = [];
    for (let at = config[0x34]! & 0xfc; at !== 0 && ids.length < 48; at = config[at + 1]! & 0xfc) ids.push(config[at]!);
    t.false(ids.includes(CapId.MsiX), `capabilities ${ids.map((i) => i.toString(16))}`);
    t.true(ids.includes(CapId.Msi));
    t.is((await client.irqInfo(PciIrq.Msix)).count, 0);
    t.true((await client.irqInfo(PciIrq.Msi)).count >= 4);
  } finally {
    client.close();
  }
});
