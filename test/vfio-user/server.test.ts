import test from 'ava';
import { native } from '../../native/index.ts';
import { CommandBit, Cfg, CapId } from '../../src/pci/config-space.ts';
import { TESTDEV_DEVICE_ID, TESTDEV_ID_VALUE, TESTDEV_VENDOR_ID, TestReg, TestStatus } from '../../src/devices/testdev/testdev.ts';
import {
  Command, DeviceFlag, Errno, HEADER_SIZE, IrqInfoFlag, IrqSetFlag, MsgFlag, PciIrq, PciRegion, RegionFlag, encodeHeader, encodeRegionAccess, request,
} from '../../src/vfio-user/protocol.ts';
import { VfioUserClient, waitEventfd } from '../../src/vfio-user/client.ts';
import { errnoOf, rig, u32le, u64le } from './helpers.ts';
import { until } from '../support/until.ts';

const BAR0 = 0;
const CONFIG = PciRegion.Config;

test('negotiation and device description, as QEMU asks for them', async (t) => {
  const r = rig(t);
  const c = new VfioUserClient(r.server.path);
  const v = await c.version();
  t.is(v.major, 0);
  const caps = v.json['capabilities'] as Record<string, unknown>;
  t.is(caps['max_msg_fds'], 16);
  t.is(caps['max_data_xfer_size'], 1 << 20);
  t.false('write_multiple' in caps, 'REGION_WRITE_MULTI is not implemented, so not advertised');

  const info = await c.deviceInfo();
  t.deepEqual(info, { argsz: 16, flags: DeviceFlag.Reset | DeviceFlag.Pci, numRegions: 9, numIrqs: 5 });

  const bar0 = await c.regionInfo(0);
  t.is(bar0.info.size, 16384);
  t.is(bar0.info.flags, RegionFlag.Read | RegionFlag.Write);
  t.is((await c.regionInfo(1)).info.size, 0, 'upper half of the 64-bit BAR0');
  t.is((await c.regionInfo(PciRegion.Rom)).info.size, 0);
  const cfg = await c.regionInfo(CONFIG);
  t.is(cfg.info.size, 4096, 'PCI Express config space');

  t.like(await c.irqInfo(PciIrq.Intx), { count: 1 });
  const msix = await c.irqInfo(PciIrq.Msix);
  t.is(msix.count, 4);
  t.is(msix.flags, IrqInfoFlag.Eventfd | IrqInfoFlag.Maskable | IrqInfoFlag.NoResize);
  t.like(await c.irqInfo(PciIrq.Msi), { count: 4, flags: IrqInfoFlag.Eventfd | IrqInfoFlag.Maskable | IrqInfoFlag.NoResize });
  t.like(await c.irqInfo(PciIrq.Err), { count: 1 });
  c.close();
});

