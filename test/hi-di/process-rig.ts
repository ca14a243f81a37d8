// Switch, DI (a test device on channel 1) and HI as separate processes on real unix datagram
// sockets (two links each), and a vfio-user client with guest RAM and an MSI-X eventfd playing
// QEMU: the process-level tests (no VMs) drive the lab's processes through it.
import type { ExecutionContext } from 'ava';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../native/index.ts';
import { Cfg, CommandBit } from '../../src/pci/config-space.ts';
import { TESTDEV_ID_VALUE, TestReg, TestStatus } from '../../src/devices/testdev/testdev.ts';
import { SwitchControl } from '../../src/fabric/switch/control.ts';
import { startSwitch } from '../../src/fabric/switch/switch-process.ts';
import { IrqSetFlag, PciIrq, PciRegion } from '../../src/vfio-user/protocol.ts';
import { VfioUserClient, waitEventfd } from '../../src/vfio-user/client.ts';
import { until } from '../support/until.ts';
import { u64le } from '../vfio-user/helpers.ts';
import { startProcess, waitForSocket } from './lab-process.ts';

const HI_MACS = ['02:00:00:00:01:00', '02:00:00:00:01:01'];
const DI_MACS = ['02:00:00:00:0d:00', '02:00:00:00:0d:01'];

export type ProcessRig = Awaited<ReturnType<typeof processRig>>;

export async function processRig(t: ExecutionContext, completionTimeoutMs = 2000) {
  const root = mkdtempSync(join(tmpdir(), 'pcieoe-restart-'));
  const hiDir = join(root, 'hi');
  const diDir = join(root, 'di');
  const swOpts = {
    dir: join(root, 'sw'),
    ports: ['hi0', 'hi1', 'di0', 'di1'],
    args: ['hi0', 'hi1', 'di0', 'di1'].flatMap((p) => ['--peer', `${p}=${join(root, p.slice(0, 2), `link${p[2]}.sock`)}`]),
  };
  let sw = await startSwitch(swOpts);
  const diArgs = [
    ...DI_MACS.flatMap((m, i) => ['--link', `${m}@${sw.portPath(`di${i}`)}`]),
    '--channel', `1=${HI_MACS.join(',')}`,
    '--function', 'fn0=testdev',
    '--assign', 'fn0=channel:1,bdf:01:00.0',
  ];
  let di = startProcess('src/di/main.ts', diDir, diArgs);
  const hi = startProcess('src/hi/main.ts', hiDir, [
    ...HI_MACS.flatMap((m, i) => ['--link', `${m}@${sw.portPath(`hi${i}`)}`]),
    '--channel', `1=${DI_MACS.join(',')}`,
    '--eep', 'eep0=channel:1,bdf:01:00.0',
    '--completion-timeout', String(completionTimeoutMs),
  ]);
  const clients: VfioUserClient[] = [];
  const controls: SwitchControl[] = [];
  t.teardown(async () => {
    for (const c of [...clients, ...controls]) c.close();
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
  const size = 1 << 20;
  const memfd = native.memfdCreate('guest-ram', size);
  const ram = new Uint8Array(native.mmap(memfd, 0, size, true));
  const efd = native.eventfd();
  t.teardown(() => {
    native.close(efd);
    native.close(memfd);
    native.munmap(ram.buffer as ArrayBuffer);
  });
  const iova = 0x2000_0000;
  await c.dmaMap(iova, size, { fd: memfd });
  await c.setIrqs({ flags: IrqSetFlag.DataEventfd | IrqSetFlag.ActionTrigger, index: PciIrq.Msix, start: 0, count: 1 }, [efd]);

  return {
    c,
    hi,
    get di() {
      return di;
    },
    /** The guest driver's part: bus master on, then one DMA copy of `n` bytes to `dst` in guest RAM, done when its MSI-X arrives. */
    async dmaCopy(n: number, seed: number, dst = 0x8_0000) {
      await c.write32(PciRegion.Config, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);
      const data = Uint8Array.from({ length: n }, (_, i) => (i * 13 + seed) & 0xff);
      ram.set(data, 0);
      await c.regionWrite(0, TestReg.DmaSrc, u64le(iova));
      await c.regionWrite(0, TestReg.DmaDst, u64le(iova + dst));
      await c.write32(0, TestReg.DmaLen, n);
      const irq = waitEventfd(efd, 10_000);
      await c.write32(0, TestReg.Doorbell, 1);
      await irq;
      t.deepEqual(ram.subarray(dst, dst + n), data);
      t.is(await c.read32(0, TestReg.Status), TestStatus.Done);
    },
    /**
     * Reads of the device's id run while `disrupt` kills and restarts a process; resolves once a read
     * answers again, having checked that every read ended with the value or all-ones, none hanging.
     */
    async readThrough(disrupt: () => Promise<void>): Promise<{ recoveryMs: number }> {
      let reading = true;
      const results: number[] = [];
      let slowest = 0;
      const reader = (async () => {
        while (reading) {
          const t0 = performance.now();
          results.push(await c.read32(0, TestReg.Id));
          slowest = Math.max(slowest, performance.now() - t0);
        }
      })();
      await until(() => results.length > 20, 'reads before the kill');
      await disrupt();
      const restartedAt = performance.now();
      const n = results.length;
      await until(() => results.length > n && results.at(-1) === TESTDEV_ID_VALUE, 'the device to answer again', { timeoutMs: 30_000 });
      const recoveryMs = performance.now() - restartedAt;
      reading = false;
      await reader;
      t.log(`device answering again ${Math.round(recoveryMs)} ms after the restart began (the DI: from its spawn; the switch: once its sockets were up); slowest read ${Math.round(slowest)} ms`);
      t.true(results.every((v) => v === TESTDEV_ID_VALUE || v === 0xffffffff), 'every read ended with the value or all-ones');
      t.true(slowest < completionTimeoutMs + 1500, `no read hung (slowest ${Math.round(slowest)} ms)`);
      return { recoveryMs };
    },
    async restartDi() {
      di.proc.kill('SIGKILL');
      await di.exited;
      di = startProcess('src/di/main.ts', diDir, diArgs);
    },
    async restartSwitch() {
      sw.proc.kill('SIGKILL');
      await new Promise((r) => sw.proc.once('exit', r));
      sw.control.close();
      // What a killed switch leaves: its socket files (the stations' sockets stay bound).
      for (const f of readdirSync(swOpts.dir)) rmSync(join(swOpts.dir, f));
      sw = await startSwitch(swOpts);
    },
    /** The HI's control-socket counters, as `lab status` reads them. */
    async hiStats(): Promise<{ channels: Record<string, { link: { peerRestarts: number; cutOffs: number } }> }> {
      const ctl = await SwitchControl.connect(join(hiDir, 'control.sock'));
      controls.push(ctl);
      return (await ctl.must({ stats: true } as never)) as never;
    },
  };
}

