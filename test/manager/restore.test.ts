// A lab that comes up again keeps its manager's table: `lab up` derives the topology with the
// saved assignments; a table saved for another topology, or one that no longer fits, is dropped.
import test from 'ava';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// Before anything reads the lab's paths.
const state = mkdtempSync(join('/tmp', 'lab-restore-'));
process.env.LAB_STATE = state;
const { withSavedAssignments } = await import('../../src/lab/lab.ts');
const { loadTopology } = await import('../../src/lab/topology.ts');
const { AssignmentStore } = await import('../../src/manager/store.ts');

const file = fileURLToPath(new URL('../../lab/topologies/hotplug.yaml', import.meta.url));
const store = new AssignmentStore(join(state, 'manager'));
const eeps = (t: ReturnType<typeof loadTopology>, host: string) => t.vms.find((v) => v.name === host)!.devices.filter((d) => d.id.startsWith('eep')).map((d) => `${d.id}@${'bus' in d ? d.bus : ''}`);

test.serial('the saved table of the same topology is what the lab starts with', (t) => {
  store.save('hotplug', [{ host: 'host-b', di: 'di', function: 'fn1', slot: 1 }]);
  const topo = withSavedAssignments(file, loadTopology(file));
  t.deepEqual(topo.fabric!.assignments.map((a) => `${a.di}/${a.function}->${a.host}#${a.slot}`), ['di/fn1->host-b#1']);
  t.deepEqual(eeps(topo, 'host-b'), ['eep1@hisw.1']);
  t.deepEqual(eeps(topo, 'host-a'), []);
  t.truthy(store.load(), 'kept');
});

test.serial('a table for another topology, or one that no longer fits, is dropped', (t) => {
  store.save('two-hosts-shared-card', [{ host: 'host-a', di: 'di', function: 'fn0', slot: 0 }]);
  t.deepEqual(withSavedAssignments(file, loadTopology(file)).fabric!.assignments, []);
  t.is(store.load(), undefined);
  store.save('hotplug', [{ host: 'host-z', di: 'di', function: 'fn0', slot: 0 }]);
  t.deepEqual(withSavedAssignments(file, loadTopology(file)).fabric!.assignments, []);
  t.is(store.load(), undefined);
});
