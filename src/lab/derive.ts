// From the lab a topology describes (hosts with HIs, DIs with cards, the switch, initial
// assignments) to what runs: the switch, DI and HI processes with their argv, and each
// host's PCIe switch, EEPs and control endpoint. Nothing here is chosen by the user:
//
// - Each HI and DI is a station with `links` links; link l of station P is switch port
//   "<P><l>". Over memif (the default) the switch is the server of each such port, at
//   LAB_STATE/sockets/sw/<P><l>.memif, and the station its client: a station that restarts
//   connects again, and after a switch restart the stations reconnect on their own (every
//   100 ms). Over unix datagrams (`fabric: { transport: unix }`) the station binds
//   LAB_STATE/sockets/<P>/link<l>.sock, the port's peer, and sends to the port's
//   LAB_STATE/sockets/sw/<P><l>.sock.
// - MACs: HI of host i, link l: 02:00:00:01:<i>:<l>; DI j: 02:00:00:02:<j>:<l>.
// - The manager is a station too (discovery and heartbeats, src/manager/station.ts): one link,
//   MAC 02:00:00:04:00:00, switch port "manager0", bound like the others.
// - Channels: one per (host, DI) pair, numbered from 1, host by host then DI by DI; both
//   ends use the same number (the DI tells hosts apart by it, the HI tells DIs apart).
// - NIC wires stay unix datagrams on either transport (QEMU's netdev has no memif, and the
//   DI's NIC wire is a datagram socket). A NIC function (nic:) of DI j, function f: MAC 02:00:00:03:<j>:<f> unless given; its
//   Ethernet wire is switch port "<DI>-<function>", bound to that MAC, whose peer the DI binds
//   at LAB_STATE/sockets/<DI>/<function>-wire.sock (its frames beside the PCIeOE frames).
// - A host's own QEMU NIC (devices: type nic, server "sw/<port>") is switch port <port>, bound
//   to the NIC's MAC, whose peer QEMU binds at LAB_STATE/sockets/sw/<port>.peer.sock (lab.ts).
// - Function f of a card is 01:00.<f> on every channel; an assignment to a host's slot s is
//   that host's EEP "eep<s>" in its switch slot s; the control endpoint is in the slot after
//   the last one.
// - Start order: the topology's own processes, the switch, the DIs, the HIs (an HI
//   enumerates its remote functions before its sockets appear, and the lab starts QEMU once
//   they are there), then the manager (src/manager), the only writer of assignments after
//   the start.
import { nicMac } from './qemu-args.ts';
import { apiFiles } from '../manager/api.ts';
import type { AssignmentSpec, DeviceSpec, DiSpec, HostSpec, ProcessSpec, SwitchSpec, TopologySource, Transport, VmSpec } from './topology.ts';

export const SWITCH_PROCESS = 'sw';
export const MANAGER_PROCESS = 'manager';
/** A host's devices the lab adds; a topology may not use these ids itself. */
const RESERVED_DEVICE = /^(hisw|hictl|eep\d+)$/;

export interface FabricAssignment {
  host: string;
  di: string;
  function: string;
  slot: number;
  channel: number;
  /** The function's address on the channel, "01:00.<f>". */
  bdf: string;
  /** The HI's endpoint (and its socket) for the slot. */
  eep: string;
}

export interface FabricStation {
  /** The process's name. */
  process: string;
  macs: string[];
  /** Its switch ports, link by link. */
  ports: string[];
}

export interface FabricHost extends FabricStation {
  host: string;
  slots: number;
  control: boolean;
  /** Channel id per DI name. */
  channels: Record<string, number>;
}

export interface FabricDi extends FabricStation {
  functions: { name: string; bdf: string; model: 'nvme' | 'nic' | 'testdev' }[];
  /** Channel id per host name. */
  channels: Record<string, number>;
}

/** What the lab derived, for the manager and `lab status`. */
export interface Fabric {
  switch: string;
  /** How stations are cabled to the switch. */
  transport: Transport;
  hosts: FabricHost[];
  dis: FabricDi[];
  assignments: FabricAssignment[];
  /** The manager's own station on the switch. */
  manager: FabricStation;
}

export interface Derived {
  processes: ProcessSpec[];
  vms: VmSpec[];
  /** Where each process and VM came from in the file (for error paths), index for index. */
  processOrigins: string[];
  vmOrigins: string[];
  fabric?: Fabric;
  problems: string[];
}

const hex = (n: number) => n.toString(16).padStart(2, '0');
const mac = (kind: number, index: number, link: number) => `02:00:00:${hex(kind)}:${hex(index)}:${hex(link)}`;
const bdfOf = (fn: number) => `01:00.${fn}`;
const portSocket = (port: string) => `\${LAB_STATE}/sockets/${SWITCH_PROCESS}/${port}.sock`;
/** The switch's memif control socket for a port (switch-main's default for `--port NAME=memif`). */
const portMemif = (port: string) => `\${LAB_STATE}/sockets/${SWITCH_PROCESS}/${port}.memif`;
const linkSocket = (process: string, link: number) => `\${LAB_STATE}/sockets/${process}/link${link}.sock`;

