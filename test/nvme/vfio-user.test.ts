// The NVMe model served over vfio-user (direct attach), driven by the test
// client as QEMU would: PCI identity, MSI-X through eventfds, admin commands
// with DMA in a shared memfd, a PRP outside the DMA map, and a second client
// after the first went away.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../native/index.ts';
import { NVME_CLASS, NVME_MSIX_VECTORS, NvmeController } from '../../src/devices/nvme/controller.ts';
import { CstsBit, Reg } from '../../src/devices/nvme/registers.ts';
import { Status } from '../../src/devices/nvme/status.ts';
import { Cfg, CommandBit } from '../../src/pci/config-space.ts';
import { servePciFunction } from '../../src/direct-attach/adapter.ts';
import { IrqSetFlag, PciIrq, PciRegion } from '../../src/vfio-user/protocol.ts';
import { VfioUserClient, waitEventfd } from '../../src/vfio-user/client.ts';

const BAR0 = 0;
const IOVA = 0x1000_0000;
const RAM = 1 << 20;

test('over vfio-user: class, BAR0, MSI-X; enable, Identify by DMA with an MSI-X interrupt; bad PRP; fresh controller for the next client', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nvme-vfu-'));
  const logs: string[] = [];
  const ctrl = new NvmeController({ serial: 'VFU-1', namespaces: [{ path: join(dir, 'ns.img'), size: 1 << 20, lbaSize: 512 }], log: (l, m) => logs.push(`${l}: ${m}`) });
  await ctrl.open();
  const server = servePciFunction(ctrl, { path: join(dir, 'nvme.sock'), name: 'nvme', log: (l, m) => logs.push(`${l}: ${m}`) });
  const memfd = native.memfdCreate('guest-ram', RAM);
  const ram = new Uint8Array(native.mmap(memfd, 0, RAM, true));
  const efds = Array.from({ length: NVME_MSIX_VECTORS }, () => native.eventfd());
  t.teardown(async () => {
    server.close();
    await ctrl.close();
    efds.forEach((fd) => native.close(fd));
    native.close(memfd);
    rmSync(dir, { recursive: true, force: true });
  });

  const c = new VfioUserClient(server.path);
  await c.version();
  t.is((await c.read32(PciRegion.Config, Cfg.Revision)) >>> 8, NVME_CLASS);
  t.is((await c.regionInfo(BAR0)).info.size, 16 * 1024);
  t.is((await c.irqInfo(PciIrq.Msix)).count, 17);
  await c.dmaMap(IOVA, RAM, { fd: memfd });
  // 17 vectors, in batches of max_msg_fds (16) as QEMU sends them.
  for (let start = 0; start < efds.length; start += 16) {
    const batch = efds.slice(start, start + 16);
    await c.setIrqs({ flags: IrqSetFlag.DataEventfd | IrqSetFlag.ActionTrigger, index: PciIrq.Msix, start, count: batch.length }, batch);
  }
  await c.write32(PciRegion.Config, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);

  // Admin SQ at RAM 0x1000, CQ at 0x2000, 4 entries each; Linux's CC value.
  await c.write32(BAR0, Reg.Aqa, (3 << 16) | 3);
  await c.write32(BAR0, Reg.Asq, IOVA + 0x1000);
  await c.write32(BAR0, Reg.Asq + 4, 0);
  await c.write32(BAR0, Reg.Acq, IOVA + 0x2000);
  await c.write32(BAR0, Reg.Acq + 4, 0);
  await c.write32(BAR0, Reg.Cc, 1 | (6 << 16) | (4 << 20));
  t.is(await c.read32(BAR0, Reg.Csts), CstsBit.Ready);

  const v = new DataView(ram.buffer);
  const identify = async (slot: number, prp1: number): Promise<number> => {
    const sqe = 0x1000 + slot * 64;
    ram.fill(0, sqe, sqe + 64);
    v.setUint8(sqe, 0x06);
    v.setUint16(sqe + 2, 0x4000 + slot, true);
    v.setBigUint64(sqe + 24, BigInt(prp1), true);
    v.setUint32(sqe + 40, 1, true); // CNS 01h
    const irq = waitEventfd(efds[0]!);
    await c.write32(BAR0, Reg.Doorbells, slot + 1);
    await irq;
    const cqe = 0x2000 + slot * 16;
    t.is(v.getUint16(cqe + 12, true), 0x4000 + slot, 'CID echoed');
    t.is(v.getUint16(cqe + 14, true) & 1, 1, 'phase 1 on the first pass');
    await c.write32(BAR0, Reg.Doorbells + 4, slot + 1);
    return (v.getUint16(cqe + 14, true) >> 1) & 0x7ff;
  };
  t.is(await identify(0, IOVA + 0x3000), Status.Success);
  t.is(new TextDecoder().decode(ram.subarray(0x3004, 0x3009)), 'VFU-1');
  t.is(await identify(1, 0x7000_0000), Status.DataTransferError, 'PRP outside the DMA map');
  t.is((await c.read32(BAR0, Reg.Csts)) & CstsBit.Fatal, 0);

  // The client goes away (guest shut down, device unplugged); the server keeps
  // listening and the next client meets a controller as at power-on.
  c.close();
  await new Promise((r) => server.once('disconnect', r));
  const c2 = new VfioUserClient(server.path);
  t.teardown(() => c2.close());
  await c2.version();
  t.is(await c2.read32(BAR0, Reg.Csts), 0);
  t.is(await c2.read32(BAR0, Reg.Cc), 0);
  native.munmap(ram.buffer as ArrayBuffer);
});
