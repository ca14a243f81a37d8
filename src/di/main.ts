// DI process entry: one per device box.
//
//   LAB_SOCKET_DIR=DIR node --import tsx src/di/main.ts \
//     --link MAC@SWITCH_PORT_SOCKET [--link ...]        link i binds DIR/link<i>.sock (the switch port's peer)
//     --channel ID=HIMAC[,HIMAC]                        a host (HI): its MAC on each of its links
//     --function NAME=testdev                           a function model to host
//     --function NAME=nvme:file:F,size:64M[,lba:512][,serial:S]
//     --function NAME=virtio-net:mac:M,wire:SWITCH_PORT_SOCKET[,mtu:1500]   its Ethernet wire binds DIR/NAME-wire.sock;
//                                                       its optional features as for a direct attach (VIRTIO_NET_*=0 turns one off)
//     --assign NAME=channel:ID,bdf:BB:DD.F              give NAME to that host, addressed as that BDF
//     [--vlan VID]
//
// DIR/control.sock answers {"stats":true} with the DI's counters and its NIC functions' and their wires' (line JSON);
// {"nic":NAME,"tune":{"eagerInterrupts":B,"rxPrefetch":B,"rxQuietEagerMs":MS|null}} changes a NIC's tunables while running; {"profile":"start"},
// {"profile":"stop","file":"x.cpuprofile"} record a CPU profile into DIR; {"map":...} and {"unmap":...}
// give a function to a host and take it back while running (assign-control.ts).
//
// The DI answers the manager's discovery on the switch (src/fabric/management-responder.ts):
// Announce, its FunctionReport (vendor, device, class and holder of each function), heartbeats.
//
// Relative NVMe files live in $LAB_DATA/<topology>. A DI may be killed and
// restarted (it holds no host state a host could not re-create);
// SIGTERM/SIGINT close sockets and files and exit 0.
import { mkdirSync } from 'node:fs';
import { z } from 'zod';
import { isAbsolute, join, resolve } from 'node:path';
import { parseCommandLine, usageError } from '../common/command-line.ts';
import { NvmeController } from '../devices/nvme/controller.ts';
import type { PciFunction } from '../pci/function.ts';
import { TestDevice } from '../devices/testdev/testdev.ts';
import { netOptionsFromEnv, type NetTunables, VirtioNet } from '../devices/virtio-net/net-device.ts';
import { UnixDgramPort } from '../fabric/wire/unix-dgram-port.ts';
import { realClock } from '../fabric/clock.ts';
import { type OpenStation, STATION_ARGS, STATION_USAGE, openStation, parseKeyValues } from '../fabric/station.ts';
import { parseBdf } from '../pci/bdf.ts';
import { cpuProfileControl, serveLineControl } from '../common/control-socket.ts';
import { DI_COMPLETION_TIMEOUT_MS, DeviceInterface } from './di.ts';
import { assignControl } from './assign-control.ts';
import { processLogger } from '../common/logger.ts';
import { ManagementResponder } from '../fabric/management-responder.ts';
import { StationRole } from '../fabric/wire/management.ts';
import { functionReport } from './report.ts';
import { basename } from 'node:path';

const log = processLogger('di');
const NAME = /^[a-z0-9][a-z0-9-]{0,63}$/;
const SIZE_UNITS: Record<string, number> = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30 };

const COMMAND_LINE = { name: 'di', usage: `usage: main.ts ${STATION_USAGE} --function NAME=testdev|nvme:file:F,size:S... --assign NAME=channel:ID,bdf:BB:DD.F...` };

function usage(message: string): never {
  return usageError(COMMAND_LINE, message);
}

function splitNamed(opt: string, spec: string): [string, string] {
  const eq = spec.indexOf('=');
  const name = spec.slice(0, eq);
  if (eq <= 0 || !NAME.test(name)) throw new Error(`--${opt} ${spec}: expected NAME=...`);
  return [name, spec.slice(eq + 1)];
}

