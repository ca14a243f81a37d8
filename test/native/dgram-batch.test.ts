// The addon's datagram fast path: recvFrom, dgramConnect, socketBuffers,
// sendmmsg/recvmmsg, and its CRC-32 against a bytewise reference.
import test from 'ava';
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isNativeError, native } from '../../native/index.ts';
import { crc32Table } from '../../src/fabric/wire/crc32.ts';

function tmpDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'pcieoe-native-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A socket bound at dir/name, closed at teardown. */
function bound(t: { teardown(fn: () => void): void }, dir: string, name: string): { fd: number; path: string } {
  const path = join(dir, name);
  const fd = native.unixDgram(path);
  t.teardown(() => native.close(fd));
  return { fd, path };
}

test('recvFrom reports the sender path, null for an unbound sender, and the real length of a cut datagram', (t) => {
  const dir = tmpDir(t);
  const rx = bound(t, dir, 'rx.sock');
  const tx = bound(t, dir, 'tx.sock');
  const anon = native.unixDgram();
  t.teardown(() => native.close(anon));
  t.is(native.recvFrom(rx.fd, Buffer.alloc(16)), null);
  native.sendTo(tx.fd, Buffer.from('hello'), rx.path);
  native.sendTo(anon, Buffer.from('x'.repeat(100)), rx.path);
  const buf = Buffer.alloc(16);
  t.deepEqual(native.recvFrom(rx.fd, buf), [5, tx.path]);
  t.is(buf.subarray(0, 5).toString(), 'hello');
  t.deepEqual(native.recvFrom(rx.fd, buf), [100, null]);
  t.is(buf.toString(), 'x'.repeat(16));
  // The sender's path is an address that can be answered.
  native.sendTo(rx.fd, Buffer.from('back'), tx.path);
  t.deepEqual(native.recvFrom(tx.fd, buf), [4, rx.path]);
  const err = t.throws(() => native.recvFrom(1_000_000, buf));
  t.true(isNativeError(err, 'EBADF'));
  t.is((err as { syscall?: string }).syscall, 'recvfrom');
});

test('dgramConnect: a bound socket sends to its peer without a path, only hears from it, and null undoes it', (t) => {
  const dir = tmpDir(t);
  const a = bound(t, dir, 'a.sock');
  const b = bound(t, dir, 'b.sock');
  const c = bound(t, dir, 'c.sock');
  native.dgramConnect(a.fd, b.path);
  t.is(native.sendmsg(a.fd, Buffer.from('ab')), 2);
  t.deepEqual(native.recvFrom(b.fd, Buffer.alloc(8)), [2, a.path]);
  // A connected datagram socket drops datagrams from anyone but its peer (EPERM for the sender).
  const err = t.throws(() => native.sendTo(c.fd, Buffer.from('ca'), a.path));
  t.true(isNativeError(err, 'EPERM'));
  t.true(isNativeError(t.throws(() => native.dgramConnect(a.fd, join(dir, 'missing.sock'))), 'ENOENT'));
  // Dissolved: anyone may send again.
  native.dgramConnect(a.fd, null);
  native.sendTo(c.fd, Buffer.from('ca'), a.path);
  t.deepEqual(native.recvFrom(a.fd, Buffer.alloc(8)), [2, c.path]);
});

test('socketBuffers sets and reports SO_SNDBUF/SO_RCVBUF', (t) => {
  const fd = native.unixDgram();
  t.teardown(() => native.close(fd));
  const before = native.socketBuffers(fd);
  t.true(before.send > 0 && before.recv > 0);
  const after = native.socketBuffers(fd, 65536, null);
  t.is(after.send, 2 * 65536); // Linux doubles the request for its bookkeeping
  t.is(after.recv, before.recv);
  t.is(native.socketBuffers(fd, undefined, 32768).recv, 2 * 32768);
  t.throws(() => native.socketBuffers(fd, -1), { instanceOf: RangeError });
  t.true(isNativeError(t.throws(() => native.socketBuffers(1_000_000)), 'EBADF'));
});

