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
    '(top level): Unrecognized key: "extra"',
  ]);
  t.deepEqual(problems('name: x\nvms: []\n'), ['vms: expected at least one VM (or hosts)']);
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
      'vms[1].name: duplicate name "a" (vms[0] has it too)',
      'processes[1].name: duplicate name "srv" (processes[0] has it too)',
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

// ---- the lab form: hosts, DIs, switch, assignments; the lab derives the wiring ----

const SHARED = `
name: shared
hosts:
  - { name: host-a }
  - { name: host-b, hi: { slots: 3, links: 1 } }
dis:
  - name: di
    card:
      functions:
        - { name: fn0, nvme: { size: 128M } }
        - { name: fn1, nvme: { size: 64M, lba: 4096, serial: MY-SERIAL } }
        - { name: td, testdev: {} }
assign:
  - { function: di/fn0, host: host-a }
  - { function: di/fn1, host: host-b, slot: 2 }
  - { function: di/td, host: host-b }
`;

test('hosts and DIs become the switch, DI and HI processes, in start order, with derived wiring', (t) => {
  const topo = parseTopology(SHARED);
  t.deepEqual(topo.processes.map((p) => p.name), ['sw', 'di', 'hi-host-a', 'hi-host-b', 'manager']);
  const [sw, di, hiA, hiB] = topo.processes;
  // memif by default: the switch serves each station's port at sockets/sw/<port>.memif, the station connects.
  t.is(topo.fabric?.transport, 'memif');
  t.deepEqual(sw!.args, [
    '--port', 'hi-host-a0=memif', '--port', 'hi-host-a1=memif', '--port', 'hi-host-b0=memif', '--port', 'di0=memif', '--port', 'di1=memif', '--port', 'manager0=memif',
    '--station', 'hi-host-a0=02:00:00:01:00:00', '--station', 'hi-host-a1=02:00:00:01:00:01', '--station', 'hi-host-b0=02:00:00:01:01:00',
    '--station', 'di0=02:00:00:02:00:00', '--station', 'di1=02:00:00:02:00:01',
    '--station', 'manager0=02:00:00:04:00:00',
  ]);
  t.deepEqual(di!.args, [
    '--link', '02:00:00:02:00:00@memif:${LAB_STATE}/sockets/sw/di0.memif', '--link', '02:00:00:02:00:01@memif:${LAB_STATE}/sockets/sw/di1.memif',
    '--channel', '1=02:00:00:01:00:00,02:00:00:01:00:01', '--channel', '2=02:00:00:01:01:00',
    '--function', 'fn0=nvme:file:di-fn0.img,size:128M,lba:512,serial:PCIEOE-DI-FN0',
    '--function', 'fn1=nvme:file:di-fn1.img,size:64M,lba:4096,serial:MY-SERIAL',
    '--function', 'td=testdev',
    '--assign', 'fn0=channel:1,bdf:01:00.0', '--assign', 'fn1=channel:2,bdf:01:00.1', '--assign', 'td=channel:2,bdf:01:00.2',
  ]);
  t.deepEqual(hiA!.args, [
    '--link', '02:00:00:01:00:00@memif:${LAB_STATE}/sockets/sw/hi-host-a0.memif', '--link', '02:00:00:01:00:01@memif:${LAB_STATE}/sockets/sw/hi-host-a1.memif',
    '--channel', '1=02:00:00:02:00:00,02:00:00:02:00:01',
    '--slots', '2',
    '--eep', 'eep0=channel:1,bdf:01:00.0',
  ]);
  // The manager is a station on the switch too: discovery and heartbeats (src/manager/station.ts).
  t.deepEqual(topo.processes[4]!.args, ['--link', '02:00:00:04:00:00@memif:${LAB_STATE}/sockets/sw/manager0.memif']);
  // `lab up` waits for its API file: once it returns, `lab assign` finds the manager.
  t.deepEqual(topo.processes[4]!.ready, ['${LAB_STATE}/manager/api.json']);
  t.deepEqual(topo.processes.slice(0, 4).map((p) => p.ready), [undefined, undefined, undefined, undefined]);
  // An explicit slot is kept; the next assignment takes the lowest free slot.
  t.deepEqual(hiB!.args.slice(-4), ['--eep', 'eep2=channel:2,bdf:01:00.1', '--eep', 'eep0=channel:2,bdf:01:00.2']);
  t.deepEqual(topo.vms[1], {
    name: 'host-b',
    cpus: 2,
    memory: '1G',
    devices: [
      { type: 'pcie-switch', id: 'hisw', slots: 4 },
      { type: 'vfio-user', id: 'eep2', server: 'hi-host-b/eep2', bus: 'hisw.2' },
      { type: 'vfio-user', id: 'eep0', server: 'hi-host-b/eep0', bus: 'hisw.0' },
      { type: 'vfio-user', id: 'hictl', server: 'hi-host-b/hictl', bus: 'hisw.3' },
    ],
  });
  t.deepEqual(topo.fabric?.assignments.map((a) => `${a.di}/${a.function}->${a.host}:${a.slot}@${a.channel}`), [
    'di/fn0->host-a:0@1',
    'di/fn1->host-b:2@2',
    'di/td->host-b:0@2',
  ]);
});

