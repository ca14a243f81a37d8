// TlpEndpoint given transient payloads (ChannelOptions.deliverTransient: a memif ring slot, valid
// only during receive): what it keeps must be a copy; a request goes on marked transient (its
// owner, PcieoePort, copies what waits: test/fabric/port-transient.test.ts). Each TLP is handed over in one scratch
// "slot" that is scribbled over as soon as receive() returns, as the ring would reuse it.
import test from 'ava';
import { completionsForRead } from '../../src/fabric/tlp/completion.ts';
import { splitWrite } from '../../src/fabric/tlp/split.ts';
import { type MemReadTlp, type MemWriteTlp, encodeTlp } from '../../src/fabric/tlp/tlp.ts';
import { recordingEndpoint } from './recording-endpoint.ts';

const slot = new Uint8Array(8192);

function inSlot(receive: (p: Uint8Array, transient: boolean) => void, tlp: Uint8Array): void {
  const view = slot.subarray(0, tlp.length);
  view.set(tlp);
  receive(view, true);
  view.fill(0xa5);
}

const pattern = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

test('a request from a transient payload goes to the owner marked transient, with its data as sent', (t) => {
  const { ep, delivered, transient } = recordingEndpoint();
  const data = pattern(4096, 3);
  const writes = splitWrite(0x1_0000_0000n, data, 4096, { requesterId: 0x100 });
  for (const w of writes) inSlot((p, tr) => ep.receive(p, tr), encodeTlp(w));
  t.is(delivered.length, writes.length);
  t.deepEqual(transient, writes.map(() => true));
  t.deepEqual(Buffer.from((delivered[0] as MemWriteTlp).data), Buffer.from(data));
});

test('a read\'s completions go from transient payloads into its buffer, which stays intact after the slot is reused', async (t) => {
  const { ep, sent } = recordingEndpoint();
  const data = pattern(8192, 7);
  const read = ep.readMemory(0x2000n, data.length, 0x100, 4096);
  t.is(sent.length, 2);
  let at = 0;
  for (const req of sent as MemReadTlp[]) {
    const span = data.subarray(at, at + req.length * 4);
    at += span.length;
    for (const cpl of completionsForRead(req, 0x200, span, { rcb: 64, maxPayload: 256 })) inSlot((p, tr) => ep.receive(p, tr), encodeTlp(cpl));
  }
  t.deepEqual(Buffer.from(await read), Buffer.from(data));
});
