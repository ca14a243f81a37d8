// MSI over vfio-user as QEMU drives it (its MSI capability emulation writes the
// config registers through, then wires SET_IRQS index 1), and SET_IRQS
// MASK/UNMASK on the MSI and MSI-X indexes as other clients may use them.
import test from 'ava';
import { native } from '../../native/index.ts';
import { MsiCap, MsiControl } from '../../src/pci/capabilities.ts';
import { CapId, Cfg, CommandBit } from '../../src/pci/config-space.ts';
import { TestReg, TestStatus } from '../../src/devices/testdev/testdev.ts';
import { IrqSetFlag, PciIrq, PciRegion } from '../../src/vfio-user/protocol.ts';
import type { VfioUserClient } from '../../src/vfio-user/client.ts';
import { waitEventfd } from '../../src/vfio-user/client.ts';
import { rig } from './helpers.ts';

const BAR0 = 0;
const CONFIG = PciRegion.Config;
/** The test device's MSI-X PBA in BAR0. */
const PBA = 0x3000;
const EVENTFD_TRIGGER = IrqSetFlag.DataEventfd | IrqSetFlag.ActionTrigger;

/** Offset of a capability, found the way a guest does it: by walking the list. */
async function findCap(c: VfioUserClient, id: CapId): Promise<number> {
  const cfg = await c.regionRead(CONFIG, 0, 256);
  for (let at = cfg[Cfg.CapabilitiesPtr]!; at !== 0; at = cfg[at + 1]!) if (cfg[at] === id) return at;
  throw new Error(`no capability 0x${id.toString(16)}`);
}

function eventfds(t: { teardown(fn: () => void): void }, n: number): number[] {
  const fds = Array.from({ length: n }, () => native.eventfd());
  t.teardown(() => fds.forEach((fd) => native.close(fd)));
  return fds;
}

/** Eventfds that were signalled, consumed: which vectors fired since the last look. */
function fired(fds: number[]): number[] {
  return fds.flatMap((fd, i) => (native.eventfdRead(fd) === null ? [] : [i]));
}

/** Config writes as QEMU forwards them for a guest enabling MSI with 2^mme vectors, then SET_IRQS. */
async function enableMsi(c: VfioUserClient, msi: number, fds: number[], mme: number): Promise<void> {
  await c.write32(CONFIG, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);
  await c.write32(CONFIG, msi + MsiCap.AddressLo, 0xfee00000);
  await c.write32(CONFIG, msi + MsiCap.AddressHi, 0);
  await c.regionWrite(CONFIG, msi + MsiCap.Data, new Uint8Array([0x20, 0x40]));
  await c.regionWrite(CONFIG, msi + MsiCap.Control, new Uint8Array([MsiControl.Enable | (mme << MsiControl.MmeShift), 0]));
  await c.setIrqs({ flags: EVENTFD_TRIGGER, index: PciIrq.Msi, start: 0, count: fds.length }, fds);
}

test('MSI: SET_IRQS index 1 eventfds fire for the raised vector; INTx stays quiet; disabling falls back to INTx', async (t) => {
  const r = rig(t);
  const c = await r.client();
  const msi = await findCap(c, CapId.Msi);
  const ctl = (await c.read32(CONFIG, msi)) >>> 16;
  t.is(ctl & MsiControl.Address64, MsiControl.Address64);
  t.is((ctl >> MsiControl.MmcShift) & 7, 2, 'asks for 4 vectors');
  const intx = eventfds(t, 1);
  await c.setIrqs({ flags: EVENTFD_TRIGGER, index: PciIrq.Intx, start: 0, count: 1 }, intx);
  const fds = eventfds(t, 4);
  await enableMsi(c, msi, fds, 2);
  t.true(r.dev.msiEnabled);
  t.false(r.dev.msixEnabled);

  for (const v of [2, 0, 3]) {
    const irq = waitEventfd(fds[v]!);
    await c.write32(BAR0, TestReg.IrqRaise, v);
    t.is(await irq, 1, `vector ${v}`);
  }
  t.deepEqual(fired([...fds, ...intx]), [], 'no other eventfd, no INTx');

  // The copy engine's completion uses DMA_VECTOR (zero-length copy: completes at once).
  await c.write32(BAR0, TestReg.DmaVector, 1);
  const done = waitEventfd(fds[1]!);
  await c.write32(BAR0, TestReg.Doorbell, 1);
  await done;

  // Guest disables MSI: QEMU clears Enable and sends count 0; the device is back on INTx.
  await c.regionWrite(CONFIG, msi + MsiCap.Control, new Uint8Array([0, 0]));
  await c.setIrqs({ flags: IrqSetFlag.DataNone | IrqSetFlag.ActionTrigger, index: PciIrq.Msi, start: 0, count: 0 });
  t.false(r.dev.msiEnabled);
  const line = waitEventfd(intx[0]!);
  await c.write32(BAR0, TestReg.IrqRaise, 0);
  await line;
  t.deepEqual(fired(fds), []);
});

