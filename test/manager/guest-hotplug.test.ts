// Hot-plug flows with real QEMU guests (`lab up hotplug`: two guests with free HI slots, a
// DI with a two-function NVMe card, nothing assigned): `lab assign` hot-adds a function into
// a running guest and its nvme driver binds; fio verify on it. Bad input changes nothing.
// Removal: an idle function leaves with no I/O error, `lab move` carries the data to the
// other guest, I/O in flight ends with an error (no hang), a guest that does not release
// keeps the mapping; a manager killed and started again keeps the table. (The HI hides MSI-X of hot-plugged functions: QEMU 11.1.3 aborts
// removing a vfio-user-pci that has it; see src/manager/apply.ts.)
import test from 'ava';
import { TestLab } from '../support/lab-harness.ts';
import { until } from '../support/until.ts';
import { killAndRestart } from '../hi-di/lab-restart.ts';

const lab = new TestLab('hotplug');

test.before(async () => {
  await lab.up('hotplug');
});
test.after.always(() => lab.dispose());

const guest = (vm: string, command: string, timeoutS = 300) => lab.sh(vm, command, timeoutS);
const labOk = (args: string[]) => lab.ok(args);

/** The serials of the guest's NVMe controllers bound by the nvme driver. */
const nvmeSerials = async (vm: string) => (await guest(vm, 'cat /sys/class/nvme/nvme*/serial 2>/dev/null; true')).split('\n').map((l) => l.trim()).filter(Boolean).sort();
const hasNamespace = async (vm: string) => (await guest(vm, 'test -b /dev/nvme0n1 && echo yes || true')).trim() === 'yes';

const PATTERN = 'yes pcieoe-hotplug | head -c 1048576';
const readBack = 'dd if=/dev/nvme0n1 bs=64k count=16 skip=1024 iflag=direct 2>/dev/null | md5sum | cut -d" " -f1';

test.serial('[qemu] assign hot-adds the function into the running guest: the nvme driver binds, fio verify passes', async (t) => {
  for (const vm of ['host-a', 'host-b']) t.deepEqual(await nvmeSerials(vm), [], `${vm} starts with no NVMe`);
  const start = Date.now();
  t.regex(await labOk(['assign', 'host-a', 'di/fn0']), /assigned di\/fn0 to host-a slot 0 \(\d+ ms\)/);
  await until(async () => (await nvmeSerials('host-a')).includes('PCIEOE-HOTPLUG-FN0') && (await hasNamespace('host-a')), 'host-a nvme driver bound to di/fn0', { timeoutMs: 60_000, everyMs: 250 });
  t.log(`assign → driver bound: ${Date.now() - start} ms`);
  // In the HI's first slot, under the guest's switch.
  t.regex(await guest('host-a', 'lspci -tv -nn'), /-\[[0-9a-f]{2}-[0-9a-f]{2}\]----00\.0-\[[0-9a-f]{2}-[0-9a-f]{2}\]--\+-00\.0-\[[0-9a-f]{2}\]----00\.0 +.*\[1234:4e56\]/);
  t.regex(await guest('host-a', 'lspci -vv -d 1234:4e56'), /Kernel driver in use: nvme/);
  const fio = await guest('host-a', 'fio --name=t --filename=/dev/nvme0n1 --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=16 --size=8M --verify=crc32c --verify_fatal=1 --do_verify=1 2>&1', 500);
  t.regex(fio, /err= 0/);
  await guest('host-a', `${PATTERN} | dd of=/dev/nvme0n1 bs=64k seek=1024 oflag=direct 2>/dev/null`);
  t.is((await guest('host-a', readBack)).trim(), (await guest('host-a', `${PATTERN} | md5sum | cut -d" " -f1`)).trim());
  t.notRegex(await guest('host-a', 'dmesg'), /I\/O error|nvme.*(timeout|reset)/i);
});

