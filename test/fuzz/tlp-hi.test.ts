// Fuzzing TLPs into the HI's request handling through the live code (tlp-rig.ts): what a DI sends
// a host — device DMA reads and writes, MSI and MSI-X messages, completions — arbitrary bytes and
// structurally valid but hostile TLPs, fed where the link layer delivers them (the HI port's
// endpoint). The HI serves an NVMe function (guest RAM of its vfio-user client mapped at IOVA 0,
// every MSI-X vector wired) and a test device (no DMA map). Requester ids are the functions' or
// forged; addresses in guest RAM, across its end, in and around the MSI windows, anywhere; any
// byte enables and lengths up to 1 024 DW; completions with tags nobody used; config requests and
// messages, which a host does not take from a device; poisoned and damaged TLPs. After each case
// a DMA read of a known pattern orders behind it, and then: every non-posted request has one
// clear UR or correct data (exactly guest RAM's bytes, and only for the NVMe function's own
// requester id inside its DMA map); guest RAM changed exactly as the function's own unpoisoned
// writes say (a forged requester changes nothing); each MSI-X vector's eventfd fired exactly as
// often as a well-formed message for it arrived; nothing answers what was not asked. Between
// batches the NVMe client's Identify and the test device still work; nothing escapes.
import test from 'ava';
import fc from 'fast-check';
import { native } from '../../native/index.ts';
import { requestLowerAddress } from '../../src/fabric/tlp/byte-enables.ts';
import { checkTlp } from '../../src/fabric/tlp/check.ts';
import { enabledRuns } from '../../src/fabric/tlp/endpoint.ts';
import { CplStatus, type CompletionTlp, type MemReadTlp, type Tlp, TlpType, decodeTlp, encodeTlp, isCompletion, memReadType, memWriteType } from '../../src/fabric/tlp/tlp.ts';
import { NVME_MSIX_VECTORS } from '../../src/devices/nvme/controller.ts';
import { MSI_OFFSET } from '../../src/hi/remote-function/index.ts';
import { anyTlp, dwData } from '../fabric/arbitraries.ts';
import { until } from '../support/until.ts';
import { type Damage, FUZZ_RAM_END, NVME_BDF, RAM_SIZE, TESTDEV_BDF, answersOf, damaged, fuzzCases, isClearError, json, rarely, readData, tlpRig, watchProcess } from './tlp-rig.ts';

/** The EEPs' MSI windows: the HI gives them out from 0xFEE0_0000, 0x4000 apart, in the order they were added. */
const NVME_MSI = 0xfee0_0000n;
const TEST_MSI = 0xfee0_4000n;
/** Where the ordering read after each case reads a known pattern (guest RAM the fuzz and the driver leave alone). */
const BARRIER_ADDR = 0x8_0000n;
const BARRIER_TAG = 0x3ff;
const PATTERN = Uint8Array.from({ length: 64 }, (_, i) => (i * 37 + 11) & 0xff);

const nibble = fc.integer({ min: 0, max: 15 });
const be = fc.oneof({ weight: 3, arbitrary: fc.constant(0xf) }, { weight: 2, arbitrary: nibble });
const requester = fc.oneof({ weight: 4, arbitrary: fc.constant(NVME_BDF) }, { weight: 1, arbitrary: fc.constant(TESTDEV_BDF) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) });
const dwAligned = (min: bigint, max: bigint) => fc.bigInt({ min, max }).map((a) => a & ~3n);

type Input =
  | { kind: 'dma'; write: boolean; requesterId: number; address: bigint; length: number; data: Uint8Array; firstBe: number; lastBe: number; poisoned: boolean; wide: boolean }
  | { kind: 'msi'; window: bigint; vector: number; plainMsi: boolean; value: number | undefined; data: Uint8Array; requesterId: number; firstBe: number; poisoned: boolean }
  | { kind: 'any'; tlp: Tlp }
  | { kind: 'bytes'; bytes: Uint8Array };

