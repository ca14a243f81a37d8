import test from 'ava';
import fc from 'fast-check';
import { FramingError, Parser, type Message } from '../../src/vfio-user/parser.ts';
import { HEADER_SIZE, buildMessage } from '../../src/vfio-user/protocol.ts';

const MAX = 4096;

/** Splits `bytes` at the given cut points (any numbers, folded into range). */
function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const p of [...points, bytes.length]) {
    if (p > prev) out.push(bytes.subarray(prev, p));
    prev = p;
  }
  return out;
}

test('fuzz: arbitrary bytes in arbitrary chunks yield well-formed messages or a FramingError, never anything else', (t) => {
  t.notThrows(() =>
    fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 200 }),
      fc.array(fc.nat(), { maxLength: 6 }),
      // Bias toward plausible headers: a valid-looking size in the first dword after id/cmd.
      fc.option(fc.integer({ min: 0, max: 80 }), { nil: undefined }),
      (raw, cuts, size) => {
        const bytes = raw.slice();
        if (size !== undefined && bytes.length >= 8) new DataView(bytes.buffer).setUint32(4, size, true);
        const parser = new Parser({ maxMessageSize: MAX });
        const got: Message[] = [];
        let consumed = 0;
        try {
          for (const chunk of split(bytes, cuts)) parser.push(chunk, [], (m) => got.push(m));
        } catch (err) {
          if (!(err instanceof FramingError) || err.message.length === 0) throw err;
        }
        for (const m of got) {
          if (m.header.size !== HEADER_SIZE + m.payload.length) return false;
          if (m.header.size < HEADER_SIZE || m.header.size > MAX) return false;
          // Each message is exactly the next bytes of the stream.
          const expected = bytes.subarray(consumed + HEADER_SIZE, consumed + m.header.size);
          if (Buffer.compare(Buffer.from(expected), Buffer.from(m.payload)) !== 0) return false;
          consumed += m.header.size;
        }
        return consumed <= bytes.length;
      },
    ),
    { numRuns: 100_000 },
  ));
});

const messageArb = fc.record({
  id: fc.integer({ min: 0, max: 0xffff }),
  command: fc.integer({ min: 0, max: 0xffff }),
  flags: fc.integer({ min: 0, max: 0x3f }),
  payload: fc.uint8Array({ maxLength: 64 }),
  nfds: fc.integer({ min: 0, max: 3 }),
});

test('valid message streams survive any chunking, and fds stay with their message', (t) => {
  t.notThrows(() =>
    fc.assert(
    fc.property(fc.array(messageArb, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 10 }), (msgs, cuts) => {
      let nextFd = 100;
      const encoded = msgs.map((m) => ({
        bytes: buildMessage({ id: m.id, command: m.command, flags: m.flags, error: 0 }, m.payload.length, (_, b) => b.set(m.payload)),
        fds: Array.from({ length: m.nfds }, () => nextFd++),
      }));
      const stream = new Uint8Array(encoded.reduce((n, e) => n + e.bytes.length, 0));
      const starts: number[] = [];
      let at = 0;
      for (const e of encoded) {
        starts.push(at);
        stream.set(e.bytes, at);
        at += e.bytes.length;
      }
      // As Linux delivers: a message's fds come with the read holding its first
      // byte, and that read ends with the segment (message) carrying them.
      const cutSet = new Set(cuts.map((c) => c % (stream.length + 1)));
      encoded.forEach((e, i) => {
        if (e.fds.length > 0) cutSet.add(starts[i]! + e.bytes.length);
      });
      const chunks = split(stream, [...cutSet]);
      const parser = new Parser({ maxMessageSize: MAX });
      const got: Message[] = [];
      let pos = 0;
      for (const chunk of chunks) {
        const fds: number[] = [];
        encoded.forEach((e, i) => {
          if (starts[i]! >= pos && starts[i]! < pos + chunk.length) fds.push(...e.fds);
        });
        parser.push(chunk, fds, (m) => got.push(m));
        pos += chunk.length;
      }
      if (got.length !== msgs.length || parser.buffered !== 0) return false;
      return got.every((m, i) => m.header.id === msgs[i]!.id && m.header.command === msgs[i]!.command && Buffer.from(m.payload).equals(Buffer.from(msgs[i]!.payload)) && JSON.stringify(m.fds) === JSON.stringify(encoded[i]!.fds));
    }),
    { numRuns: 20_000 },
  ));
});

test('the parser keeps a private copy of the remainder (receive buffers are reused)', (t) => {
  const msg = buildMessage({ id: 1, command: 9, flags: 0, error: 0 }, 4, (_, b) => b.set([1, 2, 3, 4]));
  const recvBuf = new Uint8Array(64);
  const parser = new Parser({ maxMessageSize: MAX });
  const got: Message[] = [];
  recvBuf.set(msg.subarray(0, 18));
  parser.push(recvBuf.subarray(0, 18), [], (m) => got.push(m));
  recvBuf.fill(0xee); // the transport overwrites its buffer on the next read
  recvBuf.set(msg.subarray(18));
  parser.push(recvBuf.subarray(0, 2), [], (m) => got.push(m));
  t.is(got.length, 1);
  t.deepEqual([...got[0]!.payload], [1, 2, 3, 4]);
});

test('framing errors are explicit; unattributable fds are kept for closing', (t) => {
  const p = new Parser({ maxMessageSize: 64 });
  const big = buildMessage({ id: 3, command: 10, flags: 0, error: 0 }, 100);
  t.throws(() => p.push(big, [], () => {}), { instanceOf: FramingError, message: /size 116 exceeds the limit of 64/ });

  const q = new Parser({ maxMessageSize: 64 });
  const msg = buildMessage({ id: 1, command: 9, flags: 0, error: 0 }, 16);
  q.push(msg.subarray(0, 20), [], () => {});
  t.throws(() => q.push(msg.subarray(20), [7, 8], () => {}), { instanceOf: FramingError, message: /2 fd\(s\) arrived in the middle of a message/ });
  t.deepEqual(q.takeFds(), [7, 8]);
  t.deepEqual(q.takeFds(), []);
});