test.serial('[qemu] bad input: a clear error and nothing changed', async (t) => {
  await labOk(['assign', 'host-a', 'di/fn1', '--slot', '1']);
  const again = await lab.run(['assign', 'host-b', 'di/fn1']);
  t.is(again.code, 1);
  t.regex(again.stderr, /di\/fn1 is already assigned to host-a \(slot 1\)/);
  const unknown = await lab.run(['assign', 'host-c', 'di/fn0']);
  t.regex(unknown.stderr, /no host named "host-c"/);
  const fn = await lab.run(['assign', 'host-b', 'di/fn9']);
  t.regex(fn.stderr, /DI "di" has no function "fn9"/);
  // A second function hot-added into the same running guest, in the slot asked for.
  await until(async () => (await nvmeSerials('host-a')).includes('PCIEOE-HOTPLUG-FN1'), 'host-a bound di/fn1', { timeoutMs: 60_000, everyMs: 250 });
  t.deepEqual(await nvmeSerials('host-a'), ['PCIEOE-HOTPLUG-FN0', 'PCIEOE-HOTPLUG-FN1']);
  t.deepEqual(await nvmeSerials('host-b'), [], 'host-b got nothing');
  const status = JSON.parse(await labOk(['status', '--json']));
  t.true(status.vms.every((v: { stage: string }) => v.stage === 'ready'));
});

const lspciNvme = (vm: string) => guest(vm, 'lspci -n -d 1234:4e56');
const dmesgErrors = async (vm: string) => (await guest(vm, 'dmesg')).split('\n').filter((l) => /I\/O error|nvme.*(timeout|reset)/i.test(l));
const assignments = async () => JSON.parse(await labOk(['status', '--json'])).assignments as { host: string; function: string; slot: number }[];
const qemuAlive = async () => JSON.parse(await labOk(['status', '--json'])).vms.every((v: { running: boolean }) => v.running);

test.serial('[qemu] unassign of an idle function: the guest lets go, the slot is empty, no I/O error, the other function stays', async (t) => {
  const start = Date.now();
  t.regex(await labOk(['unassign', 'host-a', 'di/fn1']), /unassigned di\/fn1 from host-a slot 1 \(\d+ ms\)/);
  t.log(`unassign → slot empty: ${Date.now() - start} ms`);
  t.deepEqual(await nvmeSerials('host-a'), ['PCIEOE-HOTPLUG-FN0'], 'di/fn1 is gone, di/fn0 stays');
  const slots = JSON.parse(await labOk(['qmp', 'host-a', 'qom-list', '{"path":"/machine/peripheral"}'])) as { name: string }[];
  t.false(slots.some((p) => p.name === 'eep1'), 'QEMU let go of the device');
  t.deepEqual(await dmesgErrors('host-a'), []);
  t.true(await qemuAlive());
  t.deepEqual((await assignments()).map((a) => `${a.host}/${a.function}`), ['host-a/fn0']);
  // The freed slot takes the function again.
  await labOk(['assign', 'host-a', 'di/fn1', '--slot', '1']);
  await until(async () => (await nvmeSerials('host-a')).includes('PCIEOE-HOTPLUG-FN1'), 'host-a bound di/fn1 again', { timeoutMs: 60_000, everyMs: 250 });
  await labOk(['unassign', 'host-a', 'di/fn1']);
});

test.serial('[qemu] move: di/fn0 goes to host-b with its data intact', async (t) => {
  const want = (await guest('host-a', `${PATTERN} | md5sum | cut -d" " -f1`)).trim();
  const start = Date.now();
  t.regex(await labOk(['move', 'di/fn0', 'host-b']), /moved di\/fn0 from host-a slot 0 to host-b slot 0 \(\d+ ms\)/);
  await until(async () => (await nvmeSerials('host-b')).includes('PCIEOE-HOTPLUG-FN0') && (await hasNamespace('host-b')), 'host-b nvme driver bound to di/fn0', { timeoutMs: 60_000, everyMs: 250 });
  t.log(`move → driver bound on host-b: ${Date.now() - start} ms`);
  t.deepEqual(await nvmeSerials('host-a'), [], 'host-a has nothing left');
  t.is(await lspciNvme('host-a'), '');
  t.is((await guest('host-b', readBack)).trim(), want, 'the pattern host-a wrote reads back on host-b');
  t.deepEqual(await dmesgErrors('host-a'), []);
  t.deepEqual((await assignments()).map((a) => `${a.host}/${a.function}/${a.slot}`), ['host-b/fn0/0']);
});