test('MSI with fewer vectors allocated than wired: vectors fold onto the allocated ones', async (t) => {
  const r = rig(t);
  const c = await r.client();
  const msi = await findCap(c, CapId.Msi);
  const fds = eventfds(t, 2);
  await enableMsi(c, msi, fds, 1);
  for (const [raise, expect] of [[3, 1], [2, 0], [1, 1]] as const) {
    await c.write32(BAR0, TestReg.IrqRaise, raise);
    t.deepEqual(fired(fds), [expect], `raise ${raise}`);
  }
});

test('SET_IRQS MASK holds an MSI vector; UNMASK delivers it once; DATA_BOOL picks vectors', async (t) => {
  const r = rig(t);
  const c = await r.client();
  const fds = eventfds(t, 4);
  await enableMsi(c, await findCap(c, CapId.Msi), fds, 2);
  // REGION_WRITE replies after the device handled the write, so a signal would already be there.
  await c.setIrqs({ flags: IrqSetFlag.DataNone | IrqSetFlag.ActionMask, index: PciIrq.Msi, start: 1, count: 1 });
  await c.write32(BAR0, TestReg.IrqRaise, 1);
  await c.write32(BAR0, TestReg.IrqRaise, 1);
  await c.write32(BAR0, TestReg.IrqRaise, 2);
  t.deepEqual(fired(fds), [2], 'masked vector 1 held back, vector 2 not masked');
  await c.setIrqs({ flags: IrqSetFlag.DataNone | IrqSetFlag.ActionUnmask, index: PciIrq.Msi, start: 1, count: 1 });
  t.deepEqual(fired(fds), [1], 'pending vector sent at unmask');
  await c.setIrqs({ flags: IrqSetFlag.DataNone | IrqSetFlag.ActionUnmask, index: PciIrq.Msi, start: 1, count: 1 });
  t.deepEqual(fired(fds), [], 'two signals while masked are one pending message');
  // DATA_BOOL: mask vectors 0 and 3 of 0..3.
  await c.setIrqs({ flags: IrqSetFlag.DataBool | IrqSetFlag.ActionMask, index: PciIrq.Msi, start: 0, count: 4, bools: new Uint8Array([1, 0, 0, 1]) });
  for (const v of [0, 1, 2, 3]) await c.write32(BAR0, TestReg.IrqRaise, v);
  t.deepEqual(fired(fds), [1, 2]);
  await c.setIrqs({ flags: IrqSetFlag.DataNone | IrqSetFlag.ActionUnmask, index: PciIrq.Msi, start: 0, count: 4 });
  t.deepEqual(fired(fds), [0, 3]);
  // Re-wiring a masked vector starts it unmasked and forgets what was pending.
  await c.setIrqs({ flags: IrqSetFlag.DataNone | IrqSetFlag.ActionMask, index: PciIrq.Msi, start: 0, count: 1 });
  await c.write32(BAR0, TestReg.IrqRaise, 0);
  const fresh = eventfds(t, 1);
  await c.setIrqs({ flags: EVENTFD_TRIGGER, index: PciIrq.Msi, start: 0, count: 1 }, fresh);
  t.deepEqual(fired([...fds, ...fresh]), []);
  await c.write32(BAR0, TestReg.IrqRaise, 0);
  t.deepEqual(fired(fresh), [0]);
});