test('sendmmsg sends a batch in order; recvmmsg packs it into the slab with lengths and senders', (t) => {
  const dir = tmpDir(t);
  const rx = bound(t, dir, 'rx.sock');
  const tx = bound(t, dir, 'tx.sock');
  const frames = [1, 100, 7, 60, 8].map((n, i) => Buffer.alloc(n, i + 1));
  // Unconnected, to a path: frames[1..4].
  t.is(native.sendmmsg(tx.fd, frames, 1, 4, rx.path), 4);
  const slot = 64;
  const slab = Buffer.alloc(8 + 4 * slot, 0xee);
  const meta = new Int32Array(8);
  const senders: (string | null)[] = [];
  t.is(native.recvmmsg(rx.fd, slab, 8, slot, 4, meta, senders), 4);
  // 100 bytes does not fit a 64-byte slot: reported with its real length, not kept.
  t.deepEqual([...meta], [8, 100, 8, 7, 16, 60, 80, 8]);
  t.deepEqual(slab.subarray(8, 15), frames[2]);
  t.deepEqual(slab.subarray(16, 76), frames[3]);
  t.deepEqual(slab.subarray(80, 88), frames[4]);
  t.deepEqual(senders, [tx.path, tx.path, tx.path, tx.path]);
  t.is(senders[0], senders[3]); // one string for one sender
  t.is(native.recvmmsg(rx.fd, slab, 8, slot, 4, meta), -1);
  t.is(native.sendmmsg(tx.fd, frames, 0, 0, rx.path), 0);
});

test('sendmmsg stops at a full queue and says how far it got; -1 when nothing fits', (t) => {
  const dir = tmpDir(t);
  const rx = bound(t, dir, 'rx.sock');
  const tx = native.unixConnect(rx.path, 'dgram');
  t.teardown(() => native.close(tx));
  const frames = Array.from({ length: 256 }, (_, i) => Buffer.alloc(1000, i));
  let sent = 0;
  for (;;) {
    const n = native.sendmmsg(tx, frames, 0, frames.length);
    if (n < 0) break;
    t.true(n <= frames.length);
    sent += n;
  }
  t.true(sent > 0);
  // Everything queued arrives, in order.
  const slot = 1024;
  const slab = Buffer.alloc(64 * slot);
  const meta = new Int32Array(128);
  let got = 0;
  for (let n; (n = native.recvmmsg(rx.fd, slab, 0, slot, 64, meta)) > 0; ) {
    for (let i = 0; i < n; i++, got++) {
      t.is(meta[2 * i + 1], 1000);
      if (slab[meta[2 * i]!] !== (got % 256 & 0xff)) t.fail(`datagram ${got} out of order`);
    }
  }
  t.is(got, sent);
});

test('batch calls reject bad arguments and report errno names', (t) => {
  const fd = native.unixDgram();
  t.teardown(() => native.close(fd));
  const meta = new Int32Array(4);
  t.throws(() => native.recvmmsg(fd, Buffer.alloc(100), 0, 64, 2, meta), { instanceOf: RangeError });
  t.throws(() => native.recvmmsg(fd, Buffer.alloc(256), 4, 64, 2, meta), { instanceOf: RangeError });
  t.throws(() => native.recvmmsg(fd, Buffer.alloc(256), 0, 64, 3, meta), { instanceOf: RangeError });
  t.throws(() => native.sendmmsg(fd, [Buffer.alloc(1)], 0, 2), { instanceOf: RangeError });
  t.throws(() => native.sendmmsg(fd, ['x' as unknown as Uint8Array], 0, 1), { instanceOf: TypeError });
  // Unconnected and no path.
  const err = t.throws(() => native.sendmmsg(fd, [Buffer.alloc(1)], 0, 1));
  t.true(isNativeError(err, 'ENOTCONN') || isNativeError(err, 'EDESTADDRREQ'));
  t.is((err as { syscall?: string }).syscall, 'sendmmsg');
  t.true(isNativeError(t.throws(() => native.recvmmsg(1_000_000, Buffer.alloc(64), 0, 64, 1, meta)), 'EBADF'));
});

test('crc32 equals the bytewise reference for any data, range and initial value', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 5000 }), fc.nat(), fc.nat(), fc.integer({ min: 0, max: 0xffffffff }), (data, a, b, init) => {
      const start = data.length === 0 ? 0 : a % (data.length + 1);
      const end = start + (data.length === 0 ? 0 : b % (data.length - start + 1));
      return native.crc32(data, init, start, end) === crc32Table(data.subarray(start, end), init);
    }),
    { numRuns: 2000 },
  );
  // The IEEE check value, and the whole-buffer default range.
  t.is(native.crc32(Buffer.from('123456789')), 0xcbf43926);
  t.throws(() => native.crc32(Buffer.alloc(4), 0, 3, 2), { instanceOf: RangeError });
  t.throws(() => native.crc32(Buffer.alloc(4), 0, 0, 5), { instanceOf: RangeError });
});
