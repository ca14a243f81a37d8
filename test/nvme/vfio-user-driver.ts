// The soft NVMe driver over a vfio-user socket, set up as QEMU sets up a
// device: guest RAM a shared memfd mapped at IOVA 0, MSI-X vectors wired to
// eventfds, bus mastering on. For tests that drive an NVMe server process.
import { native } from '../../native/index.ts';
import { NVME_MSIX_VECTORS } from '../../src/devices/nvme/controller.ts';
import { GuestMemory, SoftDriver } from '../../src/devices/nvme/soft-host.ts';
import { Cfg, CommandBit } from '../../src/pci/config-space.ts';
import { VfioUserClient } from '../../src/vfio-user/client.ts';
import { IrqSetFlag, PciIrq, PciRegion } from '../../src/vfio-user/protocol.ts';

export interface RemoteDriver {
  drv: SoftDriver;
  client: VfioUserClient;
  /** The MSI-X eventfds, by vector (the driver polls its CQs and never reads them). */
  efds: number[];
  /** Closes the connection and frees the memory and eventfds (once; later calls do nothing). */
  close(): void;
}

export async function connectDriver(socket: string, ramSize = 4 << 20): Promise<RemoteDriver> {
  const client = new VfioUserClient(socket);
  const memfd = native.memfdCreate('guest-ram', ramSize);
  const ram = native.mmap(memfd, 0, ramSize, true);
  const efds = Array.from({ length: NVME_MSIX_VECTORS }, () => native.eventfd());
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    client.close();
    efds.forEach((fd) => native.close(fd));
    native.munmap(ram);
    native.close(memfd);
  };
  try {
    await client.version();
    await client.dmaMap(0, ramSize, { fd: memfd });
    // In batches of max_msg_fds (16), as QEMU sends them.
    for (let start = 0; start < efds.length; start += 16) {
      const batch = efds.slice(start, start + 16);
      await client.setIrqs({ flags: IrqSetFlag.DataEventfd | IrqSetFlag.ActionTrigger, index: PciIrq.Msix, start, count: batch.length }, batch);
    }
    await client.write32(PciRegion.Config, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);
  } catch (err) {
    close();
    throw err;
  }
  const bar0 = { read32: (off: number) => client.read32(0, off), write32: (off: number, v: number) => client.write32(0, off, v) };
  // The CQ is looked at every millisecond: the controller runs in another process (or behind a fabric).
  const drv = new SoftDriver(new GuestMemory(new Uint8Array(ram)), bar0, 1);
  drv.reapTimeoutMs = 10_000;
  return { drv, client, efds, close };
}
