// Doorbell Buffer Config (OACS bit 8): the host keeps its doorbell values in
// a shadow page and rings MMIO only when the controller's event index asks
// (Linux's nvme_dbbuf_update_and_check_event, which SoftDriver follows).
import test, { type ExecutionContext } from 'ava';
import { Status } from '../../src/devices/nvme/status.ts';
import { expectOk, PAGE, TestHost } from '../../src/devices/nvme/soft-host.ts';

const WRITE = 0x01;
const READ = 0x02;
const fill = (len: number, seed: number) => Uint8Array.from({ length: len }, (_, i) => (i * 13 + seed * 101) & 0xff);

async function host(t: ExecutionContext, queueSize: number): Promise<TestHost> {
  const h = new TestHost(t, { namespaces: [{ path: 'ns.img', size: 4 << 20, lbaSize: 512 }] });
  await h.ctrl.open();
  await h.enable();
  await h.createIoQueue(1, queueSize);
  return h;
}

test('OACS offers Doorbell Buffer Config; buffers must be page aligned and not 0', async (t) => {
  const h = await host(t, 16);
  const id = h.alloc(PAGE);
  expectOk(await h.admin({ opcode: 0x06, prp1: id, cdw10: 1 }));
  t.is(h.mem.view.getUint16(id + 256, true), 0x100, 'OACS bit 8 only');
  t.is((await h.admin({ opcode: 0x7c, prp1: id + 512, prp2: h.alloc(PAGE) })).status, Status.InvalidField);
  t.is((await h.admin({ opcode: 0x7c, prp1: 0, prp2: h.alloc(PAGE) })).status, Status.InvalidField);
  expectOk(await h.useDoorbellBuffer());
});

test('with shadow doorbells, 300 writes and reads over many laps of a 16-entry queue all complete with the right data; MMIO doorbells only when asked', async (t) => {
  const h = await host(t, 16);
  expectOk(await h.useDoorbellBuffer());
  const buf = h.alloc(PAGE);
  const commands = 300;
  for (let i = 0; i < commands / 2; i++) {
    h.mem.bytes.set(fill(512, i), buf);
    expectOk(await h.submit(1, { opcode: WRITE, nsid: 1, prp1: buf, cdw10: i, cdw12: 0 }));
  }
  for (let i = 0; i < commands / 2; i++) {
    h.mem.bytes.fill(0, buf, buf + 512);
    expectOk(await h.submit(1, { opcode: READ, nsid: 1, prp1: buf, cdw10: i, cdw12: 0 }));
    if (!h.mem.bytes.subarray(buf, buf + 512).every((b, j) => b === fill(512, i)[j])) return t.fail(`LBA ${i} read back wrong`);
  }
  // One command at a time: the controller is caught up each time, so each submission rings;
  // the CQ head is rung about once per lap of the ring (the event index stays where it was).
  t.is(h.doorbellWrites.get(2), commands, 'SQ 1 tail: rung for each command submitted to an idle queue');
  t.true(h.doorbellWrites.get(3)! <= Math.ceil(commands / 15) + 1, `CQ 1 head rung ${h.doorbellWrites.get(3)} times for ${commands} completions`);
  t.is(h.eventIdx(2), commands % 16, 'SQ event index = the tail the controller caught up with');
  t.deepEqual(h.logs.filter((l) => !l.startsWith('info')), []);
});

test('one command at a time costs one shadow tail read, sent with its entry after the event index moved to the doorbell\'s value', async (t) => {
  const h = await host(t, 16);
  expectOk(await h.useDoorbellBuffer());
  const buf = h.alloc(PAGE);
  // Over PCIeOE each read is a round trip through the fabric: count reads of SQ 1's shadow tail
  // (doorbell index 2: offset 8 in the page-aligned shadow page).
  let shadowReads = 0;
  const read = h.mem.dmaRead.bind(h.mem);
  h.mem.dmaRead = (addr, len) => {
    if (len === 4 && addr % PAGE === 8) shadowReads++;
    return read(addr, len);
  };
  const commands = 20;
  for (let i = 0; i < commands; i++) {
    expectOk(await h.submit(1, { opcode: READ, nsid: 1, prp1: buf, cdw10: i, cdw12: 0 }));
    await h.settle();
  }
  t.is(h.doorbellWrites.get(2), commands, 'each submission to an idle queue still rings');
  t.is(shadowReads, commands, 'no second read: the event index stood at the tail before the read');
  t.is(h.eventIdx(2), commands % 16);
});

test('commands posted while the controller fetches need no MMIO doorbell beyond the first two; a CQ that looks full is refreshed from the shadow head', async (t) => {
  const h = await host(t, 8);
  expectOk(await h.useDoorbellBuffer());
  const data = h.alloc(PAGE);
  let rung = 0;
  for (let round = 0; round < 10; round++) {
    const before = h.doorbellWrites.get(2) ?? 0;
    // Seven commands posted back to back (the queue holds 7): only the first finds the controller idle.
    const cids = await Promise.all(Array.from({ length: 7 }, (_, i) => h.post(1, { opcode: READ, nsid: 1, prp1: data, cdw10: round * 7 + i, cdw12: 0 })));
    const seen = new Set<number>();
    for (let i = 0; i < cids.length; i++) seen.add(expectOk(await h.reap(1)).cid);
    t.deepEqual([...seen].sort(), [...cids].sort());
    rung += (h.doorbellWrites.get(2) ?? 0) - before;
  }
  // The first finds the queue idle, so the event index moves to its tail at once (queue depth 1 saves a
  // round trip that way): one of the six posted during that fetch rings too; the rest ride on the reads.
  t.is(rung, 20, 'two SQ doorbells per burst of seven into an idle queue');
  t.true((h.doorbellWrites.get(3) ?? 0) <= 10, `CQ head rung ${h.doorbellWrites.get(3)} times for 70 completions`);
});

