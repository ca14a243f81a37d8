import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native, isNativeError, PollEvent } from '../../native/index.ts';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

function tmpDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'pcieoe-native-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Resolves with the events of the first readiness callback for `events`. */
function once(fd: number, events: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const poll = new native.Poll(fd, (err, ev) => {
      poll.close();
      if (err) reject(err);
      else resolve(ev);
    });
    poll.start(events);
  });
}

test('errors carry errno names', (t) => {
  const err = t.throws(() => native.close(1_000_000));
  t.true(isNativeError(err, 'EBADF'));
  t.is((err as { syscall?: string }).syscall, 'close');
  t.is((err as { errno?: number }).errno, -9);
  const err2 = t.throws(() => native.unixConnect('/nonexistent/dir/sock'));
  t.true(isNativeError(err2, 'ENOENT'));
  t.throws(() => native.sendmsg(3, 'x' as unknown as Uint8Array), { instanceOf: TypeError });
});

test('eventfd counts writes and reads back null when empty', (t) => {
  const fd = native.eventfd();
  t.is(native.eventfdRead(fd), null);
  native.eventfdWrite(fd);
  native.eventfdWrite(fd, 4);
  t.is(native.eventfdRead(fd), 5);
  t.is(native.eventfdRead(fd), null);
  native.close(fd);
  t.throws(() => native.eventfdWrite(fd), { code: 'EBADF' });
});

test('memfd mappings share pages; unaligned offsets work; munmap detaches', (t) => {
  const size = 3 * 4096;
  const fd = native.memfdCreate('test-ram', size);
  const a = new Uint8Array(native.mmap(fd, 0, size, true));
  const b = new Uint8Array(native.mmap(fd, 4096 + 10, 100, true));
  t.is(a.length, size);
  t.is(b.length, 100);
  a[4096 + 10] = 0xab;
  t.is(b[0], 0xab);
  b[99] = 0xcd;
  t.is(a[4096 + 109], 0xcd);
  const ab = b.buffer;
  native.munmap(ab);
  t.is(ab.byteLength, 0);
  t.is(b.length, 0); // detached: the view can no longer reach the pages
  native.munmap(ab); // a second unmap is a no-op
  t.throws(() => native.munmap(new ArrayBuffer(8)), { instanceOf: TypeError });
  const ro = new Uint8Array(native.mmap(fd, 0, 4096, false));
  t.is(ro[0], 0);
  native.munmap(ro.buffer);
  native.munmap(a.buffer);
  native.close(fd);
  t.throws(() => native.mmap(fd, 0, 4096, true), { code: 'EBADF' });
});

test('SCM_RIGHTS: an eventfd sent over a stream socket signals the original', async (t) => {
  const [s1, s2] = native.socketpair('stream');
  const efd = native.eventfd();
  const sent = native.sendmsg(s1, new Uint8Array([1, 2, 3]), [efd, efd]);
  t.is(sent, 3);
  const buf = new Uint8Array(16);
  const fds: number[] = [];
  t.is(native.recvmsg(s2, buf, fds), 3);
  t.deepEqual([...buf.subarray(0, 3)], [1, 2, 3]);
  t.is(fds.length, 2);
  t.not(fds[0], efd);
  native.eventfdWrite(fds[0]!, 7);
  t.is(native.eventfdRead(efd), 7);
  for (const fd of fds) native.close(fd);
  // nothing queued: -1, not an exception
  t.is(native.recvmsg(s2, buf, fds), -1);
  native.close(s1);
  t.is(native.recvmsg(s2, buf, []), 0); // EOF
  native.close(s2);
  native.close(efd);
});

test('unsentBytes: what the peer has not read yet, 0 once it has', (t) => {
  const [a, b] = native.socketpair('stream');
  t.teardown(() => [a, b].forEach((fd) => native.close(fd)));
  t.is(native.unsentBytes(a), 0);
  t.is(native.sendmsg(a, new Uint8Array(10)), 10);
  t.true(native.unsentBytes(a) > 0);
  t.is(native.recvmsg(b, new Uint8Array(64), []), 10);
  t.is(native.unsentBytes(a), 0);
});

test('Poll reports readability on the Node loop', async (t) => {
  const [s1, s2] = native.socketpair('stream');
  const ready = once(s2, PollEvent.Readable);
  setTimeout(() => native.sendmsg(s1, new Uint8Array([9])), 5);
  const ev = await ready;
  t.true((ev & PollEvent.Readable) !== 0);
  native.close(s1);
  native.close(s2);
});

test('unix listen/connect/accept and datagram sockets', async (t) => {
  const dir = tmpDir(t);
  const lfd = native.unixListen(join(dir, 'l.sock'));
  t.is(native.unixAccept(lfd), -1);
  const c = native.unixConnect(join(dir, 'l.sock'));
  await once(lfd, PollEvent.Readable);
  const s = native.unixAccept(lfd);
  t.true(s >= 0);
  native.sendmsg(c, new TextEncoder().encode('hi'));
  const buf = new Uint8Array(8);
  await once(s, PollEvent.Readable);
  t.is(native.recvmsg(s, buf, []), 2);
  for (const fd of [c, s, lfd]) native.close(fd);

  const a = native.unixDgram(join(dir, 'a.dgram'));
  const b = native.unixDgram(join(dir, 'b.dgram'));
  t.is(native.sendTo(a, new Uint8Array([1, 2, 3, 4]), join(dir, 'b.dgram')), 4);
  t.is(native.sendTo(a, new Uint8Array([5]), join(dir, 'b.dgram')), 1);
  await once(b, PollEvent.Readable);
  const small = new Uint8Array(2);
  t.is(native.recv(b, small), 2); // truncated to the buffer, boundary kept
  t.is(native.recv(b, buf), 1);
  t.is(buf[0], 5);
  t.is(native.recv(b, buf), -1);
  t.throws(() => native.sendTo(a, buf, join(dir, 'nobody')), { code: 'ENOENT' });
  t.throws(() => native.unixDgram('x'.repeat(200)), { code: 'ENAMETOOLONG' });
  native.close(a);
  native.close(b);
});

test('an exception in a Poll callback reaches uncaughtException', async (t) => {
  const [s1, s2] = native.socketpair('stream');
  const caught = new Promise<unknown>((resolve) => {
    const listeners = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    process.once('uncaughtException', (err) => {
      for (const l of listeners) process.on('uncaughtException', l);
      resolve(err);
    });
  });
  const poll = new native.Poll(s2, () => {
    poll.close();
    throw new Error('boom from handler');
  });
  poll.start(PollEvent.Readable);
  native.sendmsg(s1, new Uint8Array([1]));
  const err = await caught;
  t.is((err as Error).message, 'boom from handler');
  native.close(s1);
  native.close(s2);
});

test('a closed Poll lets its callback and what the callback holds be collected', async (t) => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  let collected = 0;
  const registry = new FinalizationRegistry(() => collected++);
  const N = 20;
  (() => {
    for (let i = 0; i < N; i++) {
      const [a, b] = native.socketpair('stream');
      const owner: { buffer: Uint8Array; poll?: InstanceType<typeof native.Poll> } = { buffer: new Uint8Array(1 << 20) };
      const poll = new native.Poll(a!, () => owner.buffer.length);
      owner.poll = poll;
      poll.start(PollEvent.Readable);
      registry.register(owner, i);
      poll.close();
      native.close(a!);
      native.close(b!);
    }
  })();
  for (let round = 0; round < 50 && collected < N; round++) {
    await new Promise((r) => setImmediate(r));
    gc();
  }
  t.is(collected, N, 'every owner of a closed Poll was collected');
});
