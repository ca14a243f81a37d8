#!/usr/bin/env node
// Runs ava with its TAP reporter and closes with one plain summary line
// ("N passed, N failed, N skipped") that CI reads; exits with ava's status.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const avaCli = fileURLToPath(new URL('../node_modules/ava/entrypoints/cli.mjs', import.meta.url));
const child = spawn(process.execPath, [avaCli, '--tap', ...process.argv.slice(2)], { stdio: ['ignore', 'pipe', 'inherit'] });
const counts = { pass: 0, fail: 0, skip: 0, todo: 0 };
let rest = '';
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  const lines = (rest + chunk).split('\n');
  rest = lines.pop();
  for (const line of lines) {
    const m = /^# (pass|fail|skip|todo)\s+(\d+)/.exec(line);
    if (m) counts[m[1]] = Number(m[2]);
  }
});
child.on('exit', (code, signal) => {
  console.log(`\n${counts.pass} passed, ${counts.fail} failed, ${counts.skip + counts.todo} skipped`);
  process.exit(code ?? (signal ? 1 : 0));
});
