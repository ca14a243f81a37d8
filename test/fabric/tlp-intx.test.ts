import test from 'ava';
import fc from 'fast-check';
import { checkTlp } from '../../src/fabric/tlp/check.ts';
import { intxLevel, intxMessage } from '../../src/fabric/tlp/intx.ts';
import { MsgCode, MsgRouting, TlpType, decodeTlp, encodeTlp, type MessageTlp } from '../../src/fabric/tlp/tlp.ts';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

test('Assert_INTA / Deassert_INTA encode as Msg routed Local with codes 0x20 / 0x24', (t) => {
  t.deepEqual(encodeTlp(intxMessage(0x0108, 1, true)), hex('34000000 01080020 00000000 00000000'));
  t.deepEqual(encodeTlp(intxMessage(0x0108, 1, false)), hex('34000000 01080024 00000000 00000000'));
  t.is(intxMessage(1, 4, true).code, MsgCode.AssertIntD);
  t.is(intxMessage(1, 4, false).code, MsgCode.DeassertIntD);
});

test('INTx messages round trip through the codec, pass checkTlp and read back their pin and level', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 1, max: 4 }), fc.boolean(), (rid, pin, asserted) => {
      const msg = intxMessage(rid, pin, asserted);
      t.deepEqual(checkTlp(msg), []);
      const r = decodeTlp(encodeTlp(msg));
      if (!r.ok) throw new Error(`${r.error}: ${r.detail}`);
      const back = r.value as MessageTlp;
      t.is(back.requesterId, rid);
      t.deepEqual(intxLevel(back), { pin, asserted });
    }),
    { numRuns: 200 },
  );
});

test('intxLevel ignores other messages and INTx codes not routed Local; bad pins are refused', (t) => {
  const base = intxMessage(1, 1, true);
  t.is(intxLevel({ ...base, code: MsgCode.ErrFatal }), undefined);
  t.is(intxLevel({ ...base, routing: MsgRouting.ToRootComplex }), undefined);
  t.is(intxLevel({ ...base, type: TlpType.MsgD, data: new Uint8Array(4) }), undefined);
  t.throws(() => intxMessage(1, 0, true), { message: /pin 0/ });
  t.throws(() => intxMessage(1, 5, true), { message: /pin 5/ });
});
