// src/fabric/switch — the userspace Ethernet switch: this core, its process (main.ts), the
// control socket, busy polling, and switch-process.ts (the switch as a process, for tests and
// benchmarks). It may import src/common, src/fabric/{wire,link} and src/fabric's own files.

/**
 * Userspace Ethernet switch core: MAC learning with aging, 802.1Q VLANs
 * (access and trunk ports), flooding of broadcast, multicast and unknown
 * unicast within a VLAN, and per-port counters. It knows no transport: ports
 * are PortTransports (in-process, UDP, later unix datagram sockets).
 *
 * Port security, as managed switches have it: a secured port is bound to its
 * station's MAC(s), given or learned from the first frames and then locked.
 * A frame with any other source MAC is dropped and counted on that port, and
 * a bound MAC is its port's alone: no other port can claim it, so a station
 * cannot draw another station's traffic to itself by forging its address.
 * The MAC table is bounded (beyond it nothing more is learned and frames to
 * unknown stations flood, as on hardware) and aged on a timer.
 *
 * Frames pass through without a copy unless their tag must change on egress.
 */

import type { Clock, TimerHandle } from '../clock.ts';
import { LogLimiter } from '../../common/log-limiter.ts';
import { type Mac, formatMac, isMulticast, readMac } from '../wire/mac.ts';
import type { PortTransport } from '../wire/port.ts';

const TPID = 0x8100;

export type VlanMode =
  /** Untagged station in one VLAN; tagged frames are accepted only for that VLAN (or priority-tagged, VID 0). */
  | { mode: 'access'; vid: number }
  /** Tagged frames for the listed VLANs; untagged frames belong to `native`, if any, and leave untagged. */
  | { mode: 'trunk'; vids: readonly number[] | 'all'; native?: number };

export interface PortCounters {
  rxFrames: number;
  rxBytes: number;
  txFrames: number;
  txBytes: number;
  /** Runts and frames for a VLAN the port is not in. */
  rxDropped: number;
  /** Frames sent out of this port because the destination was unknown or multi-destination. */
  txFlooded: number;
  /** Frames whose source MAC this port may not use (port security), dropped. */
  rxSourceViolations: number;
}

/**
 * Which source MACs a port accepts. `macs`: exactly these (the station's
 * addresses, from the topology). `learn`: the first N unicast sources it sees
 * (that no other port owns), then no others.
 */
export type PortSecurity = { macs: readonly Mac[] } | { learn: number };

export interface TableStats {
  /** Addresses in the MAC table now, over all VLANs. */
  entries: number;
  max: number;
  /** Sources not learned because the table was full. */
  refused: number;
  /** Entries removed by aging. */
  aged: number;
}

interface Binding {
  readonly allowed: Set<Mac>;
  /** How many addresses the port may hold. */
  readonly limit: number;
}

interface Port {
  readonly id: number;
  readonly name: string;
  readonly transport: PortTransport;
  readonly vlan: VlanMode;
  readonly counters: PortCounters;
  /** Null: an open port (a trunk to another switch, a tunnel), which learns any source. */
  readonly binding: Binding | null;
}

interface MacEntry {
  port: number;
  seen: number;
}

/**
 * A way past this core for known unicast frames (memif-forward.ts: memif to memif in native
 * code). The core tells it each route it took with a frame left unchanged; the fast path may
 * then forward frames that match the route exactly until `until`, and keeps the counters and
 * "last seen" times of what it forwarded, which the core folds in when it reports and ages.
 */
export interface FastPath {
  /** Frames from port `from`, source `src`, to `dst`, tagged with VID `tag` (-1 untagged; VLAN `vid`) went to port `to` unchanged. */
  route(from: number, to: number, src: Mac, dst: Mac, tag: number, vid: number, until: number): void;
  /** Every source it forwarded frames from (VLAN, ingress port, MAC) and when it last did. */
  seen(visit: (vid: number, port: number, mac: Mac, at: number) => void): void;
  /** Forget every route: the table or a binding changed under them. */
  invalidate(): void;
  /** What it forwarded from and to port `id`, to add to the core's counters. */
  counters(id: number): Pick<PortCounters, 'rxFrames' | 'rxBytes' | 'txFrames' | 'txBytes'> | null;
}

