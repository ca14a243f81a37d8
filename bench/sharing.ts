// The paper's sharing cases over PCIeOE, on the five NVMe workloads (QD 64 per device as
// 2 jobs x iodepth 32, fio libaio direct), each measured alone and then together in one run:
//   2:1  two-hosts-shared-card: host A's function alone, then both hosts at once on their
//        own function of the one card in one DI (two guests share the machine's two cores);
//   1:2  one-host-two-cards: card A alone, then both cards at once through one HI.
// "together/alone" is the aggregate against one path by itself: what sharing the card (2:1)
// or the HI (1:2) gives back.
//
//   npm run bench -- sharing   (NVME_BENCH_SECONDS=10 per case, NVME_BENCH_PIN: where the lab's processes run, as in nvme.ts)
import { rmSync } from 'node:fs';
import { type BenchLab, benchUp, placementText, privateLabDirs } from './lib/lab.ts';
import { record, recordSettings } from './lib/results.ts';

const state = privateLabDirs('lab-share');
const { down } = await import('../src/lab/lab.ts');
const { WORKLOADS, SECONDS, controllers, fill, guestShell, resultCells, resultHeader, runFio, runFioOn } = await import('./lib/fio.ts');
type Result = import('./lib/fio.ts').Result;
type Shell = import('./lib/fio.ts').Shell;
type Workload = import('./lib/fio.ts').Workload;

/** A path of the case: a guest and one of its NVMe block devices. */
interface Path {
  label: string;
  sh: Shell;
  dev: string;
}

/** Paths measured together: one fio per guest, the guests' runs at once. */
async function together(paths: Path[], w: Workload): Promise<Result[]> {
  const byGuest = new Map<Shell, Path[]>();
  for (const p of paths) byGuest.set(p.sh, [...(byGuest.get(p.sh) ?? []), p]);
  const runs = await Promise.all([...byGuest].map(async ([sh, ps]) => ({ ps, rs: await runFioOn(sh, ps.map((p) => p.dev), w) })));
  const result = new Map(runs.flatMap(({ ps, rs }) => ps.map((p, i) => [p, rs[i]!] as const)));
  return paths.map((p) => result.get(p)!);
}

async function measureCase(title: string, topology: string, pathsOf: (lab: BenchLab) => Promise<Path[]>): Promise<void> {
  const lab = await benchUp(topology, state);
  try {
    const paths = await pathsOf(lab);
    console.log(`\n${title}, topology ${topology}: ${paths.map((p) => `${p.label} ${p.dev}`).join(', ')}; ${lab.qemuVersion}, ${lab.accel}, ${placementText()}; ${SECONDS} s per case`);
    const both = paths.map((p) => `${p.label} together`);
    console.log(`${'workload'.padEnd(24)}${resultHeader(`${paths[0]!.label} alone`)}${both.map(resultHeader).join('')} | ${'sum IOPS'.padStart(10)} | ${'together/alone'.padStart(14)}`);
    const sharing = title.split(' ')[0]!; // '2:1' or '1:2', as the report names the cases
    recordSettings('sharing', { [`${sharing} topology`]: topology, secondsPerCase: SECONDS, placement: placementText() });
    const rec = (label: string, w: Workload, r: Result) => record({ kind: 'io', bench: 'sharing', workload: w.name, path: `${sharing} ${label}`, ...r });
    for (const p of paths) await fill(p.sh, p.dev);
    for (const w of WORKLOADS) {
      const alone = await runFio(paths[0]!.sh, paths[0]!.dev, w);
      const rs = await together(paths, w);
      const sum = rs.reduce((a, r) => a + r.iops, 0);
      rec(`${paths[0]!.label} alone`, w, alone);
      rs.forEach((r, i) => rec(`${paths[i]!.label} together`, w, r));
      console.log(`${w.name.padEnd(24)}${resultCells(alone)}${rs.map(resultCells).join('')} | ${Math.round(sum).toString().padStart(10)} | ${`${((sum / alone.iops) * 100).toFixed(0)} %`.padStart(14)}`);
    }
  } finally {
    await down();
  }
}

try {
  await measureCase('2:1 (two hosts share one card)', 'two-hosts-shared-card', async (lab) =>
    Promise.all(lab.vms.map(async (vm) => {
      const sh = guestShell(vm.agent);
      const [c, ...more] = await controllers(sh);
      if (!c || more.length) throw new Error(`${vm.name}: expected one NVMe controller`);
      return { label: vm.name, sh, dev: c.dev };
    })),
  );
  await measureCase('1:2 (one host, two cards)', 'one-host-two-cards', async (lab) => {
    const sh = guestShell(lab.vms[0]!.agent);
    const cs = (await controllers(sh)).sort((a, b) => a.serial.localeCompare(b.serial));
    if (cs.length !== 2) throw new Error(`expected two NVMe controllers, the guest has ${cs.length}`);
    return cs.map((c) => ({ label: c.serial.replace(/^PCIEOE-/, '').toLowerCase(), sh, dev: c.dev }));
  });
} finally {
  rmSync(state, { recursive: true, force: true });
}
