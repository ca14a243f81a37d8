// Poisoned TLPs at a TlpEndpoint (found by test/fuzz/tlp-hi.test.ts: a DI's poisoned DMA write
// landed in guest RAM): data marked poisoned (EP) is never used. A poisoned write is not handed
// to the owner, a poisoned config write is answered UR, a poisoned completion fails its request;
// each is counted. Unpoisoned traffic around them goes on.
import test from 'ava';
import { completionFor } from '../../src/fabric/tlp/completion.ts';
import { CplStatus, TlpType, encodeTlp } from '../../src/fabric/tlp/tlp.ts';
import { recordingEndpoint as endpoint } from './recording-endpoint.ts';

const head = { tc: 0, attr: 0, requesterId: 0x100, tag: 7, firstBe: 0xf, lastBe: 0 };

test('a poisoned memory write is dropped and counted; the same write unpoisoned is delivered', (t) => {
  const { ep, delivered } = endpoint();
  const mwr = { type: TlpType.MWr32, ...head, address: 0x1000n, data: new Uint8Array([1, 2, 3, 4]) } as const;
  ep.receive(encodeTlp({ ...mwr, poisoned: true }));
  t.deepEqual(delivered, []);
  t.is(ep.stats.rxPoisoned, 1);
  ep.receive(encodeTlp({ ...mwr, poisoned: false }));
  t.is(delivered.length, 1);
});

test('a poisoned config write gets UR and is not delivered', (t) => {
  const { ep, sent, delivered } = endpoint();
  ep.receive(encodeTlp({ type: TlpType.CfgWr0, ...head, poisoned: true, completerId: 0x200, register: 1, data: new Uint8Array(4) }));
  t.deepEqual(delivered, []);
  t.is(sent.length, 1);
  t.like(sent[0], { type: TlpType.Cpl, status: CplStatus.UR, requesterId: 0x100, tag: 7, completerId: 0x200 });
});

test('a poisoned completion fails its read; the next read completes', async (t) => {
  const { ep, sent } = endpoint();
  const req = { type: TlpType.CfgRd0, ...head, poisoned: false, completerId: 0x200, register: 0 } as const;
  const first = ep.request(req);
  const asked = sent[0] as typeof req & { tag: number };
  ep.receive(encodeTlp({ ...completionFor(asked, 0x200, new Uint8Array([9, 9, 9, 9])), poisoned: true }));
  t.like(await first, { status: 'malformed' });
  t.is(ep.stats.rxPoisoned, 1);
  const second = ep.request(req);
  ep.receive(encodeTlp(completionFor(sent[1] as typeof asked, 0x200, new Uint8Array([1, 2, 3, 4]))));
  t.like(await second, { status: 'ok', data: new Uint8Array([1, 2, 3, 4]) });
});
