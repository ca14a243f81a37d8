/** fast-check generators shared by the fabric tests. */

import fc from 'fast-check';
import { CplStatus, MsgRouting, type Tlp, TlpType } from '../../src/fabric/tlp/tlp.ts';

const u16 = fc.integer({ min: 0, max: 0xffff });
const tag = fc.integer({ min: 0, max: 0x3ff });
const nibble = fc.integer({ min: 0, max: 15 });
const common = { tc: fc.integer({ min: 0, max: 7 }), attr: fc.integer({ min: 0, max: 7 }), poisoned: fc.boolean() };

/** 1..maxDw whole DWs of random bytes. */
export function dwData(maxDw = 64): fc.Arbitrary<Uint8Array> {
  return fc.integer({ min: 1, max: maxDw }).chain((n) => fc.uint8Array({ minLength: n * 4, maxLength: n * 4 }));
}

const addr32 = fc.bigInt({ min: 0n, max: 0xffff_ffffn }).map((a) => a & ~3n);
const addr64 = fc.bigInt({ min: 0x1_0000_0000n, max: (1n << 64n) - 1n }).map((a) => a & ~3n);

/** Any TLP the codec can carry (not necessarily one checkTlp accepts). */
export function anyTlp(maxDw = 64): fc.Arbitrary<Tlp> {
  const req = { ...common, requesterId: u16, tag, firstBe: nibble, lastBe: nibble };
  const cpl = {
    ...common,
    completerId: u16,
    requesterId: u16,
    tag,
    status: fc.constantFrom(CplStatus.SC, CplStatus.UR, CplStatus.CRS, CplStatus.CA),
    bcm: fc.boolean(),
    byteCount: fc.integer({ min: 1, max: 4096 }),
    lowerAddress: fc.integer({ min: 0, max: 0x7f }),
  };
  const msg = {
    ...common,
    requesterId: u16,
    tag,
    routing: fc.constantFrom(MsgRouting.ToRootComplex, MsgRouting.ByAddress, MsgRouting.ById, MsgRouting.BroadcastFromRoot, MsgRouting.Local, MsgRouting.GatheredToRoot),
    code: fc.integer({ min: 0, max: 0xff }),
    routingData: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  };
  const cfg = { ...req, completerId: u16, register: fc.integer({ min: 0, max: 1023 }) };
  const length = fc.integer({ min: 1, max: 1024 });
  return fc.oneof(
    fc.record({ type: fc.constant(TlpType.MRd32 as const), ...req, address: addr32, length }),
    fc.record({ type: fc.constant(TlpType.MRd64 as const), ...req, address: addr64, length }),
    fc.record({ type: fc.constant(TlpType.MWr32 as const), ...req, address: addr32, data: dwData(maxDw) }),
    fc.record({ type: fc.constant(TlpType.MWr64 as const), ...req, address: addr64, data: dwData(maxDw) }),
    fc.record({ type: fc.constantFrom(TlpType.CfgRd0 as const, TlpType.CfgRd1 as const), ...cfg }),
    fc.record({ type: fc.constantFrom(TlpType.CfgWr0 as const, TlpType.CfgWr1 as const), ...cfg, data: dwData(1) }),
    fc.record({ type: fc.constant(TlpType.Cpl as const), ...cpl }),
    fc.record({ type: fc.constant(TlpType.CplD as const), ...cpl, data: dwData(maxDw) }),
    fc.record({ type: fc.constant(TlpType.Msg as const), ...msg }),
    fc.record({ type: fc.constant(TlpType.MsgD as const), ...msg, data: dwData(maxDw) }),
  ) as fc.Arbitrary<Tlp>;
}

/** Copy data views into plain Buffers so decoded and generated TLPs compare equal. */
export function normalizeTlp(tlp: Tlp): Tlp {
  return 'data' in tlp ? { ...tlp, data: Buffer.from(tlp.data) } : { ...tlp };
}
