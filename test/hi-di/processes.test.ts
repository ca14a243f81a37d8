// The HI and DI as lab processes: switch, DI and HI each a separate process on
// real unix datagram sockets (two links each); the vfio-user test client plays
// QEMU. Then the DI is killed: the HI answers all-ones and stays up.
import test from 'ava';
import { PciRegion } from '../../src/vfio-user/protocol.ts';
import { TESTDEV_ID_VALUE, TestReg } from '../../src/devices/testdev/testdev.ts';
import { processRig } from './process-rig.ts';

test('switch, DI and HI as processes: config, BAR, DMA and MSI-X; a killed DI gives all-ones, the HI stays up', async (t) => {
  const r = await processRig(t, 300);
  const cfg = await r.c.regionRead(PciRegion.Config, 0, 4);
  t.is(new DataView(cfg.buffer, cfg.byteOffset).getUint32(0, true), 0x0e0e1234);
  t.is(await r.c.read32(0, TestReg.Id), TESTDEV_ID_VALUE);
  await r.dmaCopy(100_000, 7, 0x8_0001); // to an unaligned destination

  // The DI dies: reads end in all-ones within the completion timeout; the HI and its socket live on.
  r.di.proc.kill('SIGKILL');
  await r.di.exited;
  const t0 = performance.now();
  t.is(await r.c.read32(0, TestReg.Id), 0xffffffff);
  t.true(performance.now() - t0 < 2000);
  t.is(r.hi.proc.exitCode, null, 'the HI is still running');
  t.true(r.c.isOpen, 'and QEMU\'s connection is still open');
});
