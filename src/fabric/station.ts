/**
 * A PCIeOE station process's attachment to the lab switch, built from its
 * command line: the options the HI and DI entries share (--link, --channel,
 * --vlan, --socket-dir), parsed once here, give a FabricNode on unix datagram
 * links and one PcieoePort per channel.
 */

import { join } from 'node:path';
import { BatchedTimers } from './batched-timers.ts';
import type { Clock } from './clock.ts';
import { type ChannelTuning, FabricNode, stationOf } from './link/node.ts';
import { PcieoePort, type PortLog } from './pcieoe-port.ts';
import type { VlanTag } from './wire/frame.ts';
import { type Mac, parseMac } from './wire/mac.ts';
import { MemifPort } from './wire/memif/port.ts';
import { memifPollUs } from './wire/memif/reply-poll.ts';
import { UnixDgramPort } from './wire/unix-dgram-port.ts';

/** The options every station takes, for util.parseArgs (spread into the entry's own). */
export const STATION_ARGS = {
  link: { type: 'string', multiple: true, default: [] as string[] },
  channel: { type: 'string', multiple: true, default: [] as string[] },
  vlan: { type: 'string' },
  'socket-dir': { type: 'string' },
  'memif-poll-us': { type: 'string' },
} as const;

export const STATION_USAGE = '--link MAC@SOCK... --channel ID=MAC[,MAC]... [--vlan VID] [--socket-dir DIR] [--memif-poll-us US]';

export interface StationArgs {
  link: string[];
  channel: string[];
  vlan?: string;
  'socket-dir'?: string;
  /** Each memif link's poll window after a send (wire/memif/reply-poll.ts); PCIEOE_MEMIF_POLL_US overrides it. */
  'memif-poll-us'?: string;
}

/**
 * Heartbeat every 100 ms, a link dead after 350 ms of silence: the link
 * layer's 10 ms default flaps under TCG, where QEMU starves the lab's
 * processes of CPU for tens of ms (seen in the one-host-one-card lab). The
 * peer counts as gone after 1 s of silence on every link: a DI or switch
 * starved for several hundred ms (a TCG guest and a test runner on two
 * cores) must not have its requests in flight failed at once, which the
 * completion timeouts (HI 2 s, DI 5 s) would have ridden out.
 */
const STATION_LINK_TUNING: ChannelTuning = { heartbeatInterval: 100, peerDeadInterval: 1000, nakDelay: 3 };

export interface StationOptions {
  clock: Clock;
  /** Completion timeout of this station's non-posted requests, ms. */
  completionTimeoutMs: number;
  /** What is at the far end of every channel, in log lines ("DI", "host"). */
  peerName: string;
  log: PortLog;
}

export interface OpenStation {
  /** The socket directory: link i binds `<dir>/link<i>.sock`. */
  dir: string;
  node: FabricNode;
  /** One per --channel, in command-line order. */
  ports: PcieoePort[];
  /** Ports, node and link sockets. */
  close(): void;
}

/**
 * Parse the station options and open the node and its ports. Link i is a
 * unix datagram socket bound at `<dir>/link<i>.sock` sending to its switch
 * port (the switch must be given that path as the port's peer). Throws an
 * Error naming the bad option.
 */
export function openStation(args: StationArgs, o: StationOptions): OpenStation {
  const dir = args['socket-dir'] ?? process.env.LAB_SOCKET_DIR;
  if (!dir) throw new Error('no socket directory: pass --socket-dir or set LAB_SOCKET_DIR');
  const links = args.link.map(parseLinkSpec);
  const channels = args.channel.map(parseChannelSpec);
  if (links.length === 0 || channels.length === 0) throw new Error('need at least one --link and --channel');
  const vlan: VlanTag | null = args.vlan === undefined ? null : { pcp: 5, dei: false, vid: Number(args.vlan) };
  const pollUs = memifPollUs(args['memif-poll-us']);
  const sockets = links.map((l, i) => openLinkPort(l, dir, i, pollUs));
  // The link layer and the TLP endpoints arm and clear timers per frame: on one timer of o.clock (batched-timers.ts).
  const clock = new BatchedTimers(o.clock);
  const node = new FabricNode(links.map((l, i) => ({ station: stationOf(sockets[i]!), mac: l.mac })), clock, vlan, STATION_LINK_TUNING);
  const ports = channels.map(
    (c) => new PcieoePort(node, { id: c.id, peerMacs: c.peerMacs, completionTimeoutMs: o.completionTimeoutMs, peerName: o.peerName, log: o.log }),
  );
  return {
    dir,
    node,
    ports,
    close() {
      for (const p of ports) p.close();
      node.close();
      for (const s of sockets) s.close();
    },
  };
}

