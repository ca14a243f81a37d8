// HI and DI end to end, in process: what QEMU would see through a vfio-user
// socket when the device is a TestDevice behind PCIeOE.
import test from 'ava';
import { native } from '../../native/index.ts';
import { CapId, Cfg, CommandBit } from '../../src/pci/config-space.ts';
import { TESTDEV_DEVICE_ID, TESTDEV_ID_VALUE, TESTDEV_VENDOR_ID, TestReg, TestStatus } from '../../src/devices/testdev/testdev.ts';
import { type MemWriteTlp, TlpType } from '../../src/fabric/tlp/tlp.ts';
import { IrqSetFlag, PciIrq, PciRegion } from '../../src/vfio-user/protocol.ts';
import { type VfioUserClient, waitEventfd } from '../../src/vfio-user/client.ts';
import { u32le, u64le } from '../vfio-user/helpers.ts';
import { FN0_BDF, HOST_CHANNEL, hiDiRig } from './rig.ts';
import { until } from '../support/until.ts';

const BAR0 = 0;
const CONFIG = PciRegion.Config;

/** Guest RAM as QEMU maps it: a memfd, DMA_MAPped at `iova`. */
async function guestRam(t: import('ava').ExecutionContext, c: VfioUserClient, iova: number, size: number): Promise<Uint8Array> {
  const memfd = native.memfdCreate('guest-ram', size);
  const ram = new Uint8Array(native.mmap(memfd, 0, size, true));
  await c.dmaMap(iova, size, { fd: memfd });
  t.teardown(() => {
    native.close(memfd);
    native.munmap(ram.buffer as ArrayBuffer);
  });
  return ram;
}

async function wireMsix(t: import('ava').ExecutionContext, c: VfioUserClient, n: number): Promise<number[]> {
  const efds = Array.from({ length: n }, () => native.eventfd());
  t.teardown(() => efds.forEach((fd) => native.close(fd)));
  await c.setIrqs({ flags: IrqSetFlag.DataEventfd | IrqSetFlag.ActionTrigger, index: PciIrq.Msix, start: 0, count: n }, efds);
  return efds;
}

async function dmaCopy(c: VfioUserClient, src: number, dst: number, len: number, efd: number): Promise<void> {
  await c.regionWrite(BAR0, TestReg.DmaSrc, u64le(src));
  await c.regionWrite(BAR0, TestReg.DmaDst, u64le(dst));
  await c.write32(BAR0, TestReg.DmaLen, len);
  const irq = waitEventfd(efd, 10_000);
  await c.write32(BAR0, TestReg.Doorbell, 1);
  await irq;
}

test('enumeration and config space: remote IDs, BARs virtualised, capabilities, Command', async (t) => {
  const r = await hiDiRig(t);
  t.deepEqual(
    { vendor: r.eep.layout.vendorId, device: r.eep.layout.deviceId, size: r.eep.layout.configSize, msix: r.eep.layout.msix?.vectors, flr: r.eep.layout.flr },
    { vendor: TESTDEV_VENDOR_ID, device: TESTDEV_DEVICE_ID, size: 4096, msix: 4, flr: true },
  );
  // The HI placed BAR0 (64-bit, 16 KiB) in its window and turned on memory decode in the function.
  const placed = r.eep.layout.bars[0]!;
  t.is(placed.size, 16384);
  t.is(BigInt(r.dev.config.get32(Cfg.Bar0) & ~0xf) | (BigInt(r.dev.config.get32(Cfg.Bar0 + 4)) << 32n), placed.address);
  t.truthy(r.dev.config.get16(Cfg.Command) & CommandBit.Memory);
  t.falsy(r.dev.config.get16(Cfg.Command) & CommandBit.BusMaster, 'bus mastering is the guest\'s to enable');

  const c = await r.client();
  t.is((await c.regionInfo(0)).info.size, 16384);
  t.is((await c.regionInfo(1)).info.size, 0, 'upper half of the 64-bit BAR');
  t.is((await c.regionInfo(CONFIG)).info.size, 4096);
  t.like(await c.irqInfo(PciIrq.Msix), { count: 4 });
  t.like(await c.irqInfo(PciIrq.Intx), { count: 0 });

  const cfg = await c.regionRead(CONFIG, 0, 256);
  const dv = new DataView(cfg.buffer, cfg.byteOffset);
  t.is(dv.getUint16(Cfg.VendorId, true), TESTDEV_VENDOR_ID);
  t.is(dv.getUint16(Cfg.DeviceId, true), TESTDEV_DEVICE_ID);
  t.is(dv.getUint32(Cfg.Revision, true) >>> 8, 0x088000);
  t.is(dv.getUint32(Cfg.Bar0, true), 0x4, 'BAR0 shows its type (64-bit memory), not the HI\'s address');
  t.is(dv.getUint32(Cfg.Bar0 + 4, true), 0);
  t.is(cfg[Cfg.InterruptPin], 0, 'INTx is not carried');
  const ids: number[] = [];
  for (let at = cfg[Cfg.CapabilitiesPtr]!; at !== 0; at = cfg[at + 1]!) ids.push(cfg[at]!);
  t.deepEqual(ids, [CapId.PowerManagement, CapId.PciExpress, CapId.MsiX]);
  // Unaligned, odd-sized reads come out right (byte enables, several DWs).
  t.deepEqual([...(await c.regionRead(CONFIG, 1, 6))], [...cfg.subarray(1, 7)]);

  // BAR sizing and ROM writes never reach the function.
  await c.write32(CONFIG, Cfg.Bar0, 0xffffffff);
  await c.write32(CONFIG, Cfg.Bar0 + 4, 0xffffffff);
  await c.write32(CONFIG, Cfg.RomBar, 0xfffff800);
  t.is(BigInt(r.dev.config.get32(Cfg.Bar0) & ~0xf) | (BigInt(r.dev.config.get32(Cfg.Bar0 + 4)) << 32n), placed.address);
  t.is(await c.read32(CONFIG, Cfg.RomBar), 0);

  // Command: the guest's Bus Master reaches the function; its Memory bit is shadowed.
  await c.write32(CONFIG, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);
  t.is((await c.read32(CONFIG, Cfg.Command)) & 0xffff, CommandBit.Memory | CommandBit.BusMaster);
  t.true(r.dev.busMasterEnabled);
  await c.regionWrite(CONFIG, Cfg.Command, new Uint8Array([0, 0]));
  t.is((await c.read32(CONFIG, Cfg.Command)) & 0xffff, 0);
  t.false(r.dev.busMasterEnabled);
  t.truthy(r.dev.config.get16(Cfg.Command) & CommandBit.Memory, 'the function keeps decoding the HI\'s BAR addresses');
});

