// HI process entry: one per host VM.
//
//   LAB_SOCKET_DIR=DIR node --import tsx src/hi/main.ts \
//     --link MAC@SWITCH_PORT_SOCKET [--link ...]     link i binds DIR/link<i>.sock (give it to the switch as the port's peer)
//     --channel ID=DIMAC[,DIMAC]                     a DI: its MAC on each of its links, in link order
//     [--eep NAME=channel:ID,bdf:BB:DD.F ...]        a remote function, served to QEMU at DIR/NAME.sock
//                                                    (more are mapped and unmapped live: hotplug-control.ts)
//     [--vlan VID] [--completion-timeout MS]         default untagged, 2000 ms
//     [--slots N] [--surprise-removal request|report]   hot-plug slots (eep<s> serves slot s; default 2); on a
//                                                    surprise removal of a hot-plugged EEP send the host the vfio
//                                                    device request (REQ; the default), or only show it in the slot
//
// The HI answers the manager's discovery on the switch (src/fabric/management-responder.ts):
// Announce, its SlotReport, heartbeats. A DI silent past 3 s (unreachable after 1 s, then 2 s of
// grace) shows in its slots as a surprise removal (slots.ts); {"slots":true} on the control
// socket shows each slot's status bits.
//
// DIR/hictl.sock: the HI's control endpoint for the guest (lspci 1234:4849; BAR0 = status and mapping
// table as text, see control-endpoint.ts). DIR/control.sock: counters and forged TLPs for isolation tests (see control.ts), CPU profiles
// ({"profile":"start"}, {"profile":"stop","file":"x.cpuprofile"}: written into DIR).
//
// Each EEP is enumerated over the fabric before its socket appears (so the
// lab, which waits for the socket, starts QEMU only once the remote function
// answers); a DI that is not up yet is retried until --wait-ms (default 60 s).
// The process never exits on a fabric problem: QEMU's vfio-user client never
// reconnects, so the HI must outlive any DI. SIGTERM/SIGINT: sockets closed, exit 0.
import { parseCommandLine, usageError } from '../common/command-line.ts';
import { join } from 'node:path';
import { realClock } from '../fabric/clock.ts';
import { VfioUserServer } from '../vfio-user/server.ts';
import { processLogger } from '../common/logger.ts';
import { formatBdf, formatPciId, parseBdf } from '../pci/bdf.ts';
import { type OpenStation, STATION_ARGS, STATION_USAGE, openStation, parseKeyValues } from '../fabric/station.ts';
import { cpuProfileControl, serveLineControl } from '../common/control-socket.ts';
import { HiControlEndpoint } from './control-endpoint.ts';
import { hiControl } from './control.ts';
import { HI_COMPLETION_TIMEOUT_MS, HostInterface } from './hi.ts';
import { hotplugControl, type ServedEeps } from './hotplug-control.ts';
import { HiSlots } from './slots.ts';
import { ManagementResponder } from '../fabric/management-responder.ts';
import { StationRole } from '../fabric/wire/management.ts';
import { basename } from 'node:path';

const log = processLogger('hi');

const COMMAND_LINE = { name: 'hi', usage: `usage: main.ts ${STATION_USAGE} --eep NAME=channel:ID,bdf:BB:DD.F... [--completion-timeout MS] [--wait-ms MS]` };

function usage(message: string): never {
  return usageError(COMMAND_LINE, message);
}

