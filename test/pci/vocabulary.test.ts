// The PCI vocabulary's helpers: BDF text round trips, BAR type bits and
// sizing as a host reads them back, programmed BAR bases above 2 GiB, and
// where MSI registers sit for each address width.
import test from 'ava';
import fc from 'fast-check';
import { BAR_MEM_BASE_MASK, barKind, barRegister, barTypeBits, memBarBase, memBarSize, type BarDef } from '../../src/pci/bar.ts';
import { bdf, formatBdf, parseBdf } from '../../src/pci/bdf.ts';
import { MsiCap, msiLayout } from '../../src/pci/capabilities.ts';
import { PciFunction } from '../../src/pci/function.ts';

test('BDF: format and parse are inverse; bad text names what is wrong', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xffff }), (id) => {
      t.is(parseBdf(formatBdf(id)), id);
    }),
  );
  t.is(formatBdf(bdf(1, 0x1f, 7)), '01:1f.7');
  t.throws(() => parseBdf('01:20.0'), { message: /device 32 > 31/ });
  t.throws(() => parseBdf('1.0'), { message: /expected bb:dd.f/ });
});

test('BAR type bits: what a device declares is what a host decodes', (t) => {
  const defs: BarDef[] = [
    { size: 4096, kind: 'mem32' },
    { size: 4096, kind: 'mem32', prefetchable: true },
    { size: 1 << 20, kind: 'mem64', prefetchable: true },
    { size: 256, kind: 'io' },
  ];
  for (const d of defs) t.is(barKind(barTypeBits(d)), d.kind);
  t.is(barTypeBits(defs[2]!), 0xc);
});

test('BAR sizing and programmed base, as a host sees them in a function', (t) => {
  const fn = new PciFunction({ vendorId: 1, deviceId: 2, classCode: 0xff0000, bars: [{ size: 16384, kind: 'mem64' }, undefined, { size: 4096, kind: 'mem32' }] });
  const cs = fn.config;
  const sized = (i: number) => {
    fn.configWrite(barRegister(i), new Uint8Array([0xff, 0xff, 0xff, 0xff]));
    return cs.get32(barRegister(i));
  };
  t.is(memBarSize(sized(2)), 4096n);
  const lo = sized(0);
  t.is(memBarSize(lo, sized(1)), 16384n);
  t.is(lo & ~BAR_MEM_BASE_MASK, barTypeBits(fn.bars[0]!), 'type bits stay');
  // Bases with bit 31 set: a 32-bit BAR in the HI's window at 0xc000_0000, a 64-bit one above 4 GiB.
  const put = (i: number, v: number) => fn.configWrite(barRegister(i), new Uint8Array(new Uint32Array([v >>> 0]).buffer));
  put(2, 0xc000_0000);
  put(0, 0xc000_4000);
  put(1, 0x80);
  t.is(memBarBase(cs, 2, fn.bars[2]!), 0xc000_0000n);
  t.is(memBarBase(cs, 0, fn.bars[0]!), 0x80_c000_4000n);
});

test('MSI layout: Data, Mask and Pending move down 4 bytes without a 64-bit address', (t) => {
  t.deepEqual(msiLayout(true, true), { data: MsiCap.Data, maskBits: MsiCap.MaskBits, pendingBits: MsiCap.PendingBits, length: MsiCap.LengthWithMask });
  t.deepEqual(msiLayout(false, false), { data: 0x08, maskBits: 0x0c, pendingBits: 0x10, length: 0x0a });
  t.is(msiLayout(false, true).length, 0x14);
});
