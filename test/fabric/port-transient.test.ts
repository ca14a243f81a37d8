// PcieoePort given requests whose data is a ring slot's view (transient): a handler that may keep
// data (the default) gets a copy; one served with dataInCall (the HI's) gets the view itself while
// nothing waits ahead of it, and a copy when the request has to wait behind an earlier one.
import test from 'ava';
import type { FabricNode } from '../../src/fabric/link/node.ts';
import { PcieoePort, type ServeOptions } from '../../src/fabric/pcieoe-port.ts';
import { SimClock } from '../../src/fabric/sim-clock.ts';
import { splitWrite } from '../../src/fabric/tlp/split.ts';
import { type MemWriteTlp, type Tlp, encodeTlp } from '../../src/fabric/tlp/tlp.ts';

/** A port on a node whose one channel is this test's: `arrive` hands it a TLP in a slot, scribbled over once the call returns. */
function portWithSlot(handler: (tlp: MemWriteTlp) => void | Promise<void>, o: ServeOptions) {
  let deliver!: (p: Uint8Array, transient?: boolean) => void;
  const node = {
    clock: new SimClock(),
    addChannel: (_id: number, _macs: unknown, d: typeof deliver) => {
      deliver = d;
      return { send: () => {}, reserve: (n: number) => new Uint8Array(n), close: () => {}, isPeerAlive: true, stats: {} };
    },
  } as unknown as FabricNode;
  const port = new PcieoePort(node, { id: 1, peerMacs: [0], completionTimeoutMs: 1000, peerName: 'peer' });
  port.serve((tlp: Tlp) => handler(tlp as MemWriteTlp), o);
  const slot = new Uint8Array(8192);
  const arrive = (tlp: Uint8Array) => {
    const view = slot.subarray(0, tlp.length);
    view.set(tlp);
    deliver(view, true);
    view.fill(0xa5);
  };
  return { arrive, slot };
}

const pattern = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
const write = (seed: number) => splitWrite(0x1_0000_0000n, pattern(4096, seed), 4096, { requesterId: 0x100 })[0]!;

test('a handler that may keep data gets a copy of a transient request\'s, intact after the slot is reused', (t) => {
  const got: MemWriteTlp[] = [];
  const { arrive, slot } = portWithSlot((tlp) => void got.push(tlp), {});
  arrive(encodeTlp(write(1)));
  t.not(got[0]!.data.buffer, slot.buffer);
  t.deepEqual(Buffer.from(got[0]!.data), Buffer.from(pattern(4096, 1)));
});

test('dataInCall: the handler reads the slot itself while nothing waits ahead (no copy)', (t) => {
  const seen: { inSlot: boolean; data: Buffer }[] = [];
  const { arrive, slot } = portWithSlot((tlp) => void seen.push({ inSlot: tlp.data.buffer === slot.buffer, data: Buffer.from(tlp.data) }), { dataInCall: true });
  arrive(encodeTlp(write(2)));
  arrive(encodeTlp(write(3)));
  t.deepEqual(seen.map((s) => s.inSlot), [true, true]);
  t.deepEqual(seen.map((s) => s.data), [Buffer.from(pattern(4096, 2)), Buffer.from(pattern(4096, 3))]);
});

test('dataInCall: a request waiting behind an asynchronous one is copied, and handled intact after the slot is reused', async (t) => {
  const seen: Buffer[] = [];
  let release!: () => void;
  const first = new Promise<void>((r) => (release = r));
  let calls = 0;
  const { arrive } = portWithSlot((tlp) => {
    seen.push(Buffer.from(tlp.data));
    return calls++ === 0 ? first : undefined;
  }, { dataInCall: true });
  arrive(encodeTlp(write(4)));
  arrive(encodeTlp(write(5))); // waits: the first one's handler has not settled
  t.is(seen.length, 1);
  release();
  await first;
  await new Promise((r) => setImmediate(r));
  t.deepEqual(seen, [Buffer.from(pattern(4096, 4)), Buffer.from(pattern(4096, 5))]);
});
