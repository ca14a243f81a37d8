// Topology files (lab/topologies/*.yaml). Two forms, which may be mixed:
// - the lab as a user describes it: `hosts` (guests with an HI: slots, links), `dis` (device
//   interfaces with their cards' functions), the `switch`, the `fabric` transport between
//   stations and switch (memif by default, or unix), and initial `assign`ments; the
//   lab derives MACs, channels, sockets, processes and their order (derive.ts);
// - the process level, for experts: `processes` (argv of each lab process) and `vms` (each
//   device wired to a process's socket).
// Every error names its path in the file, e.g. `vms[1].memory: expected like "512M"`, and
// references between sections are checked too (crossCheck, derive.ts).
import { readFileSync } from 'node:fs';
import { formatYamlPath, parsePlainYaml } from './plain-yaml.ts';
import { z } from 'zod';
import { derive, type Derived, type Fabric } from './derive.ts';

const NAME = /^[a-z][a-z0-9-]{0,30}$/;
const NAME_HINT = 'expected a name like "host-a" (lowercase letters, digits, "-", at most 31)';
const name = z.string({ error: NAME_HINT }).regex(NAME, NAME_HINT);
const SIZE = /^\d+[KMGT]$/;
const size = z.string({ error: 'expected like "512M"' }).regex(SIZE, { error: 'expected like "512M"', abort: true });
const count = (min: number, max: number) =>
  z.number({ error: `expected a whole number from ${min} to ${max}` }).int().min(min).max(max);
/** A PCIe port a device plugs into: a switch slot "<switch id>.<n>". */
const bus = z
  .string({ error: 'expected a switch slot like "<switch id>.<n>"' })
  .regex(/^[a-z][a-z0-9-]*\.\d+$/, 'expected a switch slot like "<switch id>.<n>"');
/** A CPU list as taskset takes it: "1", "0-1", "0,2-3". */
export const CPU_LIST = /^\d+(-\d+)?(,\d+(-\d+)?)*$/;
const cpuList = z.string({ error: 'expected a CPU list like "0" or "0-1"' }).regex(CPU_LIST, 'expected a CPU list like "0" or "0-1"');

/** `<process>` or `<process>/<socket>`: a socket that one of the topology's processes serves. */
const serverRef = z
  .string({ error: 'expected "<process>" or "<process>/<socket>"' })
  .regex(/^[a-z][a-z0-9-]*(\/[a-z0-9-]+)?$/, 'expected "<process>" or "<process>/<socket>"');

/** QEMU's own NVMe controller on a raw file: the baseline every other path is compared with. */
const nvmeDevice = z.strictObject({
  type: z.literal('nvme'),
  id: name,
  size: size.default('1G'),
  bus: bus.optional(),
});
/** A vfio-user-pci device served by one of the topology's processes. */
const vfioUserDevice = z.strictObject({
  type: z.literal('vfio-user'),
  id: name,
  server: serverRef,
  bus: bus.optional(),
});
const macAddress = z
  .string({ error: 'expected a MAC address like "02:00:00:00:00:01"' })
  .regex(/^[0-9a-f][26ae](:[0-9a-f]{2}){5}$/i, 'expected a locally administered unicast MAC like "02:00:00:00:00:01"');
/** A virtio-net NIC cabled to a port of the lab's userspace Ethernet switch (a process). */
const nicDevice = z.strictObject({
  type: z.literal('nic'),
  id: name,
  server: serverRef,
  /** Unicast, locally administered; derived from the VM and NIC names when absent. */
  mac: macAddress.optional(),
  /** Address given to the interface inside the guest (it exists nowhere else). */
  ip: z
    .string({ error: 'expected an address with prefix like "10.0.0.1/24"' })
    .regex(/^(\d{1,3}\.){3}\d{1,3}\/\d{1,2}$/, 'expected an address with prefix like "10.0.0.1/24"')
    .optional(),
  bus: bus.optional(),
});
/** The HI's PCIe switch: an x3130 upstream port with xio3130 downstream slots (hot-plug capable). */
const pcieSwitch = z.strictObject({
  type: z.literal('pcie-switch'),
  id: name,
  slots: count(1, 32),
});
const device = z.discriminatedUnion('type', [nvmeDevice, vfioUserDevice, nicDevice, pcieSwitch], {
  error: (issue) => (issue.code === 'invalid_union' ? 'expected type to be one of nvme, vfio-user, nic, pcie-switch' : undefined),
});

const vmFields = {
  name,
  cpus: count(1, 16).default(2),
  // The guest's root file system is an initramfs unpacked into RAM (at most half of it).
  memory: size.refine((s) => parseSize(s) >= 512 * 2 ** 20, 'at least 512M: the guest unpacks its root file system into RAM').default('1G'),
  pin: cpuList.optional(),
  devices: z.array(device).default([]),
};
const vm = z.strictObject(vmFields);