test('fabric: { transport: unix } cables stations over unix datagrams: each binds link<l>.sock, the switch port\'s peer', (t) => {
  const unix = parseTopology(`${SHARED}fabric: { transport: unix }\n`);
  t.is(unix.fabric?.transport, 'unix');
  const [sw, di, hiA] = unix.processes;
  t.deepEqual(sw!.args.slice(0, 24), [
    '--port', 'hi-host-a0', '--port', 'hi-host-a1', '--port', 'hi-host-b0', '--port', 'di0', '--port', 'di1', '--port', 'manager0',
    '--peer', 'hi-host-a0=${LAB_STATE}/sockets/hi-host-a/link0.sock', '--peer', 'hi-host-a1=${LAB_STATE}/sockets/hi-host-a/link1.sock',
    '--peer', 'hi-host-b0=${LAB_STATE}/sockets/hi-host-b/link0.sock',
    '--peer', 'di0=${LAB_STATE}/sockets/di/link0.sock', '--peer', 'di1=${LAB_STATE}/sockets/di/link1.sock',
    '--peer', 'manager0=${LAB_STATE}/sockets/manager/link0.sock',
  ]);
  t.deepEqual(di!.args.slice(0, 4), ['--link', '02:00:00:02:00:00@${LAB_STATE}/sockets/sw/di0.sock', '--link', '02:00:00:02:00:01@${LAB_STATE}/sockets/sw/di1.sock']);
  t.deepEqual(hiA!.args.slice(0, 2), ['--link', '02:00:00:01:00:00@${LAB_STATE}/sockets/sw/hi-host-a0.sock']);
  t.deepEqual(unix.processes[4]!.args, ['--link', '02:00:00:04:00:00@${LAB_STATE}/sockets/sw/manager0.sock']);
  // What the file says, the caller may replace (benchmarks compare both on one topology).
  t.deepEqual(parseTopology(`${SHARED}fabric: { transport: unix }\n`, 'x.yaml', { transport: 'memif' }).processes[0]!.args.slice(0, 2), ['--port', 'hi-host-a0=memif']);
  t.deepEqual(parseTopology(SHARED, 'x.yaml', { transport: 'unix' }).processes[0]!.args.slice(0, 2), ['--port', 'hi-host-a0']);
  t.deepEqual(parseTopology(`${SHARED}fabric: {}\n`).fabric?.transport, 'memif');
});

test('fabric: a transport other than memif or unix, or no stations to cable, is a clear error', (t) => {
  t.deepEqual(problems(`${SHARED}fabric: { transport: tcp }\n`), ['fabric.transport: expected "memif" (shared memory, the default) or "unix" (datagram sockets)']);
  t.deepEqual(problems(`${SHARED}fabric: { transport: unix, mtu: 9000 }\n`), ['fabric: Unrecognized key: "mtu"']);
  t.deepEqual(problems('name: x\nvms: [{ name: a }]\nfabric: { transport: unix }\n'), ['fabric: a fabric without hosts or dis has nothing to connect']);
});

test('channels: one per host and DI pair, the same number at both ends', (t) => {
  const topo = parseTopology(`
name: x
hosts: [{ name: a }, { name: b }]
dis:
  - { name: d1, card: { functions: [{ name: f, testdev: {} }] } }
  - { name: d2, card: { functions: [{ name: f, testdev: {} }] } }
`);
  const f = topo.fabric!;
  t.deepEqual(f.hosts.map((h) => h.channels), [{ d1: 1, d2: 2 }, { d1: 3, d2: 4 }]);
  t.deepEqual(f.dis.map((d) => d.channels), [{ a: 1, b: 3 }, { a: 2, b: 4 }]);
  t.deepEqual(f.assignments, []);
  // Nothing assigned: each host's slots are free, only the control endpoint is plugged.
  t.deepEqual(topo.vms[0]!.devices.map((d) => d.id), ['hisw', 'hictl']);
});

test('the switch section: capture, seed, busy-poll, pin', (t) => {
  const topo = parseTopology(`
name: x
switch: { capture: true, seed: 7, busyPoll: 50, pin: "1" }
hosts: [{ name: a }]
dis: [{ name: d, card: { functions: [{ name: f, testdev: {} }] } }]
`);
  const sw = topo.processes.find((p) => p.name === 'sw')!;
  t.is(sw.pin, '1');
  t.deepEqual(sw.args.slice(-6), ['--pcap-dir', '${LAB_STATE}/pcap', '--seed', '7', '--busy-poll', '50']);
});

