// The manager process: one per lab whose topology has hosts and DIs (derive.ts starts it
// after the HIs). It keeps the assignment table in LAB_STATE/manager/ (assignments.json, the
// API's token and api.json) and serves the API (api.ts) on loopback.
//
//   LAB_STATE=DIR LAB_SOCKET_DIR=SDIR node --import tsx src/manager/main.ts [--port N] [--link MAC@SWITCH_PORT_SOCKET]
//
// With --link the manager is a station on the lab switch (station-link.ts): it discovers the
// HIs and DIs, watches them with heartbeats and writes what it found to stations.json.
//
// The table it starts from is the one it saved, if there is one for this topology, else the
// topology's initial assignments. SIGTERM/SIGINT: the API closes, exit 0; a manager started
// again (by hand: same command, same LAB_STATE) takes the table up where it was.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadTopology } from '../lab/topology.ts';
import { readState, requireState } from '../lab/state.ts';
import { stateRoot } from '../lab/paths.ts';
import { processLogger } from '../common/logger.ts';
import { serveApi } from './api.ts';
import { LabApplier } from './apply.ts';
import { SwitchLinks } from './links.ts';
import { Manager } from './manager.ts';
import { AssignmentStore } from './store.ts';
import { AssignmentTable } from './table.ts';
import { openManagerStation } from './station-link.ts';
import { SurpriseRemoval, giveBack, mapsOf, presentAgain } from './station-restore.ts';

const log = processLogger('manager');

function fail(message: string): never {
  console.error(`manager: ${message}`);
  process.exit(2);
}

const { values } = (() => {
  try {
    return parseArgs({ options: { port: { type: 'string' }, link: { type: 'string' } } });
  } catch (err) {
    fail((err as Error).message);
  }
})();
const lab = readState() ?? fail(`no lab.json in ${stateRoot}: the manager runs inside a lab (lab up)`);
const fabric = loadTopology(lab.file).fabric ?? fail(`${lab.file} describes no hosts and DIs: nothing to manage`);
const inventory = {
  hosts: fabric.hosts.map((h) => ({ name: h.host, slots: h.slots })),
  dis: fabric.dis.map((d) => ({ name: d.process, functions: d.functions })),
};
const dir = join(stateRoot, 'manager');
const store = new AssignmentStore(dir);
// `lab up` started the processes with the saved table if it had one for this topology (it
// drops one that does not fit), so the saved table, if any, is what runs.
const saved = store.load();
const restored = saved?.topology === lab.topology ? saved.assignments : undefined;
const table = new AssignmentTable(inventory, restored ?? fabric.assignments.map(({ host, di, function: fn, slot }) => ({ host, di, function: fn, slot })));
if (!restored) store.save(lab.topology, table.list());
const manager = new Manager(table, store, new LabApplier(fabric, requireState), lab.topology);
manager.on('event', (e) => log(e.event === 'failed' ? 'warn' : 'info', JSON.stringify(e)));
const switchControl = () => {
  const dir = requireState().processes.find((p) => p.name === fabric.switch)?.socketDir;
  if (!dir) throw new Error(`no switch process "${fabric.switch}" in lab.json`);
  return join(dir, 'control.sock');
};
// `list` includes what the station (below, started once the API runs) has discovered.
const api = await serveApi(manager, dir, values.port === undefined ? 0 : Number(values.port), new SwitchLinks(fabric, switchControl), () => discovery?.snapshot());
log('info', `manager pid ${process.pid}: ${table.list().length} assignment(s) (${restored ? 'restored' : 'from the topology'}), API on 127.0.0.1:${api.port}, token in ${dir}/token`);

// A restarted DI gets back the functions the table says hosts hold (station-restore.ts).
const restartedDi = (name: string) => {
  const state = requireState();
  const control = state.processes.find((p) => p.name === name)?.socketDir;
  const maps = mapsOf(fabric, table.list(), name);
  if (!control || !maps.length) return;
  const readd = new LabApplier(fabric, requireState);
  giveBack(name, join(control, 'control.sock'), maps).then(
    (n) => {
      log('info', `${name} restarted: gave it back ${n} function(s) from the table`);
      for (const a of table.list().filter((x) => x.di === name)) {
        const vm = state.vms.find((v) => v.name === a.host);
        if (!vm) continue;
        presentAgain(a, vm.qmp, (x) => readd.map(x)).then(
          (added) => added && log('info', `${a.di}/${a.function}: hot-added into ${a.host} slot ${a.slot} again (its guest had removed it)`),
          (err: Error) => log('warn', `${a.di}/${a.function}: adding it to ${a.host} again failed: ${err.message}`),
        );
      }
    },
    (err: Error) => log('warn', `${name} restarted: giving its functions back failed: ${err.message}`),
  );
};
// A slot an HI reports lost: the guest gets a surprise removal (station-restore.ts).
const surprise = new SurpriseRemoval(
  fabric,
  () => table.list(),
  (host) => requireState().vms.find((v) => v.name === host)?.qmp,
  (hi) => {
    const d = requireState().processes.find((p) => p.name === hi)?.socketDir;
    return d && join(d, 'control.sock');
  },
  log,
);
const discovery =
  values.link === undefined
    ? undefined
    : openManagerStation(values.link, process.env.LAB_SOCKET_DIR ?? join(stateRoot, 'sockets', 'manager'), dir, log, restartedDi, (st) => st.slots && surprise.report(st.name, st.slots));

for (const sig of ['SIGTERM', 'SIGINT'] as const)
  process.on(sig, () => {
    log('info', `${sig}: closing`);
    discovery?.close();
    void api.close().then(() => process.exit(0));
  });
