// TlpEndpoint's "peer unreachable" fast path: with the link layer reporting
// the peer gone, requests fail at once and outstanding ones are cut short,
// instead of each waiting out the completion timeout (the HI's reads of a
// killed DI's registers, many in a row while the guest driver tears down).
import test from 'ava';
import { SimClock } from '../../src/fabric/sim-clock.ts';
import { TlpEndpoint } from '../../src/fabric/tlp/endpoint.ts';
import { completionFor, urCompletionFor } from '../../src/fabric/tlp/completion.ts';
import { type MemReadTlp, type NonPostedTlp, type Tlp, TlpType, decodeTlp, encodeTlp } from '../../src/fabric/tlp/tlp.ts';

const cfgRd = { type: TlpType.CfgRd0, tc: 0, attr: 0, poisoned: false, requesterId: 0, completerId: 0x100, register: 0, firstBe: 0xf, lastBe: 0 } as const;

test('peer unreachable: outstanding requests end at once, new ones fail at once; back to normal when it returns', async (t) => {
  const clock = new SimClock();
  const sent: Uint8Array[] = [];
  const ep = new TlpEndpoint({ send: (b) => sent.push(b), onRequest: () => {}, clock, completionTimeoutMs: 2000 });
  let done = 0;
  const outstanding = ep.request(cfgRd).then((o) => (done++, o));
  t.is(sent.length, 1);
  await Promise.resolve();
  t.is(done, 0, 'still waiting for its completion');
  ep.setPeerAlive(false);
  t.like(await outstanding, { status: 'timeout', detail: 'peer unreachable' });
  t.is(clock.now(), 0, 'without waiting for the completion timeout');
  t.like(await ep.request(cfgRd), { status: 'timeout', detail: 'peer unreachable' });
  t.is(sent.length, 1, 'nothing sent into a dead channel');
  t.is(ep.stats.peerDownFailures, 2);
  t.is(ep.stats.completionTimeouts, 0);
  ep.setPeerAlive(true);
  const again = ep.request(cfgRd);
  t.is(sent.length, 2, 'requests go out again');
  ep.close();
  t.like(await again, { status: 'closed' });
});

/** An endpoint on a SimClock whose sent requests are decoded for the test to answer. */
function rig(completionTimeoutMs: number) {
  const clock = new SimClock();
  const sent: Tlp[] = [];
  const ep = new TlpEndpoint({
    send: (b) => {
      const r = decodeTlp(b);
      if (r.ok) sent.push(r.value);
    },
    onRequest: () => {},
    clock,
    completionTimeoutMs,
  });
  return { clock, sent, ep };
}

test('completion timeout: each request ends exactly its timeout after it was sent, oldest first, on one timer', async (t) => {
  const { clock, sent, ep } = rig(1000);
  const ended: [string, number][] = [];
  const a = ep.request(cfgRd).then((o) => ended.push(['a', clock.now()]) && o);
  clock.advance(300);
  const b = ep.request(cfgRd).then((o) => ended.push(['b', clock.now()]) && o);
  clock.advance(200);
  const c = ep.request(cfgRd).then((o) => ended.push(['c', clock.now()]) && o);
  t.is(clock.pending, 1, 'one timer for three outstanding requests');
  // b is answered; a and c time out on their own deadlines.
  const cplB = completionFor(sent[1] as NonPostedTlp, 0x100, new Uint8Array([1, 2, 3, 4]));
  ep.receive(encodeTlp(cplB));
  t.like(await b, { status: 'ok' });
  clock.advance(499.9);
  await Promise.resolve();
  t.deepEqual(ended, [['b', 500]]);
  clock.advance(0.1);
  t.like(await a, { status: 'timeout' });
  clock.advance(499);
  await Promise.resolve();
  t.is(ended.length, 2, 'c not yet');
  clock.advance(1);
  t.like(await c, { status: 'timeout' });
  t.deepEqual(ended, [['b', 500], ['a', 1000], ['c', 1500]]);
  t.is(ep.stats.completionTimeouts, 2);
  // The timed-out tags are quarantined for a timeout: a late completion for a's tag finds nothing.
  ep.receive(encodeTlp(completionFor(sent[0] as NonPostedTlp, 0x100, new Uint8Array(4))));
  t.is(ep.stats.rxUnexpectedCompletions, 1);
  ep.close();
  clock.advance(2000);
  t.is(clock.pending, 0, 'no timer left after close and quarantine');
});

