// The manager as a station on the lab switch, with real switch, DI and HI processes started
// from the `hotplug` topology's derived argv (no QEMU): it discovers both HIs (their slots)
// and the DI (its functions with vendor, device, class and holder) over the wire, sees a
// mapping in their next reports, and watches them with heartbeats. Killing the DI (SIGKILL)
// is a surprise removal: the manager declares it lost, the HI's slot loses presence and link
// (Presence Detect Changed, Data Link Layer State Changed) and the host gets the vfio device
// request on the EEP's REQ eventfd. The DI started again with the same arguments comes back
// with a new epoch: the manager gives it back its function, the slot's presence returns and
// the EEP answers again.
import test from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { native } from '../../native/index.ts';
import { processLogger } from '../../src/common/logger.ts';
import { SlotStatus } from '../../src/hi/slot-state.ts';
import { controlCall } from '../../src/lab/control-client.ts';
import { loadTopology } from '../../src/lab/topology.ts';
import { startTimeOf } from '../../src/lab/procs.ts';
import type { DiscoveredStation, StationEvent } from '../../src/manager/station.ts';
import { openManagerStation, stationsFile, type StationsFile } from '../../src/manager/station-link.ts';
import { giveBack, mapsOf } from '../../src/manager/station-restore.ts';
import { VfioUserClient } from '../../src/vfio-user/client.ts';
import { IrqSetFlag, PciIrq, PciRegion } from '../../src/vfio-user/protocol.ts';
import { until } from '../support/until.ts';

const execFileAsync = promisify(execFile);
const repo = fileURLToPath(new URL('../..', import.meta.url));
const state = mkdtempSync(join('/run', 'lab-station-'));
const data = mkdtempSync(join(tmpdir(), 'lab-station-data-'));
const managerDir = join(state, 'manager');
const children = new Map<string, ChildProcess>();
const topo = loadTopology(join(repo, 'lab/topologies/hotplug.yaml'));
const fabric = topo.fabric!;
const sockets = (name: string) => join(state, 'sockets', name);
const control = (name: string) => join(sockets(name), 'control.sock');
const events: StationEvent[] = [];
const table = [{ host: 'host-a', di: 'di', function: 'fn0', slot: 0 }];
let manager: ReturnType<typeof openManagerStation>;

// Each process's output, kept beside the state (the test prints a failing run's logs).
const logFd = (name: string) => openSync(join(state, `${name}.log`), 'a');

function start(name: string): ChildProcess {
  const p = topo.processes.find((x) => x.name === name)!;
  mkdirSync(sockets(name), { recursive: true });
  const child = spawn(process.execPath, ['--import', 'tsx', join(repo, p.run), ...p.args.map((a) => a.replace('${LAB_STATE}', state))], {
    env: { ...process.env, LAB_SOCKET_DIR: sockets(name), LAB_STATE: state, LAB_DATA: data, LAB_TOPOLOGY: 'hotplug' },
    stdio: ['ignore', logFd(name), logFd(name)],
  });
  children.set(name, child);
  return child;
}

test.before(async () => {
  for (const name of ['sw', 'di', 'hi-host-a', 'hi-host-b']) {
    start(name);
    await until(() => existsSync(control(name)), `${name} control socket`, { timeoutMs: 60_000, everyMs: 50 });
  }
  const link = topo.processes.find((p) => p.name === 'manager')!.args[1]!.replace('${LAB_STATE}', state);
  mkdirSync(sockets('manager'), { recursive: true });
  // As src/manager/main.ts does: a restarted DI gets its table's functions back.
  manager = openManagerStation(link, sockets('manager'), managerDir, processLogger('manager-test'), (name) => {
    void giveBack(name, control(name), mapsOf(fabric, table, name));
  });
  manager.station.on('event', (e) => events.push(e));
});

test.afterEach.always((t) => {
  if (!t.passed) for (const name of children.keys()) t.log(`--- ${name}.log\n${readFileSync(join(state, `${name}.log`), 'utf8').split('\n').filter((l) => !/BAR . read|left out/.test(l)).slice(-40).join('\n')}`);
});

test.after.always(() => {
  manager?.close();
  for (const c of children.values()) c.kill('SIGKILL');
  for (const d of [state, data]) rmSync(d, { recursive: true, force: true });
});

const find = (name: string): DiscoveredStation | undefined => manager.station.view().find((s) => s.name === name);

