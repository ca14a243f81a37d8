// The HI's control endpoint over vfio-user, as QEMU and the guest see it:
// IDs and class, a PCI Express capability, BAR0 holding the status text
// rendered on a read at offset 0, writes to BAR0 ignored.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { HI_CONTROL_DEVICE, HI_CONTROL_VENDOR, HiControlEndpoint } from '../../src/hi/control-endpoint.ts';
import { CapId, Cfg, CommandBit } from '../../src/pci/config-space.ts';
import { VfioUserClient } from '../../src/vfio-user/client.ts';
import { PciIrq, PciRegion } from '../../src/vfio-user/protocol.ts';
import { VfioUserServer } from '../../src/vfio-user/server.ts';

async function controlRig(t: { teardown(fn: () => void): void }, status: () => string): Promise<VfioUserClient> {
  const dir = mkdtempSync(join(tmpdir(), 'pcieoe-hictl-'));
  const server = new VfioUserServer({ path: join(dir, 'hictl.sock'), device: new HiControlEndpoint(status), name: 'hictl', log: () => {} }).listen();
  const c = new VfioUserClient(server.path);
  t.teardown(() => {
    c.close();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await c.version();
  return c;
}

test('config space: IDs, system-peripheral class, one PCI Express capability, no interrupts', async (t) => {
  const c = await controlRig(t, () => '');
  const CONFIG = PciRegion.Config;
  t.is(await c.read32(CONFIG, Cfg.VendorId), (HI_CONTROL_DEVICE << 16) | HI_CONTROL_VENDOR);
  t.is((await c.read32(CONFIG, Cfg.Revision)) >>> 8, 0x088000);
  t.is((await c.regionInfo(CONFIG)).info.size, 4096);
  t.is((await c.regionInfo(0)).info.size, 4096);
  const cfg = await c.regionRead(CONFIG, 0, 256);
  const cap = cfg[Cfg.CapabilitiesPtr]!;
  t.deepEqual([cfg[cap], cfg[cap + 1]], [CapId.PciExpress, 0], 'PCI Express is the only capability');
  for (const index of [PciIrq.Intx, PciIrq.Msi, PciIrq.Msix]) t.is((await c.irqInfo(index)).count, 0);
  await c.write32(CONFIG, Cfg.Command, CommandBit.Memory);
  t.is((await c.read32(CONFIG, Cfg.Command)) & 0xffff, CommandBit.Memory);
});

test('BAR0: the status text, rendered again on each read at offset 0; writes ignored', async (t) => {
  let n = 0;
  const c = await controlRig(t, () => `PCIeOE HI 1\nrender ${++n}\n`);
  const text = async () => new TextDecoder().decode(await c.regionRead(0, 0, 64)).replace(/\0+$/, '');
  t.is(await text(), 'PCIeOE HI 1\nrender 1\n');
  await c.regionWrite(0, 0, new Uint8Array([0x41, 0x42]));
  t.is(await text(), 'PCIeOE HI 1\nrender 2\n');
  t.is(new TextDecoder().decode(await c.regionRead(0, 12, 8)), 'render 2', 'a read past offset 0 shows the last rendering');
});