async function main(): Promise<void> {
  const { values } = parseCommandLine(COMMAND_LINE, {
    ...STATION_ARGS,
    eep: { type: 'string', multiple: true, default: [] },
    'completion-timeout': { type: 'string' },
    'wait-ms': { type: 'string' },
    slots: { type: 'string' },
    'surprise-removal': { type: 'string' },
  });
  let eeps, station!: OpenStation;
  try {
    eeps = values.eep.map((spec) => {
      const eq = spec.indexOf('=');
      if (eq <= 0) throw new Error(`--eep ${spec}: expected NAME=channel:ID,bdf:BB:DD.F`);
      const kv = parseKeyValues(spec.slice(eq + 1));
      const name = spec.slice(0, eq);
      if (!/^[a-z0-9][a-z0-9-]{0,63}$/.test(name) || name === 'control' || name === 'hictl') throw new Error(`--eep ${spec}: bad name`);
      return { name, channel: Number(kv.get('channel')), bdf: parseBdf(kv.get('bdf') ?? '') };
    });
    const completionTimeoutMs = values['completion-timeout'] ? Number(values['completion-timeout']) : HI_COMPLETION_TIMEOUT_MS;
    station = openStation(values, { clock: realClock, completionTimeoutMs, peerName: 'DI', log });
  } catch (err) {
    usage((err as Error).message);
  }
  const { dir, ports } = station;
  for (const e of eeps) if (!ports.some((p) => p.id === e.channel)) usage(`EEP ${e.name}: no --channel ${e.channel}`);
  const waitMs = Number(values['wait-ms'] ?? 60_000);
  const slotCount = Number(values.slots ?? 2);
  if (!Number.isInteger(slotCount) || slotCount < 0 || slotCount > 31) usage(`--slots ${values.slots}: a number of slots, 0 to 31`);
  const surprise = values['surprise-removal'] ?? 'request';
  if (surprise !== 'request' && surprise !== 'report') usage(`--surprise-removal ${surprise}: "request" or "report"`);

  const hi = new HostInterface({ ports, log });
  // Every EEP served, from --eep or hot-plugged later through the control socket.
  const hot: ServedEeps = { eeps: new Map() };
  const served = () => [...hot.eeps.values()].map((x) => x.eep);
  const hiCtl = hiControl(hi, served, ports);
  const slots = new HiSlots({ clock: realClock, count: slotCount, ports, served: () => hot.eeps, request: surprise === 'request', hotplugged: (eep) => !eeps.some((e) => e.name === eep), log });
  // The lab names a process's socket directory after it: that is the name the manager knows it by.
  const responder = new ManagementResponder({ node: station.node, clock: realClock, role: StationRole.Hi, name: basename(dir), count: slotCount, report: () => slots.report() });
  // The control endpoint the guest can see (lspci, BAR0 text), served at DIR/hictl.sock from the start.
  const controlEp = new HiControlEndpoint(() =>
    [
      'PCIeOE HI 1',
      ...ports.map(({ id, channel: ch }) => `channel ${id} peer ${ch.isPeerAlive ? 'reachable' : 'unreachable'} links ${ch.linkStates.map((u) => (u ? 'up' : 'down')).join(',')}`),
      ...served().map(
        (e) =>
          `eep ${e.name} channel ${hot.eeps.get(e.name)?.channel} remote ${formatBdf(e.remoteBdf)} id ${formatPciId(e.layout.vendorId, e.layout.deviceId)} msix ${e.stats.msix} dma-errors ${e.stats.dmaErrors} mmio-read-failures ${e.stats.mmioReadFailures}`,
      ),
      ...eeps.filter((e) => !hot.eeps.has(e.name)).map((e) => `eep ${e.name} channel ${e.channel} remote ${formatBdf(e.bdf)} not served`),
      ...slots.view().map((v) => `slot ${v.slot} ${v.eep} ${v.present ? 'present' : 'REMOVED (DI silent)'} slot-status 0x${v.slotStatus.toString(16).padStart(4, '0')} link-status 0x${v.linkStatus.toString(16).padStart(4, '0')}`),
      '',
    ].join('\n'),
  );
  const profiler = cpuProfileControl(dir);
  const hotplug = hotplugControl(hi, dir, hot);
  const control = await serveLineControl(join(dir, 'control.sock'), (req) => profiler(req) ?? slots.control(req) ?? hotplug(req) ?? hiCtl(req));
  const servers: VfioUserServer[] = [new VfioUserServer({ path: join(dir, 'hictl.sock'), device: controlEp, name: 'hictl', log }).listen()];
  const shutdown = (signal: string) => {
    log('info', `${signal}: closing`);
    control.close();
    for (const s of servers) s.close();
    for (const x of hot.eeps.values()) x.server.close();
    responder.close();
    slots.close();
    hi.close();
    station.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  for (const e of eeps) {
    const deadline = Date.now() + waitMs;
    for (;;) {
      try {
        const eep = await hi.addEep(e.name, e.channel, e.bdf);
        hot.eeps.set(e.name, { eep, channel: e.channel, server: hi.serve(eep, join(dir, `${e.name}.sock`)) });
        break;
      } catch (err) {
        if (Date.now() > deadline) {
          log('error', `${e.name}: giving up: ${(err as Error).message}`);
          break;
        }
        log('info', `${e.name}: remote function not answering yet (${(err as Error).message}); retrying`);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }
  log('info', `hi pid ${process.pid}: ${hot.eeps.size}/${eeps.length} EEP(s) served, control endpoint at hictl.sock`);
}

process.on('uncaughtException', (err) => log('error', `uncaught: ${err.stack ?? err}`));
process.on('unhandledRejection', (err) => log('error', `unhandled rejection: ${(err as Error)?.stack ?? err}`));
await main();