test('SET_IRQS MASK/UNMASK on MSI-X vectors, with pending delivery', async (t) => {
  const r = rig(t);
  const c = await r.client();
  const fds = eventfds(t, 4);
  await c.write32(CONFIG, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);
  await c.setIrqs({ flags: EVENTFD_TRIGGER, index: PciIrq.Msix, start: 0, count: 4 }, fds);
  await c.setIrqs({ flags: IrqSetFlag.DataNone | IrqSetFlag.ActionMask, index: PciIrq.Msix, start: 0, count: 4 });
  for (const v of [3, 0]) await c.write32(BAR0, TestReg.IrqRaise, v);
  t.deepEqual(fired(fds), []);
  t.is(await c.read32(BAR0, PBA), 0b1001, 'held vectors show in the PBA, which QEMU reads from the server');
  await c.setIrqs({ flags: IrqSetFlag.DataNone | IrqSetFlag.ActionUnmask, index: PciIrq.Msix, start: 0, count: 2 });
  t.deepEqual(fired(fds), [0], 'vector 3 still masked');
  await c.setIrqs({ flags: IrqSetFlag.DataBool | IrqSetFlag.ActionUnmask, index: PciIrq.Msix, start: 2, count: 2, bools: new Uint8Array([0, 1]) });
  t.deepEqual(fired(fds), [3]);
  t.is(await c.read32(BAR0, PBA), 0);
  // A client-side trigger (DATA_NONE + TRIGGER) goes through the same mask.
  await c.setIrqs({ flags: IrqSetFlag.DataNone | IrqSetFlag.ActionMask, index: PciIrq.Msix, start: 2, count: 1 });
  await c.setIrqs({ flags: IrqSetFlag.DataNone | IrqSetFlag.ActionTrigger, index: PciIrq.Msix, start: 1, count: 2 });
  t.deepEqual(fired(fds), [1]);
  await c.setIrqs({ flags: IrqSetFlag.DataNone | IrqSetFlag.ActionUnmask, index: PciIrq.Msix, start: 2, count: 1 });
  t.deepEqual(fired(fds), [2]);
});

test('INTx is a level: no pending edge at unmask once the source deasserted; re-fires if still asserted', async (t) => {
  const r = rig(t);
  const c = await r.client();
  const [efd] = eventfds(t, 1);
  await c.setIrqs({ flags: EVENTFD_TRIGGER, index: PciIrq.Intx, start: 0, count: 1 }, [efd!]);
  await c.write32(CONFIG, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);
  await c.write32(BAR0, TestReg.Doorbell, 1); // zero-length copy: DONE, INTx asserted, then automasked
  t.deepEqual(fired([efd!]), [0]);
  // While automasked the level drops, rises again (an edge into a masked vector) and drops.
  await c.write32(BAR0, TestReg.Status, TestStatus.Done);
  await c.write32(BAR0, TestReg.Doorbell, 1);
  t.true(r.dev.intxAsserted);
  await c.write32(BAR0, TestReg.Status, TestStatus.Done);
  t.false(r.dev.intxAsserted);
  await c.setIrqs({ flags: IrqSetFlag.DataNone | IrqSetFlag.ActionUnmask, index: PciIrq.Intx, start: 0, count: 1 });
  t.deepEqual(fired([efd!]), [], 'a deasserted level does not fire at unmask');
  await c.write32(BAR0, TestReg.Doorbell, 1);
  t.deepEqual(fired([efd!]), [0]);
  await c.setIrqs({ flags: IrqSetFlag.DataNone | IrqSetFlag.ActionUnmask, index: PciIrq.Intx, start: 0, count: 1 });
  t.deepEqual(fired([efd!]), [0], 'still asserted at unmask: fires again');
});
