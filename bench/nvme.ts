// NVMe paths side by side in one guest, on the five workloads of issues 4 and 6, each QD 64
// as 2 jobs x iodepth 32, fio libaio direct: QEMU's built-in nvme (C), the NVMe model
// attached directly over vfio-user, and the same model behind HI + switch + DI (PCIeOE).
// Default topology one-host-nvme-bench has all three; nvme-bench has the first two. The
// devices alternate per workload so that load from anything else on the machine hits all
// alike; runs differ by ~15 % (design notes §7).
//
//   npm run bench -- nvme   (NVME_BENCH_SECONDS=10 per case, NVME_BENCH_TOPOLOGY=one-host-nvme-bench,
//                            NVME_BENCH_PIN=1 pins the lab's processes to CPU 1)
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const state = mkdtempSync('/run/lab-nvb-');
process.env.LAB_STATE = state;
process.env.LAB_DATA = state;
const { up, down, topologyFile } = await import('../src/lab/lab.ts');
const { agentExec } = await import('../src/lab/agent.ts');
const { readFileSync } = await import('node:fs');

const seconds = Number(process.env.NVME_BENCH_SECONDS ?? 10);
const workloads = [
  { name: 'randread 512 B', args: '--rw=randread --bs=512' },
  { name: 'randwrite 512 B', args: '--rw=randwrite --bs=512' },
  { name: 'randrw 70 % read 4 KiB', args: '--rw=randrw --rwmixread=70 --bs=4k' },
  { name: 'seq read 64 KiB', args: '--rw=read --bs=64k' },
  { name: 'seq write 64 KiB', args: '--rw=write --bs=64k' },
];

interface FioSide {
  iops: number;
  lat_ns: { mean: number };
  clat_ns?: { percentile?: Record<string, number> };
}
interface Result {
  iops: number;
  meanUs: number;
  p99Us: number;
}

/** Read and write sides of a group-reported job combined: IOPS summed, mean weighted, p99 the worse one. */
function combine(job: { read: FioSide; write: FioSide }): Result {
  const sides = [job.read, job.write].filter((s) => s.iops > 0);
  const iops = sides.reduce((a, s) => a + s.iops, 0);
  const meanUs = sides.reduce((a, s) => a + s.iops * s.lat_ns.mean, 0) / iops / 1000;
  const p99Us = Math.max(...sides.map((s) => s.clat_ns?.percentile?.['99.000000'] ?? 0)) / 1000;
  return { iops, meanUs, p99Us };
}

// Pinning puts the lab's processes on one CPU of their own (QEMU keeps both): design notes §8.
const topoName = process.env.NVME_BENCH_TOPOLOGY ?? 'one-host-nvme-bench';
let topo = topologyFile(topoName);
if (process.env.NVME_BENCH_PIN) {
  topo = join(state, `${topoName}.yaml`);
  writeFileSync(topo, readFileSync(topologyFile(topoName), 'utf8').replace(/^( +)run: (.*)$/gm, `$1run: $2\n$1pin: "${process.env.NVME_BENCH_PIN}"`));
}

/** Which path a controller is, from what the guest sees of it. */
function pathOf(model: string, serial: string): string {
  if (model.includes('QEMU')) return 'QEMU nvme';
  return serial.includes('REMOTE') ? 'PCIeOE' : 'direct';
}
const ORDER = ['QEMU nvme', 'direct', 'PCIeOE'];

try {
  const lab = await up(topo);
  const agent = lab.vms[0]!.agent;
  const sh = async (cmd: string) => {
    const r = await agentExec(agent, cmd, { timeoutMs: (seconds + 120) * 1000 });
    if (r.status !== 0) throw new Error(`guest: ${cmd}: exit ${r.status}\n${r.stdout}${r.stderr}`);
    return r.stdout;
  };
  // Block devices by path (probe order decides nvme0 / nvme1 / ...).
  const devs = new Map<string, string>();
  for (const l of (await sh('for c in /sys/class/nvme/nvme*; do echo "$(basename $c)|$(cat $c/model)|$(cat $c/serial)"; done')).trim().split('\n')) {
    const [ctrl, model, serial] = l.split('|');
    devs.set(pathOf(model!, serial!), `/dev/${ctrl}n1`);
  }
  const sides = ORDER.filter((p) => devs.has(p));
  console.log(`NVMe, topology ${topoName}: ${sides.map((p) => `${p} ${devs.get(p)}`).join(', ')}; ${lab.qemuVersion}, ${lab.accel}, 2 vCPUs, ` +
    `lab processes ${process.env.NVME_BENCH_PIN ? `pinned to CPU ${process.env.NVME_BENCH_PIN}` : 'unpinned'}; ${seconds} s per case, QD 64 = 2 jobs x 32`);
  const ratios = sides.slice(1).map((p, i) => [p, sides[i]!] as const); // each path against the one before it
  console.log(`${'workload'.padEnd(24)}${sides.map((p) => ` | ${`${p} IOPS`.padStart(14)} ${'mean µs'.padStart(8)} ${'p99 µs'.padStart(8)}`).join('')}${ratios.map(([a, b]) => ` | ${`${a}/${b}`.padStart(17)}`).join('')}`);
  // Fill the areas the reads cover, so reads hit written (not sparse) blocks everywhere.
  for (const d of devs.values()) await sh(`fio --name=fill --filename=${d} --direct=1 --ioengine=libaio --rw=write --bs=1M --iodepth=8 --size=256M >/dev/null`);
  for (const w of workloads) {
    const r = new Map<string, Result>();
    for (const side of sides) {
      const out = await sh(
        `fio --name=b --filename=${devs.get(side)} --direct=1 --ioengine=libaio ${w.args} --iodepth=32 --numjobs=2 --group_reporting ` +
          `--time_based --runtime=${seconds} --ramp_time=2 --size=256M --randrepeat=0 --output-format=json`,
      );
      r.set(side, combine(JSON.parse(out.slice(out.indexOf('{'))).jobs[0]));
    }
    const f = (x: Result) => `${Math.round(x.iops).toString().padStart(14)} ${x.meanUs.toFixed(0).padStart(8)} ${x.p99Us.toFixed(0).padStart(8)}`;
    const ratio = ([a, b]: readonly [string, string]) => `${((r.get(a)!.iops / r.get(b)!.iops) * 100).toFixed(0)} %`.padStart(17);
    console.log(`${w.name.padEnd(24)}${sides.map((p) => ` | ${f(r.get(p)!)}`).join('')}${ratios.map((x) => ` | ${ratio(x)}`).join('')}`);
  }
} finally {
  await down();
  rmSync(state, { recursive: true, force: true });
}
