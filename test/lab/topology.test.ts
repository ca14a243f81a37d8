import test from 'ava';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadTopology, parseTopology, parseSize, TopologyError } from '../../src/lab/topology.ts';
import { topologiesDir } from '../../src/lab/paths.ts';

const problems = (text: string) => {
  try {
    parseTopology(text, 'bad.yaml');
  } catch (err) {
    if (err instanceof TopologyError) return err.problems;
    throw err;
  }
  throw new Error('expected the topology to be rejected');
};

test('every shipped topology is valid', (t) => {
  const files = readdirSync(topologiesDir).filter((f) => f.endsWith('.yaml'));
  t.true(files.includes('default.yaml'));
  for (const f of files) t.notThrows(() => loadTopology(join(topologiesDir, f)), f);
});

test('defaults are filled in', (t) => {
  const topo = parseTopology('name: x\nvms:\n  - name: a\n    devices: [{type: nvme, id: n0}]\n');
  t.is(topo.accel, 'tcg');
  t.deepEqual(topo.vms[0], { name: 'a', cpus: 2, memory: '1G', devices: [{ type: 'nvme', id: 'n0', size: '1G' }] });
});

test('each error names its path in the file', (t) => {
  const p = problems(`
name: x
vms:
  - name: a
  - name: b
    memory: 12
    cpus: many
    pin: "zero"
    devices:
      - { type: floppy, id: f }
      - { type: nvme, id: n0, size: 3 terabytes }
`);
  t.deepEqual(p, [
    'vms[1].cpus: expected a whole number from 1 to 16',
    'vms[1].memory: expected like "512M"',
    'vms[1].pin: expected a CPU list like "0" or "0-1"',
    'vms[1].devices[0].type: expected type to be one of nvme, vfio-user, nic, pcie-switch',
    'vms[1].devices[1].size: expected like "512M"',
  ]);
});

test('unknown keys, missing sections and bad names are reported', (t) => {
  t.deepEqual(problems('name: X y\nvms: []\nextra: 1\n'), [
    'name: expected a name like "host-a" (lowercase letters, digits, "-", at most 31)',
    'vms: expected at least one VM',
    '(top level): Unrecognized key: "extra"',
  ]);
  t.deepEqual(problems('vms:\n  - name: a\n'), ['name: expected a name like "host-a" (lowercase letters, digits, "-", at most 31)']);
});

test('references between sections are checked', (t) => {
  t.deepEqual(
    problems(`
name: x
processes:
  - { name: srv, run: src/x.ts }
  - { name: srv, run: src/y.ts }
vms:
  - name: a
    devices:
      - { type: pcie-switch, id: sw, slots: 2 }
      - { type: vfio-user, id: d0, server: nope, bus: sw.1 }
      - { type: vfio-user, id: d0, server: srv/one, bus: sw.2 }
  - name: a
`),
    [
      'vms[1].name: duplicate name "a"',
      'processes[1].name: duplicate name "srv"',
      'vms[0].devices[1].server: no process named "nope" in processes',
      'vms[0].devices[2].id: duplicate id "d0" in VM "a"',
      'vms[0].devices[2].bus: expected a switch slot like "<switch id>.<n>" of this VM, got "sw.2"',
    ],
  );
});

test('broken YAML is reported as such, with the file name', (t) => {
  const err = t.throws(() => parseTopology('name: [', 'broken.yaml'), { instanceOf: TopologyError });
  t.regex(err!.message, /^broken\.yaml: invalid topology\n {2}YAML: /);
});

test('a missing file is a clear error', (t) => {
  t.throws(() => loadTopology('/nonexistent/t.yaml'), { message: /\/nonexistent\/t\.yaml: invalid topology\n.*cannot read the file/ });
});

test('sizes', (t) => {
  t.is(parseSize('512M'), 512 * 2 ** 20);
  t.is(parseSize('1G'), 2 ** 30);
});

test('guest memory has a floor', (t) => {
  t.deepEqual(problems('name: x\nvms:\n  - { name: a, memory: 256M }\n'), ['vms[0].memory: at least 512M: the guest unpacks its root file system into RAM']);
});