test.serial('[qemu] the manager killed and started again keeps the assignments: the guest keeps its device, the new manager drives the next flows', async (t) => {
  const before = (await assignments()).map((a) => `${a.host}/${a.function}/${a.slot}`);
  t.deepEqual(before, ['host-b/fn0/0']);
  const pid = killAndRestart(lab, 'manager');
  // `lab status` reads the saved table from its file, manager or not: the new manager is up when it
  // has logged its start-up line (API listening).
  await until(() => lab.log('manager').includes(`manager pid ${pid}: `), 'the restarted manager to start', { timeoutMs: 60_000, everyMs: 250 });
  t.deepEqual((await assignments()).map((a) => `${a.host}/${a.function}/${a.slot}`), before);
  t.true(lab.log('manager').includes(`manager pid ${pid}: 1 assignment(s) (restored)`), 'restored from its saved table');
  t.deepEqual(await nvmeSerials('host-b'), ['PCIEOE-HOTPLUG-FN0'], 'the guest kept its device');
  t.is((await guest('host-b', readBack)).trim(), (await guest('host-b', `${PATTERN} | md5sum | cut -d" " -f1`)).trim());
  const busy = await lab.run(['assign', 'host-a', 'di/fn0']);
  t.regex(busy.stderr, /di\/fn0 is already assigned to host-b \(slot 0\)/, 'the restarted manager knows who holds it');
});

test.serial('[qemu] unassign with I/O in flight: the I/O ends with an error, nothing hangs', async (t) => {
  // fio in the background on host-b (its first 32 MiB; the pattern at 64 MiB stays), running when the unassign starts.
  await guest(
    'host-b',
    'rm -f /tmp/inflight.log; (fio --name=inflight --filename=/dev/nvme0n1 --direct=1 --ioengine=libaio --rw=randrw --bs=4k --iodepth=16 --size=32M --time_based --runtime=300 > /tmp/inflight.log 2>&1; echo "fio exit $?" >> /tmp/inflight.log) > /dev/null 2>&1 < /dev/null &',
  );
  await until(async () => /\bfio\b/.test(await guest('host-b', 'cat /proc/[0-9]*/comm 2>/dev/null | grep -x fio || true')), 'fio running on host-b', { timeoutMs: 60_000, everyMs: 250 });
  const ios = async () => Number((await guest('host-b', "awk '$3==\"nvme0n1\"{print $4+$8}' /proc/diskstats")).trim() || 0);
  const before = await ios();
  await until(async () => (await ios()) > before + 100, 'I/O in flight on host-b', { timeoutMs: 60_000, everyMs: 250 });
  t.regex(await labOk(['unassign', 'host-b', 'di/fn0']), /unassigned di\/fn0 from host-b slot 0/);
  await until(async () => /fio exit/.test(await guest('host-b', 'cat /tmp/inflight.log')), 'fio ended on host-b', { timeoutMs: 120_000, everyMs: 500 });
  const log = await guest('host-b', 'cat /tmp/inflight.log');
  t.regex(log, /fio exit [1-9]/, 'fio failed');
  t.regex(log, /error|err=\s*-?[1-9]/i);
  t.deepEqual(await nvmeSerials('host-b'), []);
  t.true(await qemuAlive());
});

test.serial('[qemu] a guest that does not release within the time limit: unassign says so, the mapping stays and works', async (t) => {
  // Into the slot the move emptied on host-a.
  await labOk(['assign', 'host-a', 'di/fn0']);
  await until(async () => (await nvmeSerials('host-a')).includes('PCIEOE-HOTPLUG-FN0') && (await hasNamespace('host-a')), 'host-a bound di/fn0 again', { timeoutMs: 60_000, everyMs: 250 });
  await labOk(['qmp', 'host-a', 'stop']);
  let r;
  try {
    r = await lab.run(['unassign', 'host-a', 'di/fn0']);
  } finally {
    await labOk(['qmp', 'host-a', 'cont']);
  }
  t.is(r.code, 1, r.stdout + r.stderr);
  t.regex(r.stderr, /host-a did not release di\/fn0 \(eep0\) within \d+ s .*the mapping stays/);
  t.deepEqual((await assignments()).map((a) => `${a.host}/${a.function}`), ['host-a/fn0']);
  // The guest, running again, still has the device, and the data the move carried.
  t.is((await guest('host-a', readBack)).trim(), (await guest('host-a', `${PATTERN} | md5sum | cut -d" " -f1`)).trim());
  t.regex(await labOk(['unassign', 'host-a', 'di/fn0']), /unassigned di\/fn0 from host-a slot 0/);
  t.deepEqual(await assignments(), []);
});
