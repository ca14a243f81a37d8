// Hot-plug flows on the `hotplug` topology (two guests, a DI with a two-function NVMe card),
// each timed from the manager request until the guest shows the result (src/lab/hotplug-flows.ts):
//   assign   di/fn0 to host-a, until host-a's nvme driver has bound it (namespace present)
//   unassign di/fn0 from host-a, until host-a has no such controller (the slot is empty:
//            the manager answers only after QEMU removed the device)
//   move     di/fn0 from host-a to host-b, until host-b's nvme driver has bound it
// Each figure also has the manager's own time for the flow (what `lab assign` prints).
//
//   npm run bench -- hotplug            (LAB_BENCH_RUNS=3 by default)
import { rmSync } from 'node:fs';
import { privateLabDirs } from './lib/lab.ts';
import { record, recordSettings } from './lib/results.ts';
import { hotplugFigureName } from './report/markdown.ts';

const state = privateLabDirs('lab-bench-hp');
const { up, down } = await import('../src/lab/lab.ts');
const { setup } = await import('../src/lab/setup.ts');
const { timedAssign, timedMove, timedUnassign } = await import('../src/lab/hotplug-flows.ts');

const runs = Number(process.env.LAB_BENCH_RUNS ?? 3);
const FN = 'di/fn0';
const SERIAL = 'PCIEOE-HOTPLUG-FN0'; // lab/topologies/hotplug.yaml

const art = await setup();
const flows = { assign: [] as number[], unassign: [] as number[], move: [] as number[] };
const manager = { assign: [] as number[], unassign: [] as number[], move: [] as number[] };
try {
  await up('hotplug');
  for (let i = 0; i < runs; i++) {
    const a = await timedAssign('host-a', FN, SERIAL);
    const u = await timedUnassign('host-a', FN, SERIAL);
    await timedAssign('host-a', FN, SERIAL);
    const m = await timedMove(FN, 'host-b', SERIAL);
    await timedUnassign('host-b', FN, SERIAL);
    for (const [k, t] of [['assign', a], ['unassign', u], ['move', m]] as const) {
      flows[k].push(t.totalMs);
      manager[k].push(t.managerMs);
    }
    console.log(`run ${i + 1}: assign ${a.totalMs} ms, unassign ${u.totalMs} ms, move ${m.totalMs} ms (manager: ${a.managerMs} / ${u.managerMs} / ${m.managerMs} ms)`);
  }
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
  const stats = (xs: number[]) => `mean ${(mean(xs) / 1000).toFixed(2)} s, min ${(Math.min(...xs) / 1000).toFixed(2)} s, max ${(Math.max(...xs) / 1000).toFixed(2)} s`;
  console.log(`\n${art.qemuVersion}, guest ${art.kernelVersion}, TCG, ${runs} runs`);
  console.log(`assign to driver bound:            ${stats(flows.assign)}`);
  console.log(`unassign to slot empty:            ${stats(flows.unassign)}`);
  console.log(`move to driver bound on host-b:    ${stats(flows.move)}`);
  recordSettings('hotplug', { runs, topology: 'hotplug', removal: 'guest powers the slot off (pciehp), then HI and DI unmap' });
  for (const k of ['assign', 'unassign', 'move'] as const) {
    record({ kind: 'value', bench: 'hotplug', name: hotplugFigureName(k), value: mean(flows[k]) / 1000, unit: 's' });
    record({ kind: 'value', bench: 'hotplug', name: hotplugFigureName(k, true), value: mean(manager[k]) / 1000, unit: 's' });
  }
} finally {
  await down();
  rmSync(state, { recursive: true, force: true });
}
