// The DI decodes BARs wherever the HI placed them: a 32-bit BAR lands in the
// HI's 32-bit window at 0xc000_0000, a base with bit 31 set.
import test from 'ava';
import { SHARED_BAR, SharedReg } from '../../src/devices/testdev/testdev.ts';
import { hiDiRig } from './rig.ts';

test('a 32-bit BAR above 2 GiB: writes reach the device, reads come back through the DI', async (t) => {
  const r = await hiDiRig(t, { device: { sharedPage: true } });
  const bar = r.eep.layout.bars[SHARED_BAR]!;
  t.is(bar.kind, 'mem32');
  t.true(bar.address >= 0x8000_0000n, `placed at 0x${bar.address.toString(16)}`);
  const c = await r.client();
  const word = new Uint8Array([0x11, 0x22, 0x33, 0x44]);
  await c.regionWrite(SHARED_BAR, SharedReg.Page, word);
  t.deepEqual(await c.regionRead(SHARED_BAR, SharedReg.Page, 4), word);
  t.is(r.di.stats.unclaimedWrites + r.di.stats.unclaimedReads, 0);
});
