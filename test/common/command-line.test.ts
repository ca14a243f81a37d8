// Every lab process entry answers --help with its usage (exit 0) and a bad option with what was
// wrong plus the usage (exit 2), without starting anything.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ENTRIES = [
  'src/hi/main.ts',
  'src/di/main.ts',
  'src/fabric/switch/main.ts',
  'src/direct-attach/nvme-main.ts',
  'src/direct-attach/testdev-main.ts',
  'src/direct-attach/virtio-net-main.ts',
];

function run(entry: string, args: string[]) {
  const dir = mkdtempSync(join(tmpdir(), 'cl-'));
  return spawnSync(process.execPath, ['--import', 'tsx', entry, ...args], {
    encoding: 'utf8',
    env: { ...process.env, LAB_SOCKET_DIR: dir, LAB_DATA: dir, LAB_STATE: dir },
    timeout: 60_000,
  });
}

for (const entry of ENTRIES) {
  test(`${entry}: --help prints the usage and exits 0`, (t) => {
    const r = run(entry, ['--help']);
    t.is(r.status, 0, r.stderr);
    t.regex(r.stdout, /^usage: /m);
  });
}

for (const entry of ['src/hi/main.ts', 'src/di/main.ts', 'src/fabric/switch/main.ts', 'src/direct-attach/testdev-main.ts']) {
  test(`${entry}: an unknown option is a usage error naming it (exit 2)`, (t) => {
    const r = run(entry, ['--no-such-option']);
    t.is(r.status, 2);
    t.regex(r.stderr, /no-such-option/);
    t.regex(r.stderr, /usage: /);
  });
}