test('readMemory: requests beyond the free tags wait for one and go out as tags come back; the data lands in order', async (t) => {
  const { clock, sent, ep } = rig(1000);
  // 300 x 128 B reads: 256 go out at once, 44 wait for tags.
  const length = 300 * 128;
  const read = ep.readMemory(0x10000n, length, 0x300, 128);
  t.is(sent.length, 256);
  t.is(ep.stats.tagWaits, 44);
  const memory = (addr: bigint, n: number) => Uint8Array.from({ length: n }, (_, i) => Number((addr + BigInt(i)) & 0xffn) ^ 0x5a);
  for (let i = 0; i < sent.length; i++) {
    const r = sent[i] as MemReadTlp;
    ep.receive(encodeTlp(completionFor(r, 0x100, memory(r.address, r.length * 4))));
  }
  t.is(sent.length, 300, 'the waiting requests went out as tags were freed');
  t.is(new Set(sent.slice(256).map((r) => (r as MemReadTlp).tag)).size, 44);
  const data = await read;
  t.deepEqual([...data], [...memory(0x10000n, length)]);
  t.is(ep.outstanding, 0);
  clock.advance(5000);
  t.is(ep.stats.completionTimeouts, 0);
});

test('readMemory: one failed request fails the read, after every request has ended', async (t) => {
  const { sent, ep } = rig(1000);
  const read = ep.readMemory(0x2000n, 4 * 128, 0x300, 128);
  let ended = false;
  void read.catch(() => (ended = true));
  ep.receive(encodeTlp(urCompletionFor(sent[1] as MemReadTlp, 0x100)));
  for (const i of [0, 2]) ep.receive(encodeTlp(completionFor(sent[i] as MemReadTlp, 0x100, new Uint8Array(128))));
  await Promise.resolve();
  t.false(ended, 'one request still outstanding');
  ep.receive(encodeTlp(completionFor(sent[3] as MemReadTlp, 0x100, new Uint8Array(128))));
  const err = await t.throwsAsync(read);
  t.regex(err!.message, /memory read of 0x2000\+512: ur/);
});

test('readMemoryInto: a scatter list read back to back into the given buffer, every request out at once, completions in any order', async (t) => {
  const { sent, ep } = rig(1000);
  // Three pages, the first starting mid-page (an NVMe PRP1 with an offset), at MRRS 1 KiB.
  const segments = [{ addr: 0x1_0c00, len: 0x400 }, { addr: 0x5_0000, len: 0x1000 }, { addr: 0x3_0000, len: 0x800 }];
  const into = new Uint8Array(0x1c00).fill(0xee);
  const read = ep.readMemoryInto(segments, into, 0x300, 1024);
  t.is(sent.length, 1 + 4 + 2, 'every MRd of every segment outstanding');
  const memory = (addr: bigint, n: number) => Uint8Array.from({ length: n }, (_, i) => Number(((addr + BigInt(i)) >> 4n) & 0xffn));
  for (const r of [...sent].reverse() as MemReadTlp[]) ep.receive(encodeTlp(completionFor(r, 0x100, memory(r.address, r.length * 4))));
  t.is(await read, into);
  const expected = segments.flatMap((s) => [...memory(BigInt(s.addr), s.len)]);
  t.deepEqual([...into], expected);
  t.is(ep.outstanding, 0);
  await t.throwsAsync(ep.readMemoryInto(segments, new Uint8Array(10), 0x300, 1024), { instanceOf: RangeError });
});

test('readMemoryInto: one failed request fails the read only once every request of every segment has ended', async (t) => {
  const { sent, ep } = rig(1000);
  const into = new Uint8Array(256);
  const read = ep.readMemoryInto([{ addr: 0x2000, len: 128 }, { addr: 0x8000, len: 128 }], into, 0x300, 128);
  let ended = false;
  void read.catch(() => (ended = true));
  ep.receive(encodeTlp(urCompletionFor(sent[0] as MemReadTlp, 0x100)));
  await Promise.resolve();
  t.false(ended, 'the second segment is still outstanding');
  ep.receive(encodeTlp(completionFor(sent[1] as MemReadTlp, 0x100, new Uint8Array(128))));
  const err = await t.throwsAsync(read);
  t.regex(err!.message, /memory read of 0x2000\+256: ur/);
  t.is(ep.outstanding, 0);
});
