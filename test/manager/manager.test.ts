// The manager without QEMU: the assignment rules, the table on disk, and the WebSocket API
// with its token, through the same client the `lab` commands use. The Applier here records
// what the manager asked for (the real one, apply.ts, needs running guests).
import test from 'ava';
import fc from 'fast-check';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serveApi, apiFiles } from '../../src/manager/api.ts';
import { ManagerClient, ManagerError } from '../../src/manager/client.ts';
import { Manager, type Applier } from '../../src/manager/manager.ts';
import { AssignmentStore } from '../../src/manager/store.ts';
import { type Assignment, AssignmentError, AssignmentTable, type Inventory, functionRef } from '../../src/manager/table.ts';

const INVENTORY: Inventory = {
  hosts: [
    { name: 'host-a', slots: 2 },
    { name: 'host-b', slots: 1 },
  ],
  dis: [{ name: 'di', functions: [0, 1, 2].map((i) => ({ name: `fn${i}`, bdf: `01:00.${i}`, model: 'nvme' })) }],
};

/** Records each map and unmap; `gate` holds a call until released, `fail` makes the next one fail. */
class RecordingApplier implements Applier {
  readonly calls: string[] = [];
  gate: Promise<void> | undefined;
  fail: string | undefined;
  private async step(what: string) {
    this.calls.push(what);
    await this.gate;
    if (this.fail) {
      const f = this.fail;
      this.fail = undefined;
      throw new Error(f);
    }
  }
  map(a: Assignment) {
    return this.step(`map ${functionRef(a)} ${a.host}#${a.slot}`);
  }
  unmap(a: Assignment) {
    return this.step(`unmap ${functionRef(a)} ${a.host}#${a.slot}`);
  }
}

function fresh(initial: Assignment[] = []) {
  const dir = mkdtempSync(join(tmpdir(), 'manager-'));
  const applier = new RecordingApplier();
  const store = new AssignmentStore(dir);
  const m = new Manager(new AssignmentTable(INVENTORY, initial), store, applier, 'test-topo');
  return { dir, applier, store, m };
}

const rejects = async (t: import('ava').ExecutionContext, p: Promise<unknown>, c: string, message: RegExp) => {
  const err = await t.throwsAsync(p);
  t.is(String((err as AssignmentError).code), c, err?.message);
  t.regex(err!.message, message);
};

test('assign takes the lowest free slot, or the one named; the table is saved', async (t) => {
  const { m, applier, store } = fresh();
  t.like((await m.assign('host-a', 'di/fn1')).assignment, { host: 'host-a', di: 'di', function: 'fn1', slot: 0 });
  t.like((await m.assign('host-a', 'di/fn0')).assignment, { slot: 1 });
  t.deepEqual(applier.calls, ['map di/fn1 host-a#0', 'map di/fn0 host-a#1']);
  t.deepEqual(store.load(), { topology: 'test-topo', assignments: m.table.list() });
});

test('bad input: a clear error and nothing changed', async (t) => {
  const { m, applier, store } = fresh([{ host: 'host-b', di: 'di', function: 'fn0', slot: 0 }]);
  await rejects(t, m.assign('host-a', 'di/fn0'), 'already-assigned', /di\/fn0 is already assigned to host-b \(slot 0\)/);
  await rejects(t, m.assign('host-b', 'di/fn1'), 'no-free-slot', /host host-b has no free slot/);
  await rejects(t, m.assign('host-c', 'di/fn1'), 'unknown-host', /no host named "host-c" \(hosts: host-a, host-b\)/);
  await rejects(t, m.assign('host-a', 'di/fn9'), 'unknown-function', /DI "di" has no function "fn9" \(functions: fn0, fn1, fn2\)/);
  await rejects(t, m.assign('host-a', 'dx/fn0'), 'unknown-function', /no DI named "dx"/);
  await rejects(t, m.assign('host-a', 'di/fn1', 2), 'bad-slot', /host host-a has slots 0 to 1, not 2/);
  await rejects(t, m.unassign('host-a', 'di/fn0'), 'not-assigned', /di\/fn0 is assigned to host-b, not host-a/);
  await rejects(t, m.unassign('host-a', 'di/fn1'), 'not-assigned', /di\/fn1 is not assigned to any host/);
  await rejects(t, m.move('di/fn1', 'host-a'), 'not-assigned', /use assign/);
  await rejects(t, m.move('di/fn0', 'host-b'), 'already-assigned', /already on host-b/);
  t.deepEqual(applier.calls, [], 'nothing was asked of DI, HI or guest');
  t.is(store.load(), undefined, 'nothing saved');
});

test('two concurrent assigns of the same function: exactly one wins, the other is told why', async (t) => {
  const { m, applier } = fresh();
  let release!: () => void;
  applier.gate = new Promise((r) => (release = r));
  const first = m.assign('host-a', 'di/fn0');
  await rejects(t, m.assign('host-b', 'di/fn0'), 'busy', /di\/fn0 is being changed \(assign to host-a\)/);
  // The slot the first one is filling is not offered to another function meanwhile.
  const second = m.assign('host-a', 'di/fn1');
  release();
  t.like((await first).assignment, { slot: 0 });
  t.like((await second).assignment, { slot: 1 });
  await rejects(t, m.assign('host-b', 'di/fn0'), 'already-assigned', /already assigned to host-a/);
});

