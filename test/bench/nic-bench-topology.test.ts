// lab/topologies/nic-bench.yaml against what bench/nic.ts assumes of it (bench/lib/nic-paths.ts):
// host A's three NICs, one per path, each with its MAC cabled to its own port of the one switch.
import test from 'ava';
import { join } from 'node:path';
import { loadTopology } from '../../src/lab/topology.ts';
import { topologiesDir } from '../../src/lab/paths.ts';
import { HOST_A_NICS, HOST_B_MAC, NIC_BENCH_TOPOLOGY, ipA, ipB, type NicPath } from '../../bench/lib/nic-paths.ts';

const topo = loadTopology(join(topologiesDir, `${NIC_BENCH_TOPOLOGY}.yaml`));
const args = (name: string) => topo.processes.find((p) => p.name === name)!.args;
/** The values of one option of a process, e.g. every --station. */
const option = (name: string, opt: string) => args(name).flatMap((a, i, all) => (all[i - 1] === opt ? [a] : []));
/** The switch port each MAC may send from (--station PORT=MAC). */
const stations = new Map(option('sw', '--station').map((s) => s.split('=') as [string, string]).map(([port, mac]) => [mac, port]));
const portOfSocket = (path: string) => /\/sockets\/sw\/([a-z0-9-]+)\.sock$/.exec(path)?.[1];
const hostA = topo.vms.find((v) => v.name === 'host-a')!;
const hostB = topo.vms.find((v) => v.name === 'host-b')!;

/** The switch port host A's NIC of this path is cabled to, as the topology writes it. */
function cabledPort(p: NicPath): string | undefined {
  if (p.key === 'pcieoe') {
    const fn = option('di', '--function').find((f) => f.includes(`mac:${p.mac},`));
    // ... and the function is assigned, and host A has the HI's endpoint for it.
    if (!fn || !option('di', '--assign').some((a) => a.startsWith(`${fn.split('=')[0]}=`))) return undefined;
    if (!hostA.devices.some((d) => d.type === 'vfio-user' && d.server.startsWith('hia/'))) return undefined;
    return portOfSocket(/wire:([^,]+)/.exec(fn)![1]!);
  }
  if (p.key === 'direct') {
    if (option('nic', '--mac')[0] !== p.mac || !hostA.devices.some((d) => d.type === 'vfio-user' && d.server === `nic/${option('nic', '--socket')[0]}`)) return undefined;
    return portOfSocket(option('nic', '--wire')[0]!);
  }
  const dev = hostA.devices.find((d) => d.type === 'nic' && d.mac === p.mac);
  return dev?.type === 'nic' ? dev.server.split('/')[1] : undefined;
}

test('host A has one NIC per path, each on its own switch port that accepts its MAC', (t) => {
  const ports = HOST_A_NICS.map((p) => {
    const port = cabledPort(p);
    t.truthy(port, p.path);
    t.is(stations.get(p.mac), port, `${p.path}: the switch takes ${p.mac} on the port it is cabled to`);
    return port;
  });
  t.is(new Set(ports).size, HOST_A_NICS.length);
  t.is(new Set(HOST_A_NICS.map((p) => p.mac)).size, HOST_A_NICS.length, 'distinct MACs');
});

test('host B has one NIC on the switch; the addresses the topology sets are those of the QEMU path', (t) => {
  const nics = hostB.devices.filter((d) => d.type === 'nic');
  t.is(nics.length, 1);
  t.is(nics[0]!.type === 'nic' && nics[0]!.mac, HOST_B_MAC);
  t.is(stations.get(HOST_B_MAC), nics[0]!.type === 'nic' ? nics[0]!.server.split('/')[1] : undefined);
  const qemu = HOST_A_NICS.find((p) => p.key === 'qemu')!;
  const ip = (d: (typeof hostA.devices)[number] | undefined) => (d?.type === 'nic' ? d.ip : undefined);
  t.is(ip(hostA.devices.find((d) => d.type === 'nic' && d.mac === qemu.mac)), `${ipA(qemu)}/24`);
  t.is(ip(nics[0]), `${ipB(qemu)}/24`);
  t.is(new Set(HOST_A_NICS.map((p) => p.subnet)).size, HOST_A_NICS.length, 'a subnet per path');
});
