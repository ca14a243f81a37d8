// Boot time of lab guests under the default accelerator: one guest alone, then two started
// together (they share the machine's two cores). "Boot" is `lab up` until every guest's agent
// answers, i.e. QEMU start, kernel, initramfs unpacking, init, agent.
//
//   npm run bench -- boot            (LAB_BENCH_RUNS=3 by default)
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { privateLabDirs } from './lib/lab.ts';
import { record, recordSettings } from './lib/results.ts';

const state = privateLabDirs('lab-bench');
const { up, down } = await import('../src/lab/lab.ts');
const { setup } = await import('../src/lab/setup.ts');

const runs = Number(process.env.LAB_BENCH_RUNS ?? 3);
const topology = (n: number) => {
  const file = join(state, `boot-${n}.yaml`);
  const vms = Array.from({ length: n }, (_, i) => `  - { name: vm${i}, cpus: 2, memory: 1G }`).join('\n');
  writeFileSync(file, `name: boot-${n}\nvms:\n${vms}\n`);
  return file;
};

async function boot(n: number): Promise<number> {
  const file = topology(n);
  const start = performance.now();
  await up(file);
  const s = (performance.now() - start) / 1000;
  await down();
  return s;
}

const art = await setup();
const stats = (xs: number[]) => {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  return `mean ${mean.toFixed(1)} s, min ${Math.min(...xs).toFixed(1)} s, max ${Math.max(...xs).toFixed(1)} s`;
};
try {
  const one: number[] = [];
  const two: number[] = [];
  for (let i = 0; i < runs; i++) {
    one.push(await boot(1));
    two.push(await boot(2));
  }
  console.log(`\n${art.qemuVersion}, guest ${art.kernelVersion}, TCG, 2 vCPUs, 1 GiB, ${runs} runs each, unpinned`);
  console.log(`one guest:              ${stats(one)}`);
  console.log(`two guests together:    ${stats(two)}`);
  const ratio = two.reduce((a, b) => a + b) / one.reduce((a, b) => a + b);
  console.log(`two together / one:     ${ratio.toFixed(2)}×`);
  recordSettings('boot', { runs, guest: '2 vCPUs, 1 GiB, unpinned' });
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  record({ kind: 'value', bench: 'boot', name: 'one guest, lab up to agent answer (mean)', value: mean(one), unit: 's' });
  record({ kind: 'value', bench: 'boot', name: 'two guests together (mean)', value: mean(two), unit: 's' });
} finally {
  await down();
  rmSync(state, { recursive: true, force: true });
}
