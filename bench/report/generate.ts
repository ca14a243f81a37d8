// Writes a run's report into its directory: report.md and the SVG plots it embeds, from the
// run's results.json. bench/run.ts calls it after the benchmarks; by hand it regenerates a
// report from a recorded run:
//
//   node --import tsx bench/report/generate.ts reports/bench/latest
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { readResults, type Results } from '../lib/results.ts';
import { renderMarkdown, type Plots } from './markdown.ts';
import { coexistencePlot, cpuPlot, fabricPlot, faultsPlot, iopsPlot, nicPlot, qd1Plot } from './plot.ts';

const PLOTS: Record<keyof Plots, (r: Results) => Promise<string | undefined>> = {
  iops: iopsPlot,
  faults: faultsPlot,
  qd1: qd1Plot,
  cpu: cpuPlot,
  fabric: fabricPlot,
  nic: nicPlot,
  coexistence: coexistencePlot,
};

/** Writes report.md and the plots there are figures for into dir; returns the files written. */
export async function writeReport(r: Results, dir: string): Promise<string[]> {
  const plots: Plots = {};
  const written: string[] = [];
  for (const [name, draw] of Object.entries(PLOTS) as [keyof Plots, (r: Results) => Promise<string | undefined>][]) {
    const svg = await draw(r);
    if (!svg) continue;
    plots[name] = `${name}.svg`;
    writeFileSync(join(dir, plots[name]), svg);
    written.push(plots[name]);
  }
  writeFileSync(join(dir, 'report.md'), renderMarkdown(r, plots));
  return ['report.md', ...written];
}

if (import.meta.url === pathToFileURL(resolve(process.argv[1] ?? '')).href) {
  const dir = process.argv[2];
  if (!dir) {
    console.error('usage: generate.ts <run directory holding results.json>');
    process.exit(2);
  }
  const files = await writeReport(readResults(join(dir, 'results.json')), dir);
  console.log(`wrote ${files.map((f) => join(dir, f)).join(', ')}`);
}
