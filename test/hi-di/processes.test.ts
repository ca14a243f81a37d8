// The HI and DI as lab processes: switch, DI and HI each a separate process on
// real unix datagram sockets (two links each); the vfio-user test client plays
// QEMU. Then the DI is killed: the HI answers all-ones and stays up.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../native/index.ts';
import { Cfg, CommandBit } from '../../src/pci/config-space.ts';
import { TESTDEV_ID_VALUE, TestReg, TestStatus } from '../../src/devices/testdev/testdev.ts';
import { IrqSetFlag, PciIrq, PciRegion } from '../../src/vfio-user/protocol.ts';
import { startSwitch } from '../../src/fabric/switch/switch-process.ts';
import { startProcess, waitForSocket } from './lab-process.ts';
import { VfioUserClient, waitEventfd } from '../../src/vfio-user/client.ts';
import { u64le } from '../vfio-user/helpers.ts';

const HI_MACS = ['02:00:00:00:01:00', '02:00:00:00:01:01'];
const DI_MACS = ['02:00:00:00:0d:00', '02:00:00:00:0d:01'];

test('switch, DI and HI as processes: config, BAR, DMA and MSI-X; a killed DI gives all-ones, the HI stays up', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'pcieoe-hidi-proc-'));
  const hiDir = join(root, 'hi');
  const diDir = join(root, 'di');
  const sw = await startSwitch({
    dir: join(root, 'sw'),
    ports: ['hi0', 'hi1', 'di0', 'di1'],
    args: ['hi0', 'hi1', 'di0', 'di1'].flatMap((p) => ['--peer', `${p}=${join(root, p.slice(0, 2), `link${p[2]}.sock`)}`]),
  });
  const di = startProcess('src/di/main.ts', diDir, [
    ...DI_MACS.flatMap((m, i) => ['--link', `${m}@${sw.portPath(`di${i}`)}`]),
    '--channel', `1=${HI_MACS.join(',')}`,
    '--function', 'fn0=testdev',
    '--assign', 'fn0=channel:1,bdf:01:00.0',
  ]);
  const hi = startProcess('src/hi/main.ts', hiDir, [
    ...HI_MACS.flatMap((m, i) => ['--link', `${m}@${sw.portPath(`hi${i}`)}`]),
    '--channel', `1=${DI_MACS.join(',')}`,
    '--eep', 'eep0=channel:1,bdf:01:00.0',
    '--completion-timeout', '300',
  ]);
  const clients: VfioUserClient[] = [];
  t.teardown(async () => {
    for (const c of clients) c.close();
    for (const p of [hi, di]) if (p.proc.exitCode === null) p.proc.kill('SIGTERM');
    await Promise.all([hi.exited, di.exited]);
    await sw.stop();
    rmSync(root, { recursive: true, force: true });
  });

  const sock = join(hiDir, 'eep0.sock');
  await waitForSocket(sock, hi, [di]);
  const c = new VfioUserClient(sock);
  clients.push(c);
  await c.version();
  const cfg = await c.regionRead(PciRegion.Config, 0, 4);
  t.is(new DataView(cfg.buffer, cfg.byteOffset).getUint32(0, true), 0x0e0e1234);
  t.is(await c.read32(0, TestReg.Id), TESTDEV_ID_VALUE);

  const size = 1 << 20;
  const memfd = native.memfdCreate('guest-ram', size);
  const ram = new Uint8Array(native.mmap(memfd, 0, size, true));
  t.teardown(() => {
    native.close(memfd);
    native.munmap(ram.buffer as ArrayBuffer);
  });
  const iova = 0x2000_0000;
  await c.dmaMap(iova, size, { fd: memfd });
  const efd = native.eventfd();
  t.teardown(() => native.close(efd));
  await c.setIrqs({ flags: IrqSetFlag.DataEventfd | IrqSetFlag.ActionTrigger, index: PciIrq.Msix, start: 0, count: 1 }, [efd]);
  await c.write32(PciRegion.Config, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);
  const data = Uint8Array.from({ length: 100_000 }, (_, i) => (i * 31 + 7) & 0xff);
  ram.set(data, 0);
  await c.regionWrite(0, TestReg.DmaSrc, u64le(iova));
  await c.regionWrite(0, TestReg.DmaDst, u64le(iova + 0x8_0001));
  await c.write32(0, TestReg.DmaLen, data.length);
  const irq = waitEventfd(efd, 10_000);
  await c.write32(0, TestReg.Doorbell, 1);
  await irq;
  t.deepEqual(ram.subarray(0x8_0001, 0x8_0001 + data.length), data);
  t.is(await c.read32(0, TestReg.Status), TestStatus.Done);

  // The DI dies: reads end in all-ones within the completion timeout; the HI and its socket live on.
  di.proc.kill('SIGKILL');
  await di.exited;
  const t0 = performance.now();
  t.is(await c.read32(0, TestReg.Id), 0xffffffff);
  t.true(performance.now() - t0 < 2000);
  t.is(hi.proc.exitCode, null, 'the HI is still running');
  t.true(c.isOpen, 'and QEMU\'s connection is still open');
});
