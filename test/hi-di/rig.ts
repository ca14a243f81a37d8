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
import { TestDevice } from '../../src/devices/testdev/testdev.ts';
import { DeviceInterface } from '../../src/di/di.ts';
import { FabricNode } from '../../src/fabric/link/node.ts';
import { HostInterface } from '../../src/hi/hi.ts';
import type { RemoteFunction } from '../../src/hi/remote-function/index.ts';
import { TlpEndpoint } from '../../src/fabric/tlp/endpoint.ts';
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
  const tuning = { heartbeatInterval: 50 };

  // DI with the test device as fn0, two links.
  const di = new DeviceInterface({ clock, log });
  const diNode = new FabricNode([0, 1].map((i) => ({ station: station(`di${i}`), mac: diMac(i) })), clock, null, tuning);
  const dev = new TestDevice();
  di.addFunction('fn0', dev);
  for (const [id, peers] of [[HOST_CHANNEL, [hiMac(0), hiMac(1)]], [ROGUE_CHANNEL, [rogueMac]]] as const) {
    const ch = diNode.addChannel(id, peers, (p) => di.receive(id, p));
    di.addChannel(id, (tlp) => ch.send(tlp));
  }
  di.assign('fn0', HOST_CHANNEL, FN0_BDF);

  // HI, two links.
  const hi = new HostInterface({ clock, log, completionTimeoutMs: opts.completionTimeoutMs });
  const hiNode = new FabricNode([0, 1].map((i) => ({ station: station(`hi${i}`, hiPorts), mac: hiMac(i) })), clock, null, tuning);
  const hiCh = hiNode.addChannel(HOST_CHANNEL, [diMac(0), diMac(1)], (p) => hi.receive(HOST_CHANNEL, p));
  hi.addChannel(HOST_CHANNEL, (tlp) => hiCh.send(tlp));

  // The rogue host: a bare endpoint on its own channel.
  const rogueNode = new FabricNode([{ station: station('rogue'), mac: rogueMac }], clock, null, tuning);
  let rogue!: TlpEndpoint;
  const rogueCh = rogueNode.addChannel(ROGUE_CHANNEL, [diMac(0)], (p) => rogue.receive(p));
  rogue = new TlpEndpoint({ send: (tlp) => rogueCh.send(tlp), onRequest: () => {}, clock, completionTimeoutMs: 500 });

  const clients: VfioUserClient[] = [];
  let server: VfioUserServer | undefined;
  t.teardown(() => {
    for (const c of clients) c.close();
    server?.close();
    hi.close();
    di.close();
    rogue.close();
    for (const n of [hiNode, diNode, rogueNode]) n.close();
    sw.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const eep = await hi.addEep('eep0', HOST_CHANNEL, FN0_BDF);
  server = hi.serve(eep, join(dir, 'eep0.sock'));
  return {
    dev, hi, di, eep, server, hiPorts, rogue, logs,
    rogueRaw: (bytes) => rogueCh.send(bytes),
    async client() {
      const c = new VfioUserClient(server!.path);
      clients.push(c);
      await c.version();
      return c;
    },
  };
}
