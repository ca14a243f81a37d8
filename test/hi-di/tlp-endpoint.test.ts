// TlpEndpoint's "peer unreachable" fast path: with the link layer reporting
// the peer gone, requests fail at once and outstanding ones are cut short,
// instead of each waiting out the completion timeout (the HI's reads of a
// killed DI's registers, many in a row while the guest driver tears down).
import test from 'ava';
import { SimClock } from '../../src/fabric/sim-clock.ts';
import { TlpEndpoint } from '../../src/fabric/tlp/endpoint.ts';
import { TlpType } from '../../src/fabric/tlp/tlp.ts';

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