export interface SwitchOptions {
  clock: Clock;
  /** Learned addresses are forgotten after this many ms. Default 300 000 (802.1D). */
  agingMs?: number;
  /** MAC table size over all VLANs. Default 4096. */
  maxMacs?: number;
  /** Port-security events (rate-limited: the counters carry the totals). */
  log?: (line: string) => void;
  fastPath?: FastPath;
}

export class EthernetSwitch {
  private readonly ports = new Map<number, Port>();
  /** VLAN → MAC → where it was last seen. */
  private readonly table = new Map<number, Map<Mac, MacEntry>>();
  /** Bound MAC → the secured port that owns it. */
  private readonly owners = new Map<Mac, number>();
  private nextId = 0;
  private readonly clock: Clock;
  private readonly agingMs: number;
  private readonly stats: TableStats;
  private agingTimer: TimerHandle | null = null;
  private readonly log: LogLimiter | null;
  private readonly fastPath: FastPath | null;
  private readonly refreshSeen = (vid: number, port: number, mac: Mac, at: number): void => {
    const e = this.table.get(vid)?.get(mac);
    if (e !== undefined && e.port === port && at > e.seen) e.seen = at;
  };

  constructor(options: SwitchOptions) {
    this.clock = options.clock;
    this.agingMs = options.agingMs ?? 300_000;
    this.stats = { entries: 0, max: options.maxMacs ?? 4096, refused: 0, aged: 0 };
    this.log = options.log ? new LogLimiter(options.log, { now: () => this.clock.now() }) : null;
    this.fastPath = options.fastPath ?? null;
  }

  /** The fast path's routes may be wrong now: take what it saw, then make it forget them. */
  private dropRoutes(): void {
    if (!this.fastPath) return;
    this.fastPath.seen(this.refreshSeen);
    this.fastPath.invalidate();
  }

  /** Without `security` the port is open: it learns any source. */
  addPort(transport: PortTransport, vlan: VlanMode = { mode: 'access', vid: 1 }, name?: string, security?: PortSecurity): number {
    const id = this.nextId++;
    const port: Port = {
      id,
      name: name ?? `port${id}`,
      transport,
      vlan,
      counters: { rxFrames: 0, rxBytes: 0, txFrames: 0, txBytes: 0, rxDropped: 0, txFlooded: 0, rxSourceViolations: 0 },
      binding: security ? this.bind(id, security) : null,
    };
    this.ports.set(id, port);
    transport.attach((frame) => this.ingress(port, frame));
    return id;
  }

  private bind(id: number, security: PortSecurity): Binding {
    if ('learn' in security) {
      if (!Number.isInteger(security.learn) || security.learn < 1) throw new RangeError(`port security: learn ${security.learn}, expected a count ≥ 1`);
      return { allowed: new Set(), limit: security.learn };
    }
    if (security.macs.length === 0) throw new RangeError('port security: no station MAC given');
    for (const mac of security.macs) {
      if (isMulticast(mac)) throw new RangeError(`port security: ${formatMac(mac)} is a group address, not a station's`);
      const owner = this.owners.get(mac);
      if (owner !== undefined) throw new RangeError(`port security: ${formatMac(mac)} is bound to ${this.ports.get(owner)?.name ?? `port ${owner}`} already`);
    }
    for (const mac of security.macs) this.owners.set(mac, id);
    return { allowed: new Set(security.macs), limit: security.macs.length };
  }

