// A DI, then the switch, killed with SIGKILL and started again with the same arguments, with the
// switch, DI and HI as processes and the vfio-user test client playing QEMU: reads keep ending
// (all-ones while the process is gone, never hanging). A new DI has a new epoch: the HI programs
// the function again (BAR, memory decode, MSI-X). A new switch changes no epoch: the channel
// carries on. Either way the device works again on the same connection, each DMA done once.
import test from 'ava';
import { TestReg } from '../../src/devices/testdev/testdev.ts';
import { type ProcessStatus, headlineCounters } from '../../src/lab/status.ts';
import { processRig as rig } from './process-rig.ts';

test('a DI killed and started again: the HI programs the function again and the device works on the same connection', async (t) => {
  const r = await rig(t);
  await r.dmaCopy(50_000, 1);
  await r.c.write32(0, TestReg.Scratch, 0x1234_5678);
  t.is(await r.c.read32(0, TestReg.DmaCount), 1);

  await r.readThrough(async () => {
    await r.restartDi();
  });
  // The new DI's function is fresh (registers reset) but programmed by the HI: BAR decode works.
  t.is(await r.c.read32(0, TestReg.Scratch), 0, 'a new function: what the old one held is gone');
  t.is(await r.c.read32(0, TestReg.DmaCount), 0);
  const stats = await r.hiStats();
  t.like(stats.channels['1']!.link, { peerRestarts: 1, cutOffs: 0 }, 'the HI saw one new DI epoch');
  t.is(headlineCounters({ counters: stats } as unknown as ProcessStatus).resets, 1, 'lab status shows it');
  t.regex(r.hi.output(), /channel 1: DI restarted \(new epoch\): channel reset/);
  t.regex(r.hi.output(), /eep0: channel reset: programming the function again/);

  // DMA and MSI-X again, each copy done exactly once.
  await r.dmaCopy(100_000, 2);
  await r.dmaCopy(3_000, 3);
  t.is(await r.c.read32(0, TestReg.DmaCount), 2);
  t.is(r.hi.proc.exitCode, null);
  t.true(r.c.isOpen, 'the same vfio-user connection throughout');
});

test('the switch killed and started again: both ends live on, nothing is reset, the device works again', async (t) => {
  const r = await rig(t);
  await r.dmaCopy(50_000, 1);
  await r.c.write32(0, TestReg.Scratch, 0x1234_5678);
  await r.readThrough(() => r.restartSwitch());
  t.like((await r.hiStats()).channels['1']!.link, { peerRestarts: 0, cutOffs: 0 }, 'no epoch changed: the channel carried on');
  t.is(await r.c.read32(0, TestReg.Scratch), 0x1234_5678, 'the same function, its state kept');
  await r.dmaCopy(100_000, 2);
  t.is(await r.c.read32(0, TestReg.DmaCount), 2, 'each DMA done once');
});
