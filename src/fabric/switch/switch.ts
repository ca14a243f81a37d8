/**
 * Userspace Ethernet switch core: MAC learning with aging, 802.1Q VLANs
 * (access and trunk ports), flooding of broadcast, multicast and unknown
 * unicast within a VLAN, and per-port counters. It knows no transport: ports
 * are PortTransports (in-process, UDP, later unix datagram sockets).
 *
 * Frames pass through without a copy unless their tag must change on egress.
 */

import type { Clock } from '../clock.ts';
import { type Mac, isMulticast, readMac } from '../wire/mac.ts';
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
}

interface Port {
  readonly id: number;
  readonly name: string;
  readonly transport: PortTransport;
  readonly vlan: VlanMode;
  readonly counters: PortCounters;
}

interface MacEntry {
  port: number;
  seen: number;
}

export interface SwitchOptions {
  clock: Clock;
  /** Learned addresses are forgotten after this many ms. Default 300 000 (802.1D). */
  agingMs?: number;
}

export class EthernetSwitch {
  private readonly ports = new Map<number, Port>();
  /** VLAN → MAC → where it was last seen. */
  private readonly table = new Map<number, Map<Mac, MacEntry>>();
  private nextId = 0;
  private readonly clock: Clock;
  private readonly agingMs: number;

  constructor(options: SwitchOptions) {
    this.clock = options.clock;
    this.agingMs = options.agingMs ?? 300_000;
  }

  addPort(transport: PortTransport, vlan: VlanMode = { mode: 'access', vid: 1 }, name?: string): number {
    const id = this.nextId++;
    const port: Port = {
      id,
      name: name ?? `port${id}`,
      transport,
      vlan,
      counters: { rxFrames: 0, rxBytes: 0, txFrames: 0, txBytes: 0, rxDropped: 0, txFlooded: 0 },
    };
    this.ports.set(id, port);
    transport.attach((frame) => this.ingress(port, frame));
    return id;
  }

  removePort(id: number): void {
    const port = this.ports.get(id);
    if (!port) return;
    this.ports.delete(id);
    port.transport.close();
    for (const macs of this.table.values()) for (const [mac, e] of macs) if (e.port === id) macs.delete(mac);
  }

  counters(id: number): Readonly<PortCounters> {
    const port = this.ports.get(id);
    if (!port) throw new RangeError(`no port ${id}`);
    return port.counters;
  }

  /** Where `mac` was learned in `vid`, if it is still fresh. */
  lookup(vid: number, mac: Mac): number | undefined {
    const e = this.table.get(vid)?.get(mac);
    return e && this.clock.now() - e.seen <= this.agingMs ? e.port : undefined;
  }

  close(): void {
    for (const id of [...this.ports.keys()]) this.removePort(id);
  }

  private ingress(port: Port, frame: Buffer): void {
    const c = port.counters;
    c.rxFrames++;
    c.rxBytes += frame.length;
    if (frame.length < 14 || (frame.length < 18 && frame.readUInt16BE(12) === TPID)) {
      c.rxDropped++;
      return;
    }
    const tagged = frame.readUInt16BE(12) === TPID;
    const tagVid = tagged ? frame.readUInt16BE(14) & 0xfff : 0;
    const vid = classify(port.vlan, tagged, tagVid);
    if (vid === undefined) {
      c.rxDropped++;
      return;
    }
    const src = readMac(frame, 6);
    const now = this.clock.now();
    if (!isMulticast(src)) {
      let macs = this.table.get(vid);
      if (!macs) this.table.set(vid, (macs = new Map()));
      const e = macs.get(src);
      if (e) {
        e.port = port.id;
        e.seen = now;
      } else {
        macs.set(src, { port: port.id, seen: now });
      }
    }
    const dst = readMac(frame, 0);
    if (!isMulticast(dst)) {
      const out = this.lookup(vid, dst);
      if (out !== undefined) {
        // Known unicast: to its port, or nowhere if the station is on the port it came from.
        if (out !== port.id) this.egress(this.ports.get(out)!, frame, tagged, tagVid, vid, false);
        return;
      }
    }
    for (const p of this.ports.values()) {
      if (p !== port && member(p.vlan, vid)) this.egress(p, frame, tagged, tagVid, vid, true);
    }
  }

  private egress(port: Port, frame: Buffer, tagged: boolean, tagVid: number, vid: number, flooded: boolean): void {
    const wantTag = port.vlan.mode === 'trunk' && port.vlan.native !== vid;
    let out = frame;
    if (wantTag && !(tagged && tagVid === vid)) out = withTag(frame, tagged, vid);
    else if (!wantTag && tagged) out = withoutTag(frame);
    const c = port.counters;
    c.txFrames++;
    c.txBytes += out.length;
    if (flooded) c.txFlooded++;
    port.transport.transmit(out);
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