test('the admin queue keeps MMIO doorbells; after a controller reset the doorbell buffer is gone and MMIO values count again', async (t) => {
  const h = await host(t, 16);
  expectOk(await h.useDoorbellBuffer());
  const before = h.doorbellWrites.get(0)!;
  expectOk(await h.admin({ opcode: 0x0a, cdw10: 0x07 }));
  t.is(h.doorbellWrites.get(0), before + 1, 'admin SQ rung by MMIO');
  for (let i = 0; i < 3; i++) expectOk(await h.submit(1, { opcode: READ, nsid: 1, prp1: h.alloc(PAGE), cdw10: i, cdw12: 0 }));
  // CC.EN = 0, then a new enable and new queues without Doorbell Buffer Config: the stale shadow page
  // (tail 3) must not be read any more, every doorbell value comes by MMIO.
  await h.wreg32(0x14, 0);
  await h.enable();
  await h.createIoQueue(1, 16);
  const sq = h.doorbellWrites.get(2)!;
  const cq = h.doorbellWrites.get(3) ?? 0;
  for (let i = 0; i < 5; i++) expectOk(await h.submit(1, { opcode: READ, nsid: 1, prp1: h.alloc(PAGE), cdw10: i, cdw12: 0 }));
  t.is(h.doorbellWrites.get(2)! - sq, 5);
  t.is(h.doorbellWrites.get(3)! - cq, 5);
  t.deepEqual(h.logs.filter((l) => !l.startsWith('info')), []);
});

test('without MSI-X, on shadow doorbells: INTx drops once the host has reaped every entry', async (t) => {
  const h = await host(t, 16);
  h.ctrl.setMsixEnabled(false);
  expectOk(await h.useDoorbellBuffer());
  for (let i = 0; i < 20; i++) {
    expectOk(await h.submit(1, { opcode: READ, nsid: 1, prp1: h.alloc(PAGE), cdw10: i, cdw12: 0 }));
    await h.settle();
    t.is(h.intx.at(-1), false, `deasserted after completion ${i + 1} was reaped`);
  }
  t.true(h.intx.filter((l) => l).length >= 20, 'asserted for each completion');
});

test('an MMIO doorbell value older than the shadow (a posted write overtaken) fetches nothing twice and nothing unwritten', async (t) => {
  const h = await host(t, 16);
  expectOk(await h.useDoorbellBuffer());
  for (let i = 0; i < 5; i++) expectOk(await h.submit(1, { opcode: READ, nsid: 1, prp1: h.alloc(PAGE), cdw10: i, cdw12: 0 }));
  // The controller has fetched up to slot 5; a late doorbell write says 2, then 4.
  await h.ring(2, 2);
  await h.ring(2, 4);
  await h.settle();
  const e = expectOk(await h.submit(1, { opcode: READ, nsid: 1, prp1: h.alloc(PAGE), cdw10: 9, cdw12: 0 }));
  t.is(e.sqhd, 6, 'one more entry fetched: the new one');
  t.deepEqual(h.logs.filter((l) => !l.startsWith('info')), [], 'no stale or empty entry executed');
  t.is((await h.reg32(0x1c)) & 2, 0, 'CSTS.CFS clear');
});

test('a host that keeps its doorbell pages across a reset, with shadow tails gone past the old event indexes: its next command rings MMIO and completes', async (t) => {
  const h = await host(t, 16);
  expectOk(await h.useDoorbellBuffer());
  for (let i = 0; i < 5; i++) expectOk(await h.submit(1, { opcode: READ, nsid: 1, prp1: h.alloc(PAGE), cdw10: i, cdw12: 0 }));
  t.is(h.eventIdx(2), 5);
  // The controller goes away (CC.EN = 0 here; a killed DI in the lab) while the host submits three more:
  // they reach the shadow page only (the first MMIO doorbell is lost), so its tail runs on to 8.
  await h.wreg32(0x14, 0);
  for (let i = 0; i < 3; i++) await h.post(1, { opcode: READ, nsid: 1, prp1: h.alloc(PAGE), cdw10: i, cdw12: 0 });
  t.is(h.shadowDoorbell(2), 8);
  // The host resets the controller and reuses its pages as they are (Linux before 5.8). With a
  // shadow of 8 and an event index of 5, nvme_dbbuf_need_event would say "no MMIO" for tail 1.
  await h.enable();
  await h.createIoQueue(1, 16);
  expectOk(await h.useDoorbellBuffer({ keepPages: true }));
  t.deepEqual([h.shadowDoorbell(2), h.eventIdx(2), h.shadowDoorbell(3), h.eventIdx(3)], [0, 0, 0, 0], 'shadow and event index in step with the new queue');
  const rung = h.doorbellWrites.get(2)!;
  for (let i = 0; i < 4; i++) expectOk(await h.submit(1, { opcode: READ, nsid: 1, prp1: h.alloc(PAGE), cdw10: i, cdw12: 0 }));
  t.is(h.doorbellWrites.get(2)! - rung, 4, 'each submission to the idle queue rang MMIO');
  t.deepEqual(h.logs.filter((l) => !l.startsWith('info')), []);
});
