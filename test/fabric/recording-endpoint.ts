// A TlpEndpoint on a simulated clock that records what it sends (decoded), what it hands its
// owner and what it logs: for tests of how an endpoint treats what a peer sends it.
import { SimClock } from '../../src/fabric/sim-clock.ts';
import { TlpEndpoint } from '../../src/fabric/tlp/endpoint.ts';
import { type Tlp, decodeTlp } from '../../src/fabric/tlp/tlp.ts';

export function recordingEndpoint() {
  const sent: Tlp[] = [];
  const delivered: Tlp[] = [];
  const logs: string[] = [];
  const ep = new TlpEndpoint({
    send: (b) => sent.push((decodeTlp(b) as { ok: true; value: Tlp }).value),
    onRequest: (tlp) => delivered.push(tlp),
    clock: new SimClock(),
    completionTimeoutMs: 1000,
    log: (m) => logs.push(m),
  });
  return { ep, sent, delivered, logs };
}
