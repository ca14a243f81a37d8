// Sparse mmap end to end: the test device's optional BAR2 shared page is
// offered in GET_REGION_INFO (asked twice, as QEMU does: the first reply only
// says how large argsz must be), its fd comes with the full reply, and memory
// written through the client's mapping and by the device is the same memory.
import test from 'ava';
import { native } from '../../native/index.ts';
import { SHARED_BAR, SharedReg } from '../../src/devices/testdev/testdev.ts';
import { REGION_INFO_SIZE, RegionFlag, sparseMmapCapSize } from '../../src/vfio-user/protocol.ts';
import { rig } from './helpers.ts';

const RW = RegionFlag.Read | RegionFlag.Write;

test('GET_REGION_INFO: short argsz gets the size to re-ask with and no fd; the re-ask gets the sparse-mmap capability and the fd', async (t) => {
  const r = rig(t, 'dev', undefined, { sharedPage: true });
  const c = await r.client();
  const first = await c.regionInfo(SHARED_BAR);
  t.is(first.info.argsz, REGION_INFO_SIZE + sparseMmapCapSize(1), 'argsz needed for one area');
  t.is(first.info.flags, RW | RegionFlag.Mmap, 'no CAPS flag in the short reply');
  t.is(first.info.size, 2 * SharedReg.PageSize);
  t.deepEqual(first.areas, []);
  t.deepEqual(first.fds, [], 'the fd waits for the full reply');

  const full = await c.regionInfo(SHARED_BAR, first.info.argsz);
  t.teardown(() => full.fds.forEach((fd) => native.close(fd)));
  t.is(full.info.flags, RW | RegionFlag.Mmap | RegionFlag.Caps);
  t.is(full.info.offset, 0, 'file offset of BAR offset 0');
  t.deepEqual(full.areas, [{ offset: SharedReg.Page, size: SharedReg.PageSize }], 'only the page after the registers');
  t.is(full.fds.length, 1);

  // Regions without shared memory are unchanged: no mmap flag, no fd, whatever argsz.
  const bar0 = await c.regionInfo(0, 256);
  t.is(bar0.info.flags, RW);
  t.deepEqual(bar0.fds, []);
});

test('the mapped page is the device\'s memory: client writes reach the device, device writes reach the mapping, none trapped', async (t) => {
  const r = rig(t, 'dev', undefined, { sharedPage: true });
  const c = await r.client();
  const { areas, fds, info } = await c.regionInfo(SHARED_BAR, REGION_INFO_SIZE + sparseMmapCapSize(1));
  const [fd] = fds;
  t.teardown(() => native.close(fd!));
  const area = areas[0]!;
  // QEMU maps area i at file offset info.offset + area.offset.
  const map = native.mmap(fd!, info.offset + area.offset, area.size, true);
  t.teardown(() => native.munmap(map));
  const page = new DataView(map);

  // Client -> device: the device sums the page it sees.
  let sum = 0;
  for (let i = 0; i < 16; i++) {
    const v = (0x9e3779b9 * (i + 1)) >>> 0;
    page.setUint32(64 * i, v, true);
    sum = (sum + v) >>> 0;
  }
  t.is(await c.read32(SHARED_BAR, SharedReg.Sum), sum);
  // Device -> client: SHARED_STAMP makes the device store into the page.
  await c.write32(SHARED_BAR, SharedReg.Stamp, 0x5eed1e55);
  t.is(page.getUint32(SharedReg.StampAt, true), 0x5eed1e55);
  t.is(await c.read32(SHARED_BAR, SharedReg.Trapped), 0, 'nothing went through REGION_READ/WRITE');

  // Mapping is optional for a client: trapped accesses hit the same memory and are counted.
  await c.write32(SHARED_BAR, SharedReg.Page + 8, 0xabad1dea);
  t.is(page.getUint32(8, true), 0xabad1dea);
  page.setUint32(12, 0x0ddba11, true);
  t.is(await c.read32(SHARED_BAR, SharedReg.Page + 12), 0x0ddba11);
  t.is(await c.read32(SHARED_BAR, SharedReg.Trapped), 2);

  // The page is memory, not a register: a reset keeps it.
  await c.reset();
  t.is(page.getUint32(SharedReg.StampAt, true), 0x5eed1e55);
});

test('without the option there is no BAR2 and nothing to map', async (t) => {
  const r = rig(t);
  const c = await r.client();
  const info = await c.regionInfo(SHARED_BAR, 256);
  t.is(info.info.size, 0);
  t.is(info.info.flags, 0);
  t.deepEqual(info.fds, []);
});
