// Fuzzing TLPs into the DI's request handling through the live code (tlp-rig.ts): a station on
// channel 1 plays the host of an NVMe controller (01:00.0) and a test device (01:00.1) and sends
// arbitrary bytes and structurally valid but hostile TLPs of every kind — config reads and writes
// to any register (BARs, Command, MSI-X, capabilities), of the functions and of BDFs it does not
// have, Type 1 config; memory reads and writes in, across and outside the BARs as the fuzz itself
// has programmed them, any byte enables, up to 1 024 DW; completions with unknown tags; messages;
// poisoned and malformed TLPs — some then bit-flipped, cut short or given another Length. The
// station answers the functions' own DMA reads with UR, data or garbage. After each case a config
// read orders behind it; by then every non-posted request the DI decoded has its answer: a UR or
// CA completion, or a correct one (a config read of the ID register returns the function's IDs,
// a memory read returns exactly the bytes it asked for), and no completion answers nothing that
// was asked. Between batches, real I/O on channel 2 through the HI (NVMe Identify, the test
// device's ID register) still works; no exception escapes, no promise is left rejected; the log
// grows by a few lines a second at most, however many cases run.
import test from 'ava';
import fc from 'fast-check';
import { completionsForRead, urCompletionFor } from '../../src/fabric/tlp/completion.ts';
import { CplStatus, type CompletionTlp, type Tlp, TlpType, decodeTlp, encodeTlp, isCompletion, isNonPosted, memReadType, memWriteType } from '../../src/fabric/tlp/tlp.ts';
import { memBarBase } from '../../src/pci/bar.ts';
import type { PciFunction } from '../../src/pci/function.ts';
import { anyTlp, dwData } from '../fabric/arbitraries.ts';
import { until } from '../support/until.ts';
import { type Damage, NVME_BDF, TESTDEV_BDF, answersOf, damaged, fuzzCases, isClearError, rarely, readData, tlpRig, watchProcess } from './tlp-rig.ts';

/** Requester id of the ordering config read after each case: no fuzzed request uses it. */
const BARRIER_ID = 0xfffe;
const nibble = fc.integer({ min: 0, max: 15 });
const be = fc.oneof({ weight: 3, arbitrary: fc.constant(0xf) }, { weight: 2, arbitrary: nibble });
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });

type Target = 'nvme' | 'test' | 'other';
/** A memory address resolved when the case runs: BAR bases move as the fuzz programs them. */
interface Where {
  target: Target;
  bar: number;
  offset: bigint;
}
type Input =
  | { kind: 'cfg'; write: boolean; type1: boolean; target: Target; otherBdf: number; register: number; firstBe: number; lastBe: number; data: number; tc: number; attr: number; poisoned: boolean }
  | { kind: 'mem'; write: boolean; where: Where; wrongFormat: boolean; length: number; data: Uint8Array; firstBe: number; lastBe: number; poisoned: boolean; requesterId: number }
  | { kind: 'any'; tlp: Tlp }
  | { kind: 'bytes'; bytes: Uint8Array }
  | Recipe;
/**
 * Set a function working, then fuzz what it works on: bus mastering and memory decode on, BAR0
 * placed if the fuzz left it at 0, MSI-X on with vector 0 aimed somewhere; then the test device
 * copies between `addresses`, or the NVMe controller is enabled with its admin queues there and
 * its doorbell rung (its commands are the bytes the station answers its DMA reads with).
 */
interface Recipe {
  kind: 'recipe';
  fn: Exclude<Target, 'other'>;
  addresses: bigint[];
  values: number[];
}

const target = fc.constantFrom<Target>('nvme', 'nvme', 'test', 'test', 'other');
const register = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 15 }) }, // header: IDs, Command, BARs
  { weight: 3, arbitrary: fc.integer({ min: 16, max: 63 }) }, // capabilities (PM, MSI, MSI-X, PCIe)
  { weight: 1, arbitrary: fc.integer({ min: 64, max: 1023 }) },
);
const cfgData = fc.oneof(fc.constant(0xffff_ffff), fc.constant(0), fc.constantFrom(0x6, 0x406, 0x4, 0x2, 0x8000_0000, 0xc000_0000), u32);
const offset = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 0x40 }).map((o) => BigInt(o & ~3)) },
  { weight: 2, arbitrary: fc.integer({ min: 0x1000, max: 0x1040 }).map((o) => BigInt(o & ~3)) }, // doorbells
  { weight: 2, arbitrary: fc.integer({ min: 0x2000, max: 0x3010 }).map((o) => BigInt(o & ~3)) }, // MSI-X table and PBA
  { weight: 2, arbitrary: fc.integer({ min: 0x3ff0, max: 0x4010 }).map((o) => BigInt(o & ~3)) }, // the BAR's end
  { weight: 1, arbitrary: fc.bigInt({ min: -0x10000n, max: 0x10000n }).map((o) => o & ~3n) },
);
const where: fc.Arbitrary<Where> = fc.record({ target, bar: fc.constantFrom(0, 0, 0, 2), offset });
const length = fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 4 }) }, { weight: 2, arbitrary: fc.integer({ min: 1, max: 64 }) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 1024 }) });

