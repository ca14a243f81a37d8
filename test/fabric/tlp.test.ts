import test from 'ava';
import fc from 'fast-check';
import { requestByteCount, spanFor } from '../../src/fabric/tlp/byte-enables.ts';
import { checkTlp } from '../../src/fabric/tlp/check.ts';
import { completionFor, completionsForRead, urCompletionFor } from '../../src/fabric/tlp/completion.ts';
import { splitRead, splitWrite } from '../../src/fabric/tlp/split.ts';
import {
  CplStatus,
  type ConfigReadTlp,
  type MemReadTlp,
  type Tlp,
  TlpAttr,
  TlpType,
  decodeTlp,
  encodeTlp,
} from '../../src/fabric/tlp/tlp.ts';
import { enabledRuns } from '../../src/fabric/tlp/endpoint.ts';
import { anyTlp, normalizeTlp } from './arbitraries.ts';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

test('round trip: decode(encode(tlp)) is tlp', (t) => {
  fc.assert(
    fc.property(anyTlp(), (tlp) => {
      const r = decodeTlp(encodeTlp(tlp));
      if (!r.ok) throw new Error(`${r.error}: ${r.detail}`);
      t.deepEqual(normalizeTlp(r.value), normalizeTlp(tlp));
    }),
    { numRuns: 3000 },
  );
});

test('known encodings match the layout table', (t) => {
  const mrd: MemReadTlp = {
    type: TlpType.MRd32, tc: 0, attr: 0, poisoned: false, requesterId: 0x0100, tag: 0x0c, firstBe: 0xf, lastBe: 0, address: 0xfebf1000n, length: 1,
  };
  t.deepEqual(encodeTlp(mrd), hex('00000001 01000c0f febf1000'));
  const mwr: Tlp = {
    type: TlpType.MWr64, tc: 3, attr: TlpAttr.RelaxedOrdering, poisoned: false, requesterId: 0x0208, tag: 0x105,
    firstBe: 0xc, lastBe: 0xf, address: 0x1_2345_6780n, data: hex('0011223344556677'),
  };
  t.deepEqual(encodeTlp(mwr), hex('60382002 020805fc 00000001 23456780 0011223344556677'));
  const cfg: ConfigReadTlp = {
    type: TlpType.CfgRd0, tc: 0, attr: 0, poisoned: false, requesterId: 0, tag: 7, firstBe: 0xf, lastBe: 0, completerId: 0x0100, register: 0x44,
  };
  t.deepEqual(encodeTlp(cfg), hex('04000001 0000070f 01000110'));
  const cpl = completionFor(mrd, 0x0300, hex('deadbeef'));
  t.deepEqual(encodeTlp(cpl), hex('4a000001 03000004 01000c00 deadbeef'));
  t.deepEqual(encodeTlp(urCompletionFor(cfg, 0x0100)), hex('0a000000 01002004 00000700'));
});

test('decoder reports, never throws, on arbitrary bytes', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
      const r = decodeTlp(bytes);
      if (r.ok) t.deepEqual(encodeTlp(r.value).length, bytes.length);
    }),
    { numRuns: 5000 },
  );
  t.like(decodeTlp(hex('00000001 01000c0f')), { ok: false, error: 'truncated' });
  t.like(decodeTlp(hex('02000001 01000c0f 00000000')), { ok: false, error: 'unsupported-type' });
  t.like(decodeTlp(hex('40000002 01000c0f 00000000 00000000')), { ok: false, error: 'truncated' });
  t.like(decodeTlp(hex('00000001 01000c0f 00000000 00')), { ok: false, error: 'length-mismatch' });
});

test('checkTlp flags spec violations', (t) => {
  const base: MemReadTlp = {
    type: TlpType.MRd32, tc: 0, attr: 0, poisoned: false, requesterId: 1, tag: 1, firstBe: 0xf, lastBe: 0xf, address: 0x1000n, length: 4,
  };
  t.deepEqual(checkTlp(base), []);
  t.true(checkTlp({ ...base, address: 0x1ff8n }).some((p) => p.includes('4 KiB')));
  t.true(checkTlp({ ...base, lastBe: 0 }).some((p) => p.includes('Last DW BE 0000b')));
  t.true(checkTlp({ ...base, length: 1 }).some((p) => p.includes('non-zero Last DW BE')));
  t.true(checkTlp({ ...base, firstBe: 0x5 }).some((p) => p.includes('First DW BE is not contiguous')));
  t.deepEqual(checkTlp({ ...base, length: 2, firstBe: 0x5, lastBe: 0xa }), [], 'holes allowed in a QW-aligned 2 DW request');
  t.true(checkTlp({ ...base, type: TlpType.MRd64 }).some((p) => p.includes('below 4 GiB')));
  t.true(checkTlp({ ...base, type: TlpType.MRd32, address: 0x1_0000_0000n }).some((p) => p.includes('at or above 4 GiB')));
  const cfg: ConfigReadTlp = {
    type: TlpType.CfgRd1, tc: 1, attr: 0, poisoned: false, requesterId: 0, tag: 0, firstBe: 0xf, lastBe: 0, completerId: 0x200, register: 0,
  };
  t.true(checkTlp(cfg).some((p) => p.includes('TC other than 0')));
  const cpl = completionFor(base, 9, Buffer.alloc(16));
  t.deepEqual(checkTlp(cpl), []);
  t.true(checkTlp({ ...cpl, status: CplStatus.UR }).some((p) => p.includes('status other than SC')));
  t.true(checkTlp({ ...cpl, byteCount: 8 }).some((p) => p.includes('more data')));
});

