// Topology files (lab/topologies/*.yaml): which VMs to boot, what each one plugs in, and
// which lab processes (vfio-user servers, later the switch, HI and DI) serve them.
// Every error names its path in the file, e.g. `vms[1].memory: expected like "512M"`.
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { z } from 'zod';

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
const cpuList = z
  .string({ error: 'expected a CPU list like "0" or "0-1"' })
  .regex(/^\d+(-\d+)?(,\d+(-\d+)?)*$/, 'expected a CPU list like "0" or "0-1"');

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
/** A virtio-net NIC cabled to a port of the lab's userspace Ethernet switch (a process). */
const nicDevice = z.strictObject({
  type: z.literal('nic'),
  id: name,
  server: serverRef,
  /** Unicast, locally administered; derived from the VM and NIC names when absent. */
  mac: z
    .string({ error: 'expected a MAC address like "02:00:00:00:00:01"' })
    .regex(/^[0-9a-f][26ae](:[0-9a-f]{2}){5}$/i, 'expected a locally administered unicast MAC like "02:00:00:00:00:01"')
    .optional(),
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

const vm = z.strictObject({
  name,
  cpus: count(1, 16).default(2),
  // The guest's root file system is an initramfs unpacked into RAM (at most half of it).
  memory: size.refine((s) => parseSize(s) >= 512 * 2 ** 20, 'at least 512M: the guest unpacks its root file system into RAM').default('1G'),
  pin: cpuList.optional(),
  devices: z.array(device).default([]),
});

const processSpec = z.strictObject({
  name,
  /** Node module run with tsx; path relative to the repository. */
  run: z.string().min(1),
  args: z.array(z.string()).default([]),
  pin: cpuList.optional(),
});

const topologySchema = z.strictObject({
  name,
  description: z.string().optional(),
  accel: z.enum(['tcg', 'kvm']).default('tcg'),
  processes: z.array(processSpec).default([]),
  vms: z.array(vm).min(1, 'expected at least one VM'),
});

export type Topology = z.infer<typeof topologySchema>;
export type VmSpec = Topology['vms'][number];
export type DeviceSpec = VmSpec['devices'][number];
export type ProcessSpec = Topology['processes'][number];

export class TopologyError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`${file}: invalid topology\n` + problems.map((p) => `  ${p}`).join('\n'));
  }
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) out += typeof key === 'number' ? `[${key}]` : out ? `.${String(key)}` : String(key);
  return out || '(top level)';
}

/** Checks that need the whole file: unique names and references between sections. */
function crossCheck(t: Topology): string[] {
  const problems: string[] = [];
  const unique = (items: { name: string }[], where: string) => {
    const seen = new Set<string>();
    items.forEach((it, i) => {
      if (seen.has(it.name)) problems.push(`${where}[${i}].name: duplicate name "${it.name}"`);
      seen.add(it.name);
    });
  };
  unique(t.vms, 'vms');
  unique(t.processes, 'processes');
  const processes = new Set(t.processes.map((p) => p.name));
  t.vms.forEach((v, i) => {
    const ids = new Set<string>();
    const buses = new Set<string>();
    for (const d of v.devices) {
      if (d.type === 'pcie-switch') for (let s = 0; s < d.slots; s++) buses.add(`${d.id}.${s}`);
    }
    v.devices.forEach((d, j) => {
      const at = `vms[${i}].devices[${j}]`;
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

/** Parses and validates topology text; throws TopologyError listing every problem. */
export function parseTopology(text: string, file = '<topology>'): Topology {
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length) throw new TopologyError(file, doc.errors.map((e) => `YAML: ${e.message.split('\n')[0]}`));
  const result = topologySchema.safeParse(doc.toJS());
  if (!result.success) {
    throw new TopologyError(
      file,
      result.error.issues.map((issue) => `${formatPath(issue.path)}: ${issue.message}`),
    );
  }
  const problems = crossCheck(result.data);
  if (problems.length) throw new TopologyError(file, problems);
  return result.data;
}

export function loadTopology(file: string): Topology {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new TopologyError(file, [`cannot read the file: ${(err as Error).message}`]);
  }
  return parseTopology(text, file);
}

/** Size string ("512M") → bytes. */
export function parseSize(s: string): number {
  const unit = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }[s.at(-1) as 'K'];
  return Number(s.slice(0, -1)) * unit;
}
