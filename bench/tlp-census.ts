// What a captured link carries, by kind: each sender's TLPs by type and size (MSIs apart from
// other memory writes), link frames without a TLP by frame type; per I/O when told how many
// I/Os the capture saw. For counting the frames an I/O costs (docs/performance.md).
//
//   node bin/lab.mjs capture hi0 -w /tmp/x.pcap --seconds 2      (under load, e.g. fio in the guest)
//   npx tsx bench/tlp-census.ts /tmp/x.pcap [IOS]
import { readFileSync } from 'node:fs';
import { readPcap } from '../src/fabric/wire/pcap.ts';
import { checkFrame, framePayload, frameSrc, frameType } from '../src/fabric/wire/frame.ts';
import { formatMac } from '../src/fabric/wire/mac.ts';
import { decodeTlp, TlpType } from '../src/fabric/tlp/tlp.ts';

const [file, iosArg] = process.argv.slice(2);
const USAGE = 'usage: tlp-census.ts PCAP [IOS]   (each sender\'s TLPs by kind in a lab capture; per I/O given IOS)';
if (file === '--help' || file === '-h') {
  console.log(USAGE);
  process.exit(0);
}
if (!file || (iosArg !== undefined && !(Number(iosArg) > 0))) {
  console.error(USAGE);
  process.exit(2);
}
const ios = Number(iosArg ?? 0);
// Piped into head: stop quietly when the reader has seen enough.
process.stdout.on('error', (err: NodeJS.ErrnoException) => process.exit(err.code === 'EPIPE' ? 0 : 1));
const NAMES: Partial<Record<TlpType, string>> = {
  [TlpType.MRd32]: 'MRd', [TlpType.MRd64]: 'MRd', [TlpType.MWr32]: 'MWr', [TlpType.MWr64]: 'MWr',
  [TlpType.Cpl]: 'Cpl', [TlpType.CplD]: 'CplD', [TlpType.CfgRd0]: 'CfgRd', [TlpType.CfgWr0]: 'CfgWr',
};
/** x86's MSI window: a write there is an interrupt. */
const isMsi = (a: bigint) => a >= 0xfee0_0000n && a < 0xfef0_0000n;

const counts = new Map<string, number>();
const records = readPcap(readFileSync(file));
for (const r of records) {
  const frame = r.data as Uint8Array;
  const hdr = checkFrame(frame, true);
  if (hdr < 0) continue;
  let kind = `frame type ${frameType(frame, hdr)}, no TLP`;
  const d = decodeTlp(framePayload(frame, hdr));
  if (d.ok) {
    const t = d.value;
    const bytes = 'data' in t ? t.data.length : 'length' in t ? t.length * 4 : 0;
    kind = `${NAMES[t.type] ?? `type 0x${t.type.toString(16)}`} ${bytes} B${'address' in t && isMsi(t.address) ? ' (MSI)' : ''}`;
  }
  const key = `${formatMac(frameSrc(frame))}  ${kind}`;
  counts.set(key, (counts.get(key) ?? 0) + 1);
}
for (const [k, n] of [...counts].sort((a, b) => b[1] - a[1])) console.log(`${String(n).padStart(9)}${ios ? (n / ios).toFixed(3).padStart(8) : ''}  ${k}`);
console.log(`${records.length} frames${ios ? `, ${(records.length / ios).toFixed(2)} per I/O` : ''}`);
