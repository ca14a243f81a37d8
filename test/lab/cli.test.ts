// Wrong use of the `lab` command: each gets a clear message and a non-zero exit status.
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TestLab } from '../support/lab-harness.ts';

const lab = new TestLab('cli');
test.after.always(() => lab.dispose());

const cases: [string[], number, RegExp][] = [
  [[], 2, /usage: lab <command>/],
  [['frobnicate'], 2, /lab: unknown command "frobnicate"/],
  [['up'], 2, /expected "lab up <topology>"/],
  [['up', 'default', '--accel', 'xen'], 2, /--accel: expected tcg or kvm, got "xen"/],
  [['up', 'default', '--bogus'], 2, /Unknown option '--bogus'/],
  [['up', 'no-such-topology'], 1, /no topology "no-such-topology"/],
  [['exec', 'host-a'], 2, /expected "lab exec <vm> -- <command...>"/],
  [['exec', 'host-a', '--'], 2, /no command after "--"/],
  [['exec', 'host-a', '--', 'true'], 1, /no lab is up/],
  [['qmp', 'host-a'], 2, /expected "lab qmp <vm> <command> \[<json arguments>\]"/],
  [['qmp', 'host-a', 'query-status', '{nope'], 2, /arguments are not valid JSON/],
  [['status', 'extra'], 2, /expected "lab status"/],
];

for (const [args, code, message] of cases) {
  test(`lab ${args.join(' ') || '(no arguments)'}`, async (t) => {
    const r = await lab.run(args);
    t.is(r.code, code);
    t.regex(r.stderr + r.stdout, message);
  });
}

test('a bad topology file is rejected with every problem and its path, before anything starts', async (t) => {
  const file = join(lab.stateDir, 'bad.yaml');
  writeFileSync(file, 'name: bad\nvms:\n  - name: a\n    memory: lots\n    devices: [{type: nvme, id: n0, size: 1}]\n');
  const r = await lab.run(['up', file]);
  t.is(r.code, 1);
  t.regex(r.stderr, /bad\.yaml: invalid topology\n {2}vms\[0\]\.memory: expected like "512M"\n {2}vms\[0\]\.devices\[0\]\.size: expected like "512M"/);
  t.regex((await lab.run(['status'])).stdout, /no lab is up/);
});