  removePort(id: number): void {
    const port = this.ports.get(id);
    if (!port) return;
    this.dropRoutes();
    this.ports.delete(id);
    port.transport.close();
    for (const mac of port.binding?.allowed ?? []) this.owners.delete(mac);
    for (const macs of this.table.values()) {
      for (const [mac, e] of macs) {
        if (e.port !== id) continue;
        macs.delete(mac);
        this.stats.entries--;
      }
    }
  }

  /** The source MACs port `id` is bound to (so far, for a learning port); undefined for an open port. */
  stations(id: number): Mac[] | undefined {
    const b = this.port(id).binding;
    return b ? [...b.allowed] : undefined;
  }

  get tableStats(): Readonly<TableStats> {
    return this.stats;
  }

  counters(id: number): Readonly<PortCounters> {
    const c = this.port(id).counters;
    const f = this.fastPath?.counters(id);
    return f ? { ...c, rxFrames: c.rxFrames + f.rxFrames, rxBytes: c.rxBytes + f.rxBytes, txFrames: c.txFrames + f.txFrames, txBytes: c.txBytes + f.txBytes } : c;
  }

  private port(id: number): Port {
    const port = this.ports.get(id);
    if (!port) throw new RangeError(`no port ${id}`);
    return port;
  }

  /** Where `mac` was learned in `vid`, if it is still fresh. */
  lookup(vid: number, mac: Mac): number | undefined {
    return this.find(vid, mac, this.clock.now());
  }

  private find(vid: number, mac: Mac, now: number): number | undefined {
    return this.entry(vid, mac, now)?.port;
  }

  /** The entry of `mac` in `vid` if it is fresh (frames the fast path forwarded from it count). */
  private entry(vid: number, mac: Mac, now: number): MacEntry | undefined {
    const e = this.table.get(vid)?.get(mac);
    if (e === undefined) return undefined;
    if (now - e.seen > this.agingMs) this.fastPath?.seen(this.refreshSeen);
    return now - e.seen <= this.agingMs ? e : undefined;
  }

  close(): void {
    if (this.agingTimer) this.clock.clearTimer(this.agingTimer);
    this.agingTimer = null;
    for (const id of [...this.ports.keys()]) this.removePort(id);
  }

  /** May `port` send with source `src`? Learns (and locks) the first sources of a learning port. */
  private admits(port: Port, src: Mac): boolean {
    const owner = this.owners.get(src);
    if (owner !== undefined) return owner === port.id;
    const b = port.binding;
    if (!b) return true;
    if (isMulticast(src) || b.allowed.size >= b.limit) return false;
    this.dropRoutes();
    b.allowed.add(src);
    this.owners.set(src, port.id);
    this.log?.line(() => `switch: ${port.name} locked to ${formatMac(src)}`);
    return true;
  }

  private learn(vid: number, src: Mac, port: number, now: number): void {
    let macs = this.table.get(vid);
    if (!macs) this.table.set(vid, (macs = new Map()));
    const e = macs.get(src);
    if (e) {
      if (e.port !== port) this.dropRoutes();
      e.port = port;
      e.seen = now;
      return;
    }
    if (this.stats.entries >= this.stats.max) {
      this.stats.refused++;
      return;
    }
    macs.set(src, { port, seen: now });
    this.stats.entries++;
    this.agingTimer ??= this.clock.setTimer(this.agingMs / 2, () => this.age());
  }

  /** Forget what was not seen for agingMs; runs every agingMs / 2 while the table holds anything. */
  private age(): void {
    this.agingTimer = null;
    const now = this.clock.now();
    this.fastPath?.seen(this.refreshSeen);
    for (const [vid, macs] of this.table) {
      for (const [mac, e] of macs) {
        if (now - e.seen <= this.agingMs) continue;
        this.dropRoutes();
        macs.delete(mac);
        this.stats.entries--;
        this.stats.aged++;
      }
      if (macs.size === 0) this.table.delete(vid);
    }
    if (this.stats.entries > 0) this.agingTimer = this.clock.setTimer(this.agingMs / 2, () => this.age());
  }

