// What a hostile vfio-user client can make a server hold or do is bounded:
// SET_IRQS takes only eventfds that cannot block the server; a client that
// floods the command queue or never reads its replies is disconnected while
// other clients of the same process go on; the socket is the owner's alone.
import test from 'ava';
import { closeSync, mkdtempSync, openSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../native/index.ts';
import { CommandBit, Cfg } from '../../src/pci/config-space.ts';
import { TESTDEV_ID_VALUE, TestReg } from '../../src/devices/testdev/testdev.ts';
import { Command, Errno, IrqInfoFlag, IrqSetFlag, PciIrq, PciRegion, RegionFlag, encodeRegionAccess, request, versionPayload } from '../../src/vfio-user/protocol.ts';
import { QEMU_CAPS, VfioUserClient, waitEventfd } from '../../src/vfio-user/client.ts';
import { VfioUserServer, type ServerOptions, type VfioUserDevice } from '../../src/vfio-user/server.ts';
import type { Logger } from '../../src/common/logger.ts';
import { until } from '../support/until.ts';
import { errnoOf, rig } from './helpers.ts';

const BAR0 = 0;

/**
 * A device whose BAR0 reads wait until the test opens the gate (a slow
 * device: commands queue up behind the read), served by its own server.
 */
function gatedServer(t: import('ava').ExecutionContext, options: Partial<ServerOptions> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'pcieoe-limits-'));
  const logs: string[] = [];
  const log: Logger = (level, msg) => logs.push(`${level}: ${msg}`);
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const writes: number[] = [];
  const device: VfioUserDevice = {
    regions: [{ size: 0x10000, flags: RegionFlag.Read | RegionFlag.Write }],
    irqs: [{ count: 1, flags: IrqInfoFlag.Eventfd }],
    canReset: false,
    regionRead: async (_r, _o, count) => {
      await gate;
      return new Uint8Array(count);
    },
    regionWrite: (_r, offset) => void writes.push(offset),
    reset() {},
    connected() {},
    disconnected() {},
  };
  const server = new VfioUserServer({ path: join(dir, 'gated.sock'), device, log, ...options }).listen();
  t.teardown(() => {
    open();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { server, logs, writes, open: () => open() };
}

test('SET_IRQS takes only eventfds: a socket or a file is refused with EINVAL, naming the vector; real eventfds still work', async (t) => {
  const r = rig(t);
  const c = await r.client();
  const [s1, s2] = native.socketpair('stream');
  const file = openSync(join(r.dir, 'plain'), 'w');
  const good = native.eventfd();
  t.teardown(() => {
    [s1!, s2!, good].forEach((fd) => native.close(fd));
    closeSync(file);
  });
  const set = (fds: number[]) => c.setIrqs({ flags: IrqSetFlag.DataEventfd | IrqSetFlag.ActionTrigger, index: PciIrq.Msix, start: 0, count: fds.length }, fds);
  t.is(await errnoOf(set([good, s1!])), Errno.EINVAL);
  await r.logged(/SET_IRQS id \d+ refused: SET_IRQS: fd for vector 1 is not an eventfd \(socket:\[\d+\]\)/);
  t.is(await errnoOf(set([file])), Errno.EINVAL);
  await r.logged(/fd for vector 0 is not an eventfd \(.*plain\)/);
  t.false(r.dev.msixEnabled, 'a refused SET_IRQS wires nothing');
  await set([good]);
  await c.write32(PciRegion.Config, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);
  const irq = waitEventfd(good);
  await c.write32(BAR0, TestReg.IrqRaise, 0);
  t.is(await irq, 1);
});

test('a client flooding the command queue behind a slow command is disconnected; another server\'s client goes on', async (t) => {
  const g = gatedServer(t, { maxQueuedCommands: 100 });
  const other = rig(t);
  const co = await other.client();
  const c = new VfioUserClient(g.server.path);
  await c.version();
  const stuck = c.call(Command.RegionRead, 16, encodeRegionAccess({ offset: 0, region: 0, count: 4 }).fill);
  // Posted writes pile up behind the read that waits for the device.
  for (let i = 0; i < 150; i++) c.post(Command.RegionWrite, 20, encodeRegionAccess({ offset: i * 4, region: 0, count: 4, data: new Uint8Array(4) }).fill);
  t.regex(await c.closed, /peer closed/);
  await t.throwsAsync(stuck, { message: /connection closed before the reply/ });
  t.true(g.logs.some((l) => /dropping client: it floods the command queue \(100 commands/.test(l)), g.logs.join('\n'));
  t.deepEqual(g.writes, [], 'nothing behind the read ran out of order');
  t.is(await co.read32(BAR0, TestReg.Id), TESTDEV_ID_VALUE);
  // The flooded server takes the next client once the slow command ends.
  g.open();
  await until(() => !g.server.hasClient, 'the flooding session to end');
  const c2 = new VfioUserClient(g.server.path);
  await c2.version();
  t.deepEqual([...(await c2.regionRead(0, 0, 4))], [0, 0, 0, 0]);
  c2.close();
});

test('the command queue is bounded in bytes too', async (t) => {
  const g = gatedServer(t, { maxQueuedBytes: 64 * 1024 });
  const c = new VfioUserClient(g.server.path);
  await c.version();
  void c.call(Command.RegionRead, 16, encodeRegionAccess({ offset: 0, region: 0, count: 4 }).fill).catch(() => {});
  const big = new Uint8Array(16 * 1024);
  for (let i = 0; i < 8; i++) c.post(Command.RegionWrite, 16 + big.length, encodeRegionAccess({ offset: 0, region: 0, count: big.length, data: big }).fill);
  await c.closed;
  t.true(g.logs.some((l) => /floods the command queue \(\d+ commands, \d+ bytes waiting\)/.test(l)), g.logs.join('\n'));
});

test('a client that never reads its replies is disconnected once they pass the bound; the server takes the next client', async (t) => {
  const g = gatedServer(t, { maxUnsentBytes: 1 << 20 });
  g.open(); // reads answer at once
  const fd = native.unixConnect(g.server.path);
  t.teardown(() => native.close(fd));
  const v = versionPayload({ major: 0, minor: 0, json: QEMU_CAPS });
  native.sendmsg(fd, request(0, Command.Version, v.length, (_, b) => b.set(v)));
  // 64 KiB per reply, never read: the socket buffers fill, then the server's send queue.
  const read = request(1, Command.RegionRead, 16, encodeRegionAccess({ offset: 0, region: 0, count: 0x10000 }).fill);
  let sent = 0;
  await until(() => {
    for (let i = 0; i < 8; i++) {
      try {
        if (native.sendmsg(fd, read) === read.length) sent++;
      } catch {
        return true; // EPIPE: the server hung up
      }
    }
    return g.logs.some((l) => /peer does not read: \d+ bytes unsent/.test(l));
  }, 'the server to give up on the client');
  t.true(sent * 0x10000 > 1 << 20, `sent ${sent} reads`);
  t.true(g.logs.some((l) => /client disconnected: peer does not read: \d+ bytes unsent/.test(l)), g.logs.join('\n'));
  await until(() => !g.server.hasClient, 'the session to end');
  const c = new VfioUserClient(g.server.path);
  await c.version();
  t.is((await c.regionRead(0, 0, 4)).length, 4);
  c.close();
});

test('the listening socket is 0600', (t) => {
  const r = rig(t);
  t.is(statSync(r.server.path).mode & 0o777, 0o600);
});

test('NO_REPLY flood within the bounds is served completely, in order', async (t) => {
  const g = gatedServer(t);
  g.open();
  const c = new VfioUserClient(g.server.path);
  await c.version();
  for (let i = 0; i < 2000; i++) c.post(Command.RegionWrite, 20, encodeRegionAccess({ offset: (i % 0x4000) * 4, region: 0, count: 4, data: new Uint8Array(4) }).fill);
  await c.regionRead(0, 0, 4);
  t.is(g.writes.length, 2000);
  t.deepEqual(g.writes.slice(0, 3), [0, 4, 8]);
  t.true(c.isOpen);
  c.close();
});
