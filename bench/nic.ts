// The NIC paths side by side: host A sends to host B (QEMU's virtio-net on the lab switch)
// through QEMU's own virtio-net (two-hosts-net), the virtio-net model attached directly
// (nic-direct) and the model through HI + switch + DI (nic-remote). Per path: iperf3 TCP
// throughput A -> B and B -> A, and ping round trip A -> B. Targets (issue 14): remote >= 80 %
// of direct, direct >= 50 % of QEMU's.
//
//   npm run bench -- nic       (NVME_BENCH_SECONDS per iperf3 run, NVME_BENCH_PIN to pin lab processes)
import { benchTopology, placementText, privateLabDirs } from './lib/lab.ts';

const state = privateLabDirs('lab-nicb');
const { up, down, topologyFile } = await import('../src/lab/lab.ts');
const { setup } = await import('../src/lab/setup.ts');
const { SECONDS, guestShell } = await import('./lib/fio.ts');
const { record, recordSettings } = await import('./lib/results.ts');

const MODEL_MAC = '02:00:00:00:0a:01';
const PATHS = [
  { path: 'QEMU virtio-net', topology: 'two-hosts-net' },
  { path: 'model direct', topology: 'nic-direct' },
  { path: 'model PCIeOE', topology: 'nic-remote' },
] as const;

interface Figures {
  aToB: number;
  bToA: number;
  rttMs: number;
}

async function measure(topology: string): Promise<Figures> {
  const lab = await up(benchTopology(topologyFile(topology), state));
  try {
    const a = guestShell(lab.vms.find((v) => v.name === 'host-a')!.agent);
    const b = guestShell(lab.vms.find((v) => v.name === 'host-b')!.agent);
    // The model's interface is a vfio-user device to the lab: give it its address here.
    await a(`i=$(ip -o link | grep -i 'ether ${MODEL_MAC}' | cut -d: -f2 | tr -d ' '); if [ -n "$i" ]; then ip link set "$i" up && ip addr add 10.99.0.1/24 dev "$i"; fi`);
    await a('ping -c 3 -W 5 10.99.0.2 >/dev/null');
    const tcp = async (client: typeof a, server: typeof a, ip: string) => {
      await server('iperf3 -s -D -1');
      return JSON.parse(await client(`iperf3 -c ${ip} -t ${SECONDS} -J`)).end.sum_received.bits_per_second as number;
    };
    const aToB = await tcp(a, b, '10.99.0.2');
    const bToA = await tcp(b, a, '10.99.0.1');
    const ping = await a('ping -c 20 -i 0.2 -W 5 10.99.0.2');
    const rttMs = Number(/rtt min\/avg\/max\/mdev = [\d.]+\/([\d.]+)/.exec(ping)?.[1]);
    return { aToB, bToA, rttMs };
  } finally {
    await down();
  }
}

await setup();
recordSettings('nic', { seconds: SECONDS, placement: placementText() });
const results = new Map<string, Figures>();
for (const p of PATHS) {
  const f = await measure(p.topology);
  results.set(p.path, f);
  record({ kind: 'value', bench: 'nic', name: `${p.path}: iperf3 TCP A->B`, value: f.aToB / 1e6, unit: 'Mb/s' });
  record({ kind: 'value', bench: 'nic', name: `${p.path}: iperf3 TCP B->A`, value: f.bToA / 1e6, unit: 'Mb/s' });
  record({ kind: 'value', bench: 'nic', name: `${p.path}: ping A->B mean`, value: f.rttMs, unit: 'ms' });
}
console.log(`\niperf3 TCP ${SECONDS} s per direction, ping 20 x 56 B (${placementText()}, TCG)`);
console.log(`${'path'.padEnd(18)} ${'A->B Mb/s'.padStart(10)} ${'B->A Mb/s'.padStart(10)} ${'ping ms'.padStart(8)}`);
for (const [path, f] of results) console.log(`${path.padEnd(18)} ${(f.aToB / 1e6).toFixed(0).padStart(10)} ${(f.bToA / 1e6).toFixed(0).padStart(10)} ${f.rttMs.toFixed(2).padStart(8)}`);
const q = results.get('QEMU virtio-net')!;
const d = results.get('model direct')!;
const r = results.get('model PCIeOE')!;
console.log(`direct / QEMU (A->B): ${(d.aToB / q.aToB).toFixed(2)} (target >= 0.5); PCIeOE / direct: ${(r.aToB / d.aToB).toFixed(2)} (target >= 0.8)`);
