// Legacy INTx over TLPs (PCIe Base Spec §2.2.8.1): a function signals a level
// change of its interrupt pin with an Assert_INTx / Deassert_INTx message —
// Msg (no data), routed Local (Type r100), TC 0, code 0x20-0x23 / 0x24-0x27
// for INTA-INTD, bytes 8-15 reserved (0). The requester id names the function.
import { type MessageTlp, type MsgTlp, MsgCode, MsgRouting, TlpType } from './tlp.ts';

/** The message that reports `pin` (1 = INTA … 4 = INTD) of `requesterId` going to `asserted`. */
export function intxMessage(requesterId: number, pin: number, asserted: boolean): MsgTlp {
  if (!Number.isInteger(pin) || pin < 1 || pin > 4) throw new RangeError(`INTx pin ${pin} is not 1-4 (INTA-INTD)`);
  const base = asserted ? MsgCode.AssertIntA : MsgCode.DeassertIntA;
  return {
    type: TlpType.Msg, tc: 0, attr: 0, poisoned: false, requesterId, tag: 0,
    routing: MsgRouting.Local, code: base + pin - 1, routingData: 0n,
  };
}

/** Pin (1-4) and level an INTx message reports; undefined for any other message. */
export function intxLevel(tlp: MessageTlp): { pin: number; asserted: boolean } | undefined {
  if (tlp.type !== TlpType.Msg || tlp.routing !== MsgRouting.Local) return undefined;
  if (tlp.code >= MsgCode.AssertIntA && tlp.code <= MsgCode.AssertIntD) return { pin: tlp.code - MsgCode.AssertIntA + 1, asserted: true };
  if (tlp.code >= MsgCode.DeassertIntA && tlp.code <= MsgCode.DeassertIntD) return { pin: tlp.code - MsgCode.DeassertIntA + 1, asserted: false };
  return undefined;
}