function station(process: string, kind: number, index: number, links: number): FabricStation {
  const ls = [...Array(links).keys()];
  return { process, macs: ls.map((l) => mac(kind, index, l)), ports: ls.map((l) => `${process}${l}`) };
}

/** Places initial assignments in slots and checks every reference; problems carry their paths. */
function placeAssignments(hosts: HostSpec[], dis: DiSpec[], assign: AssignmentSpec[], problems: string[]) {
  const taken = new Map<string, Map<number, string>>(hosts.map((h) => [h.name, new Map()]));
  const assigned = new Map<string, string>();
  const placed: { a: AssignmentSpec; at: string; di: DiSpec; fn: number; slot: number }[] = [];
  // Explicit slots first, so a default never takes a slot that one names later.
  const order = assign.map((a, k) => ({ a, k })).sort((x, y) => Number(x.a.slot === undefined) - Number(y.a.slot === undefined));
  for (const { a, k } of order) {
    const at = `assign[${k}]`;
    const [diName, fnName] = a.function.split('/') as [string, string];
    const di = dis.find((d) => d.name === diName);
    const host = hosts.find((h) => h.name === a.host);
    const fn = di?.card.functions.findIndex((f) => f.name === fnName) ?? -1;
    if (!di) problems.push(`${at}.function: no DI named "${diName}" (DIs: ${dis.map((d) => d.name).join(', ') || 'none'})`);
    else if (fn < 0) problems.push(`${at}.function: DI "${diName}" has no function "${fnName}" (functions: ${di.card.functions.map((f) => f.name).join(', ')})`);
    if (!host) problems.push(`${at}.host: no host named "${a.host}" (hosts: ${hosts.map((h) => h.name).join(', ') || 'none'})`);
    if (!di || fn < 0 || !host) continue;
    const earlier = assigned.get(a.function);
    if (earlier) {
      problems.push(`${at}.function: "${a.function}" is already assigned by ${earlier}`);
      continue;
    }
    const slots = taken.get(host.name)!;
    let slot = a.slot;
    if (slot === undefined) {
      slot = [...Array(host.hi.slots).keys()].find((s) => !slots.has(s));
      if (slot === undefined) {
        problems.push(`${at}.host: host "${host.name}" has no free slot (it has ${host.hi.slots})`);
        continue;
      }
    } else if (slot >= host.hi.slots) {
      problems.push(`${at}.slot: host "${host.name}" has slots 0 to ${host.hi.slots - 1}, not ${slot}`);
      continue;
    } else if (slots.has(slot)) {
      problems.push(`${at}.slot: slot ${slot} of host "${host.name}" is already used by ${slots.get(slot)}`);
      continue;
    }
    slots.set(slot, at);
    assigned.set(a.function, at);
    placed.push({ a, at, di, fn, slot });
  }
  return placed.sort((x, y) => x.at.localeCompare(y.at, undefined, { numeric: true }));
}

/** A switch port: its name, where it sends (the station's bound socket; none: memif), the one MAC it accepts. */
interface SwitchPort {
  p: string;
  peer?: string;
  mac: string;
}

/** The Ethernet wires of the DIs' NIC functions, each on a switch port of its own. */
function nicWires(dis: DiSpec[]): (SwitchPort & { di: string; function: string; at: string })[] {
  return dis.flatMap((d, j) =>
    d.card.functions.flatMap((f, fn) =>
      f.nic
        ? [{ di: d.name, function: f.name, at: `dis[${j}].card.functions[${fn}].nic.mac`, p: `${d.name}-${f.name}`, peer: `\${LAB_STATE}/sockets/${d.name}/${f.name}-wire.sock`, mac: f.nic.mac?.toLowerCase() ?? mac(3, j, fn) }]
        : [],
    ),
  );
}

/** The cables of the hosts' own QEMU NICs to the lab switch, each on the port its server names. */
function hostNicWires(hosts: HostSpec[], problems: string[]): (SwitchPort & { at: string })[] {
  return hosts.flatMap((h, i) =>
    h.devices.flatMap((d, j) => {
      if (d.type !== 'nic') return [];
      const [proc, port] = d.server.split('/');
      if (proc !== SWITCH_PROCESS || !port) {
        problems.push(`hosts[${i}].devices[${j}].server: a host's NIC is cabled to the lab switch: expected "${SWITCH_PROCESS}/<port>", got "${d.server}"`);
        return [];
      }
      return [{ at: `hosts[${i}].devices[${j}].server`, p: port, peer: `\${LAB_STATE}/sockets/${SWITCH_PROCESS}/${port}.peer.sock`, mac: nicMac(h.name, d) }];
    }),
  );
}

