/**
 * Spec rules a well-formed TLP obeys beyond what its encoding can express.
 * Encoders trust their input; receivers and tests ask `checkTlp` what is wrong.
 */

import { isContiguous } from './byte-enables.ts';
import { CplStatus, MsgCode, MsgRouting, type Tlp, TlpType, tlpLength } from './tlp.ts';

const FOUR_GIB = 0x1_0000_0000n;
const MAX_U64 = (1n << 64n) - 1n;

/** Everything wrong with `tlp`, as sentences; empty when it is valid. */
export function checkTlp(tlp: Tlp): string[] {
  // Pushed to directly: a closure made per TLP costs more than the checks under the lab's loader (it names each one).
  const problems: string[] = [];
  if (tlp.tc < 0 || tlp.tc > 7) problems.push(`TC ${tlp.tc} is outside 0-7`);
  if (tlp.attr < 0 || tlp.attr > 7) problems.push(`Attr ${tlp.attr} is outside 0-7`);
  if ('tag' in tlp && (tlp.tag < 0 || tlp.tag > 0x3ff)) problems.push(`tag ${tlp.tag} does not fit 10 bits`);
  if ('data' in tlp && (tlp.data.length === 0 || tlp.data.length % 4 !== 0 || tlp.data.length > 4096)) {
    problems.push(`data of ${tlp.data.length} bytes is not 1-1024 whole DW`);
  }
  switch (tlp.type) {
    case TlpType.MRd32:
    case TlpType.MRd64:
    case TlpType.MWr32:
    case TlpType.MWr64: {
      const length = tlpLength(tlp);
      if (length < 1 || length > 1024) problems.push(`length ${length} DW is outside 1-1024`);
      // Every received memory TLP comes through here: bits 11:0 are taken out of the BigInt once and the
      // alignment, 4 KiB and byte-enable checks work on that number.
      const low12 = Number(tlp.address & 0xfffn);
      if ((low12 & 3) !== 0) problems.push('address is not DW aligned');
      if (tlp.address < 0n || tlp.address > MAX_U64) problems.push('address does not fit 64 bits');
      const is64 = tlp.type === TlpType.MRd64 || tlp.type === TlpType.MWr64;
      if (is64 && tlp.address < FOUR_GIB) problems.push('64-bit format used for an address below 4 GiB');
      if (!is64 && tlp.address >= FOUR_GIB) problems.push('32-bit format used for an address at or above 4 GiB');
      if (low12 + length * 4 > 4096) problems.push('request crosses a 4 KiB boundary');
      checkByteEnables(low12, length, tlp.firstBe, tlp.lastBe, problems);
      break;
    }
    case TlpType.CfgRd0:
    case TlpType.CfgRd1:
    case TlpType.CfgWr0:
    case TlpType.CfgWr1:
      if ((tlp.type === TlpType.CfgWr0 || tlp.type === TlpType.CfgWr1) && tlp.data.length !== 4) {
        problems.push('configuration write data is not exactly 1 DW');
      }
      if (tlp.lastBe !== 0) problems.push('configuration request with a non-zero Last DW BE');
      if (tlp.tc !== 0) problems.push('configuration request with TC other than 0');
      if ((tlp.attr & 3) !== 0) problems.push('configuration request with Relaxed Ordering or No Snoop');
      if (tlp.register < 0 || tlp.register > 1023) problems.push(`register ${tlp.register} is outside 0-1023`);
      break;
    case TlpType.Cpl:
    case TlpType.CplD: {
      if (![CplStatus.SC, CplStatus.UR, CplStatus.CRS, CplStatus.CA].includes(tlp.status)) {
        problems.push(`reserved completion status ${tlp.status}`);
      }
      if (tlp.byteCount < 1 || tlp.byteCount > 4096) problems.push(`byte count ${tlp.byteCount} is outside 1-4096`);
      if (tlp.lowerAddress < 0 || tlp.lowerAddress > 0x7f) problems.push('lower address does not fit 7 bits');
      if (tlp.type === TlpType.CplD) {
        if (tlp.status !== CplStatus.SC) problems.push('completion with data and a status other than SC');
        // Data runs from the DW holding the lower address; the last completion
        // of a request ends with the last byte, so it never carries more.
        const needed = ((tlp.lowerAddress & 3) + tlp.byteCount + 3) >>> 2;
        if (tlp.data.length / 4 > needed) problems.push('completion carries more data than the byte count leaves');
      }
      break;
    }
    case TlpType.Msg:
    case TlpType.MsgD:
      if (tlp.routing > MsgRouting.GatheredToRoot) problems.push(`reserved message routing ${tlp.routing}`);
      if (tlp.code >= MsgCode.AssertIntA && tlp.code <= MsgCode.DeassertIntD) {
        if (tlp.routing !== MsgRouting.Local) problems.push('INTx message not routed Local');
        if (tlp.tc !== 0) problems.push('INTx message with TC other than 0');
      }
      if ((tlp.code === MsgCode.ErrCor || tlp.code === MsgCode.ErrNonFatal || tlp.code === MsgCode.ErrFatal) &&
          tlp.routing !== MsgRouting.ToRootComplex) {
        problems.push('error message not routed to the Root Complex');
      }
      break;
  }
  return problems;
}

/** `low12`: the request's address bits 11:0. */
function checkByteEnables(low12: number, length: number, firstBe: number, lastBe: number, problems: string[]): void {
  if (length === 1) {
    if (lastBe !== 0) problems.push('1 DW request with a non-zero Last DW BE');
    return;
  }
  if (firstBe === 0) problems.push('multi-DW request with First DW BE 0000b');
  if (lastBe === 0) problems.push('multi-DW request with Last DW BE 0000b');
  // Holes are allowed only in a QW-aligned 2 DW request; otherwise the
  // enabled bytes must run from the first enabled byte to the last.
  const qwAligned2 = length === 2 && (low12 & 7) === 0;
  if (!qwAligned2) {
    if (firstBe !== 0 && (!isContiguous(firstBe) || (firstBe & 8) === 0)) problems.push('First DW BE is not contiguous up to the next DW');
    if (lastBe !== 0 && (!isContiguous(lastBe) || (lastBe & 1) === 0)) problems.push('Last DW BE is not contiguous from the DW start');
  }
}
