/**
 * The station side of PCIeOE discovery (wire/management.ts), shared by the HI and the DI:
 * it answers the manager's Solicit with an Announce and the station's report (an HI's
 * slots, a DI's functions), and from then on sends a Heartbeat on every link that heard
 * the manager, each interval. The report is taken again at each heartbeat; when it
 * changed, the generation moves and the new report goes to the manager at once, so a
 * mapping made through any path shows up without being asked for.
 *
 * Management requests (Map*, Unmap*) are not carried out here yet: assignments still
 * arrive on the control socket (src/manager/apply.ts); such a request is answered with a
 * failed Ack saying so, never silently dropped.
 */

import { randomInt } from 'node:crypto';
import type { Clock, TimerHandle } from './clock.ts';
import type { FabricNode } from './link/node.ts';
import type { Mac } from './wire/mac.ts';
import {
  AckStatus,
  type FunctionReport,
  MgmtKind,
  type MgmtMessage,
  type SlotReport,
  type StationRole,
  decodeManagementFrame,
  encodeManagement,
  encodeManagementFrame,
} from './wire/management.ts';

/** Heartbeat interval, ms: the manager's timeout (station.ts) is several of these. */
export const STATION_HEARTBEAT_MS = 200;

export type StationReport = Omit<FunctionReport, 'id'> | Omit<SlotReport, 'id'>;

export interface ResponderOptions {
  node: FabricNode;
  clock: Clock;
  role: StationRole;
  name: string;
  /** HI: slots; DI: functions. */
  count: number;
  /** What the station has now (taken at every heartbeat). */
  report: () => StationReport;
  heartbeatMs?: number;
}

export interface ResponderStats {
  rxSolicit: number;
  txAnnounce: number;
  txReport: number;
  txHeartbeat: number;
  /** Frames on the management channel that are not well-formed management messages. */
  rxBad: number;
  /** Requests this station does not carry out over the wire (answered with a failed Ack). */
  rxUnsupported: number;
}

export class ManagementResponder {
  readonly stats: ResponderStats = { rxSolicit: 0, txAnnounce: 0, txReport: 0, txHeartbeat: 0, rxBad: 0, rxUnsupported: 0 };
  /** This incarnation of the station: the manager tells a restart by a new one. */
  readonly epoch = randomInt(1, 0xffffffff);
  private generation = 0;
  private lastReport = '';
  /** The manager's MAC as heard on each link (undefined: no Solicit there yet). */
  private readonly manager: (Mac | undefined)[];
  private timer: TimerHandle | null = null;
  private closed = false;

  constructor(private readonly o: ResponderOptions) {
    this.manager = o.node.links.map(() => undefined);
    o.node.onManagement = (link, frame) => this.receive(link, frame);
    this.arm();
  }

  /** The manager's MAC, once one has solicited this station. */
  get managerMac(): Mac | undefined {
    return this.manager.find((m) => m !== undefined);
  }

  close(): void {
    this.closed = true;
    if (this.timer) this.o.clock.clearTimer(this.timer);
    this.timer = null;
    this.o.node.onManagement = null;
  }

  private send(link: number, m: MgmtMessage): void {
    const dst = this.manager[link];
    if (dst === undefined) return;
    this.o.node.links[link]!.station.send(encodeManagementFrame(dst, this.o.node.links[link]!.mac, m));
  }

  private receive(link: number, frame: Buffer): void {
    const r = decodeManagementFrame(frame);
    if (!r.ok) {
      this.stats.rxBad++;
      return;
    }
    const { src, message: m } = r.value;
    if (m.kind === MgmtKind.Solicit) {
      this.stats.rxSolicit++;
      this.manager[link] = src;
      this.send(link, { kind: MgmtKind.Announce, id: m.id, role: this.o.role, links: this.o.node.links.length, count: this.o.count, name: this.o.name });
      this.stats.txAnnounce++;
      this.sendReport(link, m.id);
      return;
    }
    if (m.kind === MgmtKind.MapFunction || m.kind === MgmtKind.UnmapFunction || m.kind === MgmtKind.MapSlot || m.kind === MgmtKind.UnmapSlot) {
      this.stats.rxUnsupported++;
      if (this.manager[link] === src)
        this.send(link, { kind: MgmtKind.Ack, id: m.id, status: AckStatus.Failed, detail: `${this.o.name} takes assignments on its control socket, not over the wire` });
    }
    // Announcements, reports and heartbeats of other stations (flooded): not ours to answer.
  }

  private sendReport(link: number, id: number): void {
    this.send(link, { ...this.o.report(), id } as MgmtMessage);
    this.stats.txReport++;
  }

  private arm(): void {
    this.timer = this.o.clock.setTimer(this.o.heartbeatMs ?? STATION_HEARTBEAT_MS, () => this.tick());
  }

  private tick(): void {
    if (this.closed) return;
    const report = Buffer.from(encodeManagement({ ...this.o.report(), id: 0 } as MgmtMessage)).toString('hex');
    const changed = report !== this.lastReport;
    if (changed) {
      this.lastReport = report;
      this.generation = (this.generation + 1) & 0xffff;
    }
    this.manager.forEach((mac, link) => {
      if (mac === undefined) return;
      if (changed) this.sendReport(link, 0);
      this.send(link, { kind: MgmtKind.Heartbeat, id: 0, epoch: this.epoch, generation: this.generation, link });
      this.stats.txHeartbeat++;
    });
    this.arm();
  }
}
