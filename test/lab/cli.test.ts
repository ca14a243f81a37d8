// The `lab` command line without QEMU: wrong use, --help, list, logs, status, exit codes, and
// Ctrl-C during `lab up` (the lab is stopped while a process is still starting, before any VM).
import test from 'ava';
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TestLab } from '../support/lab-harness.ts';
import { until } from '../support/until.ts';
import { isAlive, startTimeOf, type ProcRecord } from '../../src/lab/procs.ts';
import { catalog, catalogText } from '../../src/lab/catalog.ts';
import { consoleStage } from '../../src/lab/status.ts';
import { AssignmentStore } from '../../src/manager/store.ts';

const lab = new TestLab('cli');
test.after.always(() => lab.dispose());
const repo = fileURLToPath(new URL('../..', import.meta.url));
const labBin = join(repo, 'bin/lab.mjs');
const EXEC_LAB_FAILED = 255;

const cases: [string[], number, RegExp][] = [
  [[], 2, /usage: lab <command>/],
  [['frobnicate'], 2, /lab: unknown command "frobnicate"/],
  [['up'], 2, /expected "lab up <topology>"/],
  [['up', 'default', '--accel', 'xen'], 2, /--accel: expected tcg or kvm, got "xen"/],
  [['up', 'default', '--transport', 'udp'], 2, /--transport: expected memif or unix, got "udp"/],
  [['up', 'default', '--pin-lab', 'last'], 2, /--pin-lab: expected a CPU list like "1" or "0-1", got "last"/],
  [['up', 'default', '--pin-lab', '0,4095'], 2, /--pin-lab: no CPU 4095 here \(CPUs 0-\d+\)/],
  [['up', 'default', '--bogus'], 2, /Unknown option '--bogus'/],
  [['up', 'no-such-topology'], 1, /no topology "no-such-topology"/],
  [['qmp', 'host-a'], 2, /expected "lab qmp <vm> <command> \[<json arguments>\]"/],
  [['qmp', 'host-a', 'query-status', '{nope'], 2, /arguments are not valid JSON/],
  [['status', 'extra'], 2, /expected "lab status"/],
  [['status', '--interval', 'soon'], 2, /--interval: expected seconds, got "soon"/],
  [['logs'], 2, /expected "lab logs \[-f\] <vm\|process>"/],
  [['logs', 'nobody'], 1, /no VM or process named "nobody" has logs/],
  [['help', 'frobnicate'], 2, /unknown command "frobnicate"/],
  [['assign', 'host-a'], 2, /expected "lab assign <host> <di>\/<function>"/],
  [['assign', 'host-a', 'di/fn0', '--slot', 'x'], 2, /--slot: expected a slot number, got "x"/],
  [['assign', 'host-a', 'di/fn0'], 1, /the manager is not running/],
  [['move', 'di/fn0'], 2, /expected "lab move <di>\/<function> <host>"/],
  [['unassign', 'host-a', 'di/fn0'], 1, /the manager is not running/],
  // `lab exec`: the lab's own failures are 255, never a status a guest command could mean.
  [['exec', 'host-a'], EXEC_LAB_FAILED, /expected "lab exec <vm> \[--timeout S\] -- <command...>"/],
  [['exec', 'host-a', '--'], EXEC_LAB_FAILED, /no command after "--"/],
  [['exec', 'host-a', '--timeout', '0', '--', 'true'], EXEC_LAB_FAILED, /--timeout: expected seconds/],
  [['exec', 'host-a', '--', 'true'], EXEC_LAB_FAILED, /no lab is up/],
];

for (const [args, code, message] of cases) {
  test(`lab ${args.join(' ') || '(no arguments)'}`, async (t) => {
    const r = await lab.run(args);
    t.is(r.code, code);
    t.regex(r.stderr + r.stdout, message);
  });
}

test('every command has --help: its usage line, exit 0, nothing run', async (t) => {
  const top = await lab.run(['--help']);
  t.is(top.code, 0);
  const names = [...top.stdout.matchAll(/^ {2}([a-z]+)/gm)].map((m) => m[1]!);
  t.true(names.length >= 10, top.stdout);
  for (const name of ['setup', 'list', 'up', 'status', 'logs', 'exec', 'qmp', 'reboot', 'down', 'assign', 'unassign', 'move', 'demo']) t.true(names.includes(name), name);
  for (const name of names) {
    const r = await lab.run([name, '--help']);
    t.is(r.code, 0, name);
    t.regex(r.stdout, new RegExp(`^usage: lab ${name}`), name);
  }
  // After "--" of lab exec, --help belongs to the guest command.
  const r = await lab.run(['exec', 'host-a', '--', 'ls', '--help']);
  t.is(r.code, EXEC_LAB_FAILED);
  t.regex(r.stderr, /no lab is up/);
  t.is((await lab.run(['help', 'logs'])).stdout, (await lab.run(['logs', '-h'])).stdout);
});