const dmaAddress = fc.oneof(
  fc.bigInt({ min: 0n, max: 0xffffn }),
  fc.constantFrom(0xfee0_0000n, 0xffff_f000n, 0xffff_fffcn, 0x1_0000_0000n, 0xffff_ffff_ffff_f000n),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
);
const recipe: fc.Arbitrary<Recipe> = fc.record({
  kind: fc.constant('recipe' as const),
  fn: fc.constantFrom<Recipe['fn']>('nvme', 'test'),
  addresses: fc.array(dmaAddress, { minLength: 3, maxLength: 3 }),
  values: fc.array(fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 0x10_0000 }), u32), { minLength: 4, maxLength: 4 }),
});
const input: fc.Arbitrary<Input> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('cfg' as const), write: fc.boolean(), type1: rarely(5), target,
      otherBdf: fc.integer({ min: 0, max: 0xffff }), register, firstBe: be, lastBe: fc.oneof({ weight: 5, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: nibble }),
      data: cfgData, tc: fc.oneof({ weight: 9, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 7 }) }),
      attr: fc.oneof({ weight: 9, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 7 }) }), poisoned: rarely(10),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('mem' as const), write: fc.boolean(), where, wrongFormat: rarely(10), length,
      data: fc.oneof({ weight: 6, arbitrary: dwData(4) }, { weight: 2, arbitrary: dwData(64) }, { weight: 1, arbitrary: dwData(1024) }),
      firstBe: be, lastBe: be, poisoned: rarely(10), requesterId: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xfffd })),
    }),
  },
  { weight: 2, arbitrary: anyTlp(16).map((tlp) => ({ kind: 'any' as const, tlp })) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 80 }).map((bytes) => ({ kind: 'bytes' as const, bytes })) },
  { weight: 1, arbitrary: recipe },
);

