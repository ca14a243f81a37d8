// HI process entry: one per host VM.
//
//   LAB_SOCKET_DIR=DIR node --import tsx src/hi/main.ts \
//     --link MAC@SWITCH_PORT_SOCKET [--link ...]     link i binds DIR/link<i>.sock (give it to the switch as the port's peer)
//     --channel ID=DIMAC[,DIMAC]                     a DI: its MAC on each of its links, in link order
//     --eep NAME=channel:ID,bdf:BB:DD.F              a remote function, served to QEMU at DIR/NAME.sock
//     [--vlan VID] [--completion-timeout MS]         default untagged, 2000 ms
//
// DIR/hictl.sock: the HI's control endpoint for the guest (lspci 1234:4849; BAR0 = status and mapping
// table as text, see control-endpoint.ts). DIR/control.sock: counters and forged TLPs for isolation tests (see control.ts), CPU profiles
// ({"profile":"start"}, {"profile":"stop","file":"/abs/x.cpuprofile"}).
//
// Each EEP is enumerated over the fabric before its socket appears (so the
// lab, which waits for the socket, starts QEMU only once the remote function
// answers); a DI that is not up yet is retried until --wait-ms (default 60 s).
// The process never exits on a fabric problem: QEMU's vfio-user client never
// reconnects, so the HI must outlive any DI. SIGTERM/SIGINT: sockets closed, exit 0.
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { realClock } from '../fabric/clock.ts';
import { VfioUserServer } from '../vfio-user/server.ts';
import { processLogger } from '../common/logger.ts';
import { formatBdf, parseBdf } from '../pci/bdf.ts';
import { openUnixNode, parseChannelSpec, parseKeyValues, parseLinkSpec } from '../fabric/link/node.ts';
import { cpuProfileControl, serveLineControl } from '../common/control-socket.ts';
import type { Channel } from '../fabric/link/channel.ts';
import { HiControlEndpoint } from './control-endpoint.ts';
import { hiControl } from './control.ts';
import { HostInterface } from './hi.ts';
import type { RemoteFunction } from './remote-function/index.ts';

/**
 * Heartbeat every 100 ms, a link dead after 350 ms of silence: the link
 * layer's 10 ms default flaps under TCG, where QEMU starves the lab's
 * processes of CPU for tens of ms (seen in the one-host-one-card lab).
 */
const LINK_TUNING = { heartbeatInterval: 100, nakDelay: 3 };

const log = processLogger('hi');