test('lab list: every shipped topology with its description; the README lists the same', async (t) => {
  const r = await lab.run(['list']);
  t.is(r.code, 0);
  const entries = catalog();
  t.true(entries.length >= 5);
  for (const e of entries) {
    t.regex(r.stdout, new RegExp(`^${e.name} +${e.description.replace(/[()+.]/g, '\\$&')}$`, 'm'));
    t.not(e.description, '', `${e.file} has no description`);
  }
  t.is(r.stdout.trimEnd(), catalogText(entries));
  const readme = readFileSync(join(repo, 'README.md'), 'utf8');
  const block = /<!-- lab list -->\n```\n([\s\S]*?)\n```/.exec(readme)?.[1];
  t.is(block, catalogText(entries), 'README: the block after <!-- lab list --> is `lab list` output');
});

test('lab logs prints a process log and -f follows it until Ctrl-C (exit 0)', async (t) => {
  const log = join(lab.stateDir, 'follow-me.log');
  writeFileSync(log, 'first line\n');
  const once = await lab.run(['logs', 'follow-me']);
  t.is(once.code, 0);
  t.is(once.stdout, 'first line\n');
  const child = spawn(process.execPath, [labBin, 'logs', '-f', 'follow-me'], { env: lab.env });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  await until(() => out.includes('first line'), 'the existing lines', { timeoutMs: 30_000 });
  appendFileSync(log, 'appended later\n');
  await until(() => out.includes('appended later'), 'the appended line', { timeoutMs: 30_000 });
  child.kill('SIGINT');
  t.is(await exited, 0);
});

test('lab logs <vm> reads its console, --qemu its QEMU log', async (t) => {
  const dir = join(lab.stateDir, 'vms', 'guest-x');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'console.log'), 'Linux version 6.1\n');
  writeFileSync(join(dir, 'qemu.log'), 'qemu says hi\n');
  t.is((await lab.run(['logs', 'guest-x'])).stdout, 'Linux version 6.1\n');
  t.is((await lab.run(['logs', '--qemu', 'guest-x'])).stdout, 'qemu says hi\n');
  const r = await lab.run(['logs', '--qemu', 'follow-me-not']);
  t.is(r.code, 1);
  t.regex(r.stderr, /--qemu: no VM named "follow-me-not"/);
});

test('boot stage from the console log', (t) => {
  t.is(consoleStage(''), 'firmware');
  t.is(consoleStage('SeaBIOS\nLinux version 6.1.0\n'), 'kernel');
  t.is(consoleStage('Linux version 6.1.0\nlab-init: up in 3.2s\n'), 'init');
  t.is(consoleStage('Linux version 6.1.0\nKernel panic - not syncing\n'), 'panic');
});

/** A real lab process (the switch) and two VM records, one running (a stand-in process) and one gone. */
async function fakeLab(t: import('ava').ExecutionContext) {
  const socketDir = join(lab.stateDir, 'sockets', 'sw');
  mkdirSync(socketDir, { recursive: true });
  const swLog = join(lab.stateDir, 'sw.log');
  const sw = spawn(process.execPath, ['--import', 'tsx', join(repo, 'src/fabric/switch/main.ts'), '--port', 'a', '--port', 'b'], {
    env: { ...process.env, LAB_SOCKET_DIR: socketDir },
    stdio: 'ignore',
  });
  const standIn = spawn('sleep', ['600'], { stdio: 'ignore' });
  t.teardown(() => {
    sw.kill();
    standIn.kill();
  });
  await until(() => existsSync(join(socketDir, 'b.sock')), 'the switch ports', { timeoutMs: 60_000, everyMs: 50 });
  const rec = (pid: number): ProcRecord => ({ pid, startTime: startTimeOf(pid)! });
  const vmDir = (name: string) => {
    const dir = join(lab.stateDir, 'vms', name);
    mkdirSync(dir, { recursive: true });
    return { dir, qmp: join(dir, 'qmp.sock'), agent: join(dir, 'agent.sock'), console: join(dir, 'console.log'), log: join(dir, 'qemu.log') };
  };
  const booting = vmDir('booting');
  writeFileSync(booting.console, 'Linux version 6.1.0-cloud\n');
  const gone = vmDir('gone');
  writeFileSync(
    join(lab.stateDir, 'lab.json'),
    JSON.stringify({
      topology: 'fake',
      file: '/nowhere/fake.yaml',
      accel: 'tcg',
      qemuVersion: 'QEMU 11',
      kernelVersion: '6.1',
      startedAt: new Date().toISOString(),
      processes: [{ name: 'sw', ...rec(sw.pid!), log: swLog, socketDir }],
      vms: [
        { name: 'booting', ...rec(standIn.pid!), ...booting },
        { name: 'gone', pid: 2 ** 22 + 1, startTime: '1', ...gone },
      ],
    }),
  );
  return { sw, standIn };
}

