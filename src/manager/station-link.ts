// The manager's attachment to the lab switch (`--link MAC@SWITCH_PORT_SOCKET` or
// `MAC@memif:PATH`, as an HI's or DI's link: openLinkPort), the discovery station on it (station.ts),
// and what it discovered as data for `lab status`: <state>/manager/stations.json, rewritten
// whole (temporary file, rename) every half second and at once on a change of liveness.
import { mkdirSync } from 'node:fs';
import { writeFileAtomic } from '../common/atomic-file.ts';
import { join } from 'node:path';
import type { Logger } from '../common/logger.ts';
import { realClock } from '../fabric/clock.ts';
import { stationOf } from '../fabric/link/node.ts';
import { openLinkPort, parseLinkSpec } from '../fabric/station.ts';
import { formatMac } from '../fabric/wire/mac.ts';
import { type DiscoveredStation, HEARTBEAT_TIMEOUT_MS, ManagerStation } from './station.ts';

/** What `lab status` reads: the manager's view of the fabric. */
export interface StationsFile {
  /** When the manager wrote it (ISO): an old one means the manager is not running. */
  writtenAt: string;
  manager: { mac: string; pid: number };
  heartbeatTimeoutMs: number;
  stations: DiscoveredStation[];
}

export const stationsFile = (stateDir: string) => join(stateDir, 'stations.json');

export function openManagerStation(
  link: string,
  socketDir: string,
  stateDir: string,
  log: Logger,
  /** A station came back with a new epoch (it restarted). */
  onRestarted: (station: string) => void = () => {},
  /** A station's report arrived (its view, as in stations.json). */
  onReport: (station: DiscoveredStation) => void = () => {},
): { station: ManagerStation; snapshot(): StationsFile; close(): void } {
  const spec = parseLinkSpec(link);
  const port = openLinkPort(spec, socketDir, 0);
  const attachment = stationOf(port);
  const station = new ManagerStation({ station: attachment, mac: spec.mac, clock: realClock, name: 'manager' });
  const file = stationsFile(stateDir);
  const snapshot = (): StationsFile => ({ writtenAt: new Date().toISOString(), manager: { mac: formatMac(spec.mac), pid: process.pid }, heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS, stations: station.view() });
  const write = () => {
    const body = snapshot();
    mkdirSync(stateDir, { recursive: true });
    writeFileAtomic(file, JSON.stringify(body, null, 2) + '\n');
  };
  station.on('event', (e) => {
    // Reports come with every Solicit: only changes of liveness are worth a line.
    if (e.event === 'report') {
      const st = station.view().find((x) => x.name === e.station);
      if (st) onReport(st);
      return;
    }
    log(e.event === 'station-lost' || (e.event === 'link-state' && !e.up) ? 'warn' : 'info', JSON.stringify(e));
    write();
    if (e.event === 'station-restarted') onRestarted(e.station);
  });
  station.start();
  const timer = setInterval(write, 500);
  return {
    station,
    snapshot,
    close() {
      clearInterval(timer);
      station.close();
      attachment.close();
    },
  };
}
