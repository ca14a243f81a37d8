// `npm run bench [-- <name>...]`: runs the named benchmarks (default: all), one process each,
// in sequence, so one benchmark's CPU use never overlaps another's measurement. Each records
// its figures (bench/lib/results.ts) into the run's directory, reports/bench/<time>/, which
// ends with results.json (every figure, the versions and settings), report.md and its SVG
// plots; reports/bench/latest is a copy of the last run of every benchmark (a run of some
// only keeps its own directory, so it never replaces a whole report with a partial one).
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readRecorded, type Results } from './lib/results.ts';
import { writeReport } from './report/generate.ts';

const dir = fileURLToPath(new URL('.', import.meta.url));
/** Files here that are tools, not benchmarks: trace-chain reads a trace directory it is given, tlp-census a capture. */
const TOOLS = new Set(['run', 'trace-chain', 'tlp-census']);
const all = readdirSync(dir)
  .filter((f) => f.endsWith('.ts'))
  .map((f) => f.slice(0, -3))
  .filter((name) => !TOOLS.has(name));
// Flags (--quick) go to every benchmark; the other arguments name benchmarks.
const flags = process.argv.slice(2).filter((a) => a.startsWith('-'));
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
if (flags.includes('--help') || flags.includes('-h')) {
  console.log(`usage: npm run bench [-- [--quick] [<name>...]]

Runs the named benchmarks (default: all) one at a time and writes reports/bench/<time>/
(results.json, report.md, SVG plots); a run of all of them is also copied to
reports/bench/latest. Run it alone on the machine (e.g. under flock /tmp/lab-guest.lock).

  --quick     shorter runs (about 15 minutes for all; BENCH_QUICK=1 does the same)
  -h, --help  this text

benchmarks: ${all.join(', ')}
settings by environment: see README.md, "Tests and benchmarks"`);
  process.exit(0);
}
const badFlags = flags.filter((f) => f !== '--quick');
if (badFlags.length) {
  console.error(`bench: unknown option ${badFlags.join(', ')} (have: --quick, --help)`);
  process.exit(2);
}
const unknown = wanted.filter((w) => !all.includes(w));
if (unknown.length) {
  console.error(`bench: unknown benchmark ${unknown.join(', ')} (have: ${all.join(', ')})`);
  process.exit(2);
}
const benches = wanted.length ? wanted : all;
const quick = flags.includes('--quick') || process.env.BENCH_QUICK === '1';
/** What --quick means to benchmarks that take their lengths from the environment (nvme reads --quick itself); a value already set wins. */
// The fabric's targets are read in the spread placement; "one CPU" (a minute) is left to the full run.
const QUICK_ENV: Record<string, string> = { LAB_BENCH_RUNS: '1', FABRIC_BENCH_SECONDS: '1', FABRIC_BENCH_PLACEMENTS: 'spread,spread+poll' };
const benchEnv = { ...(quick ? QUICK_ENV : {}), ...process.env };

const git = (...args: string[]) => execFileSync('git', args, { cwd: dir, encoding: 'utf8' }).trim();
/** Versions of what ran, taken when the run starts (the guest's from the built lab artefacts). */
async function versions(): Promise<Results['versions']> {
  const { builtArtefacts } = await import('../src/lab/setup.ts');
  const art = builtArtefacts();
  const cpus = os.cpus();
  return {
    node: process.version,
    qemu: art?.qemuVersion,
    guestKernel: art?.kernelVersion,
    hostKernel: os.release(),
    gitCommit: git('rev-parse', 'HEAD'),
    gitDirty: git('status', '--porcelain', '--untracked-files=no') !== '',
    cpus: `${cpus.length} x ${cpus[0]?.model ?? 'unknown'}`,
  };
}

const startedAt = new Date();
const reports = join(dir, '..', 'reports', 'bench');
const runDir = join(reports, startedAt.toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z'));
mkdirSync(runDir, { recursive: true });
const recorded = join(runDir, 'figures.jsonl');
const version = await versions();
console.log(`bench: ${benches.join(', ')}${quick ? ' (quick)' : ''}; Node ${version.node}, ${version.qemu ?? 'QEMU not set up'}, commit ${version.gitCommit.slice(0, 12)}${version.gitDirty ? ' (dirty)' : ''}; results in ${runDir}`);

const elapsed = () => {
  const s = Math.round((Date.now() - startedAt.getTime()) / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
};
const failed: string[] = [];
for (const [i, name] of benches.entries()) {
  console.log(`\n## [${i + 1}/${benches.length}] ${name} (started at ${elapsed()} into the run)`);
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', `${dir}${name}.ts`, ...flags], { stdio: 'inherit', env: { ...benchEnv, BENCH_RESULTS: recorded } });
  if (r.status !== 0) failed.push(name);
  console.log(`## ${name} ${r.status === 0 ? 'done' : `FAILED (${r.signal ?? `exit ${r.status}`})`} in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

const { figures, settings } = readRecorded(recorded);
const results: Results = { schema: 1, startedAt: startedAt.toISOString(), finishedAt: new Date().toISOString(), quick, benches, failed, versions: version, settings, figures };
writeFileSync(join(runDir, 'results.json'), `${JSON.stringify(results, null, 1)}\n`);
rmSync(recorded);
await writeReport(results, runDir);
const latest = join(reports, 'latest');
const whole = benches.length === all.length;
if (whole) {
  rmSync(latest, { recursive: true, force: true });
  cpSync(runDir, latest, { recursive: true });
}
console.log(`\nbench: ${figures.length} figures; report ${join(runDir, 'report.md')}${whole ? ` (copied to ${latest})` : ''}${failed.length ? `; FAILED: ${failed.join(', ')}` : ''}`);
process.exit(failed.length ? 1 : 0);
