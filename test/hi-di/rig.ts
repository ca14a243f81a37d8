// The whole PCIeOE path in one process, minus QEMU: vfio-user test client →
// HI (real unix socket) → link-layer channel over an in-process switch (two
// links per side, faults injectable) → DI → TestDevice. A third station, the
// "rogue host", has its own channel to the DI for isolation tests.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { realClock } from '../../src/fabric/clock.ts';
import { FaultyPort } from '../../src/fabric/wire/faults.ts';
import { inProcessPort, type Station } from '../../src/fabric/wire/port.ts';
import { seededRng } from '../../src/fabric/rng.ts';
import { EthernetSwitch } from '../../src/fabric/switch/switch.ts';
import { bdf } from '../../src/pci/bdf.ts';
import { TestDevice, type TestDeviceOptions } from '../../src/devices/testdev/testdev.ts';
import { DI_COMPLETION_TIMEOUT_MS, DeviceInterface } from '../../src/di/di.ts';
import { FabricNode } from '../../src/fabric/link/node.ts';
import { HI_COMPLETION_TIMEOUT_MS, HostInterface } from '../../src/hi/hi.ts';
import type { RemoteFunction } from '../../src/hi/remote-function/index.ts';
import type { TlpEndpoint } from '../../src/fabric/tlp/endpoint.ts';
import { PcieoePort } from '../../src/fabric/pcieoe-port.ts';
import type { VfioUserServer } from '../../src/vfio-user/server.ts';
import type { Logger } from '../../src/common/logger.ts';
import { VfioUserClient } from '../../src/vfio-user/client.ts';

export const HOST_CHANNEL = 1;
export const ROGUE_CHANNEL = 2;
export const FN0_BDF = bdf(1, 0, 0);
const hiMac = (i: number) => 0x02_00_00_00_01_00 + i;
const diMac = (i: number) => 0x02_00_00_00_0d_00 + i;
const rogueMac = 0x02_00_00_00_0e_00;

export interface HiDiRig {
  dev: TestDevice;
  hi: HostInterface;
  di: DeviceInterface;
  eep: RemoteFunction;
  server: VfioUserServer;
  /** Fault injectors on the HI's two switch ports. */
  hiPorts: FaultyPort[];
  /** A raw TLP endpoint on the rogue host's channel to the DI. */
  rogue: TlpEndpoint;
  /** Raw bytes as a TLP on the rogue channel (for malformed input). */
  rogueRaw(bytes: Uint8Array): void;
  logs: string[];
  client(): Promise<VfioUserClient>;
}

export interface RigOptions {
  /** Loss probability on every HI port, both directions. */
  loss?: number;
  completionTimeoutMs?: number;
  /** The test device's options (default: none). */
  device?: TestDeviceOptions;
  /** How the HI offers the function (default: as a static EEP, neither). */
  eep?: { hideMsix?: boolean; carryIntx?: boolean };
}

export async function hiDiRig(t: ExecutionContext, opts: RigOptions = {}): Promise<HiDiRig> {
  const clock = realClock;
  const dir = mkdtempSync(join(tmpdir(), 'pcieoe-hidi-'));
  const logs: string[] = [];
  const log: Logger = (level, m) => logs.push(`${level}: ${m}`);
  const sw = new EthernetSwitch({ clock });
  const rng = seededRng(42);
  const hiPorts: FaultyPort[] = [];
  const station = (name: string, faulty?: FaultyPort[]): Station => {
    const { port, station } = inProcessPort(clock);
    if (faulty) {
      const f = new FaultyPort(port, clock, rng);
      if (opts.loss) f.set({ loss: opts.loss });
      faulty.push(f);
      sw.addPort(f, { mode: 'access', vid: 1 }, name);
    } else {
      sw.addPort(port, { mode: 'access', vid: 1 }, name);
    }
    return station;
  };
  // Ports fail reads at once while their peer is unreachable (all links silent), as in the processes. A loaded
  // test host stalls a process for hundreds of ms, so links count as dead only after 2 s here: no test of this
  // rig means to find the peer unreachable, and the completion timeout test must see the timeout itself.
  const tuning = { heartbeatInterval: 50, deadInterval: 2000 };

  // DI with the test device as fn0, two links.
  const diNode = new FabricNode([0, 1].map((i) => ({ station: station(`di${i}`), mac: diMac(i) })), clock, null, tuning);
  const diPorts = ([[HOST_CHANNEL, [hiMac(0), hiMac(1)]], [ROGUE_CHANNEL, [rogueMac]]] as const).map(
    ([id, peerMacs]) => new PcieoePort(diNode, { id, peerMacs, completionTimeoutMs: DI_COMPLETION_TIMEOUT_MS, peerName: 'host', log }),
  );
  const di = new DeviceInterface({ ports: diPorts, log });
  const dev = new TestDevice(opts.device);
  di.addFunction('fn0', dev);
  di.assign('fn0', HOST_CHANNEL, FN0_BDF);

  // HI, two links.
  const hiNode = new FabricNode([0, 1].map((i) => ({ station: station(`hi${i}`, hiPorts), mac: hiMac(i) })), clock, null, tuning);
  const completionTimeoutMs = opts.completionTimeoutMs ?? HI_COMPLETION_TIMEOUT_MS;
  const hi = new HostInterface({ ports: [new PcieoePort(hiNode, { id: HOST_CHANNEL, peerMacs: [diMac(0), diMac(1)], completionTimeoutMs, peerName: 'DI', log })], log });

  // The rogue host: a bare port on its own channel (it serves no requests).
  const rogueNode = new FabricNode([{ station: station('rogue'), mac: rogueMac }], clock, null, tuning);
  const roguePort = new PcieoePort(rogueNode, { id: ROGUE_CHANNEL, peerMacs: [diMac(0)], completionTimeoutMs: 500, peerName: 'DI' });
  const rogue = roguePort.endpoint;

  const clients: VfioUserClient[] = [];
  let server: VfioUserServer | undefined;
  t.teardown(() => {
    for (const c of clients) c.close();
    server?.close();
    hi.close();
    di.close();
    roguePort.close();
    for (const n of [hiNode, diNode, rogueNode]) n.close();
    sw.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const eep = await hi.addEep('eep0', HOST_CHANNEL, FN0_BDF, opts.eep);
  server = hi.serve(eep, join(dir, 'eep0.sock'));
  return {
    dev, hi, di, eep, server, hiPorts, rogue, logs,
    rogueRaw: (bytes) => roguePort.channel.send(bytes),
    async client() {
      const c = new VfioUserClient(server!.path);
      clients.push(c);
      await c.version();
      return c;
    },
  };
}