function usage(message: string): never {
  console.error(`hi: ${message}\nusage: main.ts --link MAC@SOCK... --channel ID=MAC[,MAC]... --eep NAME=channel:ID,bdf:BB:DD.F... [--vlan VID] [--completion-timeout MS] [--wait-ms MS]`);
  process.exit(2);
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        link: { type: 'string', multiple: true, default: [] },
        channel: { type: 'string', multiple: true, default: [] },
        eep: { type: 'string', multiple: true, default: [] },
        vlan: { type: 'string' },
        'completion-timeout': { type: 'string' },
        'wait-ms': { type: 'string' },
        'socket-dir': { type: 'string' },
      },
    }));
  } catch (err) {
    usage((err as Error).message);
  }
  const dir = values['socket-dir'] ?? process.env.LAB_SOCKET_DIR;
  if (!dir) usage('no socket directory: pass --socket-dir or set LAB_SOCKET_DIR');
  let links, channels, eeps;
  try {
    links = values.link.map(parseLinkSpec);
    channels = values.channel.map(parseChannelSpec);
    eeps = values.eep.map((spec) => {
      const eq = spec.indexOf('=');
      if (eq <= 0) throw new Error(`--eep ${spec}: expected NAME=channel:ID,bdf:BB:DD.F`);
      const kv = parseKeyValues(spec.slice(eq + 1));
      const name = spec.slice(0, eq);
      if (!/^[a-z0-9][a-z0-9-]{0,63}$/.test(name) || name === 'control' || name === 'hictl') throw new Error(`--eep ${spec}: bad name`);
      return { name, channel: Number(kv.get('channel')), bdf: parseBdf(kv.get('bdf') ?? '') };
    });
  } catch (err) {
    usage((err as Error).message);
  }
  if (links.length === 0 || channels.length === 0 || eeps.length === 0) usage('need at least one --link, --channel and --eep');
  for (const e of eeps) if (!channels.some((c) => c.id === e.channel)) usage(`EEP ${e.name}: no --channel ${e.channel}`);
  const vlan = values.vlan === undefined ? null : { pcp: 5, dei: false, vid: Number(values.vlan) };
  const waitMs = Number(values['wait-ms'] ?? 60_000);

  const clock = realClock;
  const hi = new HostInterface({ clock, log, completionTimeoutMs: values['completion-timeout'] ? Number(values['completion-timeout']) : undefined });
  const { node, ports } = openUnixNode(links, dir, clock, vlan, LINK_TUNING);
  const chans = new Map<number, Channel>();
  for (const c of channels) {
    const ch = node.addChannel(c.id, c.peerMacs, (p) => hi.receive(c.id, p), {
      onPeerState: (alive) => {
        log(alive ? 'info' : 'warn', `channel ${c.id}: DI ${alive ? 'reachable' : 'unreachable (all links silent)'}`);
        hi.endpoint(c.id)?.setPeerAlive(alive);
      },
    });
    hi.addChannel(c.id, (tlp) => ch.send(tlp));
    chans.set(c.id, ch);
  }
  const served: RemoteFunction[] = [];
  const hiCtl = hiControl(hi, () => served, chans);
  // The control endpoint the guest can see (lspci, BAR0 text), served at DIR/hictl.sock from the start.
  const eepChannel = new Map(eeps.map((e) => [e.name, e.channel]));
  const controlEp = new HiControlEndpoint(() =>
    [
      'PCIeOE HI 1',
      ...[...chans].map(([id, ch]) => `channel ${id} peer ${ch.isPeerAlive ? 'reachable' : 'unreachable'} links ${ch.linkStates.map((u) => (u ? 'up' : 'down')).join(',')}`),
      ...served.map(
        (e) =>
          `eep ${e.name} channel ${eepChannel.get(e.name)} remote ${formatBdf(e.remoteBdf)} id ${e.layout.vendorId.toString(16).padStart(4, '0')}:${e.layout.deviceId.toString(16).padStart(4, '0')} msix ${e.stats.msix} dma-errors ${e.stats.dmaErrors} mmio-read-failures ${e.stats.mmioReadFailures}`,
      ),
      ...eeps.filter((e) => !served.some((s) => s.name === e.name)).map((e) => `eep ${e.name} channel ${e.channel} remote ${formatBdf(e.bdf)} not served`),
      '',
    ].join('\n'),
  );
  const profiler = cpuProfileControl();
  const control = await serveLineControl(join(dir, 'control.sock'), (req) => profiler(req) ?? hiCtl(req));
  const servers: VfioUserServer[] = [new VfioUserServer({ path: join(dir, 'hictl.sock'), device: controlEp, name: 'hictl', log }).listen()];
  const shutdown = (signal: string) => {
    log('info', `${signal}: closing`);
    control.close();
    for (const s of servers) s.close();
    hi.close();
    node.close();
    for (const p of ports) p.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  for (const e of eeps) {
    const deadline = Date.now() + waitMs;
    for (;;) {
      try {
        const eep = await hi.addEep(e.name, e.channel, e.bdf);
        servers.push(hi.serve(eep, join(dir, `${e.name}.sock`)));
        served.push(eep);
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
  log('info', `hi pid ${process.pid}: ${served.length}/${eeps.length} EEP(s) served, control endpoint at hictl.sock`);
}

process.on('uncaughtException', (err) => log('error', `uncaught: ${err.stack ?? err}`));
process.on('unhandledRejection', (err) => log('error', `unhandled rejection: ${(err as Error)?.stack ?? err}`));
await main();