test.serial('discovery over the wire: both HIs with their free slots, the DI with its functions, every link heard', async (t) => {
  await until(() => ['hi-host-a', 'hi-host-b', 'di'].every((n) => find(n)?.links.length === 2 && (find(n)?.slots ?? find(n)?.functions) !== undefined), 'three stations with reports and two links each', { timeoutMs: 20_000, everyMs: 50 });
  const di = find('di')!;
  t.like(di, { role: 'di', alive: true, restarts: 0 });
  t.not(di.epoch, 0);
  t.deepEqual(
    di.functions!.map(({ index, name, class: cls, holder }) => ({ index, name, cls, holder })),
    [
      { index: 0, name: 'fn0', cls: '0x010802', holder: undefined },
      { index: 1, name: 'fn1', cls: '0x010802', holder: undefined },
    ],
  );
  t.regex(di.functions![0]!.vendor, /^0x[0-9a-f]{4}$/);
  t.not(di.functions![0]!.vendor, '0xffff');
  for (const hi of ['hi-host-a', 'hi-host-b']) {
    t.like(find(hi), { role: 'hi', alive: true });
    t.deepEqual(find(hi)!.slots, [
      { slot: 0, state: 'free' },
      { slot: 1, state: 'free' },
    ]);
    t.true(find(hi)!.links.every((l) => l.up));
  }
  t.deepEqual(find('di')!.links.map((l) => l.mac), fabric.dis[0]!.macs);
  // What lab status shows: the same, written by the manager.
  await until(() => existsSync(stationsFile(managerDir)) && (JSON.parse(readFileSync(stationsFile(managerDir), 'utf8')) as StationsFile).stations.length === 3, 'stations.json with three stations');
  const file = JSON.parse(readFileSync(stationsFile(managerDir), 'utf8')) as StationsFile;
  t.is(file.manager.mac, fabric.manager.macs[0]);
  t.deepEqual(file.stations.map((s) => s.name), ['hi-host-a', 'hi-host-b', 'di']);
});

test.serial('lab status --json and the text form show what the manager discovered and each link\'s liveness', async (t) => {
  // A lab.json naming the running processes, as lab up writes it.
  const processes = [...children.entries()].map(([name, c]) => ({ name, pid: c.pid!, startTime: startTimeOf(c.pid!)!, log: join(state, `${name}.log`), socketDir: sockets(name) }));
  writeFileSync(join(state, 'lab.json'), JSON.stringify({ topology: 'hotplug', file: join(repo, 'lab/topologies/hotplug.yaml'), accel: 'tcg', qemuVersion: '-', kernelVersion: '-', startedAt: new Date().toISOString(), processes, vms: [] }));
  // Asynchronously: the manager station runs in this process and must keep writing meanwhile.
  const lab = async (...args: string[]) => (await execFileAsync(process.execPath, [join(repo, 'bin/lab.mjs'), ...args], { env: { ...process.env, LAB_STATE: state }, encoding: 'utf8' })).stdout;
  const s = JSON.parse(await lab('status', '--json'));
  t.false(s.discovery.stale);
  t.is(s.discovery.manager.mac, '02:00:00:04:00:00');
  t.deepEqual(
    s.discovery.stations.map((x: DiscoveredStation) => [x.name, x.alive, x.links.map((l) => l.up)]),
    [['hi-host-a', true, [true, true]], ['hi-host-b', true, [true, true]], ['di', true, [true, true]]],
  );
  t.like(s.discovery.stations[2].functions[1], { name: 'fn1', class: '0x010802' });
  const text = await lab('status');
  t.regex(text, /discovery \(manager 02:00:00:04:00:00, heartbeat timeout 1000 ms\)\n +hi hi-host-a +alive .*links 0 up \(\d+ ms\), 1 up/);
  t.regex(text, /\n +slot 0 free\n +slot 1 free/);
  t.regex(text, /di di +alive[\s\S]*fn0 0x[0-9a-f]{4}:0x[0-9a-f]{4} class 0x010802 free/);
});

test.serial('a mapping made on the control sockets shows in the next reports', async (t) => {
  const channel = fabric.hosts[0]!.channels.di!;
  await controlCall('DI', control('di'), { map: { function: 'fn0', channel, bdf: '01:00.0' } });
  await controlCall('HI', control('hi-host-a'), { map: { eep: 'eep0', channel, bdf: '01:00.0' } }, 30_000);
  await until(() => find('di')?.functions?.[0]?.holder?.channel === channel, 'the DI reporting fn0 held', { everyMs: 20 });
  t.deepEqual(find('di')!.functions![0]!.holder, { channel, bdf: '01:00.0' });
  await until(() => find('hi-host-a')?.slots?.[0]?.state === 'mapped', 'the HI reporting slot 0 mapped', { everyMs: 20 });
  t.deepEqual(find('hi-host-a')!.slots, [
    { slot: 0, state: 'mapped', channel, bdf: '01:00.0' },
    { slot: 1, state: 'free' },
  ]);
  t.deepEqual(find('hi-host-b')!.slots!.map((s) => s.state), ['free', 'free']);
});

