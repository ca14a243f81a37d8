// Requests that break a PCIe rule checkTlp knows are Malformed TLPs at a TlpEndpoint: never
// handed to the owner, counted in rxMalformed; a non-posted one is answered UR (so its requester
// gets a clear error, not a timeout), a posted one is dropped. The same request obeying the rule
// is delivered, so each test shows it is the rule that decides.
import test, { type ExecutionContext } from 'ava';
import { CplStatus, MsgCode, MsgRouting, type Tlp, TlpType, encodeTlp } from '../../src/fabric/tlp/tlp.ts';
import { recordingEndpoint as endpoint } from './recording-endpoint.ts';

const head = { tc: 0, attr: 0, poisoned: false, requesterId: 0x100, tag: 7 };

/** `bad` is answered UR (completer `completerId`) and not delivered; `good` is delivered and not answered. */
function expectUr(t: ExecutionContext, bad: Tlp, good: Tlp, completerId: number, rule: RegExp) {
  const { ep, sent, delivered, logs } = endpoint();
  ep.receive(encodeTlp(bad));
  t.deepEqual(delivered, []);
  t.is(sent.length, 1);
  t.like(sent[0], { type: TlpType.Cpl, status: CplStatus.UR, requesterId: 0x100, tag: 7, completerId });
  t.is(ep.stats.rxMalformed, 1);
  t.regex(logs.join('\n'), rule);
  ep.receive(encodeTlp(good));
  t.is(delivered.length, 1);
  t.is(sent.length, 1);
  t.is(ep.stats.rxMalformed, 1);
}

/** `bad` is dropped and counted, with nothing sent; `good` is delivered. */
function expectDropped(t: ExecutionContext, bad: Tlp, good: Tlp, rule: RegExp) {
  const { ep, sent, delivered, logs } = endpoint();
  ep.receive(encodeTlp(bad));
  t.deepEqual(delivered, []);
  t.deepEqual(sent, []);
  t.is(ep.stats.rxMalformed, 1);
  t.regex(logs.join('\n'), rule);
  ep.receive(encodeTlp(good));
  t.is(delivered.length, 1);
  t.is(ep.stats.rxMalformed, 1);
}

test('a memory read crossing a 4 KiB boundary is answered UR', (t) => {
  const read = { type: TlpType.MRd32, ...head, firstBe: 0xf, lastBe: 0xf, length: 4 } as const;
  expectUr(t, { ...read, address: 0x1ff8n }, { ...read, address: 0x1ff0n }, 0, /4 KiB/);
});

test('a memory write crossing a 4 KiB boundary is dropped and counted', (t) => {
  const write = { type: TlpType.MWr64, ...head, firstBe: 0xf, lastBe: 0xf, data: new Uint8Array(16) } as const;
  expectDropped(t, { ...write, address: 0x1_0000_0ffcn }, { ...write, address: 0x1_0000_0ff0n }, /4 KiB/);
});

test('a config read with a non-zero Last DW BE is answered UR by the function addressed', (t) => {
  const cfg = { type: TlpType.CfgRd0, ...head, firstBe: 0xf, completerId: 0x200, register: 0 } as const;
  expectUr(t, { ...cfg, lastBe: 0xf }, { ...cfg, lastBe: 0 }, 0x200, /non-zero Last DW BE/);
});

test('a config write with TC other than 0 is answered UR and writes nothing', (t) => {
  const cfg = { type: TlpType.CfgWr0, ...head, firstBe: 0xf, lastBe: 0, completerId: 0x200, register: 1, data: new Uint8Array(4) } as const;
  expectUr(t, { ...cfg, tc: 3 }, cfg, 0x200, /TC other than 0/);
});

test('an INTx message with TC other than 0 is dropped and counted', (t) => {
  const msg = { type: TlpType.Msg, ...head, routing: MsgRouting.Local, code: MsgCode.AssertIntA, routingData: 0n } as const;
  expectDropped(t, { ...msg, tc: 1 }, msg, /INTx message with TC/);
});

test('a multi-DW memory write with First DW BE 0000b is dropped and counted', (t) => {
  const write = { type: TlpType.MWr32, ...head, address: 0x1000n, lastBe: 0xf, data: new Uint8Array(8) } as const;
  expectDropped(t, { ...write, firstBe: 0 }, { ...write, firstBe: 0xf }, /First DW BE 0000b/);
});

test('malformed requests are counted each, logged a few lines a second', (t) => {
  const { ep, delivered, logs } = endpoint();
  const write = { type: TlpType.MWr32, ...head, address: 0xffcn, firstBe: 0xf, lastBe: 0xf, data: new Uint8Array(8) } as const;
  for (let i = 0; i < 1000; i++) ep.receive(encodeTlp(write));
  t.deepEqual(delivered, []);
  t.is(ep.stats.rxMalformed, 1000);
  t.true(logs.length <= 10, `${logs.length} log lines`);
});
