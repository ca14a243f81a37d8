// MSI-X per completion burst, not per completion; Interrupt Coalescing
// (Set Features 08h) holds a vector for THR + 1 completions or TIME; every
// completion is still seen.
import test, { type ExecutionContext } from 'ava';
import { InterruptCoalescer, aggregation } from '../../src/devices/nvme/interrupts.ts';
import { expectOk, PAGE, TestHost, type Cmd } from '../../src/devices/nvme/soft-host.ts';
import { until } from '../support/until.ts';

const DSM = 0x09;

async function host(t: ExecutionContext): Promise<{ h: TestHost; dsm: (cid?: number) => Cmd }> {
  const h = new TestHost(t, { namespaces: [{ path: 'ns.img', size: 4 << 20, lbaSize: 512 }] });
  await h.ctrl.open();
  await h.enable();
  await h.createIoQueue(1, 64);
  // Dataset Management (deallocate LBA 4) only reads its range list from host memory: no file I/O.
  const ranges = h.alloc(PAGE);
  h.mem.view.setUint32(ranges + 4, 1, true);
  h.mem.view.setUint32(ranges + 8, 4, true);
  return { h, dsm: (cid) => ({ opcode: DSM, nsid: 1, prp1: ranges, cdw10: 0, cdw11: 4, cid }) };
}

const irqsOn = (h: TestHost, vector: number) => h.irqs.filter((v) => v === vector).length;

test('feature 08h: THR and TIME both needed; TIME rounds up to whole ms', (t) => {
  t.is(aggregation(0), undefined);
  t.is(aggregation(0x0007), undefined, 'THR without TIME would hold forever');
  t.is(aggregation(0x0a00), undefined, 'TIME without THR: every completion reaches the threshold');
  t.deepEqual(aggregation(0x0a07), { threshold: 8, delayMs: 1 });
  t.deepEqual(aggregation(0x1503), { threshold: 4, delayMs: 3 });
});

test('a completion alone in flight signals at once; one with others in flight waits for the end of the turn, and they share it', async (t) => {
  const sent: number[] = [];
  const c = new InterruptCoalescer((v) => sent.push(v), () => undefined);
  c.completion(1, true);
  t.deepEqual(sent, [1], 'queue depth 1: the MSI goes with the completion, in the same step');
  c.completion(1, false);
  c.completion(1, true); // the last of the burst: the interrupt already due covers it
  t.deepEqual(sent, [1]);
  await new Promise((r) => setImmediate(r));
  t.deepEqual(sent, [1, 1]);
  t.deepEqual(c.stats, { interrupts: 2, completions: 3 });
});

test('a burst of 40 completions in one event-loop turn raises one interrupt', async (t) => {
  const { h, dsm } = await host(t);
  const cmds = Array.from({ length: 40 }, (_, i) => dsm(i));
  const done = await h.submitMany(1, cmds);
  t.deepEqual(done.map((e) => expectOk(e).cid), cmds.map((c) => c.cid));
  await until(() => irqsOn(h, 1) > 0, 'the interrupt');
  await h.settle();
  t.is(irqsOn(h, 1), 1, 'one MSI-X for 40 completions');
});

test('Interrupt Coalescing: THR + 1 completions share an interrupt, a lone one waits for TIME; admin and Coalescing Disable vectors are not held', async (t) => {
  const { h, dsm } = await host(t);
  expectOk(await h.admin({ opcode: 0x09, cdw10: 0x08, cdw11: (255 << 8) | 7 })); // 8 completions or 25.5 ms
  t.is((await h.admin({ opcode: 0x0a, cdw10: 0x08 })).dw0, (255 << 8) | 7);
  await h.settle();
  const admin = irqsOn(h, 0);
  expectOk(await h.admin({ opcode: 0x0a, cdw10: 0x07 }));
  await h.settle();
  t.is(irqsOn(h, 0), admin + 1, 'an admin completion interrupts at once');

  // Eight completions, one at a time (each reaped before the next is submitted): one interrupt, at the eighth.
  for (let i = 0; i < 8; i++) expectOk(await h.submit(1, dsm()));
  await until(() => irqsOn(h, 1) > 0, 'the coalesced interrupt');
  // A 26 ms hold running out while the eight go by (a loaded machine) would add one.
  t.true(irqsOn(h, 1) <= 2, `${irqsOn(h, 1)} interrupts for 8 completions`);

  // A lone completion is seen in the CQ but its interrupt waits for TIME.
  const before = irqsOn(h, 1);
  expectOk(await h.submit(1, dsm()));
  t.is(irqsOn(h, 1), before, 'held');
  await until(() => irqsOn(h, 1) === before + 1, 'the interrupt after TIME');

  // Coalescing Disable on vector 1 (Interrupt Vector Configuration, CD = bit 16): at once again.
  expectOk(await h.admin({ opcode: 0x09, cdw10: 0x09, cdw11: (1 << 16) | 1 }));
  const n = irqsOn(h, 1);
  for (let i = 0; i < 3; i++) {
    expectOk(await h.submit(1, dsm()));
    await h.settle(); // a few event-loop turns, far less than the 26 ms hold
    t.is(irqsOn(h, 1), n + i + 1, `interrupt ${i + 1} without coalescing`);
  }
  t.is(h.ctrl.interrupts.stats.interrupts, h.irqs.length);
});