  private ingress(port: Port, frame: Buffer): void {
    const c = port.counters;
    c.rxFrames++;
    c.rxBytes += frame.length;
    if (frame.length < 14 || (frame.length < 18 && frame.readUInt16BE(12) === TPID)) {
      c.rxDropped++;
      return;
    }
    const src = readMac(frame, 6);
    if (!this.admits(port, src)) {
      c.rxSourceViolations++;
      this.log?.line(() => `switch: ${port.name} dropped a frame from ${formatMac(src)}, not its station (${c.rxSourceViolations} so far)`);
      return;
    }
    const tagged = frame.readUInt16BE(12) === TPID;
    const tagVid = tagged ? frame.readUInt16BE(14) & 0xfff : 0;
    const vid = classify(port.vlan, tagged, tagVid);
    if (vid === undefined) {
      c.rxDropped++;
      return;
    }
    // One clock read a frame serves learning and lookup alike.
    const now = this.clock.now();
    if (!isMulticast(src)) this.learn(vid, src, port.id, now);
    const dst = readMac(frame, 0);
    if (!isMulticast(dst)) {
      const e = this.entry(vid, dst, now);
      if (e !== undefined) {
        // Known unicast: to its port, or nowhere if the station is on the port it came from.
        if (e.port !== port.id && this.egress(this.ports.get(e.port)!, frame, tagged, tagVid, vid, false)) {
          this.fastPath?.route(port.id, e.port, src, dst, tagged ? tagVid : -1, vid, e.seen + this.agingMs);
        }
        return;
      }
    }
    for (const p of this.ports.values()) {
      if (p !== port && member(p.vlan, vid)) this.egress(p, frame, tagged, tagVid, vid, true);
    }
  }

  /** Returns whether the frame left as it came (no tag added, changed or removed). */
  private egress(port: Port, frame: Buffer, tagged: boolean, tagVid: number, vid: number, flooded: boolean): boolean {
    const wantTag = port.vlan.mode === 'trunk' && port.vlan.native !== vid;
    let out = frame;
    if (wantTag && !(tagged && tagVid === vid)) out = withTag(frame, tagged, vid);
    else if (!wantTag && tagged) out = withoutTag(frame);
    const c = port.counters;
    c.txFrames++;
    c.txBytes += out.length;
    if (flooded) c.txFlooded++;
    port.transport.transmit(out);
    return out === frame;
  }
}

/** The VLAN an ingress frame belongs to, or undefined when the port must drop it. */
function classify(v: VlanMode, tagged: boolean, tagVid: number): number | undefined {
  if (v.mode === 'access') return !tagged || tagVid === 0 || tagVid === v.vid ? v.vid : undefined;
  if (!tagged || tagVid === 0) return v.native;
  return v.vids === 'all' || v.vids.includes(tagVid) ? tagVid : undefined;
}

function member(v: VlanMode, vid: number): boolean {
  if (v.mode === 'access') return v.vid === vid;
  return v.native === vid || v.vids === 'all' || v.vids.includes(vid);
}

function withTag(frame: Buffer, tagged: boolean, vid: number): Buffer {
  // Keep the priority (and DEI) of a priority-tagged frame; untagged frames get PCP 0.
  const keep = tagged ? frame.readUInt16BE(14) & 0xf000 : 0;
  const rest = tagged ? 16 : 12;
  const out = Buffer.allocUnsafe(16 + frame.length - rest);
  frame.copy(out, 0, 0, 12);
  out.writeUInt16BE(TPID, 12);
  out.writeUInt16BE(keep | vid, 14);
  frame.copy(out, 16, rest);
  return out;
}

function withoutTag(frame: Buffer): Buffer {
  const out = Buffer.allocUnsafe(frame.length - 4);
  frame.copy(out, 0, 0, 12);
  frame.copy(out, 12, 16);
  return out;
}