test.serial('lab status --json and the text form: boot stage, agent, pid, CPU, counters', async (t) => {
  t.is((await lab.run(['status', '--json'])).stdout.trim(), 'null');
  const { sw } = await fakeLab(t);
  new AssignmentStore(join(lab.stateDir, 'manager')).save('fake', [{ host: 'booting', di: 'di', function: 'fn0', slot: 1 }]);
  const r = await lab.run(['status', '--json']);
  t.is(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  t.is(s.topology, 'fake');
  const [booting, gone] = s.vms;
  t.like(booting, { name: 'booting', running: true, stage: 'kernel', agent: 'no socket' });
  t.like(gone, { name: 'gone', running: false, stage: 'stopped', agent: 'stopped' });
  const [p] = s.processes;
  t.like(p, { name: 'sw', pid: sw.pid, running: true });
  t.true(p.cpuSeconds > 0);
  t.deepEqual(Object.keys(p.counters.ports).sort(), ['a', 'b']);
  t.is(p.counters.ports.a.switch.rxFrames, 0);
  t.deepEqual(s.assignments, [{ host: 'booting', di: 'di', function: 'fn0', slot: 1 }]);

  const text = await lab.run(['status', '--interval', '0.2']);
  t.is(text.code, 0, text.stderr);
  t.regex(text.stdout, /process sw +pid \d+ +running .* cpu \d+\.\d s \(\d+ %\)/);
  t.regex(text.stdout, /rxFrames 0 \(\+0\/s\), txFrames 0 \(\+0\/s\), dropped 0 \(\+0\/s\), forgedSource 0 \(\+0\/s\)/);
  t.regex(text.stdout, /vm +booting .*running[\s\S]*boot stage kernel, agent no socket/);
  t.regex(text.stdout, /vm +gone .*STOPPED[\s\S]*boot stage stopped/);
  t.regex(text.stdout, /assignments \(manager\): \n {8}di\/fn0 → booting slot 1/);
  await lab.run(['down']);
  t.false(isAlive({ pid: sw.pid!, startTime: startTimeOf(sw.pid!) ?? 'gone' }));
});

test.serial('Ctrl-C during lab up stops what it started and exits 130', async (t) => {
  // The VM's device waits for a socket the switch never creates, so lab up stays in its
  // process stage until interrupted: no VM is ever started.
  const file = join(lab.stateDir, 'stuck.yaml');
  writeFileSync(
    file,
    'name: stuck\nprocesses:\n  - { name: sw, run: src/fabric/switch/main.ts, args: [--port, a] }\n' +
      'vms:\n  - name: host\n    devices: [{ type: vfio-user, id: x, server: sw/never }]\n',
  );
  const child = spawn(process.execPath, [labBin, 'up', file], { env: lab.env });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const state = join(lab.stateDir, 'lab.json');
  const swLog = join(lab.stateDir, 'sw.log');
  await until(() => existsSync(swLog) && /switch: 1 ports/.test(readFileSync(swLog, 'utf8')), 'the switch to start', { timeoutMs: 120_000, everyMs: 50 });
  const sw = JSON.parse(readFileSync(state, 'utf8')).processes[0] as ProcRecord;
  t.true(isAlive(sw));
  child.kill('SIGINT');
  t.is(await exited, 130, err);
  t.regex(err, /interrupted by SIGINT/);
  t.false(isAlive(sw), 'the switch was stopped');
  t.false(existsSync(state));
  t.false(existsSync(join(lab.stateDir, 'vms', 'host')));
});

test('a bad topology file is rejected with every problem and its path, before anything starts', async (t) => {
  const file = join(lab.stateDir, 'bad.yaml');
  writeFileSync(file, 'name: bad\nvms:\n  - name: a\n    memory: lots\n    devices: [{type: nvme, id: n0, size: 1}]\n');
  const r = await lab.run(['up', file]);
  t.is(r.code, 1);
  t.regex(r.stderr, /bad\.yaml: invalid topology\n {2}vms\[0\]\.memory: expected like "512M"\n {2}vms\[0\]\.devices\[0\]\.size: expected like "512M"/);
  t.regex((await lab.run(['status'])).stdout, /no lab is up/);
});
