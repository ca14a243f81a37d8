// NIC functions in the lab's card form (lab/topologies, src/lab/derive.ts): a card may hold
// several virtio-net functions beside NVMe ones; each gets a MAC (given or derived) and a
// switch port of its own for its Ethernet wire; errors name their path.
import test, { type ExecutionContext } from 'ava';
import { parseTopology, TopologyError } from '../../src/lab/topology.ts';

const CARD = `
name: nics
hosts: [{ name: host-a }, { name: host-b }]
dis:
  - name: di
    card:
      functions:
        - { name: nic0, nic: { mac: "02:00:00:00:0A:01" } }
        - { name: fn1, nvme: { size: 64M } }
        - { name: nic2, nic: { mtu: 9000 } }
assign:
  - { function: di/nic0, host: host-a }
  - { function: di/nic2, host: host-b }
`;


const problems = (t: ExecutionContext, text: string) => t.throws(() => parseTopology(text, 'bad.yaml'), { instanceOf: TopologyError })?.problems;

const values = (args: string[], opt: string) => args.flatMap((a, i) => (args[i - 1] === opt ? [a] : []));

test('NIC functions: the DI hosts virtio-net models whose wires are switch ports locked to their MACs', (t) => {
  const topo = parseTopology(CARD);
  const sw = topo.processes.find((p) => p.name === 'sw')!;
  const di = topo.processes.find((p) => p.name === 'di')!;
  t.deepEqual(values(di.args, '--function'), [
    'nic0=virtio-net:mac:02:00:00:00:0a:01,mtu:1500,wire:${LAB_STATE}/sockets/sw/di-nic0.sock',
    'fn1=nvme:file:di-fn1.img,size:64M,lba:512,serial:PCIEOE-DI-FN1',
    // Derived MAC: DI 0, function 2.
    'nic2=virtio-net:mac:02:00:00:03:00:02,mtu:9000,wire:${LAB_STATE}/sockets/sw/di-nic2.sock',
  ]);
  t.deepEqual(values(di.args, '--assign'), ['nic0=channel:1,bdf:01:00.0', 'nic2=channel:2,bdf:01:00.2']);
  const ports = values(sw.args, '--port');
  t.true(ports.includes('di-nic0') && ports.includes('di-nic2'));
  t.false(ports.includes('di-fn1'), 'an NVMe function has no wire');
  t.true(values(sw.args, '--peer').includes('di-nic0=${LAB_STATE}/sockets/di/nic0-wire.sock'));
  t.true(values(sw.args, '--station').includes('di-nic2=02:00:00:03:00:02'));
  t.deepEqual(topo.fabric!.dis[0]!.functions.map((f) => f.model), ['nic', 'nvme', 'nic']);
  // Hot-plugged like any function: each host's VM gets the EEP of its assignment.
  t.true(topo.vms.find((v) => v.name === 'host-b')!.devices.some((d) => d.type === 'vfio-user' && d.id === 'eep0' && d.bus === 'hisw.0'));
});

test('NIC function errors name their path: bad MAC, MTU, two models, a MAC used twice', (t) => {
  t.deepEqual(
    problems(t, `
name: x
hosts: [{ name: a }]
dis:
  - name: d
    card:
      functions:
        - { name: n0, nic: { mac: "01:00:00:00:00:01" } }
        - { name: n1, nic: { mtu: 20 } }
        - { name: n2, nic: {}, nvme: {} }
        - { name: n3, nic: { speed: 10 } }
`),
    [
      'dis[0].card.functions[0].nic.mac: expected a locally administered unicast MAC like "02:00:00:00:00:01"',
      'dis[0].card.functions[1].nic.mtu: expected a whole number from 68 to 9000',
      'dis[0].card.functions[2]: expected exactly one model: nvme, nic or testdev',
      'dis[0].card.functions[3].nic: Unrecognized key: "speed"',
    ],
  );
  t.deepEqual(
    problems(t, `
name: x
hosts: [{ name: a }]
dis:
  - { name: d, card: { functions: [{ name: n0, nic: { mac: "02:00:00:00:00:07" } }, { name: n1, nic: { mac: "02:00:00:00:00:07" } }] } }
  - { name: e, card: { functions: [{ name: n0, nic: { mac: "02:00:00:02:00:01" } }] } }
`),
    [
      'dis[0].card.functions[1].nic.mac: 02:00:00:00:00:07 is already used by dis[0].card.functions[0]',
      'dis[1].card.functions[0].nic.mac: 02:00:00:02:00:01 is already used by link 1 of d',
    ],
  );
});