/**
 * 256 reads at queue depth 16, each submitted in an event-loop turn of its own (so completions
 * arrive over many turns, as a guest's do) and reaped as Linux's driver does: on an interrupt of
 * vector 1, every completion then in the CQ; then as many new reads, as fio submits again once it
 * has reaped its events. The CIDs seen and the interrupts raised.
 */
async function pacedReads(h: TestHost): Promise<{ seen: Set<number>; interrupts: number }> {
  const total = 256;
  const buf = h.alloc(16 * PAGE);
  const read = (n: number): Cmd => ({ opcode: 0x02, nsid: 1, prp1: buf + (n % 16) * PAGE, cdw10: (n * 8) % 8192, cdw12: 7, cid: n });
  const start = irqsOn(h, 1);
  let posted = 0;
  const submit = async (n: number) => {
    for (let i = 0; i < n && posted < total; i++) {
      await h.post(1, read(posted++));
      await new Promise((r) => setImmediate(r));
    }
  };
  const seen = new Set<number>();
  let handled = start;
  await submit(16);
  while (seen.size < total) {
    await until(() => irqsOn(h, 1) > handled, `an interrupt (${seen.size} of ${total} completions seen)`, { everyMs: 1 });
    handled = irqsOn(h, 1);
    let found = 0;
    for (; h.pending(1); found++) seen.add(expectOk(await h.reap(1)).cid);
    await submit(found);
  }
  return { seen, interrupts: irqsOn(h, 1) - start };
}

test('256 reads at queue depth 16, reaped on interrupts: every completion seen; under Interrupt Coalescing (THR 8) about one interrupt per 8 completions', async (t) => {
  const { h } = await host(t);
  const plain = await pacedReads(h);
  t.is(plain.seen.size, 256);
  t.true(plain.interrupts <= 256, 'never more than one interrupt per completion');

  expectOk(await h.admin({ opcode: 0x09, cdw10: 0x08, cdw11: (255 << 8) | 7 })); // 8 completions or 25.5 ms
  await h.settle();
  const coalesced = await pacedReads(h);
  t.is(coalesced.seen.size, 256);
  // One per 8 completions, plus one per 26 ms hold that ran out first (the last, when fewer than 8 are left; more on a loaded machine).
  t.true(coalesced.interrupts <= 256 / 8 + 4, `${coalesced.interrupts} interrupts for 256 completions`);
  t.true(coalesced.interrupts < plain.interrupts / 2, `${coalesced.interrupts} coalesced against ${plain.interrupts} without`);
  t.log(`256 reads at QD 16: ${plain.interrupts} interrupts with turn batching alone, ${coalesced.interrupts} with THR 8 / TIME 25.5 ms`);
});

test('MSI-X switched on while a completion is unconsumed: the vector fires then, not never (the doorbell passed the enable); with nothing unconsumed, no interrupt', async (t) => {
  const { h, dsm } = await host(t);
  h.ctrl.setMsixEnabled(false);
  await h.post(1, dsm(1));
  await until(() => h.intx.at(-1) === true, 'INTx asserted for the completion');
  t.is(irqsOn(h, 1), 0);
  h.ctrl.setMsixEnabled(true);
  await until(() => irqsOn(h, 1) === 1, 'the held-over interrupt on vector 1');
  t.is(expectOk(await h.reap(1)).cid, 1);
  h.ctrl.setMsixEnabled(false);
  h.ctrl.setMsixEnabled(true);
  await h.settle();
  t.is(irqsOn(h, 1), 1, 'a consumed CQ raises nothing on the next switch');
});