/** Links from a station (HI or DI) to the lab switch: the link layer balances over them. */
const links = count(1, 8).default(2);

/** A host: a guest with a host interface (HI) whose PCIe switch has `slots` for remote functions. */
const host = z.strictObject({
  ...vmFields,
  hi: z
    .strictObject({
      /** The HI process's name (default hi-<host>). */
      name: name.optional(),
      /** Downstream slots for remote functions (assigned at start or hot-plugged later). */
      slots: count(1, 30).default(2),
      links,
      /** The HI's control endpoint (lspci 1234:4849) in one more slot after them. */
      control: z.boolean().default(true),
      pin: cpuList.optional(),
    })
    .prefault({}),
});

const nvmeFunction = z.strictObject({
  size: size.default('256M'),
  lba: z.union([z.literal(512), z.literal(4096)], { error: 'expected 512 or 4096' }).default(512),
  /** At most 20 characters; default PCIEOE-<DI>-<FUNCTION>. */
  serial: z.string().regex(/^[\x21-\x7e]{1,20}$/, 'expected 1 to 20 printable characters, no spaces').optional(),
});
/** A virtio-net NIC function (the model in src/devices/virtio-net); its wire is a port of the lab switch. */
const nicFunction = z.strictObject({
  /** Default 02:00:00:03:<DI index>:<function index>; distinct across the lab. */
  mac: macAddress.optional(),
  mtu: count(68, 9000).default(1500),
});
/** One function of a DI's card: exactly one model key (nvme, nic or testdev). */
const cardFunction = z
  .strictObject({ name, nvme: nvmeFunction.optional(), nic: nicFunction.optional(), testdev: z.strictObject({}).optional() })
  .refine((f) => (f.nvme ? 1 : 0) + (f.nic ? 1 : 0) + (f.testdev ? 1 : 0) === 1, 'expected exactly one model: nvme, nic or testdev');

const di = z.strictObject({
  name,
  links,
  pin: cpuList.optional(),
  /** A card's functions are its PCI functions 0..7 (01:00.0 to 01:00.7 on each host's channel). */
  card: z.strictObject({ functions: z.array(cardFunction).min(1, 'expected at least one function').max(8, 'a card has at most 8 functions') }),
});

const assignment = z.strictObject({
  /** "<di>/<function>" */
  function: z.string({ error: 'expected "<di>/<function>"' }).regex(/^[a-z][a-z0-9-]*\/[a-z][a-z0-9-]*$/, 'expected "<di>/<function>"'),
  host: name,
  /** The host's HI slot (default: its lowest free one). */
  slot: count(0, 29).optional(),
});

const labSwitch = z.strictObject({
  /** Every port written to LAB_STATE/pcap/<port>.pcap. */
  capture: z.boolean().default(false),
  /** Fault-injection randomness, for repeatable runs. */
  seed: z.number().int().optional(),
  /** Busy-poll microseconds (see switch-main --busy-poll). */
  busyPoll: count(0, 1_000_000).optional(),
  pin: cpuList.optional(),
});

/**
 * How stations (HIs, DIs, the manager) are cabled to the switch: memif (shared-memory rings, the
 * switch the server of each port's control socket) or unix datagram sockets. NIC wires (QEMU's
 * own virtio-net, a DI's NIC function) are unix datagrams either way: QEMU's netdev has no memif.
 */
export const TRANSPORTS = ['memif', 'unix'] as const;
export type Transport = (typeof TRANSPORTS)[number];
export const isTransport = (s: string): s is Transport => (TRANSPORTS as readonly string[]).includes(s);
const TRANSPORT_HINT = 'expected "memif" (shared memory, the default) or "unix" (datagram sockets)';
const labFabric = z.strictObject({
  transport: z.enum(TRANSPORTS, { error: TRANSPORT_HINT }).default('memif'),
});

const processSpec = z.strictObject({
  name,
  /** Node module run with tsx; path relative to the repository. */
  run: z.string().min(1),
  args: z.array(z.string()).default([]),
  pin: cpuList.optional(),
  /** Files whose existence means the process serves (beside the sockets VMs connect to); may name ${LAB_STATE} like args. */
  ready: z.array(z.string().min(1)).optional(),
});

const topologySchema = z.strictObject({
  name,
  description: z.string().optional(),
  accel: z.enum(['tcg', 'kvm']).default('tcg'),
  processes: z.array(processSpec).default([]),
  vms: z.array(vm).default([]),
  switch: labSwitch.optional(),
  fabric: labFabric.optional(),
  hosts: z.array(host).default([]),
  dis: z.array(di).default([]),
  assign: z.array(assignment).default([]),
});