test('a failed apply leaves the table as it was; a guest that does not let go keeps its mapping', async (t) => {
  const { m, applier, store } = fresh([{ host: 'host-a', di: 'di', function: 'fn0', slot: 0 }]);
  applier.fail = 'HI hi-host-b: no answer';
  await t.throwsAsync(m.assign('host-b', 'di/fn1'), { message: 'HI hi-host-b: no answer' });
  applier.fail = 'host-a did not release di/fn0 within 10 s';
  await t.throwsAsync(m.unassign('host-a', 'di/fn0'), { message: /did not release/ });
  t.deepEqual(m.table.list(), [{ host: 'host-a', di: 'di', function: 'fn0', slot: 0 }]);
  t.is(store.load(), undefined);
});

test('move: unassign from the holder, then assign to the new host; the destination is checked first', async (t) => {
  const { m, applier } = fresh([
    { host: 'host-a', di: 'di', function: 'fn0', slot: 1 },
    { host: 'host-b', di: 'di', function: 'fn1', slot: 0 },
  ]);
  await rejects(t, m.move('di/fn0', 'host-b'), 'no-free-slot', /host-b has no free slot/);
  t.deepEqual(applier.calls, []);
  const r = await m.move('di/fn1', 'host-a');
  t.like(r, { from: { host: 'host-b', slot: 0 }, assignment: { host: 'host-a', slot: 0 } });
  t.deepEqual(applier.calls, ['unmap di/fn1 host-b#0', 'map di/fn1 host-a#0']);
});

test('random sequences of changes never assign a function twice or fill a slot twice', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(fc.constantFrom('assign', 'unassign', 'move'), fc.constantFrom('host-a', 'host-b', 'host-x'), fc.constantFrom('di/fn0', 'di/fn1', 'di/fn2', 'di/nope')), { maxLength: 30 }),
      async (ops) => {
        const { m } = fresh();
        for (const [op, host, ref] of ops) {
          await (op === 'assign' ? m.assign(host, ref) : op === 'unassign' ? m.unassign(host, ref) : m.move(ref, host)).catch((e) => {
            if (!(e instanceof AssignmentError)) throw e;
          });
          const list = m.table.list();
          t.is(new Set(list.map(functionRef)).size, list.length);
          t.is(new Set(list.map((a) => `${a.host}#${a.slot}`)).size, list.length);
          for (const a of list) t.true(a.slot < INVENTORY.hosts.find((h) => h.name === a.host)!.slots);
        }
      },
    ),
    { numRuns: 100 },
  );
});

test('the store: a restarted manager gets the saved table; a damaged file is named', (t) => {
  const { dir, store } = fresh();
  const saved = [{ host: 'host-a', di: 'di', function: 'fn2', slot: 1 }];
  store.save('test-topo', saved);
  t.deepEqual(new AssignmentStore(dir).load(), { topology: 'test-topo', assignments: saved });
  writeFileSync(store.file, '{"version":1,"topology":"x","assignments":[{"host":3}]}');
  t.throws(() => store.load(), { message: new RegExp(`${store.file}: not an assignment table`) });
});

test('the API: token required, list, assign, errors with codes, events to every client', async (t) => {
  const { m, dir } = fresh();
  const api = await serveApi(m, dir);
  t.teardown(() => api.close());
  t.is(statSync(apiFiles(dir).token).mode & 0o777, 0o600);
  t.is(JSON.parse(readFileSync(apiFiles(dir).endpoint, 'utf8')).port, api.port);

  const wrong = await t.throwsAsync(ManagerClient.connect(dir, 'not-the-token'));
  t.is((wrong as ManagerError).code, 'unauthorized');

  const a = await ManagerClient.connect(dir);
  const b = await ManagerClient.connect(dir);
  t.teardown(() => {
    a.close();
    b.close();
  });
  const r = await a.call<{ assignment: Assignment; ms: number }>({ op: 'assign', host: 'host-b', function: 'di/fn2' });
  t.like(r.assignment, { host: 'host-b', slot: 0 });
  t.true(r.ms >= 0);
  const err = await t.throwsAsync(b.call({ op: 'assign', host: 'host-a', function: 'di/fn2' }));
  t.is((err as ManagerError).code, 'already-assigned');
  const bad = await t.throwsAsync(b.call({ op: 'assign', host: 'host-a', function: 'fn2' }));
  t.is((bad as ManagerError).code, 'bad-request');
  t.regex(bad!.message, /expected "<di>\/<function>"/);
  const list = await b.call<{ hosts: { name: string; slots: { slot: number; function: string | null }[] }[]; dis: { functions: { name: string; holder: string | null }[] }[] }>({ op: 'list' });
  t.deepEqual(list.hosts[1], { name: 'host-b', slots: [{ slot: 0, function: 'di/fn2' }] });
  t.deepEqual(list.dis[0]!.functions.map((f) => f.holder), [null, null, 'host-b']);
  // Both clients heard of the assignment.
  for (const c of [a, b]) t.like(c.events[0], { event: 'assigned', assignment: { host: 'host-b', function: 'fn2' } });
});

test('a manager that is not running is a clear error', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'manager-none-'));
  const err = await t.throwsAsync(ManagerClient.connect(dir));
  t.is((err as ManagerError).code, 'not-running');
  t.regex(err!.message, /the manager is not running/);
});
