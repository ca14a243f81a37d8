#!/usr/bin/env node
// Runs ava with its TAP reporter and closes with one plain summary line
// ("N passed, N failed, N skipped") that CI reads, preceded by each failed test and
// the first lines of its diagnostics (CI may keep only the output's ends); exits with
// ava's status.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const avaCli = fileURLToPath(new URL('../node_modules/ava/entrypoints/cli.mjs', import.meta.url));
const child = spawn(process.execPath, [avaCli, '--tap', ...process.argv.slice(2)], { stdio: ['ignore', 'pipe', 'inherit'] });
const counts = { pass: 0, fail: 0, skip: 0, todo: 0 };
/** Each failed test: its "not ok" line and up to DIAGNOSTIC_LINES lines of the YAML block after it. */
const failures = [];
const DIAGNOSTIC_LINES = 30;
let inFailure = false;
let rest = '';
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  const lines = (rest + chunk).split('\n');
  rest = lines.pop();
  for (const line of lines) {
    const m = /^# (pass|fail|skip|todo)\s+(\d+)/.exec(line);
    if (m) counts[m[1]] = Number(m[2]);
    if (/^not ok /.test(line)) {
      failures.push([line]);
      inFailure = true;
    } else if (inFailure && /^\s/.test(line)) {
      const f = failures.at(-1);
      if (f.length <= DIAGNOSTIC_LINES) f.push(line.length > 300 ? `${line.slice(0, 300)} …` : line);
    } else inFailure = false;
  }
});
child.on('exit', (code, signal) => {
  if (failures.length > 0) console.log(`\nFailed:\n${failures.map((f) => f.join('\n')).join('\n')}`);
  console.log(`\n${counts.pass} passed, ${counts.fail} failed, ${counts.skip + counts.todo} skipped`);
  process.exit(code ?? (signal ? 1 : 0));
});