test('fuzz: TLPs into the DI: every request answered (UR/CA or correctly), nothing invented; the other channel serves real I/O throughout', async (t) => {
  const r = await tlpRig(t);
  const troubles = watchProcess(t);
  const fns: Record<Exclude<Target, 'other'>, { fn: PciFunction; bdf: number; ids: number }> = {
    nvme: { fn: r.fuzzNvme, bdf: NVME_BDF, ids: r.fuzzNvme.config.get32(0) },
    test: { fn: r.fuzzTestdev, bdf: TESTDEV_BDF, ids: r.fuzzTestdev.config.get32(0) },
  };

  // What the DI sends: completions are collected; the functions' own DMA reads get UR, data or garbage.
  let completions: CompletionTlp[] = [];
  let dmaReads = 0;
  let dmaWrites = 0;
  r.setFromDi((payload) => {
    const d = decodeTlp(payload);
    if (!d.ok) throw new Error(`the DI sent a TLP that does not decode: ${d.error}: ${d.detail}`);
    const tlp = d.value;
    if (isCompletion(tlp)) return void completions.push(tlp);
    if (tlp.type === TlpType.MRd32 || tlp.type === TlpType.MRd64) {
      const answer = dmaReads++ % 3;
      if (answer === 0) r.fuzzChannel.send(encodeTlp(urCompletionFor(tlp, 0)));
      else if (answer === 1) for (const c of completionsForRead(tlp, 0, noise(tlp.length * 4), { rcb: 64, maxPayload: 256 })) r.fuzzChannel.send(encodeTlp(c));
      else r.fuzzChannel.send(encodeTlp({ type: TlpType.CplD, tc: 0, attr: 0, poisoned: dmaReads % 2 === 0, completerId: 0, requesterId: tlp.requesterId, tag: tlp.tag, status: CplStatus.SC, bcm: false, byteCount: 1 + (dmaReads % 4096), lowerAddress: dmaReads & 0x7f, data: new Uint8Array(4) }));
    } else dmaWrites++;
  });

  let seed = 1;
  /** Bytes the station's DMA answers carry: NVMe commands and PRPs of every shape. */
  const noise = (n: number) => {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
    // Some commands look real: small opcodes and PRPs into the station's low memory.
    if (n >= 64 && seed % 2 === 0) {
      b[0] = seed % 0x1a;
      b.fill(0, 24, 40);
      b[25] = seed & 0xf0;
    }
    return b;
  };
  let nextTag = 0;
  const barBase = (w: Where): bigint | undefined => {
    if (w.target === 'other') return 0x1_0000_0000n;
    const { fn } = fns[w.target];
    const b = fn.bars[w.bar];
    return b && b.kind !== 'io' ? memBarBase(fn.config, w.bar, b) : undefined;
  };
  const toTlp = (i: Exclude<Input, { kind: 'bytes' } | Recipe>): Tlp => {
    const tag = nextTag++ & 0x3ff;
    if (i.kind === 'any') return i.tlp;
    if (i.kind === 'cfg') {
      const completerId = i.target === 'other' ? i.otherBdf : fns[i.target].bdf;
      const common = { tc: i.tc, attr: i.attr, poisoned: i.poisoned, requesterId: 0, tag, firstBe: i.firstBe, lastBe: i.lastBe, completerId, register: i.register };
      if (!i.write) return { type: i.type1 ? TlpType.CfgRd1 : TlpType.CfgRd0, ...common };
      const data = new Uint8Array(4);
      new DataView(data.buffer).setUint32(0, i.data, true);
      return { type: i.type1 ? TlpType.CfgWr1 : TlpType.CfgWr0, ...common, data };
    }
    let address = ((barBase(i.where) ?? 0n) + i.where.offset) & 0xffff_ffff_ffff_fffcn;
    if (address < 0n) address = 0n;
    const common = { tc: 0, attr: 0, poisoned: i.poisoned, requesterId: i.requesterId, tag, firstBe: i.firstBe, lastBe: i.lastBe };
    const wide = address >= 0x1_0000_0000n || i.wrongFormat;
    if (i.write) return { type: wide ? TlpType.MWr64 : memWriteType(address), ...common, address, data: i.data };
    return { type: wide ? TlpType.MRd64 : memReadType(address), ...common, address, length: i.length };
  };
  const cfgWrite = (fn: { bdf: number }, offset: number, value: number, firstBe = 0xf): Tlp => {
    const data = new Uint8Array(4);
    new DataView(data.buffer).setUint32(0, value >>> 0, true);
    return { type: TlpType.CfgWr0, tc: 0, attr: 0, poisoned: false, requesterId: 0, tag: nextTag++ & 0x3ff, firstBe, lastBe: 0, completerId: fn.bdf, register: offset >> 2, data };
  };
  const memWrite = (address: bigint, ...dws: number[]): Tlp => {
    const data = new Uint8Array(dws.length * 4);
    dws.forEach((v, k) => new DataView(data.buffer).setUint32(k * 4, v >>> 0, true));
    return { type: memWriteType(address), tc: 0, attr: 0, poisoned: false, requesterId: 0, tag: 0, firstBe: 0xf, lastBe: dws.length > 1 ? 0xf : 0, address, data };
  };
  const lo = (a: bigint) => Number(a & 0xffff_ffffn);
  const hi = (a: bigint) => Number(a >> 32n);
  const recipeTlps = (rc: Recipe): Tlp[] => {
    const f = fns[rc.fn];
    const out: Tlp[] = [cfgWrite(f, 4, 0x6)];
    let bar = barBase({ target: rc.fn, bar: 0, offset: 0n })!;
    if (bar === 0n || bar >= 0x1_0000_0000n) {
      bar = rc.fn === 'nvme' ? 0xd000_0000n : 0xe000_0000n;
      out.push(cfgWrite(f, 0x10, lo(bar)), cfgWrite(f, 0x14, 0));
    }
    const msix = f.fn.caps.msix!;
    const [a0, a1, a2] = rc.addresses as [bigint, bigint, bigint];
    const [v0, v1, v2, v3] = rc.values as [number, number, number, number];
    // MSI-X vector 0 at a2, then Enable (Message Control is the upper half of the capability's first DW).
    out.push(memWrite(bar + 0x2000n, lo(a2), hi(a2), v3, 0), cfgWrite(f, msix, 0x8000_0000, 0xc));
    if (rc.fn === 'test') {
      out.push(memWrite(bar + 0x40n, lo(a0), hi(a0)), memWrite(bar + 0x48n, lo(a1), hi(a1)), memWrite(bar + 0x50n, v0, v1 & 3), memWrite(bar + 0x58n, 1));
    } else {
      // CC.EN off, admin queues of v0 entries at a0 and a1, CC as Linux sets it or as the fuzz says, the SQ 0 doorbell.
      out.push(memWrite(bar + 0x14n, 0), memWrite(bar + 0x24n, ((v0 & 0xfff) << 16) | (v0 & 0xfff)), memWrite(bar + 0x28n, lo(a0), hi(a0)), memWrite(bar + 0x30n, lo(a1), hi(a1)));
      out.push(memWrite(bar + 0x14n, v1 % 2 === 0 ? 0x460001 : v1), memWrite(bar + 0x1000n, v2 % 2 === 0 ? (v2 >> 1) % ((v0 & 0xfff) + 1) : v2 & 0xffff));
    }
    return out;
  };
  const bytesOf = (i: Exclude<Input, Recipe>, d: Damage): Uint8Array => damaged(i.kind === 'bytes' ? i.bytes : Uint8Array.from(encodeTlp(toTlp(i))), d);

  let barrierTag = 0;
  /** A config read of the test device's ID register: ordered behind everything sent before it. */
  const barrier = async (what: string): Promise<void> => {
    const tag = barrierTag++ & 0x3ff;
    r.fuzzChannel.send(encodeTlp({ type: TlpType.CfgRd0, tc: 0, attr: 0, poisoned: false, requesterId: BARRIER_ID, tag, firstBe: 0xf, lastBe: 0, completerId: TESTDEV_BDF, register: 0 }));
    const isMine = (c: CompletionTlp) => c.requesterId === BARRIER_ID && c.tag === tag;
    await until(() => completions.some(isMine), `the ordering config read after ${what}`, { timeoutMs: 20_000, everyMs: 0 });
    const c = completions.find(isMine)!;
    if (c.type !== TlpType.CplD || c.status !== CplStatus.SC || new DataView(c.data.buffer, c.data.byteOffset).getUint32(0, true) !== fns.test.ids) {
      throw new Error(`the ordering config read after ${what} was answered ${JSON.stringify({ ...c, data: undefined })}`);
    }
    completions = completions.filter((x) => !isMine(x));
  };

  const tally = { requests: 0, ur: 0, ca: 0, ok: 0, posted: 0, undecodable: 0 };
  const checkAnswers = (sent: Tlp[], what: string) => {
    for (const a of answersOf(sent, completions, what)) {
      const { req, cs, show } = a;
      tally.requests++;
      const first = cs[0]!;
      if (req.poisoned && (req.type === TlpType.CfgWr0 || req.type === TlpType.CfgWr1) && first.status !== CplStatus.UR) throw new Error(`${show()}: a poisoned config write takes UR`);
      if (isClearError(a, [CplStatus.UR, CplStatus.CA])) {
        if (first.status === CplStatus.UR) tally.ur++;
        else tally.ca++;
        continue;
      }
      tally.ok++;
      if (req.type === TlpType.CfgWr0 || req.type === TlpType.CfgWr1) {
        if (cs.length !== 1 || first.type !== TlpType.Cpl) throw new Error(`${show()}: a config write takes one Cpl`);
      } else if (req.type === TlpType.CfgRd0 || req.type === TlpType.CfgRd1) {
        if (cs.length !== 1 || first.type !== TlpType.CplD || first.byteCount !== 4 || first.data.length !== 4 || first.completerId !== req.completerId) throw new Error(`${show()}: a config read takes one CplD of 4 bytes`);
        const fn = Object.values(fns).find((f) => f.bdf === req.completerId);
        if (req.register === 0 && fn && new DataView(first.data.buffer, first.data.byteOffset).getUint32(0, true) !== fn.ids) throw new Error(`${show()}: wrong vendor/device id`);
      } else if (req.type === TlpType.MRd32 || req.type === TlpType.MRd64) {
        readData({ ...a, req });
      }
    }
  };

  await fuzzCases(t, r, troubles, input, async (inputs, what) => {
    completions = [];
    const sent: Tlp[] = [];
    const all = inputs.flatMap(([i, d]): Uint8Array[] => (i.kind === 'recipe' ? recipeTlps(i).map((x) => Uint8Array.from(encodeTlp(x))) : [bytesOf(i, d)]));
    for (const bytes of all) {
      const decoded = decodeTlp(bytes);
      if (decoded.ok) sent.push(decoded.value);
      else tally.undecodable++;
      if (decoded.ok && !isNonPosted(decoded.value)) tally.posted++;
      r.fuzzChannel.send(bytes);
    }
    await barrier(what);
    checkAnswers(sent, what);
  }, () => {
    const ch = r.di.channelStats(1)!;
    return `${tally.requests} requests checked (${tally.ok} answered, ${tally.ur} UR, ${tally.ca} CA), ${tally.posted} posted/completions/messages, ${tally.undecodable} undecodable; ` +
      `DI: ${JSON.stringify(r.di.stats)}; channel 1: ${ch.rxMalformed} malformed, ${ch.rxUnexpectedCompletions} unexpected completions, ${ch.completionTimeouts} DMA timeouts; fuzz station: ${dmaReads} DMA reads, ${dmaWrites} writes/messages`;
  });
  // What a host makes fail or change (rejected requests, malformed TLPs, the NVMe controller enabled, reset or
  // fatal) is counted, and logged only a few lines a second (fuzzCases holds the rate).
  t.true(tally.requests > 0 && tally.ok > 0 && tally.ur > 0, 'the fuzz reached both answers');
});
