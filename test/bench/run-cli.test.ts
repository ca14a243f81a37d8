// `npm run bench`'s command line: --help and wrong use answer at once, before any benchmark runs
// (a mistyped option used to start every benchmark).
import test from 'ava';
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const runBench = async (...args: string[]) => {
  try {
    const r = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'bench/run.ts', ...args], { cwd: repo, timeout: 60_000 });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
};
const runDirs = () => readdirSync(new URL('../../reports/bench/', import.meta.url)).filter((d) => d !== 'latest').length;

test('--help prints the usage and the benchmarks, runs nothing', async (t) => {
  const before = runDirs();
  const r = await runBench('--help');
  t.is(r.code, 0);
  t.regex(r.out, /usage: npm run bench/);
  t.regex(r.out, /benchmarks: .*nvme-qd1/);
  t.is(runDirs(), before);
});

test('an unknown option or benchmark is refused by name, nothing runs', async (t) => {
  const before = runDirs();
  const opt = await runBench('--quik');
  t.is(opt.code, 2);
  t.regex(opt.out, /unknown option --quik/);
  const name = await runBench('--quick', 'nvmee');
  t.is(name.code, 2);
  t.regex(name.out, /unknown benchmark nvmee/);
  t.is(runDirs(), before);
});