test('BAR registers over MRd/MWr: sizes, posted write order, byte enables', async (t) => {
  const r = await hiDiRig(t);
  const c = await r.client();
  t.is(await c.read32(BAR0, TestReg.Id), TESTDEV_ID_VALUE);
  await c.write32(BAR0, TestReg.Scratch, 0xdeadbeef);
  t.is(await c.read32(BAR0, TestReg.Scratch), 0xdeadbeef);
  await c.regionWrite(BAR0, TestReg.Scratch + 8, u64le(0x1122334455667788n));
  t.deepEqual([...(await c.regionRead(BAR0, TestReg.Scratch + 8, 8))], [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
  // One byte in the middle of a DW, and a read spanning DWs from an odd address.
  await c.regionWrite(BAR0, TestReg.Scratch + 1, new Uint8Array([0x5a]));
  t.is(await c.read32(BAR0, TestReg.Scratch), 0xdead5aef);
  t.deepEqual([...(await c.regionRead(BAR0, TestReg.Scratch + 3, 3))], [0xde, 0x00, 0x00]);
  // Posted writes: no reply, and a later read sees all of them, in order.
  for (let i = 0; i < 8; i++) c.postRegionWrite(BAR0, TestReg.Scratch + 4 * i, u32le(0x100 + i));
  t.is(await c.read32(BAR0, TestReg.Scratch + 28), 0x107);
  t.is(await c.read32(BAR0, TestReg.Scratch), 0x100);
  // A large read crosses the register file into the zero area: several MRds and completions.
  const big = await c.regionRead(BAR0, 0, 8192);
  t.is(new DataView(big.buffer, big.byteOffset).getUint32(TestReg.Id, true), TESTDEV_ID_VALUE);
  t.is(new DataView(big.buffer, big.byteOffset).getUint32(TestReg.Scratch + 28, true), 0x107);
  t.is(r.eep.stats.mmioReadFailures, 0);
});

test('device DMA through a real memfd and MSI-X eventfds', async (t) => {
  const r = await hiDiRig(t);
  const c = await r.client();
  const iova = 0x1000_0000;
  const ram = await guestRam(t, c, iova, 1 << 20);
  const efds = await wireMsix(t, c, 4);
  // SET_IRQS → the HI programmed the function's MSI-X table with its own addresses.
  await c.write32(CONFIG, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);
  t.true(r.dev.msixEnabled);
  for (let v = 0; v < 4; v++) {
    const e = r.dev.msixEntry(v)!;
    t.false(e.masked);
    t.is(e.data, v);
    t.true(e.address >= 0xfee0_0000n && e.address < 0xfef0_0000n, `vector ${v} at 0x${e.address.toString(16)}`);
  }

  const pattern = Uint8Array.from({ length: 5000 }, (_, i) => (i * 7 + 3) & 0xff);
  ram.set(pattern, 0x1000);
  await dmaCopy(c, iova + 0x1000, iova + 0x8_0003, pattern.length, efds[0]!);
  t.deepEqual(ram.subarray(0x8_0003, 0x8_0003 + pattern.length), pattern);
  t.is(ram[0x8_0002], 0, 'bytes before an unaligned write are untouched');
  t.is(ram[0x8_0003 + pattern.length], 0, 'and after');
  t.is(await c.read32(BAR0, TestReg.Status), TestStatus.Done);

  // A larger copy: 64 KiB in, many MRds outstanding at once, completions reassembled by tag.
  const big = Uint8Array.from({ length: 64 * 1024 }, (_, i) => (i * 13 + (i >> 8)) & 0xff);
  ram.set(big, 0x2_0000);
  await c.write32(BAR0, TestReg.DmaVector, 2);
  await dmaCopy(c, iova + 0x2_0000, iova + 0x4_0000, big.length, efds[2]!);
  t.deepEqual(ram.subarray(0x4_0000, 0x4_0000 + big.length), big);
  t.is(await c.read32(BAR0, TestReg.DmaCount), 2);
  t.is(native.eventfdRead(efds[1]!), null, 'vector 1 stayed quiet');

  // A software interrupt on vector 3 reaches the fourth eventfd.
  const irq3 = waitEventfd(efds[3]!);
  await c.write32(BAR0, TestReg.IrqRaise, 3);
  t.is(await irq3, 1);

  // DMA from an address QEMU never mapped: the HI answers UR, the device reports ERROR.
  await c.write32(BAR0, TestReg.DmaVector, 0);
  await dmaCopy(c, 0x7000_0000, iova, 16, efds[0]!);
  t.is(await c.read32(BAR0, TestReg.Status), TestStatus.Error);
  t.regex(r.dev.lastError?.message ?? '', /ur/);
  t.is(r.eep.stats.dmaErrors, 1);
});

test('MSI-X messages of one delivery batch signal their vector once, at the batch\'s end; a later batch signals again', async (t) => {
  const r = await hiDiRig(t);
  const c = await r.client();
  const efds = await wireMsix(t, c, 4);
  await c.write32(CONFIG, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);
  const message = (v: number) => ({ data: u32le(v) }) as MemWriteTlp;
  const before = r.eep.stats.msix;
  // Three messages in one synchronous delivery (frames taken in one wake-up): vectors 1, 1, 2.
  r.eep.deliverMsi(1, message(1));
  r.eep.deliverMsi(1, message(1));
  r.eep.deliverMsi(2, message(2));
  t.is(native.eventfdRead(efds[1]!), null, 'nothing signalled before the batch ends');
  t.is(await waitEventfd(efds[1]!), 1, 'vector 1: one eventfd write for two messages');
  t.is(await waitEventfd(efds[2]!), 1);
  t.is(r.eep.stats.msixMerged, 1);
  t.is(r.eep.stats.msix, before + 2);
  r.eep.deliverMsi(1, message(1));
  t.is(await waitEventfd(efds[1]!), 1, 'a later batch signals again');
  t.is(r.eep.stats.msix, before + 3);
});

test('isolation: another host\'s channel cannot reach the function (UR, counted), malformed TLPs are dropped', async (t) => {
  const r = await hiDiRig(t);
  const c = await r.client();
  await c.write32(BAR0, TestReg.Scratch, 0x600d600d);
  const bar0 = r.eep.layout.bars[0]!.address;
  const common = { tc: 0, attr: 0, poisoned: false, requesterId: 0x0100, lastBe: 0 };

  // The rogue knows the victim's BDF and BAR address, and forges requests on its own channel.
  const cfgRd = await r.rogue.request({ type: TlpType.CfgRd0, ...common, firstBe: 0xf, completerId: FN0_BDF, register: 0 });
  t.is(cfgRd.status, 'ur');
  const cfgWr = await r.rogue.request({ type: TlpType.CfgWr0, ...common, firstBe: 0x3, completerId: FN0_BDF, register: 1, data: new Uint8Array(4) });
  t.is(cfgWr.status, 'ur');
  t.is(r.di.stats.rejectedConfig, 2);
  r.rogue.writeMemory(bar0 + BigInt(TestReg.Scratch), u32le(0xbad), 0x0100, 4096);
  const rd = await r.rogue.request({ type: TlpType.MRd64, ...common, firstBe: 0xf, address: bar0, length: 1 });
  t.is(rd.status, 'ur');
  t.is(r.di.stats.unclaimedWrites, 1);
  t.is(r.di.stats.unclaimedReads, 1);
  // Garbage where a TLP should be: counted, dropped, nothing else happens.
  r.rogueRaw(new Uint8Array([0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]));
  r.rogueRaw(new Uint8Array(3));
  // Delivery is asynchronous (and slow on a loaded CI machine): wait for both, up to 5 s.
  await until(() => (r.di.channelStats(2)?.rxMalformed ?? 0) >= 2, 'two malformed TLPs counted at the DI', { timeoutMs: 5000 });
  t.is(r.di.channelStats(2)?.rxMalformed, 2);

  // The victim's function and its host are untouched.
  t.is(await c.read32(BAR0, TestReg.Scratch), 0x600d600d);
  t.truthy(r.dev.config.get16(Cfg.Command) & CommandBit.Memory, 'the forged Command write did not land');
  t.is(await c.read32(BAR0, TestReg.Id), TESTDEV_ID_VALUE);
});

test('completion timeout: a silent fabric answers BAR reads all-ones through the completion timeout (counted), then recovers', async (t) => {
  // 1 s: short enough for a test, long enough that the rig's own enumeration does not time out on a
  // loaded host, and below the rig's 2 s dead interval, so it is the timeout that ends the read.
  const r = await hiDiRig(t, { completionTimeoutMs: 1000 });
  const c = await r.client();
  await c.write32(BAR0, TestReg.Scratch, 0x12345678);
  const ep = r.hi.endpoint(HOST_CHANNEL)!;
  const before = { ...ep.stats };
  for (const p of r.hiPorts) p.set({ down: true });
  t.is(await c.read32(BAR0, TestReg.Scratch), 0xffffffff);
  // The read ended by the completion timeout, not by the link declaring the peer unreachable.
  t.is(ep.stats.completionTimeouts - before.completionTimeouts, 1);
  t.is(ep.stats.peerDownFailures - before.peerDownFailures, 0);
  t.is(ep.stats.resetFailures - before.resetFailures, 0);
  t.is(r.eep.stats.mmioReadFailures, 1);
  for (const p of r.hiPorts) p.set({ down: false });
  // The link layer replays what was lost; the next read works.
  t.is(await c.read32(BAR0, TestReg.Scratch), 0x12345678);
});

test('2 % loss on both HI links: DMA and register traffic still exact', async (t) => {
  const r = await hiDiRig(t, { loss: 0.02 });
  const c = await r.client();
  const iova = 0x4000_0000;
  const ram = await guestRam(t, c, iova, 1 << 20);
  const efds = await wireMsix(t, c, 1);
  await c.write32(CONFIG, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);
  for (let i = 0; i < 50; i++) {
    await c.write32(BAR0, TestReg.Scratch + 4 * (i % 8), i * 0x01010101);
    t.is(await c.read32(BAR0, TestReg.Scratch + 4 * (i % 8)), (i * 0x01010101) >>> 0);
  }
  const data = Uint8Array.from({ length: 256 * 1024 }, (_, i) => (i ^ (i >> 9)) & 0xff);
  ram.set(data, 0);
  await dmaCopy(c, iova, iova + 0x8_0000, data.length, efds[0]!);
  t.deepEqual(ram.subarray(0x8_0000, 0x8_0000 + data.length), data);
  const lost = r.hiPorts.reduce((n, p) => n + p.counters('toStation').lost + p.counters('toSwitch').lost, 0);
  t.true(lost > 0, 'frames were really lost');
  t.is(r.eep.stats.mmioReadFailures, 0);
});

test('DEVICE_RESET: FLR of the remote function, then BARs and MSI-X are the HI\'s again', async (t) => {
  const r = await hiDiRig(t);
  const c = await r.client();
  const efds = await wireMsix(t, c, 2);
  await c.write32(CONFIG, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);
  await c.write32(BAR0, TestReg.Scratch, 0xabcdef01);
  await c.reset();
  t.is(await c.read32(BAR0, TestReg.Scratch), 0, 'the function was reset');
  t.is(await c.read32(BAR0, TestReg.Id), TESTDEV_ID_VALUE, 'BAR0 decodes at the HI\'s address again');
  t.is((await c.read32(CONFIG, Cfg.Command)) & 0xffff, 0, 'Command reads cleared, as after a reset');
  t.true(r.dev.msixEnabled, 'MSI-X re-enabled: QEMU\'s eventfds are still wired');
  // Bus Master is off after the reset: the guest turns it back on before an interrupt can be a write.
  await c.write32(CONFIG, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);
  const irq = waitEventfd(efds[1]!);
  await c.write32(BAR0, TestReg.IrqRaise, 1);
  t.is(await irq, 1);
});