export interface LinkSpec {
  mac: Mac;
  /**
   * What the link is cabled to: a switch port's unix datagram socket, `memif:PATH` (the switch
   * port's memif control socket, this end the client) or `memif-serve:PATH` (a back-to-back cable
   * to another station's `memif:PATH` link, this end serving the control socket).
   */
  switchPort: string;
}

/** A link whose switch port is `memif:PATH` connects to that memif control socket as client (wire/memif/). */
const MEMIF_LINK = 'memif:';
/** `memif-serve:PATH`: this station serves the memif control socket, for a peer station cabled back to back. */
const MEMIF_SERVE_LINK = 'memif-serve:';

/**
 * Link `index`'s transport: a memif client of the switch port's control socket, a memif server
 * for a back-to-back cable, or a unix datagram socket bound at `<dir>/link<index>.sock` sending
 * to the switch port's socket. A memif link polls `pollUs` for a reply after each send (0: never).
 */
export function openLinkPort(link: LinkSpec, dir: string, index: number, pollUs = 0): MemifPort | UnixDgramPort {
  const name = `pcieoe-link${index}`;
  if (link.switchPort.startsWith(MEMIF_LINK)) return new MemifPort({ socket: link.switchPort.slice(MEMIF_LINK.length), role: 'client', name, pollUs });
  // A station checks every frame's CRC, whichever end of the cable it serves (a switch's server end leaves that to the station).
  if (link.switchPort.startsWith(MEMIF_SERVE_LINK)) return new MemifPort({ socket: link.switchPort.slice(MEMIF_SERVE_LINK.length), role: 'server', name, checkCrc: true, pollUs });
  return new UnixDgramPort({ path: join(dir, `link${index}.sock`), peer: link.switchPort });
}

/**
 * `--link MAC@SWITCH_PORT_SOCKET`, e.g. `02:00:00:00:01:00@/run/lab/sockets/sw/hi0.sock`,
 * `MAC@memif:/run/lab/sockets/sw/hi0.memif` for a memif port, or `MAC@memif-serve:PATH` for a
 * back-to-back memif cable whose other end is a station's `MAC@memif:PATH`.
 */
export function parseLinkSpec(spec: string): LinkSpec {
  const at = spec.indexOf('@');
  if (at < 0) throw new Error(`--link ${spec}: expected MAC@SWITCH_PORT_SOCKET`);
  return { mac: parseMac(spec.slice(0, at)), switchPort: spec.slice(at + 1) };
}

/** `--channel ID=PEERMAC[,PEERMAC]`: the peer's MAC on each of its links, in link order. */
export function parseChannelSpec(spec: string): { id: number; peerMacs: Mac[] } {
  const m = /^(\d+)=(.+)$/.exec(spec);
  if (!m) throw new Error(`--channel ${spec}: expected ID=PEERMAC[,PEERMAC]`);
  const id = Number(m[1]);
  if (id < 0 || id > 0xffff) throw new Error(`--channel ${spec}: id must be 0-65535`);
  return { id, peerMacs: m[2]!.split(',').map(parseMac) };
}

/** `key:value,key:value` (values may contain ':' after the first one); the HI's --eep and the DI's --function and --assign. */
export function parseKeyValues(spec: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of spec.split(',')) {
    const c = part.indexOf(':');
    if (c <= 0) throw new Error(`"${spec}": expected key:value[,key:value]`);
    out.set(part.slice(0, c), part.slice(c + 1));
  }
  return out;
}