const small = fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 4 }) }, { weight: 2, arbitrary: fc.integer({ min: 1, max: 64 }) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 1024 }) });
const input: fc.Arbitrary<Input> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('dma' as const), write: fc.boolean(), requesterId: requester,
      address: fc.oneof(
        { weight: 5, arbitrary: dwAligned(0n, 0xfffcn) }, // the fuzz zone of guest RAM
        { weight: 2, arbitrary: dwAligned(BigInt(RAM_SIZE - 0x1000), BigInt(RAM_SIZE + 0x100)) }, // across the map's end
        { weight: 1, arbitrary: dwAligned(0xfee0_0000n, 0xfee0_8000n) }, // MSI windows
        { weight: 1, arbitrary: dwAligned(0n, 0xffff_ffffn) },
        { weight: 1, arbitrary: dwAligned(0n, (1n << 64n) - 1n) },
      ),
      length: small, data: fc.oneof({ weight: 6, arbitrary: dwData(4) }, { weight: 2, arbitrary: dwData(64) }, { weight: 1, arbitrary: dwData(1024) }),
      firstBe: be, lastBe: be, poisoned: rarely(10), wide: rarely(10),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('msi' as const), window: fc.constantFrom(NVME_MSI, NVME_MSI, TEST_MSI), vector: fc.integer({ min: 0, max: NVME_MSIX_VECTORS + 2 }), plainMsi: rarely(6),
      value: fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff_ffff }) }),
      data: fc.oneof({ weight: 4, arbitrary: fc.constant(new Uint8Array(4)) }, { weight: 1, arbitrary: dwData(4) }),
      requesterId: requester, firstBe: be, poisoned: rarely(10),
    }),
  },
  { weight: 2, arbitrary: anyTlp(16).map((tlp) => ({ kind: 'any' as const, tlp })) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 80 }).map((bytes) => ({ kind: 'bytes' as const, bytes })) },
);