/** A function model from its spec; nvme controllers must be opened before use, and what has `close` closed at exit. */
function makeFunction(name: string, spec: string, index: number, dataDir: string, socketDir: string): { fn: PciFunction; open?: () => Promise<void>; close?: () => Promise<void>; wire?: UnixDgramPort } {
  // With MSI as in direct attach (the same guest checks run against both).
  if (spec === 'testdev') return { fn: new TestDevice({ msi: true }) };
  if (spec.startsWith('nvme:')) {
    const kv = parseKeyValues(spec.slice(5));
    const file = kv.get('file');
    if (!file) throw new Error(`--function ${name}: nvme needs file:`);
    const size = kv.get('size') ?? '64M';
    if (!/^\d+[KMG]$/.test(size)) throw new Error(`--function ${name}: size like 64M`);
    const lba = Number(kv.get('lba') ?? 512);
    if (lba !== 512 && lba !== 4096) throw new Error(`--function ${name}: lba is 512 or 4096`);
    const path = isAbsolute(file) ? file : resolve(dataDir, file);
    mkdirSync(dataDir, { recursive: true });
    const ctrl = new NvmeController({
      serial: kv.get('serial') ?? `PCIEOE-DI-${name}`.slice(0, 20),
      cntlid: index + 1,
      namespaces: [{ path, size: Number(size.slice(0, -1)) * SIZE_UNITS[size.at(-1)!]!, lbaSize: lba }],
      log: (l, m) => log(l as 'info', `nvme ${name}: ${m}`),
    });
    return { fn: ctrl, open: () => ctrl.open() };
  }
  if (spec.startsWith('virtio-net:')) {
    // A NIC: its frames go to the lab switch on a port of their own, beside the PCIeOE links.
    const kv = parseKeyValues(spec.slice('virtio-net:'.length));
    const wire = kv.get('wire');
    const mac = kv.get('mac');
    if (!wire || !mac) throw new Error(`--function ${name}: virtio-net needs mac: and wire:`);
    const mtu = Number(kv.get('mtu') ?? 1500);
    const port = new UnixDgramPort({ path: join(socketDir, `${name}-wire.sock`), peer: wire, maxFrame: mtu + 18 });
    const nic = new VirtioNet({ mac, mtu, wire: port, log: (l, m) => log(l, `${name}: ${m}`), ...netOptionsFromEnv(process.env) });
    return { fn: nic, close: async () => port.close(), wire: port };
  }
  throw new Error(`--function ${name}=${spec}: unknown model (testdev, nvme:..., virtio-net:...)`);
}

const TuneRequest = z.strictObject({
  nic: z.string(),
  tune: z.strictObject({ eagerInterrupts: z.boolean().optional(), rxPrefetch: z.boolean().optional(), rxQuietEagerMs: z.number().nonnegative().nullable().optional() }),
});

/**
 * {"nic":NAME,"tune":{...}} sets what a NIC function lets change while running (NetTunables;
 * rxQuietEagerMs null: never; what is left out, as configured at start), so a benchmark compares
 * variants in one lab; undefined for any other request.
 */
function tuneNic(nics: ReadonlyMap<string, VirtioNet>, raw: unknown): Record<string, unknown> | undefined {
  if (typeof raw !== 'object' || raw === null || !('tune' in raw)) return undefined;
  const req = TuneRequest.parse(raw);
  const nic = nics.get(req.nic);
  if (!nic) throw new Error(`no NIC function ${req.nic}`);
  // What the request leaves out goes back to the start-up configuration, so each request states a whole variant.
  const { rxQuietEagerMs, ...flags } = req.tune;
  const start = netOptionsFromEnv(process.env);
  nic.tune({ rxPrefetch: start.rxPrefetch, eagerInterrupts: start.eagerInterrupts, ...flags, rxQuietEagerMs: rxQuietEagerMs === null ? Infinity : (rxQuietEagerMs ?? start.rxQuietEagerMs) });
  return { nic: req.nic };
}

