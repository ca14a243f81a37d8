import test from 'ava';
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makePrivateDir } from '../../src/common/private-dir.ts';

test('makePrivateDir creates every level 0700 whatever the umask, and closes a directory an earlier run left open', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'pcieoe-private-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const old = process.umask(0);
  try {
    makePrivateDir(join(root, 'a', 'b'));
  } finally {
    process.umask(old);
  }
  t.is(statSync(join(root, 'a')).mode & 0o777, 0o700);
  t.is(statSync(join(root, 'a', 'b')).mode & 0o777, 0o700);
  chmodSync(join(root, 'a', 'b'), 0o755);
  makePrivateDir(join(root, 'a', 'b'));
  t.is(statSync(join(root, 'a', 'b')).mode & 0o777, 0o700);
});