test('config space: IDs, class, BAR sizing, capability list', async (t) => {
  const r = rig(t);
  const c = await r.client();
  const cfg = await c.regionRead(CONFIG, 0, 256);
  const dv = new DataView(cfg.buffer, cfg.byteOffset);
  t.is(dv.getUint16(Cfg.VendorId, true), TESTDEV_VENDOR_ID);
  t.is(dv.getUint16(Cfg.DeviceId, true), TESTDEV_DEVICE_ID);
  t.is(dv.getUint32(Cfg.Revision, true) >>> 8, 0x088000);
  t.is(cfg[Cfg.InterruptPin], 1);
  t.is(dv.getUint32(Cfg.Bar0, true), 0x4, '64-bit memory BAR, address 0');
  // BAR sizing as QEMU/Linux do it: write all-ones, read back the size mask.
  await c.write32(CONFIG, Cfg.Bar0, 0xffffffff);
  t.is(await c.read32(CONFIG, Cfg.Bar0), (~(16384 - 1) & 0xfffffff0 | 0x4) >>> 0);
  await c.write32(CONFIG, Cfg.Bar0 + 4, 0xffffffff);
  t.is(await c.read32(CONFIG, Cfg.Bar0 + 4), 0xffffffff);
  await c.write32(CONFIG, Cfg.RomBar, 0xfffff800);
  t.is(await c.read32(CONFIG, Cfg.RomBar), 0, 'no ROM: sizing reads 0');
  // Capability walk: PM -> PCI Express (endpoint) -> MSI-X -> MSI.
  const ids: number[] = [];
  for (let at = cfg[Cfg.CapabilitiesPtr]!; at !== 0; at = cfg[at + 1]!) ids.push(cfg[at]!);
  t.deepEqual(ids, [CapId.PowerManagement, CapId.PciExpress, CapId.MsiX, CapId.Msi]);
  t.is(await c.read32(CONFIG, 0x100), 0, 'no extended capabilities');
  // Vendor ID is read-only.
  await c.regionWrite(CONFIG, 0, new Uint8Array([0xff, 0xff]));
  t.is((await c.regionRead(CONFIG, 0, 2))[0], TESTDEV_VENDOR_ID & 0xff);
});

