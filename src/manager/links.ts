// The fabric's links as the manager shows and changes them: each HI and DI link is one switch
// port, so its counters, its faults and captures of it are the switch's, asked over the
// switch's control socket (src/fabric/switch/main.ts). The manager's API (api.ts) offers them
// to `lab fault`, `lab capture` and the web console.
import { controlCall } from '../lab/control-client.ts';
import type { Fabric } from '../lab/derive.ts';

/** A link name that names no link (or too many). */
export class LinkError extends Error {
  readonly code = 'unknown-link';
}

/** One link: a station's link to the switch, named by its switch port. */
export interface LinkView {
  port: string;
  /** The HI, DI or manager process at the other end, its host for an HI, and the link's MAC.
   * kind "wire": any other switch port (a NIC function's Ethernet wire, a guest's own NIC); station is the port. */
  station: string;
  kind: 'hi' | 'di' | 'manager' | 'wire';
  host?: string;
  mac?: string;
  up: boolean;
  /** As the switch counts them: rx is from the station, tx is to it. */
  rxFrames: number;
  txFrames: number;
  rxBytes: number;
  txBytes: number;
  /** Dropped by the switch or by the port's faults. */
  dropped: number;
  /** The fault settings, per direction (tx: out of the switch to the station, rx: into it). */
  faults: { tx: Record<string, unknown>; rx: Record<string, unknown> };
}

type PortReport = {
  switch?: { rxFrames: number; txFrames: number; rxBytes: number; txBytes: number; rxDropped: number };
  faults?: { tx?: { lost?: number; downDropped?: number }; rx?: { lost?: number; downDropped?: number } };
  config?: { tx: Record<string, unknown>; rx: Record<string, unknown> };
};

export class SwitchLinks {
  constructor(
    private readonly fabric: Fabric,
    /** The switch's control socket (it moves with each `lab up`, so asked each time). */
    private readonly control: () => string,
  ) {}

  private stations() {
    return [
      ...this.fabric.hosts.map((h) => ({ s: h, kind: 'hi' as const, host: h.host })),
      ...this.fabric.dis.map((d) => ({ s: d, kind: 'di' as const, host: undefined })),
      { s: this.fabric.manager, kind: 'manager' as const, host: undefined },
    ];
  }

  private call(request: object) {
    return controlCall('switch', this.control(), request);
  }

  private async switchPorts(): Promise<Record<string, PortReport>> {
    return (await this.call({ counters: true })).ports as Record<string, PortReport>;
  }

  /** Every link with the switch's counters and fault settings: the stations' first, then the switch's other ports. */
  async list(): Promise<LinkView[]> {
    const reports = await this.switchPorts();
    const drops = (f?: { lost?: number; downDropped?: number }) => (f?.lost ?? 0) + (f?.downDropped ?? 0);
    const known = this.stations().flatMap(({ s, kind, host }) => s.ports.map((port, l) => ({ port, station: s.process, kind, host, mac: s.macs[l] })));
    const others = Object.keys(reports)
      .filter((port) => !known.some((k) => k.port === port))
      .map((port) => ({ port, station: port, kind: 'wire' as const, host: undefined, mac: undefined }));
    return [...known, ...others].map(({ port, station, kind, host, mac }) => {
      const p = reports[port] ?? {};
      const c = p.switch;
      const faults = p.config ?? { tx: {}, rx: {} };
      return {
        port,
        station,
        kind,
        ...(host ? { host } : {}),
        ...(mac ? { mac } : {}),
        up: !faults.tx.down && !faults.rx.down,
        rxFrames: c?.rxFrames ?? 0,
        txFrames: c?.txFrames ?? 0,
        rxBytes: c?.rxBytes ?? 0,
        txBytes: c?.txBytes ?? 0,
        dropped: (c?.rxDropped ?? 0) + drops(p.faults?.tx) + drops(p.faults?.rx),
        faults,
      };
    });
  }

  /** The switch ports `name` means: a port, or every link of a station (an HI, DI or host name). */
  async ports(name: string): Promise<string[]> {
    for (const { s, host } of this.stations()) if (s.process === name || host === name) return s.ports;
    const ports = Object.keys(await this.switchPorts());
    if (ports.includes(name)) return [name];
    throw new LinkError(`no link "${name}" (links: ${ports.join(', ')}; or an HI, DI or host name for all its links)`);
  }

  /** Sets faults on a link (both directions unless `dir`; names and ranges as the switch's, see
   * src/fabric/wire/faults.ts); replies with each port's settings. */
  async fault(name: string, set: Record<string, number | boolean>, dir?: 'tx' | 'rx') {
    const ports = await this.ports(name);
    const out: Record<string, unknown> = {};
    for (const port of ports) out[port] = (await this.call({ port, ...(dir ? { dir } : {}), set })).config;
    return { ports: out };
  }

  /** Starts a capture of one link (or of every link: "all") in the switch; its pcap file grows as frames pass. */
  async startCapture(name: string): Promise<{ id: number; file: string; ports: string[] }> {
    const ports = name === 'all' ? undefined : await this.ports(name);
    if (ports && ports.length !== 1) throw new LinkError(`"${name}" has ${ports.length} links (${ports.join(', ')}): capture one of them, or all`);
    const r = await this.call({ capture: true, ...(ports ? { port: ports[0] } : {}) });
    return { id: r.id as number, file: r.file as string, ports: r.ports as string[] };
  }

  async stopCapture(id: number): Promise<{ id: number; file: string; frames: number }> {
    const r = await this.call({ capture: false, id });
    return { id, file: r.file as string, frames: r.frames as number };
  }
}
