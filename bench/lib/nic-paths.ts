// Host A's three NICs in lab/topologies/nic-bench.yaml, one per path bench/nic.ts compares, and
// the guest commands that give each its own subnet (the YAML's comment says why so).

/** The lab bench/nic.ts measures the three paths in. */
export const NIC_BENCH_TOPOLOGY = 'nic-bench';
/** Host B's one NIC (QEMU's virtio-net), which holds an address in each path's subnet. */
export const HOST_B_MAC = '02:00:00:00:0b:01';

export interface NicPath {
  /** The name results and the report use. */
  path: 'QEMU virtio-net' | 'model direct' | 'model PCIeOE';
  /** How NIC_BENCH_PATHS names it. */
  key: 'qemu' | 'direct' | 'pcieoe';
  /** Host A's NIC of this path. */
  mac: string;
  /** Host A is <subnet>.1/24 on that NIC, host B <subnet>.2/24. */
  subnet: string;
}

export const HOST_A_NICS: readonly NicPath[] = [
  { path: 'QEMU virtio-net', key: 'qemu', mac: '02:00:00:00:0a:03', subnet: '10.99.3' },
  { path: 'model direct', key: 'direct', mac: '02:00:00:00:0a:02', subnet: '10.99.2' },
  { path: 'model PCIeOE', key: 'pcieoe', mac: '02:00:00:00:0a:01', subnet: '10.99.1' },
];

export const ipA = (p: NicPath) => `${p.subnet}.1`;
export const ipB = (p: NicPath) => `${p.subnet}.2`;

/** Shell: the name of the interface with this MAC in $i, or fail. */
const ifaceOf = (mac: string) => `i=$(ip -o link | grep -i 'ether ${mac}' | cut -d: -f2 | tr -d ' '); [ -n "$i" ] || { echo 'no NIC with MAC ${mac}' >&2; exit 1; }`;

/**
 * Host A: each NIC up with its path's address, and ARP answered only on the NIC holding the
 * address asked for (arp_ignore=1) and asked from it (arp_announce=2): B's broadcast requests
 * reach all three, and Linux would otherwise answer on each.
 */
export const hostASetup = (nics: readonly NicPath[]) =>
  ['echo 1 > /proc/sys/net/ipv4/conf/all/arp_ignore', 'echo 2 > /proc/sys/net/ipv4/conf/all/arp_announce',
    ...nics.map((p) => `${ifaceOf(p.mac)}; ip link set "$i" up && ip addr replace ${ipA(p)}/24 dev "$i"`)].join('; ');

/** Host B: its one NIC holds .2 of each path's subnet. */
export const hostBSetup = (nics: readonly NicPath[]) =>
  [ifaceOf(HOST_B_MAC), ...nics.map((p) => `ip addr replace ${ipB(p)}/24 dev "$i"`)].join('; ');