function switchProcess(sw: SwitchSpec, stations: FabricStation[], wires: SwitchPort[], transport: Transport): ProcessSpec {
  const memif = transport === 'memif';
  const ports = [
    ...stations.flatMap((s) => s.ports.map((p, l): SwitchPort => ({ p, ...(memif ? {} : { peer: linkSocket(s.process, l) }), mac: s.macs[l]! }))),
    ...wires,
  ];
  return {
    name: SWITCH_PROCESS,
    run: 'src/fabric/switch/main.ts',
    args: [
      ...ports.flatMap(({ p, peer }) => ['--port', peer === undefined ? `${p}=memif` : p]),
      ...ports.flatMap(({ p, peer }) => (peer === undefined ? [] : ['--peer', `${p}=${peer}`])),
      // Port security: each port takes frames from its station's MAC only (no station can pose as another).
      ...ports.flatMap(({ p, mac }) => ['--station', `${p}=${mac}`]),
      ...(sw.capture ? ['--pcap-dir', '${LAB_STATE}/pcap'] : []),
      ...(sw.seed !== undefined ? ['--seed', String(sw.seed)] : []),
      ...(sw.busyPoll !== undefined ? ['--busy-poll', String(sw.busyPoll)] : []),
    ],
    ...(sw.pin ? { pin: sw.pin } : {}),
  };
}

const linkArgs = (s: FabricStation, transport: Transport) =>
  s.ports.flatMap((p, l) => ['--link', `${s.macs[l]}@${transport === 'memif' ? `memif:${portMemif(p)}` : portSocket(p)}`]);

function functionArg(di: DiSpec, f: DiSpec['card']['functions'][number], wires: ReturnType<typeof nicWires>): string {
  if (f.testdev) return `${f.name}=testdev`;
  if (f.nic) {
    const w = wires.find((x) => x.di === di.name && x.function === f.name)!;
    return `${f.name}=virtio-net:mac:${w.mac},mtu:${f.nic.mtu},wire:${portSocket(w.p)}`;
  }
  const n = f.nvme!;
  const serial = n.serial ?? `PCIEOE-${di.name}-${f.name}`.toUpperCase().slice(0, 20);
  return `${f.name}=nvme:file:${di.name}-${f.name}.img,size:${n.size},lba:${n.lba},serial:${serial}`;
}

/**
 * Derives processes and VMs from the topology's hosts, DIs and switch (nothing to do without
 * them); `transport`, when given, replaces the file's fabric transport.
 */