test.serial('surprise removal: a killed DI is lost, the slot shows it to the host and interrupts it; the restarted DI brings the function back', async (t) => {
  const client = new VfioUserClient(join(sockets('hi-host-a'), 'eep0.sock'));
  t.teardown(() => client.close());
  await client.version();
  const req = native.eventfd();
  t.teardown(() => native.close(req));
  await client.setIrqs({ flags: IrqSetFlag.DataEventfd | IrqSetFlag.ActionTrigger, index: PciIrq.Req, start: 0, count: 1 }, [req]);
  const slots = async () => (await controlCall('HI', control('hi-host-a'), { slots: true })) as { slots: { slot: number; present: boolean; hotplugged: boolean; slotStatus: number; linkStatus: number; removals: number; returns: number }[]; deviceRequests: number };
  const before = (await slots()).slots[0]!;
  t.like(before, { slot: 0, present: true, removals: 0, hotplugged: true });
  t.is(before.slotStatus & SlotStatus.PresenceDetectState, SlotStatus.PresenceDetectState);
  // NVMe CAP (BAR0 offset 0) is read from the function over the fabric.
  const cap = async () => new DataView((await client.regionRead(PciRegion.Bar0, 0, 4)).slice().buffer).getUint32(0, true);
  const capBefore = await cap();
  t.not(capBefore, 0xffffffff);
  const epoch = find('di')!.epoch;

  children.get('di')!.kill('SIGKILL');
  await until(() => find('di')?.alive === false, 'the manager declaring the DI lost', { everyMs: 20 });
  t.true(events.some((e) => e.event === 'station-lost' && e.station === 'di'));
  t.true(find('di')!.links.every((l) => !l.up));
  await until(async () => (await slots()).slots[0]!.present === false, 'the HI showing slot 0 removed', { everyMs: 20 });
  const removed = await slots();
  const s = removed.slots[0]!;
  t.is(s.slotStatus & SlotStatus.PresenceDetectState, 0, 'presence detect state clear');
  t.is(s.slotStatus & SlotStatus.PresenceDetectChanged, SlotStatus.PresenceDetectChanged);
  t.is(s.slotStatus & SlotStatus.DataLinkLayerStateChanged, SlotStatus.DataLinkLayerStateChanged);
  t.is(s.linkStatus, 0, 'data link layer link active clear');
  t.is(s.removals, 1);
  t.is(removed.deviceRequests, 1);
  t.not(native.eventfdRead(req), null, 'the host got the device request (REQ)');
  await until(() => find('hi-host-a')?.slots?.[0]?.state === 'lost', 'the HI reporting slot 0 lost to the manager', { everyMs: 20 });
  t.is(find('hi-host-b')!.alive, true, 'the other host is untouched');

  start('di');
  await until(() => find('di')?.alive === true && find('di')!.epoch !== epoch, 'the DI back with a new epoch', { timeoutMs: 60_000, everyMs: 50 });
  t.is(find('di')!.restarts, 1);
  t.true(events.some((e) => e.event === 'station-restarted' && e.station === 'di'));
  await until(() => find('di')?.functions?.[0]?.holder !== undefined, 'the manager giving fn0 back to the restarted DI', { timeoutMs: 20_000, everyMs: 50 });
  await until(async () => (await slots()).slots[0]!.present, 'slot 0 present again', { timeoutMs: 20_000, everyMs: 50 });
  const back = (await slots()).slots[0]!;
  t.like(back, { present: true, returns: 1, linkStatus: 0x2000 });
  t.is(back.slotStatus & SlotStatus.PresenceDetectState, SlotStatus.PresenceDetectState);
  await until(() => find('hi-host-a')?.slots?.[0]?.state === 'mapped', 'the HI reporting slot 0 mapped again', { everyMs: 20 });
  // The function answers again on the same vfio-user connection.
  await until(async () => (await cap()) === capBefore, 'the EEP answering BAR reads again', { timeoutMs: 20_000, everyMs: 100 });
  t.is(await cap(), capBefore);
});