test('lab form errors name their path, schema first', (t) => {
  t.deepEqual(
    problems(`
name: x
hosts: [{ name: a, hi: { slots: 0 } }]
dis:
  - name: d
    card:
      functions:
        - { name: f0, nvme: { size: huge } }
        - { name: f1 }
        - { name: f2, nvme: {}, testdev: {} }
assign: [{ function: nope, host: a }]
`),
    [
      'hosts[0].hi.slots: expected a whole number from 1 to 30',
      'dis[0].card.functions[0].nvme.size: expected like "512M"',
      'dis[0].card.functions[1]: expected exactly one model: nvme, nic or testdev',
      'dis[0].card.functions[2]: expected exactly one model: nvme, nic or testdev',
      'assign[0].function: expected "<di>/<function>"',
    ],
  );
});

test('cross-references of the lab form are checked: unknown host or function, double assignment, slots, names', (t) => {
  t.deepEqual(
    problems(`
name: x
processes: [{ name: sw, run: src/x.ts }]
hosts:
  - { name: a, hi: { slots: 1 } }
  - { name: b, devices: [{ type: nvme, id: hictl }] }
dis:
  - name: d
    card: { functions: [{ name: f0, testdev: {} }, { name: f1, testdev: {} }, { name: f0, testdev: {} }, { name: f3, testdev: {} }] }
assign:
  - { function: d/f0, host: a }
  - { function: d/f1, host: a }
  - { function: d/f0, host: b }
  - { function: d/f9, host: b }
  - { function: e/f0, host: b }
  - { function: d/f3, host: c }
  - { function: d/f3, host: b, slot: 5 }
`),
    [
      'hosts[1].devices[0].id: "hictl" is the lab\'s own (hisw, hictl and eep<N> are the HI\'s)',
      'dis[0].card.functions[2].name: duplicate function "f0" in DI "d"',
      'assign[6].slot: host "b" has slots 0 to 1, not 5',
      'assign[1].host: host "a" has no free slot (it has 1)',
      'assign[2].function: "d/f0" is already assigned by assign[0]',
      'assign[3].function: DI "d" has no function "f9" (functions: f0, f1, f0, f3)',
      'assign[4].function: no DI named "e" (DIs: d)',
      'assign[5].host: no host named "c" (hosts: a, b)',
    ],
  );
  // Names the lab derives collide with the topology's own.
  t.deepEqual(problems('name: x\nprocesses: [{ name: sw, run: src/x.ts }]\nhosts: [{ name: a }]\ndis: [{ name: a, card: { functions: [{ name: f, testdev: {} }] } }]\n'), [
    'switch: duplicate name "sw" (processes[0] has it too)',
  ]);
  t.deepEqual(problems('name: x\nvms: [{ name: a }]\nhosts: [{ name: a, hi: { name: d } }]\ndis: [{ name: d, card: { functions: [{ name: f, testdev: {} }] } }]\n'), [
    'hosts[0].name: duplicate name "a" (vms[0] has it too)',
    'hosts[0].hi.name: duplicate name "d" (dis[0] has it too)',
  ]);
  t.deepEqual(problems('name: x\ndis: [{ name: d, card: { functions: [{ name: f, testdev: {} }] } }]\n'), ['hosts: DIs need at least one host to serve']);
});

test('a host\'s own QEMU NIC on "sw/<port>" becomes that switch port, bound to the NIC\'s MAC, beside the PCIeOE ports', (t) => {
  const topo = parseTopology(`
name: x
hosts:
  - name: a
    hi: { links: 1, control: false, slots: 1 }
    devices: [{ type: nic, id: net0, server: sw/b, mac: "02:00:00:00:0b:01" }]
dis: [{ name: d, links: 1, card: { functions: [{ name: f, testdev: {} }] } }]
`);
  const sw = topo.processes.find((p) => p.name === 'sw')!.args;
  // A NIC's wire is a unix datagram cable on either transport: QEMU's netdev speaks no memif.
  t.deepEqual(sw.filter((a, i) => sw[i - 1] === '--port'), ['hi-a0=memif', 'd0=memif', 'manager0=memif', 'b']);
  t.true(sw.includes('b=${LAB_STATE}/sockets/sw/b.peer.sock'));
  t.true(sw.includes('b=02:00:00:00:0b:01'));
  t.deepEqual(problems('name: x\nhosts: [{ name: a, devices: [{ type: nic, id: n, server: sw }, { type: nic, id: m, server: sw/d0 }] }]\ndis: [{ name: d, card: { functions: [{ name: f, testdev: {} }] } }]\n'), [
    'hosts[0].devices[0].server: a host\'s NIC is cabled to the lab switch: expected "sw/<port>", got "sw"',
    'hosts[0].devices[1].server: switch port "d0" is already another station\'s',
  ]);
});
