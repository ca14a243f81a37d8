// The manager as a station on the lab switch, like the paper's management interface: it
// broadcasts Solicit (at start, then every `solicitMs`, so a station that starts later is
// found too), HIs and DIs answer with Announce and their report (an HI's slots, a DI's
// functions and who holds each), and from then on send a Heartbeat on each link. A link
// silent for `timeoutMs` is down; a station with every link down is lost. A heartbeat with
// a new epoch is a restarted station, one with a new generation a changed report: either
// way the manager solicits that station again at once. The wire format is
// src/fabric/wire/management.ts; the station side is src/fabric/management-responder.ts.
import { EventEmitter } from 'node:events';
import type { Clock, TimerHandle } from '../fabric/clock.ts';
import { BROADCAST_MAC, type Mac, formatMac } from '../fabric/wire/mac.ts';
import {
  type FunctionEntry,
  MgmtKind,
  type MgmtMessage,
  type SlotEntry,
  StationRole,
  decodeManagementFrame,
  encodeManagementFrame,
} from '../fabric/wire/management.ts';
import type { Station } from '../fabric/wire/port.ts';
import { formatBdf } from '../pci/bdf.ts';

/** A link is down after this much silence, ms (5 heartbeats of the stations' 200 ms). */
export const HEARTBEAT_TIMEOUT_MS = 1000;

export interface ManagerStationOptions {
  /** The manager's attachment to its switch port. */
  station: Station;
  mac: Mac;
  clock: Clock;
  name?: string;
  solicitMs?: number;
  timeoutMs?: number;
}

export interface StationLink {
  link: number;
  mac: string;
  up: boolean;
  /** ms since the last heartbeat on this link (undefined: none yet). */
  silentMs?: number;
}

/** What the manager knows of one HI or DI (as data: lab status, the API). */
export interface DiscoveredStation {
  name: string;
  role: 'hi' | 'di';
  /** Reachable: at least one link heard within the timeout. */
  alive: boolean;
  epoch: number;
  /** Times it came back with a new epoch. */
  restarts: number;
  /** Times it was declared lost. */
  losses: number;
  links: StationLink[];
  /** HI: its slots (free, mapped, releasing, lost). */
  slots?: { slot: number; state: 'free' | 'mapped' | 'releasing' | 'lost'; channel?: number; bdf?: string }[];
  /** DI: its functions, with vendor/device/class and the host (channel, BDF) holding each. */
  functions?: { index: number; name: string; vendor: string; device: string; class: string; holder?: { channel: number; bdf: string } }[];
}

export type StationEvent =
  | { event: 'station-found'; station: string; role: 'hi' | 'di' }
  | { event: 'station-lost'; station: string }
  | { event: 'station-back'; station: string }
  | { event: 'station-restarted'; station: string; epoch: number }
  | { event: 'link-state'; station: string; link: number; up: boolean }
  | { event: 'report'; station: string };

interface Known {
  name: string;
  role: StationRole;
  count: number;
  epoch: number;
  generation: number;
  restarts: number;
  losses: number;
  alive: boolean;
  /** Per link index: its MAC, when last heard, whether up. */
  links: Map<number, { mac: Mac; heardAt: number; up: boolean }>;
  slots?: SlotEntry[];
  functions?: FunctionEntry[];
}

const hex = (n: number, w: number) => `0x${n.toString(16).padStart(w, '0')}`;
const SLOT_STATE = ['free', 'mapped', 'releasing', 'lost'] as const;

export class ManagerStation extends EventEmitter<{ event: [StationEvent] }> {
  readonly stats = { txSolicit: 0, rxAnnounce: 0, rxReport: 0, rxHeartbeat: 0, rxBad: 0, rxUnknownSender: 0 };
  private readonly byName = new Map<string, Known>();
  /** Which station (name) and which of its links a MAC is. */
  private readonly byMac = new Map<Mac, { name: string; link?: number }>();
  private nextId = 1;
  private timers: TimerHandle[] = [];
  private readonly timeoutMs: number;

  constructor(private readonly o: ManagerStationOptions) {
    super();
    this.timeoutMs = o.timeoutMs ?? HEARTBEAT_TIMEOUT_MS;
    o.station.onFrame = (frame) => this.receive(frame);
  }

  start(): void {
    this.solicit(BROADCAST_MAC);
    const every = (ms: number, fn: () => void) => {
      const run = () => {
        fn();
        this.timers[i] = this.o.clock.setTimer(ms, run);
      };
      const i = this.timers.push(this.o.clock.setTimer(ms, run)) - 1;
    };
    every(this.o.solicitMs ?? 2000, () => this.solicit(BROADCAST_MAC));
    every(this.timeoutMs / 4, () => this.check());
  }

  close(): void {
    for (const t of this.timers) this.o.clock.clearTimer(t);
    this.timers = [];
    this.o.station.onFrame = null;
  }

