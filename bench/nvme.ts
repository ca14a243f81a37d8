// NVMe model vs QEMU's built-in nvme (C), side by side in one guest
// (topology nvme-bench: both on 1 GiB sparse files, 2 vCPUs, TCG), on the
// five workloads of issue 4, each QD 64 as 2 jobs x iodepth 32, fio libaio
// direct. The two devices alternate per workload so that load from anything
// else on the machine hits both alike; runs differ by ~15 % (design notes §7).
//
//   npm run bench -- nvme        (NVME_BENCH_SECONDS=10 per case, NVME_BENCH_PIN=1 pins the server to CPU 1)
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

// Pinning puts the server on its own CPU (QEMU keeps both): see design notes §8.
let topo = topologyFile('nvme-bench');
if (process.env.NVME_BENCH_PIN) {
  topo = join(state, 'nvme-bench.yaml');
  writeFileSync(topo, readFileSync(topologyFile('nvme-bench'), 'utf8').replace('run: src/devices/nvme/main.ts', `run: src/devices/nvme/main.ts\n    pin: "${process.env.NVME_BENCH_PIN}"`));
}

try {
  const lab = await up(topo);
  const agent = lab.vms[0]!.agent;
  const sh = async (cmd: string) => {
    const r = await agentExec(agent, cmd, { timeoutMs: (seconds + 120) * 1000 });
    if (r.status !== 0) throw new Error(`guest: ${cmd}: exit ${r.status}\n${r.stdout}${r.stderr}`);
    return r.stdout;
  };
  // Block devices by controller model (probe order decides nvme0 / nvme1).
  const devs = Object.fromEntries(
    (await sh('for c in /sys/class/nvme/nvme*; do echo "$(basename $c) $(cat $c/model)"; done'))
      .trim()
      .split('\n')
      .map((l) => [l.includes('QEMU') ? 'qemu' : 'model', `/dev/${l.split(' ')[0]}n1`]),
  ) as Record<'qemu' | 'model', string>;
  console.log(`NVMe: QEMU nvme (${devs.qemu}) vs PCIeOE model over vfio-user (${devs.model}); ${lab.qemuVersion}, ${lab.accel}, 2 vCPUs, ` +
    `server ${process.env.NVME_BENCH_PIN ? `pinned to CPU ${process.env.NVME_BENCH_PIN}` : 'unpinned'}; ${seconds} s per case, QD 64 = 2 jobs x 32`);
  console.log(`${'workload'.padEnd(24)} ${'QEMU IOPS'.padStart(10)} ${'mean µs'.padStart(8)} ${'p99 µs'.padStart(8)} | ${'model IOPS'.padStart(10)} ${'mean µs'.padStart(8)} ${'p99 µs'.padStart(8)} | ratio`);
  // Fill the areas the reads cover, so reads hit written (not sparse) blocks on both.
  for (const d of Object.values(devs)) await sh(`fio --name=fill --filename=${d} --direct=1 --ioengine=libaio --rw=write --bs=1M --iodepth=8 --size=256M >/dev/null`);
  for (const w of workloads) {
    const r: Partial<Record<'qemu' | 'model', Result>> = {};
    for (const side of ['qemu', 'model'] as const) {
      const out = await sh(
        `fio --name=b --filename=${devs[side]} --direct=1 --ioengine=libaio ${w.args} --iodepth=32 --numjobs=2 --group_reporting ` +
          `--time_based --runtime=${seconds} --ramp_time=2 --size=256M --randrepeat=0 --output-format=json`,
      );
      r[side] = combine(JSON.parse(out.slice(out.indexOf('{'))).jobs[0]);
    }
    const f = (x: Result) => `${Math.round(x.iops).toString().padStart(10)} ${x.meanUs.toFixed(0).padStart(8)} ${x.p99Us.toFixed(0).padStart(8)}`;
    console.log(`${w.name.padEnd(24)} ${f(r.qemu!)} | ${f(r.model!)} | ${((r.model!.iops / r.qemu!.iops) * 100).toFixed(0).padStart(4)} %`);
  }
} finally {
  await down();
  rmSync(state, { recursive: true, force: true });
}
