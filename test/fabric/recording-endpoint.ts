// A TlpEndpoint on a simulated clock that records what it sends (decoded), what it hands its
// owner (data that was handed over transient copied at once, as an owner keeping it must; which
// ones were, in `transient`) and what it logs: for tests of how an endpoint treats what a peer sends it.
import { SimClock } from '../../src/fabric/sim-clock.ts';
import { TlpEndpoint } from '../../src/fabric/tlp/endpoint.ts';
import { type Tlp, decodeTlp, hasData } from '../../src/fabric/tlp/tlp.ts';

export function recordingEndpoint() {
  const sent: Tlp[] = [];
  const delivered: Tlp[] = [];
  const transient: boolean[] = [];
  const logs: string[] = [];
  const ep = new TlpEndpoint({
    send: (b) => sent.push((decodeTlp(b) as { ok: true; value: Tlp }).value),
    onRequest: (tlp, tr) => {
      delivered.push(tr && hasData(tlp) ? { ...tlp, data: Uint8Array.from(tlp.data) } : tlp);
      transient.push(tr);
    },
    clock: new SimClock(),
    completionTimeoutMs: 1000,
    log: (m) => logs.push(m),
  });
  return { ep, sent, delivered, transient, logs };
}