  /** Everything discovered, as data. */
  view(): DiscoveredStation[] {
    const now = this.o.clock.now();
    return [...this.byName.values()]
      .sort((a, b) => a.role - b.role || a.name.localeCompare(b.name))
      .map((k) => ({
        name: k.name,
        role: k.role === StationRole.Hi ? ('hi' as const) : ('di' as const),
        alive: k.alive,
        epoch: k.epoch,
        restarts: k.restarts,
        losses: k.losses,
        links: [...k.links.entries()]
          .sort(([a], [b]) => a - b)
          .map(([link, l]) => ({ link, mac: formatMac(l.mac), up: l.up, ...(l.heardAt >= 0 ? { silentMs: Math.round(now - l.heardAt) } : {}) })),
        ...(k.slots
          ? { slots: k.slots.map((s) => ({ slot: s.slot, state: SLOT_STATE[s.state]!, ...(s.state !== 0 ? { channel: s.channel, bdf: formatBdf(s.bdf) } : {}) })) }
          : {}),
        ...(k.functions
          ? {
              functions: k.functions.map((f) => ({
                index: f.index,
                name: f.name,
                vendor: hex(f.vendor, 4),
                device: hex(f.device, 4),
                class: hex(f.classCode, 6),
                ...(f.holderChannel ? { holder: { channel: f.holderChannel, bdf: formatBdf(f.holderBdf) } } : {}),
              })),
            }
          : {}),
      }));
  }

  private tell(e: StationEvent): void {
    this.emit('event', e);
  }

  private solicit(dst: Mac): void {
    const id = this.nextId;
    this.nextId = (this.nextId % 0xffff) + 1;
    this.o.station.send(encodeManagementFrame(dst, this.o.mac, { kind: MgmtKind.Solicit, id, manager: this.o.name ?? 'manager' }));
    this.stats.txSolicit++;
  }

  private receive(frame: Buffer): void {
    const r = decodeManagementFrame(frame);
    if (!r.ok) {
      // TLP traffic is never sent to the manager's MAC; anything else malformed is counted.
      this.stats.rxBad++;
      return;
    }
    const { src, message } = r.value;
    this.handle(src, message);
  }

  private handle(src: Mac, m: MgmtMessage): void {
    if (m.kind === MgmtKind.Announce) {
      this.stats.rxAnnounce++;
      let k = this.byName.get(m.name);
      if (!k) {
        k = { name: m.name, role: m.role, count: m.count, epoch: 0, generation: -1, restarts: 0, losses: 0, alive: true, links: new Map() };
        this.byName.set(m.name, k);
        this.tell({ event: 'station-found', station: m.name, role: m.role === StationRole.Hi ? 'hi' : 'di' });
      }
      k.role = m.role;
      k.count = m.count;
      // The link index arrives with the first heartbeat from this MAC.
      this.byMac.set(src, { name: m.name, link: this.byMac.get(src)?.link });
      return;
    }
    const who = this.byMac.get(src);
    const k = who && this.byName.get(who.name);
    if (!k) {
      this.stats.rxUnknownSender++;
      // A station heard before its Announce (the manager restarted, or the Announce was lost): ask it.
      if (m.kind === MgmtKind.Heartbeat) this.solicit(src);
      return;
    }
    if (m.kind === MgmtKind.SlotReport || m.kind === MgmtKind.FunctionReport) {
      this.stats.rxReport++;
      if (m.kind === MgmtKind.SlotReport) k.slots = m.slots;
      else k.functions = m.functions;
      this.tell({ event: 'report', station: k.name });
      return;
    }
    if (m.kind !== MgmtKind.Heartbeat) return;
    this.stats.rxHeartbeat++;
    who.link = m.link;
    const now = this.o.clock.now();
    const l = k.links.get(m.link);
    if (!l) k.links.set(m.link, { mac: src, heardAt: now, up: true });
    else {
      l.mac = src;
      l.heardAt = now;
      if (!l.up) {
        l.up = true;
        this.tell({ event: 'link-state', station: k.name, link: m.link, up: true });
      }
    }
    let ask = false;
    if (m.epoch !== k.epoch) {
      if (k.epoch !== 0) {
        k.restarts++;
        // What the old incarnation reported is gone with it: wait for the new one's reports.
        k.slots = undefined;
        k.functions = undefined;
        this.tell({ event: 'station-restarted', station: k.name, epoch: m.epoch });
      }
      k.epoch = m.epoch;
      ask = true;
    }
    if (m.generation !== k.generation) {
      k.generation = m.generation;
      ask = true;
    }
    if (!k.alive) {
      k.alive = true;
      this.tell({ event: 'station-back', station: k.name });
    }
    if (ask) this.solicit(src);
  }

  private check(): void {
    const now = this.o.clock.now();
    for (const k of this.byName.values()) {
      for (const [link, l] of k.links) {
        if (l.up && now - l.heardAt > this.timeoutMs) {
          l.up = false;
          this.tell({ event: 'link-state', station: k.name, link, up: false });
        }
      }
      const alive = [...k.links.values()].some((l) => l.up);
      // A station that announced itself but never sent a heartbeat is judged by its links once it has any.
      if (k.alive && !alive && k.links.size > 0) {
        k.alive = false;
        k.losses++;
        this.tell({ event: 'station-lost', station: k.name });
      }
    }
  }
}