async function main(): Promise<void> {
  const { values } = parseCommandLine(COMMAND_LINE, {
    ...STATION_ARGS,
    function: { type: 'string', multiple: true, default: [] },
    assign: { type: 'string', multiple: true, default: [] },
  });
  const dataDir = join(process.env.LAB_DATA ?? '/var/lib/pcieoe-lab', process.env.LAB_TOPOLOGY ?? 'di');
  let station!: OpenStation;
  let di!: DeviceInterface;
  /** The NIC functions, by name, and their wires: their counters go with the DI's. */
  const nics = new Map<string, VirtioNet>();
  const wires = new Map<string, UnixDgramPort>();
  /** NVMe namespaces to sync and close at SIGTERM/SIGINT. */
  const closeFiles: (() => Promise<void>)[] = [];
  try {
    if (values.function.length === 0) throw new Error('need at least one --function');
    station = openStation(values, { clock: realClock, completionTimeoutMs: DI_COMPLETION_TIMEOUT_MS, peerName: 'host', log });
    di = new DeviceInterface({ ports: station.ports, log });
    for (const [i, spec] of values.function.entries()) {
      const [name, model] = splitNamed('function', spec);
      const { fn, open, close, wire } = makeFunction(name, model, i, dataDir, station.dir);
      await open?.();
      if (fn instanceof NvmeController) closeFiles.push(() => fn.close());
      if (fn instanceof VirtioNet) nics.set(name, fn);
      if (wire) wires.set(name, wire);
      if (close) closeFiles.push(close);
      di.addFunction(name, fn);
    }
    for (const spec of values.assign) {
      const [name, rest] = splitNamed('assign', spec);
      const kv = parseKeyValues(rest);
      di.assign(name, Number(kv.get('channel')), parseBdf(kv.get('bdf') ?? ''));
    }
  } catch (err) {
    usage((err as Error).message);
  }
  // {"stats":true} → the DI's counters (rejected requests per kind) and each channel's TLP and link counters.
  const profiler = cpuProfileControl(station.dir);
  const assignment = assignControl(di);
  const names = values.function.map((spec) => splitNamed('function', spec)[0]);
  // The lab names a process's socket directory after it: that is the name the manager knows it by.
  const responder = new ManagementResponder({
    node: station.node, clock: realClock, role: StationRole.Di, name: basename(station.dir), count: names.length, report: () => functionReport(di, names),
  });
  // The handlers go in before the control socket appears: whoever waits for it may signal at once.
  let control: Awaited<ReturnType<typeof serveLineControl>> | undefined;
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return; // a second signal while the files close
    stopping = true;
    control?.close();
    log('info', `${signal}: closing; stats ${JSON.stringify(di.stats)}`);
    responder.close();
    di.close();
    station.close();
    void Promise.all(closeFiles.map((close) => close())).finally(() => process.exit(0));
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  control = await serveLineControl(join(station.dir, 'control.sock'), (req) => {
    const p = profiler(req) ?? assignment(req) ?? tuneNic(nics, req);
    if (p) return p;
    if (typeof req !== 'object' || req === null || (req as { stats?: unknown }).stats !== true) throw new Error('expected {"stats":true}');
    return {
      di: di.stats,
      nics: Object.fromEntries([...nics].map(([name, nic]) => [name, nic.counters])),
      wires: Object.fromEntries([...wires].map(([name, port]) => [name, port.counters])),
      channels: Object.fromEntries(station.ports.map((p) => [p.id, p.stats])),
    };
  });
  log('info', `di pid ${process.pid}: ${values.function.length} function(s), ${values.assign.length} assignment(s)`);
}

process.on('uncaughtException', (err) => log('error', `uncaught: ${err.stack ?? err}`));
process.on('unhandledRejection', (err) => log('error', `unhandled rejection: ${(err as Error)?.stack ?? err}`));
await main();