test('fuzz: TLPs into the HI: reads answered UR or with guest RAM, writes land only as the function\'s own, interrupts exact; the NVMe client keeps working', async (t) => {
  const r = await tlpRig(t);
  const troubles = watchProcess(t);
  const ram = r.ram;
  ram.set(PATTERN, Number(BARRIER_ADDR));
  const shadow = ram.slice(0, FUZZ_RAM_END);

  // What the HI sends its DI, seen on the way out (it still goes out).
  const ch = r.hiPort.channel;
  const send = ch.send.bind(ch);
  let completions: CompletionTlp[] = [];
  let sentRequests = 0;
  ch.send = (payload) => {
    const d = decodeTlp(payload);
    if (!d.ok) troubles.push(`the HI sent a TLP that does not decode: ${d.error}: ${d.detail}`);
    else if (isCompletion(d.value)) completions.push(d.value);
    else sentRequests++;
    return send(payload);
  };
  t.teardown(() => void (ch.send = send));
  const inject = (bytes: Uint8Array) => r.hiPort.endpoint.receive(bytes);

  let nextTag = 0;
  const toTlp = (i: Exclude<Input, { kind: 'bytes' }>): Tlp => {
    const tag = nextTag++ & 0x1ff;
    if (i.kind === 'any') return i.tlp;
    if (i.kind === 'msi') {
      const address = i.window + (i.plainMsi ? MSI_OFFSET : BigInt(i.vector * 4));
      const data = Uint8Array.from(i.data);
      new DataView(data.buffer).setUint32(0, i.value ?? i.vector, true);
      return { type: memWriteType(address), tc: 0, attr: 0, poisoned: i.poisoned, requesterId: i.requesterId, tag, firstBe: i.firstBe, lastBe: data.length > 4 ? 0xf : 0, address, data };
    }
    // Writes into the fuzz zone stay inside it: the soft driver's queues lie just above.
    let address = i.address;
    if (i.write && address < FUZZ_RAM_END && address + BigInt(i.data.length) > FUZZ_RAM_END) address = BigInt(FUZZ_RAM_END - i.data.length);
    const common = { tc: 0, attr: 0, poisoned: i.poisoned, requesterId: i.requesterId, tag, firstBe: i.firstBe, lastBe: i.lastBe, address };
    const wide = address >= 0x1_0000_0000n || i.wide;
    if (i.write) return { type: wide ? TlpType.MWr64 : memWriteType(address), ...common, data: i.data };
    return { type: wide ? TlpType.MRd64 : memReadType(address), ...common, length: i.length };
  };
  const bytesOf = (i: Input, d: Damage): Uint8Array => damaged(i.kind === 'bytes' ? i.bytes : Uint8Array.from(encodeTlp(toTlp(i))), d);

  const barrierRead: MemReadTlp = { type: TlpType.MRd32, tc: 0, attr: 0, poisoned: false, requesterId: NVME_BDF, tag: BARRIER_TAG, firstBe: 0xf, lastBe: 0xf, address: BARRIER_ADDR, length: PATTERN.length / 4 };
  const isBarrier = (c: CompletionTlp) => c.requesterId === NVME_BDF && c.tag === BARRIER_TAG;
  const barrier = async (what: string): Promise<void> => {
    inject(encodeTlp(barrierRead));
    await until(() => completions.some(isBarrier), `the ordering DMA read after ${what}`, { timeoutMs: 20_000, everyMs: 0 });
    const mine = completions.filter(isBarrier);
    if (mine.length !== 1 || mine[0]!.type !== TlpType.CplD || !Buffer.from(mine[0]!.data).equals(PATTERN)) throw new Error(`the ordering DMA read after ${what} was answered wrongly`);
    completions = completions.filter((c) => !isBarrier(c));
  };

  const tally = { reads: 0, readsOk: 0, ur: 0, writesLanded: 0, interrupts: 0, other: 0 };
  const inRam = (a: bigint, n: number) => a >= 0n && a + BigInt(n) <= BigInt(RAM_SIZE);

  const checkCase = (sent: Tlp[], what: string) => {
    const anyWrite = sent.some((s) => s.type === TlpType.MWr32 || s.type === TlpType.MWr64);
    const answers = answersOf(sent, completions, what);
    for (const a of answers) {
      const { req, cs, show } = a;
      if (isClearError(a, [CplStatus.UR])) {
        tally.ur++;
        continue;
      }
      const first = cs[0]!;
      if (req.type !== TlpType.MRd32 && req.type !== TlpType.MRd64) throw new Error(`${show()}: a host answers a device's ${req.type} with success`);
      if (req.length === 1 && req.firstBe === 0) {
        // A zero-length read only orders (§2.2.5): one DW that carries nothing, from either EEP, wherever it points.
        if (cs.length !== 1 || first.type !== TlpType.CplD || first.byteCount !== 1 || first.data.some((b) => b !== 0) || (req.requesterId !== NVME_BDF && req.requesterId !== TESTDEV_BDF)) throw new Error(`${show()}: a zero-length read takes one CplD of nothing`);
        tally.readsOk++;
        continue;
      }
      if (req.requesterId !== NVME_BDF || !inRam(req.address, req.length * 4)) throw new Error(`${show()}: only the NVMe function's reads inside its DMA map may succeed`);
      const bytes = readData({ ...a, req });
      const start = Number(req.address) + (requestLowerAddress(req.address, req.firstBe) & 3);
      if (!anyWrite && !Buffer.from(bytes).equals(ram.subarray(start, start + bytes.length))) throw new Error(`${show()}: the data is not guest RAM's`);
      tally.readsOk++;
    }
    tally.reads += answers.length;

    // Guest RAM: the fuzz zone changed exactly as the NVMe function's own, unpoisoned, well-formed writes inside the map say.
    const interrupts = new Array<number>(NVME_MSIX_VECTORS).fill(0);
    for (const s of sent) {
      if (s.type !== TlpType.MWr32 && s.type !== TlpType.MWr64) continue;
      if (checkTlp(s).length > 0) continue; // a malformed write is dropped (tlp-malformed.test.ts)
      const d = s.address - NVME_MSI;
      if (d >= 0n && d < BigInt(NVME_MSIX_VECTORS * 4) && (d & 3n) === 0n) {
        if (!s.poisoned && new DataView(s.data.buffer, s.data.byteOffset).getUint32(0, true) === Number(d >> 2n)) interrupts[Number(d >> 2n)]!++;
        continue;
      }
      if (s.requesterId !== NVME_BDF || s.poisoned || !inRam(s.address, s.data.length)) continue;
      for (const [at, n] of enabledRuns(s.firstBe, s.lastBe, s.data.length / 4)) {
        const to = Number(s.address) + at;
        if (to + n <= FUZZ_RAM_END) shadow.set(s.data.subarray(at, at + n), to);
      }
      tally.writesLanded++;
    }
    if (!Buffer.from(ram.buffer, ram.byteOffset, FUZZ_RAM_END).equals(shadow)) {
      let at = 0;
      while (ram[at] === shadow[at]) at++;
      throw new Error(`${what}: guest RAM differs from what the function's own writes say, first at 0x${at.toString(16)} (is 0x${ram[at]!.toString(16)}, expected 0x${shadow[at]!.toString(16)}); sent ${json(sent.filter((s) => s.type === TlpType.MWr32 || s.type === TlpType.MWr64))}`);
    }
    // A vector's messages in one delivery batch are signalled once (the HI counts the others in
    // msixMerged): at least one signal for a vector that got messages, none for one that did not,
    // and every message short of a signal accounted for as merged.
    let unsignalled = 0;
    r.nvmeEfds.forEach((fd, v) => {
      const fired = native.eventfdRead(fd) ?? 0;
      const messages = interrupts[v]!;
      if (fired > messages || (messages > 0 && fired === 0)) throw new Error(`${what}: MSI-X vector ${v} fired ${fired} times for ${messages} messages`);
      unsignalled += messages - fired;
      tally.interrupts += fired;
    });
    const merged = r.eeps[0]!.stats.msixMerged - mergedBefore;
    if (unsignalled > merged) throw new Error(`${what}: ${unsignalled} MSI-X messages were not signalled, ${merged} merged`);
  };
  let mergedBefore = 0;

  await fuzzCases(t, r, troubles, input, async (inputs, what) => {
    // Each case starts from what is there (a failed case, while shrinking, leaves its effects behind).
    completions = [];
    shadow.set(ram.subarray(0, FUZZ_RAM_END));
    for (const fd of r.nvmeEfds) native.eventfdRead(fd);
    mergedBefore = r.eeps[0]!.stats.msixMerged;
    const sent: Tlp[] = [];
    for (const [i, d] of inputs) {
      const bytes = bytesOf(i, d);
      const decoded = decodeTlp(bytes);
      if (decoded.ok) sent.push(decoded.value);
      inject(bytes);
    }
    await barrier(what);
    checkCase(sent, what);
  }, () => {
    const ep = r.hiPort.endpoint.stats;
    return `${tally.reads} non-posted requests (${tally.readsOk} reads served from guest RAM, ${tally.ur} UR), ${tally.writesLanded} DMA writes landed, ${tally.interrupts} interrupts; ` +
      `HI: ${JSON.stringify(r.hi.stats)}; endpoint: ${ep.rxMalformed} malformed, ${ep.rxUnexpectedCompletions} unexpected completions; EEP nvme: ${JSON.stringify(r.eeps[0]!.stats)}; ${sentRequests} requests of the HI's own`;
  });
  // What a DI makes fail is counted, and logged only a few lines a second (fuzzCases holds the rate).
  t.true(tally.readsOk > 0 && tally.ur > 0 && tally.writesLanded > 0 && tally.interrupts > 0, 'the fuzz reached every outcome');
});
