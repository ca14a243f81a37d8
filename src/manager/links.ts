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
  /** The HI, DI or manager process at the other end, its host for an HI, and the link's MAC. */
  station: string;
  kind: 'hi' | 'di' | 'manager';
  host?: string;
  mac: string;
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

  /** Every link with the switch's counters and fault settings. */
  async list(): Promise<LinkView[]> {
    const r = await this.call({ counters: true });
    const reports = r.ports as Record<string, PortReport>;
    const drops = (f?: { lost?: number; downDropped?: number }) => (f?.lost ?? 0) + (f?.downDropped ?? 0);
    return this.stations().flatMap(({ s, kind, host }) =>
      s.ports.map((port, l) => {
        const p = reports[port] ?? {};
        const c = p.switch;
        const faults = p.config ?? { tx: {}, rx: {} };
        return {
          port,
          station: s.process,
          kind,
          ...(host ? { host } : {}),
          mac: s.macs[l]!,
          up: !faults.tx.down && !faults.rx.down,
          rxFrames: c?.rxFrames ?? 0,
          txFrames: c?.txFrames ?? 0,
          rxBytes: c?.rxBytes ?? 0,
          txBytes: c?.txBytes ?? 0,
          dropped: (c?.rxDropped ?? 0) + drops(p.faults?.tx) + drops(p.faults?.rx),
          faults,
        };
      }),
    );
  }

  /** The switch ports `name` means: a port, or every link of a station (an HI, DI or host name). */
  ports(name: string): string[] {
    const all = this.stations();
    for (const { s, host } of all) {
      if (s.ports.includes(name)) return [name];
      if (s.process === name || host === name) return s.ports;
    }
    const names = all.flatMap(({ s }) => s.ports).join(', ');
    throw new LinkError(`no link "${name}" (links: ${names}; or an HI, DI or host name for all its links)`);
  }

  /** Sets faults on a link (both directions unless `dir`; names and ranges as the switch's, see
   * src/fabric/wire/faults.ts); replies with each port's settings. */
  async fault(name: string, set: Record<string, number | boolean>, dir?: 'tx' | 'rx') {
    const ports = this.ports(name);
    const out: Record<string, unknown> = {};
    for (const port of ports) out[port] = (await this.call({ port, ...(dir ? { dir } : {}), set })).config;
    return { ports: out };
  }

  /** Starts a capture of one link (or of every link: "all") in the switch; its pcap file grows as frames pass. */
  async startCapture(name: string): Promise<{ id: number; file: string; ports: string[] }> {
    const ports = name === 'all' ? undefined : this.ports(name);
    if (ports && ports.length !== 1) throw new LinkError(`"${name}" has ${ports.length} links (${ports.join(', ')}): capture one of them, or all`);
    const r = await this.call({ capture: true, ...(ports ? { port: ports[0] } : {}) });
    return { id: r.id as number, file: r.file as string, ports: r.ports as string[] };
  }

  async stopCapture(id: number): Promise<{ id: number; file: string; frames: number }> {
    const r = await this.call({ capture: false, id });
    return { id, file: r.file as string, frames: r.frames as number };
  }
}