export function derive(src: TopologySource, transport: Transport = src.fabric?.transport ?? 'memif'): Derived {
  const problems: string[] = [];
  const out: Derived = {
    processes: [...src.processes],
    processOrigins: src.processes.map((_, i) => `processes[${i}]`),
    vms: [...src.vms],
    vmOrigins: src.vms.map((_, i) => `vms[${i}]`),
    problems,
  };
  if (!src.hosts.length && !src.dis.length) {
    if (src.switch) problems.push('switch: a switch without hosts or dis has nothing to connect');
    if (src.fabric) problems.push('fabric: a fabric without hosts or dis has nothing to connect');
    if (src.assign.length) problems.push('assign: there are no hosts or dis to assign');
    return out;
  }
  if (!src.hosts.length) problems.push('hosts: DIs need at least one host to serve');
  src.hosts.forEach((h, i) =>
    h.devices.forEach((d, j) => {
      if (RESERVED_DEVICE.test(d.id)) problems.push(`hosts[${i}].devices[${j}].id: "${d.id}" is the lab's own (hisw, hictl and eep<N> are the HI's)`);
    }),
  );
  src.dis.forEach((d, i) => {
    const seen = new Set<string>();
    d.card.functions.forEach((f, j) => {
      if (seen.has(f.name)) problems.push(`dis[${i}].card.functions[${j}].name: duplicate function "${f.name}" in DI "${d.name}"`);
      seen.add(f.name);
    });
  });
  const placed = placeAssignments(src.hosts, src.dis, src.assign, problems);
  const wires = nicWires(src.dis);
  const cables = [...wires, ...hostNicWires(src.hosts, problems)];

  const channel = (hostIndex: number, diIndex: number) => hostIndex * src.dis.length + diIndex + 1;
  if (channel(src.hosts.length - 1, src.dis.length - 1) > 0xffff) problems.push('hosts: more host × DI pairs than channel numbers (65535)');
  const his: FabricHost[] = src.hosts.map((h, i) => ({
    ...station(h.hi.name ?? `hi-${h.name}`, 1, i, h.hi.links),
    host: h.name,
    slots: h.hi.slots,
    control: h.hi.control,
    channels: Object.fromEntries(src.dis.map((d, j) => [d.name, channel(i, j)])),
  }));
  const dis: FabricDi[] = src.dis.map((d, j) => ({
    ...station(d.name, 2, j, d.links),
    functions: d.card.functions.map((f, fn) => ({ name: f.name, bdf: bdfOf(fn), model: f.testdev ? ('testdev' as const) : f.nic ? ('nic' as const) : ('nvme' as const) })),
    channels: Object.fromEntries(src.hosts.map((h, i) => [h.name, channel(i, j)])),
  }));
  const manager = station(MANAGER_PROCESS, 4, 0, 1);
  const assignments: FabricAssignment[] = placed.map(({ a, di, fn, slot }) => ({
    host: a.host,
    di: di.name,
    function: di.card.functions[fn]!.name,
    slot,
    channel: channel(
      src.hosts.findIndex((h) => h.name === a.host),
      src.dis.indexOf(di),
    ),
    bdf: bdfOf(fn),
    eep: `eep${slot}`,
  }));

  // Every MAC on the switch is one station's: a NIC's MAC may not repeat another's.
  const macOwners = new Map<string, string>([...his, ...dis, manager].flatMap((s) => s.macs.map((m, l) => [m, `link ${l} of ${s.process}`] as [string, string])));
  for (const w of cables) {
    const owner = macOwners.get(w.mac);
    if (owner) problems.push(`${w.at}: ${w.mac} is already used by ${owner}`);
    else macOwners.set(w.mac, w.at.replace(/\.nic\.mac$/, ''));
  }
  const portNames = new Set([...his, ...dis, manager].flatMap((s) => s.ports));
  for (const w of cables) {
    if (portNames.has(w.p)) problems.push(`${w.at}: switch port "${w.p}" is already another station's`);
    portNames.add(w.p);
  }
  out.processes.push(switchProcess(src.switch ?? { capture: false }, [...his, ...dis, manager], cables, transport));
  out.processOrigins.push('switch');
  src.dis.forEach((d, j) => {
    const s = dis[j]!;
    out.processes.push({
      name: s.process,
      run: 'src/di/main.ts',
      args: [
        ...linkArgs(s, transport),
        ...his.flatMap((h) => ['--channel', `${s.channels[h.host]}=${h.macs.join(',')}`]),
        ...d.card.functions.flatMap((f) => ['--function', functionArg(d, f, wires)]),
        ...assignments.filter((a) => a.di === d.name).flatMap((a) => ['--assign', `${a.function}=channel:${a.channel},bdf:${a.bdf}`]),
      ],
      ...(d.pin ? { pin: d.pin } : {}),
    });
    out.processOrigins.push(`dis[${j}].name`);
  });
  src.hosts.forEach((h, i) => {
    const hi = his[i]!;
    const mine = assignments.filter((a) => a.host === h.name);
    out.processes.push({
      name: hi.process,
      run: 'src/hi/main.ts',
      args: [
        ...linkArgs(hi, transport),
        ...dis.flatMap((d) => ['--channel', `${hi.channels[d.process]}=${d.macs.join(',')}`]),
        '--slots', String(h.hi.slots),
        ...mine.flatMap((a) => ['--eep', `${a.eep}=channel:${a.channel},bdf:${a.bdf}`]),
      ],
      ...(h.hi.pin ? { pin: h.hi.pin } : {}),
    });
    out.processOrigins.push(h.hi.name ? `hosts[${i}].hi.name` : `hosts[${i}].name`);
    const devices: DeviceSpec[] = [
      ...h.devices,
      { type: 'pcie-switch', id: 'hisw', slots: h.hi.slots + (h.hi.control ? 1 : 0) },
      ...mine.map((a): DeviceSpec => ({ type: 'vfio-user', id: a.eep, server: `${hi.process}/${a.eep}`, bus: `hisw.${a.slot}` })),
      ...(h.hi.control ? [{ type: 'vfio-user', id: 'hictl', server: `${hi.process}/hictl`, bus: `hisw.${h.hi.slots}` } as DeviceSpec] : []),
    ];
    out.vms.push({ name: h.name, cpus: h.cpus, memory: h.memory, ...(h.pin ? { pin: h.pin } : {}), devices });
    out.vmOrigins.push(`hosts[${i}]`);
  });
  // Ready once it serves its API: `lab up` returning means `lab assign` works.
  const ready = [apiFiles(`\${LAB_STATE}/${MANAGER_PROCESS}`).endpoint];
  out.processes.push({ name: MANAGER_PROCESS, run: 'src/manager/main.ts', args: linkArgs(manager, transport), ready });
  out.processOrigins.push('manager (the lab\'s own process)');
  out.fabric = { switch: SWITCH_PROCESS, transport, hosts: his, dis, assignments, manager };
  return out;
}
