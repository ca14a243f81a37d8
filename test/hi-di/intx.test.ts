// INTx over PCIeOE, in process: the function's level travels as Assert/Deassert_INTA
// messages from the DI to the HI, which serves it as vfio-user INTx (IRQ index 0) the
// way VFIO does — an automasked edge on the eventfd, signalled again at UNMASK while
// the line is still asserted. A hot-plugged EEP (hideMsix, carryIntx) without MSI is
// offered this way, its MSI-X capability unlinked.
import test from 'ava';
import { native } from '../../native/index.ts';
import { CapId, Cfg, CommandBit } from '../../src/pci/config-space.ts';
import { TestReg, TestStatus } from '../../src/devices/testdev/testdev.ts';
import { IrqInfoFlag, IrqSetFlag, PciIrq, PciRegion } from '../../src/vfio-user/protocol.ts';
import { waitEventfd } from '../../src/vfio-user/client.ts';
import { until } from '../support/until.ts';
import { hiDiRig } from './rig.ts';

const BAR0 = 0;
const CONFIG = PciRegion.Config;
const UNMASK = { flags: IrqSetFlag.DataNone | IrqSetFlag.ActionUnmask, index: PciIrq.Intx, start: 0, count: 1 };

test('hot-plugged EEP without MSI: INTx carried, fires, automasks, re-fires on unmask while asserted', async (t) => {
  const r = await hiDiRig(t, { eep: { hideMsix: true, carryIntx: true } });
  const c = await r.client();
  const info = await c.irqInfo(PciIrq.Intx);
  t.is(info.count, 1);
  t.truthy(info.flags & IrqInfoFlag.Automasked);
  t.truthy(info.flags & IrqInfoFlag.Maskable);
  t.is((await c.irqInfo(PciIrq.Msix)).count, 0, 'MSI-X hidden');
  const cfg = await c.regionRead(CONFIG, 0, 256);
  t.is(cfg[Cfg.InterruptPin], 1, 'INTA as the function has it');
  const caps: number[] = [];
  for (let at = cfg[Cfg.CapabilitiesPtr]! & 0xfc; at !== 0; at = cfg[at + 1]! & 0xfc) caps.push(cfg[at]!);
  t.false(caps.includes(CapId.MsiX), 'the MSI-X capability is unlinked');

  const efd = native.eventfd();
  t.teardown(() => native.close(efd));
  await c.setIrqs({ flags: IrqSetFlag.DataEventfd | IrqSetFlag.ActionTrigger, index: PciIrq.Intx, start: 0, count: 1 }, [efd]);
  await c.write32(CONFIG, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);
  t.false(r.dev.msixEnabled);

  // A zero-length copy sets DONE: the function asserts INTA, the HI signals the eventfd once.
  const first = waitEventfd(efd);
  await c.write32(BAR0, TestReg.Doorbell, 1);
  t.is(await first, 1);
  t.true(r.dev.intxAsserted);
  t.is(r.eep.stats.intx, 1);

  // Automasked: still asserted, nothing more until QEMU unmasks (a BAR read is the barrier:
  // its completion follows the message on the channel).
  t.is(await c.read32(BAR0, TestReg.Status), TestStatus.Done);
  t.is(native.eventfdRead(efd), null, 'masked after firing');
  const again = waitEventfd(efd);
  await c.setIrqs(UNMASK);
  t.is(await again, 1, 'still asserted at unmask: fires again');
  t.is(r.eep.stats.intx, 2);

  // The driver acknowledges (W1C of DONE): Deassert_INTA; an unmask now signals nothing.
  await c.write32(BAR0, TestReg.Status, TestStatus.Done);
  await until(() => !r.dev.intxAsserted, 'the function deasserted INTA');
  t.is(await c.read32(BAR0, TestReg.Status), 0);
  await c.setIrqs(UNMASK);
  t.is(await c.read32(BAR0, TestReg.Status), 0);
  t.is(native.eventfdRead(efd), null, 'a deasserted line does not fire at unmask');
  t.is(r.eep.stats.intx, 2);

  // The next assertion fires again; Command.INTx_Disable keeps the line from the host.
  const next = waitEventfd(efd);
  await c.write32(BAR0, TestReg.Doorbell, 1);
  t.is(await next, 1);
  await c.write32(BAR0, TestReg.Status, TestStatus.Done);
  await c.write32(CONFIG, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster | CommandBit.IntxDisable);
  await c.setIrqs(UNMASK);
  await c.write32(BAR0, TestReg.Doorbell, 1);
  t.is(await c.read32(BAR0, TestReg.Status), TestStatus.Done);
  t.false(r.dev.intxAsserted, 'INTx_Disable gates the line');
  t.is(native.eventfdRead(efd), null);
  t.is(r.eep.stats.intx, 3);
});

test('a static EEP carries no INTx: pin 0, no INTx irq, the function\'s messages are ignored', async (t) => {
  const r = await hiDiRig(t);
  const c = await r.client();
  t.is((await c.irqInfo(PciIrq.Intx)).count, 0);
  t.is((await c.regionRead(CONFIG, Cfg.InterruptPin, 1))[0], 0);
  await c.write32(CONFIG, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);
  await c.write32(BAR0, TestReg.Doorbell, 1);
  t.is(await c.read32(BAR0, TestReg.Status), TestStatus.Done);
  t.true(r.dev.intxAsserted, 'MSI-X not enabled: the function raised INTA');
  t.is(r.eep.stats.intx, 0);
  t.is(r.hi.stats.unsupported, 0, 'an INTx message from a known function is not an unsupported request');
});