test('BAR registers, posted writes keep their order, reset', async (t) => {
  const r = rig(t);
  const c = await r.client();
  t.is(await c.read32(BAR0, TestReg.Id), TESTDEV_ID_VALUE);
  await c.write32(BAR0, TestReg.Scratch, 0xdeadbeef);
  t.is(await c.read32(BAR0, TestReg.Scratch), 0xdeadbeef);
  // 8-byte and 1-byte accesses work on the same register file.
  await c.regionWrite(BAR0, TestReg.Scratch + 8, u64le(0x1122334455667788n));
  t.deepEqual([...(await c.regionRead(BAR0, TestReg.Scratch + 8, 8))], [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
  // Posted (no-reply) writes: no reply comes, and a later read sees them.
  for (let i = 0; i < 8; i++) c.postRegionWrite(BAR0, TestReg.Scratch + 4 * i, u32le(0x100 + i));
  t.is(await c.read32(BAR0, TestReg.Scratch + 28), 0x107);
  t.is(await c.read32(BAR0, TestReg.Scratch), 0x100);
  await c.write32(CONFIG, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);
  await c.reset();
  t.is(await c.read32(BAR0, TestReg.Scratch), 0, 'DEVICE_RESET clears device registers');
  t.is(await c.read32(CONFIG, Cfg.Command) & 0xffff, 0, 'and the Command register');
  t.is(await c.read32(BAR0, TestReg.Id), TESTDEV_ID_VALUE);
});

test('DMA through a shared memfd: copy engine moves guest bytes and signals MSI-X vector 0', async (t) => {
  const r = rig(t);
  const c = await r.client();
  const ramSize = 1 << 20;
  const memfd = native.sealedMemfd('guest-ram', ramSize); // sealed as QEMU's: the server mmaps it
  t.teardown(() => native.close(memfd));
  const ram = new Uint8Array(native.mmap(memfd, 0, ramSize, true));
  // Guest RAM at IOVA 0x10000000, from file offset 0 (like QEMU's DMA_MAP flags 0x3 + fd).
  const iova = 0x1000_0000;
  await c.dmaMap(iova, ramSize, { fd: memfd });
  const efds = [0, 1, 2, 3].map(() => native.eventfd());
  t.teardown(() => efds.forEach((fd) => native.close(fd)));
  await c.setIrqs({ flags: IrqSetFlag.DataEventfd | IrqSetFlag.ActionTrigger, index: PciIrq.Msix, start: 0, count: 4 }, efds);
  t.true(r.dev.msixEnabled, 'SET_IRQS on MSI-X enables MSI-X in the function');

  const pattern = Uint8Array.from({ length: 5000 }, (_, i) => (i * 7 + 3) & 0xff);
  ram.set(pattern, 0x1000);
  await c.write32(CONFIG, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);
  await c.regionWrite(BAR0, TestReg.DmaSrc, u64le(iova + 0x1000));
  await c.regionWrite(BAR0, TestReg.DmaDst, u64le(iova + 0x8_0003)); // unaligned on purpose
  await c.write32(BAR0, TestReg.DmaLen, pattern.length);
  const irq = waitEventfd(efds[0]!);
  await c.write32(BAR0, TestReg.Doorbell, 1);
  t.is(await irq, 1);
  t.deepEqual(ram.subarray(0x8_0003, 0x8_0003 + pattern.length), pattern);
  t.is(await c.read32(BAR0, TestReg.Status), TestStatus.Done);
  t.is(await c.read32(BAR0, TestReg.DmaCount), 1);

  // A software interrupt on vector 3 reaches the fourth eventfd only.
  const irq3 = waitEventfd(efds[3]!);
  await c.write32(BAR0, TestReg.IrqRaise, 3);
  t.is(await irq3, 1);
  t.is(native.eventfdRead(efds[1]!), null);

  // A copy from an unmapped address fails with ERROR, still interrupting.
  await c.regionWrite(BAR0, TestReg.DmaSrc, u64le(0x7000_0000));
  const irqErr = waitEventfd(efds[0]!);
  await c.write32(BAR0, TestReg.Doorbell, 1);
  await irqErr;
  t.is(await c.read32(BAR0, TestReg.Status), TestStatus.Error);
  t.regex(r.dev.lastError?.message ?? '', /not mapped/);

  // DMA_UNMAP replies echo the request (40 bytes on the wire).
  const un = await c.dmaUnmap(iova, ramSize);
  t.is(un.header.size, 40);
  t.is(new DataView(un.payload.buffer).getUint32(0, true), 24);
  // De-assign the MSI-X eventfds: MSI-X goes off in the function.
  await c.setIrqs({ flags: IrqSetFlag.DataNone | IrqSetFlag.ActionTrigger, index: PciIrq.Msix, start: 0, count: 0 });
  t.false(r.dev.msixEnabled);
  native.munmap(ram.buffer as ArrayBuffer);
});

test('DMA without an fd falls back to DMA_READ/DMA_WRITE messages', async (t) => {
  const r = rig(t);
  const c = await r.client();
  const mem = new Uint8Array(64 * 1024);
  const iova = 0xc0000;
  c.memory.set(iova, mem);
  await c.dmaMap(iova, mem.length); // no fd, like QEMU's BIOS flash or non-shared RAM
  mem.set([1, 2, 3, 4, 5, 6, 7, 8, 9], 100);
  const efd = native.eventfd();
  t.teardown(() => native.close(efd));
  await c.setIrqs({ flags: IrqSetFlag.DataEventfd | IrqSetFlag.ActionTrigger, index: PciIrq.Msix, start: 0, count: 1 }, [efd]);
  await c.write32(CONFIG, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);
  await c.regionWrite(BAR0, TestReg.DmaSrc, u64le(iova + 100));
  await c.regionWrite(BAR0, TestReg.DmaDst, u64le(iova + 40000));
  await c.write32(BAR0, TestReg.DmaLen, 9);
  const irq = waitEventfd(efd);
  await c.write32(BAR0, TestReg.Doorbell, 1);
  await irq;
  t.deepEqual([...mem.subarray(40000, 40009)], [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  t.deepEqual(c.serverRequests.map((m) => m.header.command), [Command.DmaRead, Command.DmaWrite]);
});

test('INTx: without MSI-X the copy engine asserts INTx; W1C of DONE deasserts it', async (t) => {
  const r = rig(t);
  const c = await r.client();
  const efd = native.eventfd();
  t.teardown(() => native.close(efd));
  await c.setIrqs({ flags: IrqSetFlag.DataEventfd | IrqSetFlag.ActionTrigger, index: PciIrq.Intx, start: 0, count: 1 }, [efd]);
  await c.write32(CONFIG, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);
  const irq = waitEventfd(efd);
  await c.write32(BAR0, TestReg.Doorbell, 1); // zero-length copy: completes at once
  await irq;
  t.true(r.dev.intxAsserted);
  t.is((await c.read32(CONFIG, Cfg.Command)) >>> 16 & 0x8, 0x8, 'Status.Interrupt set');
  await c.write32(BAR0, TestReg.Status, TestStatus.Done);
  t.false(r.dev.intxAsserted);
  // Unmask of an automasked INTx is accepted.
  await t.notThrowsAsync(c.setIrqs({ flags: IrqSetFlag.DataNone | IrqSetFlag.ActionUnmask, index: PciIrq.Intx, start: 0, count: 1 }));
});

test('bad input gets error replies and the session goes on', async (t) => {
  const r = rig(t);
  const c = await r.client();
  // bad argsz
  t.is(await errnoOf(c.deviceInfo(8)), Errno.EINVAL);
  t.is(await errnoOf(c.ok(Command.GetIrqInfo, 16, (v) => v.setUint32(0, 4, true))), Errno.EINVAL);
  // payload too short for the struct
  t.is(await errnoOf(c.ok(Command.DmaMap, 8)), Errno.EINVAL);
  // bad region / irq indexes
  t.is(await errnoOf(c.regionInfo(9)), Errno.EINVAL);
  t.is(await errnoOf(c.regionRead(12, 0, 4)), Errno.EINVAL);
  t.is(await errnoOf(c.regionRead(PciRegion.Rom, 0, 4)), Errno.EINVAL, 'absent region');
  t.is(await errnoOf(c.irqInfo(7)), Errno.EINVAL);
  // out-of-range offsets
  t.is(await errnoOf(c.regionRead(CONFIG, 4094, 4)), Errno.EINVAL);
  t.is(await errnoOf(c.regionWrite(BAR0, 16384, u32le(1))), Errno.EINVAL);
  t.is(await errnoOf(c.regionRead(BAR0, 2 ** 40, 4)), Errno.EINVAL);
  t.is(await errnoOf(c.regionRead(BAR0, 0, (1 << 20) + 1)), Errno.E2BIG);
  // REGION_WRITE whose count disagrees with the data carried
  t.is(await errnoOf(c.ok(Command.RegionWrite, 16 + 2, encodeRegionAccess({ offset: 0, region: 0, count: 4, data: new Uint8Array(2) }).fill)), Errno.EINVAL);
  // unknown and unsupported commands
  t.is(await errnoOf(c.ok(99, 0)), Errno.ENOSYS);
  t.is(await errnoOf(c.ok(Command.RegionWriteMulti, 8)), Errno.ENOTSUP);
  t.is(await errnoOf(c.ok(Command.Version, 4)), Errno.EINVAL, 'second VERSION');
  // fds: missing, extra, wrong kind
  const e1 = native.eventfd();
  const e2 = native.eventfd();
  t.teardown(() => [e1, e2].forEach((fd) => native.close(fd)));
  t.is(await errnoOf(c.setIrqs({ flags: IrqSetFlag.DataEventfd | IrqSetFlag.ActionTrigger, index: PciIrq.Msix, start: 0, count: 2 }, [e1])), Errno.EINVAL, 'missing fd');
  t.is(await errnoOf(c.ok(Command.RegionRead, 16, encodeRegionAccess({ offset: 0, region: 0, count: 4 }).fill, [e1])), Errno.EINVAL, 'extra fd');
  t.is(await errnoOf(c.dmaMap(0x1000, 0x1000, { fd: e1 })), Errno.EINVAL, 'an eventfd cannot be mmapped as RAM');
  t.is(await errnoOf(c.setIrqs({ flags: IrqSetFlag.DataNone | IrqSetFlag.ActionTrigger, index: PciIrq.Msix, start: 0, count: 1 }, [e2])), Errno.EINVAL, 'fd without DATA_EVENTFD');
  // SET_IRQS semantic errors
  t.is(await errnoOf(c.setIrqs({ flags: IrqSetFlag.DataNone | IrqSetFlag.ActionTrigger, index: 9, start: 0, count: 1 })), Errno.EINVAL);
  t.is(await errnoOf(c.setIrqs({ flags: IrqSetFlag.DataNone | IrqSetFlag.ActionTrigger, index: PciIrq.Msix, start: 3, count: 2 })), Errno.EINVAL);
  t.is(await errnoOf(c.setIrqs({ flags: IrqSetFlag.DataNone | IrqSetFlag.DataBool | IrqSetFlag.ActionTrigger, index: PciIrq.Msix, start: 0, count: 1 })), Errno.EINVAL);
  t.is(await errnoOf(c.setIrqs({ flags: IrqSetFlag.DataNone | IrqSetFlag.ActionMask, index: PciIrq.Err, start: 0, count: 1 })), Errno.EINVAL, 'ERR is not maskable');
  t.is(await errnoOf(c.setIrqs({ flags: IrqSetFlag.DataNone | IrqSetFlag.ActionMask, index: PciIrq.Msi, start: 2, count: 3 })), Errno.EINVAL, 'MSI has 4 vectors');
  t.is(await errnoOf(c.setIrqs({ flags: IrqSetFlag.DataEventfd | IrqSetFlag.ActionUnmask, index: PciIrq.Msi, start: 0, count: 1 }, [e2])), Errno.ENOTSUP, 'unmask eventfds');
  // DMA map table errors
  await c.dmaMap(0x10000, 0x10000);
  t.is(await errnoOf(c.dmaMap(0x18000, 0x10000)), Errno.EEXIST);
  t.is(await errnoOf(c.dmaMap(0x40000, 0)), Errno.EINVAL);
  t.is(await errnoOf(c.dmaUnmap(0x90000, 0x1000)), Errno.ENOENT);
  t.is(await errnoOf(c.dmaUnmap(0x10000, 0x8000)), Errno.EINVAL, 'cuts a mapping');
  t.is(await errnoOf(c.dmaUnmap(0, 0, 1)), Errno.ENOTSUP, 'dirty bitmap');
  // An invalid posted write gets no reply, only a log line; later commands still work.
  c.post(Command.RegionRead, 16, encodeRegionAccess({ offset: 0, region: 42, count: 4 }).fill);
  t.is(await c.read32(BAR0, TestReg.Id), TESTDEV_ID_VALUE);
  await r.logged(/REGION_READ id \d+ refused: region 42 does not exist/);
  t.true(c.isOpen);
  t.false(r.logs.some((l) => l.startsWith('error')), r.logs.join('\n'));
});

test('framing errors and mid-message disconnects drop only that client; the server keeps listening; other servers are unaffected', async (t) => {
  const a = rig(t, 'a');
  const b = rig(t, 'b', a.dir);
  const cb = await b.client();
  await cb.write32(BAR0, TestReg.Scratch, 0xb);

  // 1. A message claiming size 8 (< header): the stream cannot be resynchronised.
  const c1 = await a.client();
  const bad = new Uint8Array(16);
  encodeHeader(bad, { id: 1, command: Command.RegionRead, size: 8, flags: 0, error: 0 });
  c1.sendRaw(bad);
  t.regex(await c1.closed, /peer closed/);
  await a.logged(/client disconnected: framing error: .*size 8 is smaller than the 16-byte header/);

  // 2. Disconnect in the middle of a message.
  const c2 = await a.client();
  const half = request(7, Command.RegionWrite, 16 + 4, encodeRegionAccess({ offset: 0, region: 0, count: 4, data: u32le(1) }).fill);
  c2.sendRaw(half.subarray(0, 21));
  c2.close();
  await a.logged(/peer closed the socket in the middle of a message \(21 bytes buffered\)/);

  // 3. fds arriving with bytes that start no message.
  const c3 = await a.client();
  const efd = native.eventfd();
  t.teardown(() => native.close(efd));
  const msg = request(9, Command.RegionRead, 16, encodeRegionAccess({ offset: 0, region: 0, count: 4 }).fill);
  c3.sendRaw(msg.subarray(0, 10));
  await until(() => c3.unreadByServer === 0, 'the server to read the first 10 bytes on their own');
  c3.sendRaw(msg.subarray(10), [efd]);
  await a.logged(/fd\(s\) arrived in the middle of a message/);
  await c3.closed;

  // 4. A command before VERSION.
  const c4 = new VfioUserClient(a.server.path);
  t.is(await errnoOf(c4.deviceInfo()), Errno.EINVAL);
  await c4.closed;
  await a.logged(/dropping client: DEVICE_GET_INFO id 0: DEVICE_GET_INFO before VERSION/);

  // 5. A huge size.
  const c5 = await a.client();
  const huge = new Uint8Array(16);
  encodeHeader(huge, { id: 1, command: Command.RegionWrite, size: 0xfffffff0, flags: 0, error: 0 });
  c5.sendRaw(huge);
  await c5.closed;
  await a.logged(/exceeds the limit/);

  // Through all of this the other server's client was never disturbed ...
  t.is(await cb.read32(BAR0, TestReg.Scratch), 0xb);
  t.true(cb.isOpen);
  // ... and server a still accepts a well-behaved client.
  const c6 = await a.client();
  t.is(await c6.read32(BAR0, TestReg.Id), TESTDEV_ID_VALUE);
  t.is(b.logs.filter((l) => !l.startsWith('info')).length, 0, b.logs.join('\n'));
});

test('a second concurrent client is refused; the first keeps working', async (t) => {
  const r = rig(t);
  const c1 = await r.client();
  const c2 = new VfioUserClient(r.server.path);
  await c2.closed;
  await r.logged(/refusing a second client/);
  t.is(await c1.read32(BAR0, TestReg.Id), TESTDEV_ID_VALUE);
});

test('disconnect releases DMA maps and eventfds; the next client starts clean', async (t) => {
  const r = rig(t);
  const c1 = await r.client();
  const efd = native.eventfd();
  t.teardown(() => native.close(efd));
  await c1.setIrqs({ flags: IrqSetFlag.DataEventfd | IrqSetFlag.ActionTrigger, index: PciIrq.Msix, start: 0, count: 1 }, [efd]);
  await c1.dmaMap(0, 0x1000);
  t.true(r.dev.msixEnabled);
  const gone = new Promise((res) => r.server.once('disconnect', res));
  c1.close();
  await gone;
  t.false(r.dev.msixEnabled);
  const c2 = await r.client();
  await t.notThrowsAsync(c2.dmaMap(0, 0x1000), 'would be EEXIST if the old map had survived');
});

test('header fields: reply echoes id and command; NO_REPLY on a valid write sends nothing', async (t) => {
  const r = rig(t);
  const c = await r.client();
  const m = await c.callRaw(0xbeef, request(0xbeef, Command.RegionRead, 16, encodeRegionAccess({ offset: 0, region: 0, count: 4 }).fill));
  t.is(m.header.id, 0xbeef);
  t.is(m.header.command, Command.RegionRead);
  t.is(m.header.flags, MsgFlag.Reply);
  t.is(m.header.size, HEADER_SIZE + 16 + 4);
  const before = r.logs.length;
  c.postRegionWrite(BAR0, TestReg.Scratch, u32le(5));
  t.is(await c.read32(BAR0, TestReg.Scratch), 5);
  t.is(r.logs.length, before);
});
