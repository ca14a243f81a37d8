// DMA_MAP against hostile fds: a range beyond the file is refused, and a file
// that shrinks after DMA_MAP fails the DMA instead of killing the process
// with SIGBUS (this test's worker would die if it did).
import test from 'ava';
import { ftruncateSync, openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { native } from '../../native/index.ts';
import { CommandBit, Cfg } from '../../src/pci/config-space.ts';
import { TESTDEV_ID_VALUE, TestReg, TestStatus } from '../../src/devices/testdev/testdev.ts';
import { Errno, IrqSetFlag, PciIrq, PciRegion } from '../../src/vfio-user/protocol.ts';
import { type VfioUserClient, waitEventfd } from '../../src/vfio-user/client.ts';
import { MAX_FILE_REGIONS } from '../../src/vfio-user/dma.ts';
import { errnoOf, rig, u64le, type Rig } from './helpers.ts';

const BAR0 = 0;
const IOVA = 0x1000_0000;

/** A client with MSI-X vector 0 wired and bus mastering on; returns its eventfd. */
async function armed(t: import('ava').ExecutionContext, r: Rig): Promise<{ c: VfioUserClient; efd: number }> {
  const c = await r.client();
  const efd = native.eventfd();
  t.teardown(() => native.close(efd));
  await c.setIrqs({ flags: IrqSetFlag.DataEventfd | IrqSetFlag.ActionTrigger, index: PciIrq.Msix, start: 0, count: 1 }, [efd]);
  await c.write32(PciRegion.Config, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);
  return { c, efd };
}

/** One copy-engine run inside guest RAM at IOVA; resolves with the Status register. */
async function copy(c: VfioUserClient, efd: number, src: number, dst: number, len: number): Promise<number> {
  await c.regionWrite(BAR0, TestReg.DmaSrc, u64le(IOVA + src));
  await c.regionWrite(BAR0, TestReg.DmaDst, u64le(IOVA + dst));
  await c.write32(BAR0, TestReg.DmaLen, len);
  const irq = waitEventfd(efd);
  await c.write32(BAR0, TestReg.Doorbell, 1);
  await irq;
  return c.read32(BAR0, TestReg.Status);
}

test('DMA_MAP refuses offset + size beyond the fd\'s file, and non-files; the session goes on', async (t) => {
  const r = rig(t);
  const c = await r.client();
  const memfd = native.memfdCreate('short', 0x4000);
  t.teardown(() => native.close(memfd));
  t.is(await errnoOf(c.dmaMap(IOVA, 0x8000, { fd: memfd })), Errno.EINVAL, 'size beyond the file');
  await r.logged(/DMA_MAP id \d+ refused: DMA_MAP: fd offset 0x0 \+ size 0x8000 is beyond the file's 0x4000 bytes/);
  t.is(await errnoOf(c.dmaMap(IOVA, 0x2000, { fd: memfd, offset: 0x3000 })), Errno.EINVAL, 'offset pushes it beyond');
  t.is(await errnoOf(c.dmaMap(IOVA, 0x1000, { fd: memfd, offset: 2 ** 52 })), Errno.EINVAL, 'huge offset');
  const [s1, s2] = native.socketpair('stream');
  t.teardown(() => [s1!, s2!].forEach((fd) => native.close(fd)));
  t.is(await errnoOf(c.dmaMap(IOVA, 0x1000, { fd: s1! })), Errno.EINVAL, 'a socket is not guest RAM');
  await r.logged(/not a regular file or memfd/);
  await t.notThrowsAsync(c.dmaMap(IOVA, 0x4000, { fd: memfd }), 'exactly the file fits');
  t.is(await c.read32(BAR0, TestReg.Id), TESTDEV_ID_VALUE);
});

test('an unsealed memfd truncated after DMA_MAP: DMA fails cleanly (no SIGBUS), the server and its other clients live on', async (t) => {
  const a = rig(t, 'a');
  const b = rig(t, 'b', a.dir);
  const cb = await b.client();
  await cb.write32(BAR0, TestReg.Scratch, 0xb);

  const { c, efd } = await armed(t, a);
  const size = 0x10000;
  const memfd = native.memfdCreate('guest-ram', size);
  t.teardown(() => native.close(memfd));
  const ram = new Uint8Array(native.mmap(memfd, 0, size, true));
  t.teardown(() => native.munmap(ram.buffer as ArrayBuffer));
  await c.dmaMap(IOVA, size, { fd: memfd });
  await a.logged(/DMA_MAP of an fd not sealed against shrinking: that guest memory is reached with pread\/pwrite/);
  // Works while the file is whole (through pread/pwrite: the memfd could shrink).
  ram.set([1, 2, 3, 4, 5], 0x100);
  t.is(await copy(c, efd, 0x100, 0x8000, 5), TestStatus.Done);
  t.deepEqual([...ram.subarray(0x8000, 0x8005)], [1, 2, 3, 4, 5]);

  ftruncateSync(memfd, 0x1000); // the client shrinks its RAM under the mapping
  t.is(await copy(c, efd, 0x100, 0x8000, 5), TestStatus.Error, 'write beyond the new end');
  t.regex(a.dev.lastError?.message ?? '', /shrank below the mapping/);
  t.is(await copy(c, efd, 0x9000, 0x200, 5), TestStatus.Error, 'read beyond the new end');
  t.regex(a.dev.lastError?.message ?? '', /shrank below the mapping/);
  t.is(await copy(c, efd, 0x100, 0x300, 5), TestStatus.Done, 'what is left still works');

  t.is(await c.read32(BAR0, TestReg.Id), TESTDEV_ID_VALUE);
  t.is(await cb.read32(BAR0, TestReg.Scratch), 0xb, 'the other server\'s client is undisturbed');
});

test('a sealed memfd (as QEMU passes guest RAM) is mapped directly and cannot shrink', async (t) => {
  const r = rig(t);
  const { c, efd } = await armed(t, r);
  const size = 0x10000;
  const memfd = native.sealedMemfd('guest-ram', size);
  t.teardown(() => native.close(memfd));
  const ram = new Uint8Array(native.mmap(memfd, 0, size, true));
  t.teardown(() => native.munmap(ram.buffer as ArrayBuffer));
  await c.dmaMap(IOVA, size, { fd: memfd });
  t.throws(() => ftruncateSync(memfd, 0), { code: 'EPERM' }, 'F_SEAL_SHRINK holds');
  t.false(r.logs.some((l) => /not sealed/.test(l)), 'mapped, not read with pread');
  ram.set([9, 8, 7], 0x10);
  t.is(await copy(c, efd, 0x10, 0x20, 3), TestStatus.Done);
  t.deepEqual([...ram.subarray(0x20, 0x23)], [9, 8, 7]);
});

test('a regular file as guest RAM is accessed with pread/pwrite and may shrink safely', async (t) => {
  const r = rig(t);
  const { c, efd } = await armed(t, r);
  const path = join(r.dir, 'ram.bin');
  const fd = openSync(path, 'w+');
  t.teardown(() => closeSync(fd));
  ftruncateSync(fd, 0x4000);
  await c.dmaMap(IOVA, 0x4000, { fd });
  t.is(await copy(c, efd, 0, 0x2000, 16), TestStatus.Done);
  ftruncateSync(fd, 0);
  t.is(await copy(c, efd, 0, 0x2000, 16), TestStatus.Error);
  t.is(await c.read32(BAR0, TestReg.Id), TESTDEV_ID_VALUE);
});

test('maps of unsealed files are capped (each keeps an fd open in the server); sealed ones are not', async (t) => {
  const r = rig(t);
  const c = await r.client();
  for (let i = 0; i < MAX_FILE_REGIONS; i++) {
    const fd = native.memfdCreate('ram', 0x1000);
    await c.dmaMap(IOVA + i * 0x1000, 0x1000, { fd });
    native.close(fd);
  }
  const fd = native.memfdCreate('ram', 0x1000);
  const sealed = native.sealedMemfd('ram', 0x1000);
  t.teardown(() => [fd, sealed].forEach((f) => native.close(f)));
  t.is(await errnoOf(c.dmaMap(IOVA + 0x100_0000, 0x1000, { fd })), Errno.ENOSPC);
  await r.logged(/already 64 maps of unsealed files/);
  await t.notThrowsAsync(c.dmaMap(IOVA + 0x100_0000, 0x1000, { fd: sealed }));
  await c.dmaUnmap(IOVA, 0x1000);
  await t.notThrowsAsync(c.dmaMap(IOVA, 0x1000, { fd }), 'room again after an unmap');
});