/** A topology file as written. */
export type TopologySource = z.infer<typeof topologySchema>;
export type HostSpec = TopologySource['hosts'][number];
export type DiSpec = TopologySource['dis'][number];
export type AssignmentSpec = TopologySource['assign'][number];
export type SwitchSpec = NonNullable<TopologySource['switch']>;
export type VmSpec = TopologySource['vms'][number];
export type DeviceSpec = VmSpec['devices'][number];
export type ProcessSpec = TopologySource['processes'][number];

/** What the lab runs: every process and VM, hosts and DIs derived into them (derive.ts). */
export interface Topology {
  name: string;
  description?: string;
  accel: 'tcg' | 'kvm';
  processes: ProcessSpec[];
  vms: VmSpec[];
  /** The hosts, DIs and switch the lab derived its processes from, if the file describes them. */
  fabric?: Fabric;
}

export class TopologyError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`${file}: invalid topology\n` + problems.map((p) => `  ${p}`).join('\n'));
  }
}

/**
 * Checks that need the whole file: unique names and references between sections, on what
 * the lab will run; `origins` say where each process and VM came from in the file.
 */
function crossCheck(t: Topology, origins: Pick<Derived, 'processOrigins' | 'vmOrigins'>): string[] {
  const problems: string[] = [];
  const unique = (items: { name: string }[], where: string[]) => {
    const seen = new Map<string, string>();
    items.forEach((it, i) => {
      const first = seen.get(it.name);
      const at = where[i]!.endsWith('.name') || where[i] === 'switch' ? where[i] : `${where[i]}.name`;
      if (first !== undefined) problems.push(`${at}: duplicate name "${it.name}" (${first.replace(/\.name$/, '')} has it too)`);
      else seen.set(it.name, where[i]!);
    });
  };
  unique(t.vms, origins.vmOrigins);
  unique(t.processes, origins.processOrigins);
  const processes = new Set(t.processes.map((p) => p.name));
  t.vms.forEach((v, i) => {
    const ids = new Set<string>();
    const buses = new Set<string>();
    for (const d of v.devices) {
      if (d.type === 'pcie-switch') for (let s = 0; s < d.slots; s++) buses.add(`${d.id}.${s}`);
    }
    v.devices.forEach((d, j) => {
      const at = `${origins.vmOrigins[i]}.devices[${j}]`;
      if (ids.has(d.id)) problems.push(`${at}.id: duplicate id "${d.id}" in VM "${v.name}"`);
      ids.add(d.id);
      if ((d.type === 'vfio-user' || d.type === 'nic') && !processes.has(d.server.split('/')[0]!))
        problems.push(`${at}.server: no process named "${d.server.split('/')[0]}" in processes`);
      if (d.type !== 'pcie-switch' && d.bus !== undefined && !buses.has(d.bus))
        problems.push(`${at}.bus: expected a switch slot like "<switch id>.<n>" of this VM, got "${d.bus}"`);
    });
  });
  return problems;
}

/** Parses and validates topology text, derives what runs; throws TopologyError listing every problem. */
export interface TopologyOptions {
  /** Replaces the file's `assign` (the manager's saved table, when a lab comes up again). */
  assignments?: AssignmentSpec[];
  /** Replaces the file's `fabric.transport` (benchmarks compare transports on one topology). */
  transport?: Transport;
}

export function parseTopology(text: string, file = '<topology>', opts: TopologyOptions = {}): Topology {
  const yaml = parsePlainYaml(text);
  if (yaml.problems) throw new TopologyError(file, yaml.problems);
  const result = topologySchema.safeParse(yaml.value);
  if (!result.success) {
    throw new TopologyError(
      file,
      result.error.issues.map((issue) => `${formatYamlPath(issue.path)}: ${issue.message}`),
    );
  }
  const src = opts.assignments ? { ...result.data, assign: opts.assignments } : result.data;
  const derived = derive(src, opts.transport);
  if (derived.problems.length) throw new TopologyError(file, derived.problems);
  const topo: Topology = {
    name: src.name,
    ...(src.description !== undefined ? { description: src.description } : {}),
    accel: src.accel,
    processes: derived.processes,
    vms: derived.vms,
    ...(derived.fabric ? { fabric: derived.fabric } : {}),
  };
  const problems = topo.vms.length ? crossCheck(topo, derived) : ['vms: expected at least one VM (or hosts)'];
  if (problems.length) throw new TopologyError(file, problems);
  return topo;
}

export function loadTopology(file: string, opts: TopologyOptions = {}): Topology {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new TopologyError(file, [`cannot read the file: ${(err as Error).message}`]);
  }
  return parseTopology(text, file, opts);
}

/** Size string ("512M") → bytes. */
export function parseSize(s: string): number {
  const unit = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }[s.at(-1) as 'K'];
  return Number(s.slice(0, -1)) * unit;
}
