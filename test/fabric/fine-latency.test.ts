import test from 'ava';
import { realClock } from '../../src/fabric/clock.ts';
import { FaultyPort } from '../../src/fabric/wire/faults.ts';
import { TimerfdTimer } from '../../src/fabric/wire/fine-timer.ts';
import type { PortTransport } from '../../src/fabric/wire/port.ts';
import { seededRng } from '../../src/fabric/rng.ts';

/** A port whose frames leave the injector into `out`, stamped as they leave, with `latencyMs` on the way out. */
function stampedPort(latencyMs: number) {
  const out: { frame: Buffer; at: number }[] = [];
  const inner: PortTransport = { transmit: (frame) => out.push({ frame, at: performance.now() }), attach: () => {}, close: () => {} };
  const port = new FaultyPort(inner, realClock, seededRng(1), () => new TimerfdTimer());
  port.set({ latency: latencyMs }, 'toStation');
  return { port, out };
}

async function until(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!ok()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

for (const us of [10, 50, 200]) {
  test(`a ${us} µs link latency holds every frame at least that long, in order (a timerfd, not Node's 1 ms timers)`, async (t) => {
    const { port, out } = stampedPort(us / 1000);
    const sentAt: number[] = [];
    // Bursts and gaps: frames queued behind one another on the wire and frames sent to an idle one.
    for (let burst = 0; burst < 20; burst++) {
      for (let i = 0; i < 1 + (burst % 4); i++) {
        sentAt.push(performance.now());
        port.transmit(Buffer.from([sentAt.length - 1]));
      }
      // Every third burst queues behind the one before; the others go out to an idle wire.
      if (burst % 3 !== 2) await until('the burst', () => out.length === sentAt.length);
    }
    await until('every frame', () => out.length === sentAt.length);
    port.close(); // the timerfd goes with it, or this test's process would not exit
    t.deepEqual(out.map((o) => o.frame[0]), sentAt.map((_, i) => i), 'in the order sent');
    const early = out.filter((o, i) => o.at - sentAt[i]! < us / 1000 - 0.001);
    t.deepEqual(early.map((o) => o.frame[0]), [], 'none left before its latency was up');
    t.is(port.counters('toStation').passed, sentAt.length);
  });
}