const transfer = fc.record({
  address: fc.bigInt({ min: 0n, max: 0x2_0000_0000n }),
  bytes: fc.integer({ min: 0, max: 9000 }),
  size: fc.constantFrom(128, 256, 512, 1024, 2048, 4096),
});

test('splitWrite: legal MWr TLPs that write exactly the given bytes', (t) => {
  fc.assert(
    fc.property(transfer, fc.integer(), ({ address, bytes, size }, seed) => {
      const data = Buffer.alloc(bytes, seed & 0xff).map((_, i) => (i * 7 + seed) & 0xff);
      const tlps = splitWrite(address, data, size, { requesterId: 0x100 });
      const written = new Map<bigint, number>();
      for (const w of tlps) {
        t.deepEqual(checkTlp(w), []);
        t.true(w.data.length <= size);
        for (let i = 0; i < w.data.length; i++) {
          const dw = Math.floor(i / 4);
          const be = dw === 0 ? w.firstBe : dw === w.data.length / 4 - 1 ? w.lastBe : 0xf;
          if ((be >> (i & 3)) & 1) written.set(w.address + BigInt(i), w.data[i]!);
        }
      }
      t.is(written.size, bytes);
      for (let i = 0; i < bytes; i++) if (written.get(address + BigInt(i)) !== data[i]) t.fail(`byte ${i}`);
    }),
    { numRuns: 300 },
  );
});

test('splitRead and completionsForRead: completions return exactly the requested bytes, split at RCB', (t) => {
  fc.assert(
    fc.property(transfer, fc.constantFrom(64 as const, 128 as const), fc.constantFrom(128, 256, 4096), ({ address, bytes, size }, rcb, mps) => {
      let tag = 0;
      const reads = splitRead(address, bytes, size, { requesterId: 0x100 }, () => tag++);
      let covered = 0;
      for (const req of reads) {
        t.deepEqual(checkTlp(req), []);
        t.true(req.length * 4 <= size, "request within max read request size");
        const memory = Buffer.alloc(req.length * 4).map((_, i) => (Number(req.address & 0x7fn) + i) & 0x7f);
        const cpls = completionsForRead(req, 0x300, memory, { rcb, maxPayload: mps });
        const total = requestByteCount(req.length, req.firstBe, req.lastBe);
        t.is(cpls[0]!.byteCount, total);
        let got = 0;
        cpls.forEach((c, i) => {
          t.deepEqual(checkTlp(c), []);
          t.true(c.data.length <= mps);
          t.is(c.tag, req.tag);
          t.is(c.byteCount, total - got);
          const n = Math.min(c.byteCount, c.data.length - (c.lowerAddress & 3));
          if (i < cpls.length - 1) t.is((c.lowerAddress + n) % rcb, 0, 'non-final completion ends on RCB');
          for (let k = 0; k < n; k++) {
            if (c.data[(c.lowerAddress & 3) + k] !== ((c.lowerAddress + k) & 0x7f)) t.fail('completion byte out of place');
          }
          got += n;
        });
        t.is(got, total);
        covered += bytes === 0 ? 0 : total;
      }
      t.is(covered, bytes);
    }),
    { numRuns: 300 },
  );
});

test('zero-length read is one DW with no byte enabled and completes with byte count 1', (t) => {
  const span = spanFor(0x1003n, 0);
  t.deepEqual(span, { address: 0x1000n, length: 1, firstBe: 0, lastBe: 0 });
  t.is(splitRead(0x1003n, 0, 512, { requesterId: 1 }, () => 5).length, 0, 'a zero-byte transfer needs no request');
  const zlr: MemReadTlp = { type: TlpType.MRd32, tc: 0, attr: 0, poisoned: false, requesterId: 1, tag: 5, ...span };
  const cpls = completionsForRead(zlr, 2, Buffer.alloc(4), { rcb: 64, maxPayload: 128 });
  t.is(cpls.length, 1);
  t.like(cpls[0], { byteCount: 1, lowerAddress: 0 });
});

test('enabledRuns: the runs of enabled bytes, as a byte-by-byte walk of the byte enables finds them', (t) => {
  const byteWise = (firstBe: number, lastBe: number, lengthDw: number): [number, number][] => {
    const on = (i: number) => (i < 4 ? (firstBe >> i) & 1 : i >= (lengthDw - 1) * 4 ? (lastBe >> (i & 3)) & 1 : 1) === 1;
    const runs: [number, number][] = [];
    for (let i = 0; i < lengthDw * 4; i++) {
      if (!on(i)) continue;
      if (runs.length > 0 && runs.at(-1)![0] + runs.at(-1)![1] === i) runs.at(-1)![1]++;
      else runs.push([i, 1]);
    }
    return runs;
  };
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 15 }), fc.integer({ min: 0, max: 15 }), fc.oneof(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 1024 })), (firstBe, lastBe, lengthDw) => {
      t.deepEqual(enabledRuns(firstBe, lastBe, lengthDw), byteWise(firstBe, lastBe, lengthDw));
    }),
    { numRuns: 2000 },
  );
  t.deepEqual(enabledRuns(0xf, 0xf, 1024), [[0, 4096]]);
});
