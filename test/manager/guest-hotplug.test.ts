// Hot-plug flows with real QEMU guests (`lab up hotplug`: two guests with free HI slots, a
// DI with a two-function NVMe card, nothing assigned): `lab assign` hot-adds a function into
// a running guest and its nvme driver binds; fio verify on it. Bad input changes nothing.
// Removal (unassign, and so move) is blocked by a QEMU abort: see the last test.
import test from 'ava';
import { TestLab } from '../support/lab-harness.ts';
import { until } from '../support/until.ts';

const lab = new TestLab('hotplug');

test.before(async () => {
  await lab.up('hotplug');
});
test.after.always(() => lab.dispose());

async function guest(vm: string, command: string, timeoutS = 300): Promise<string> {
  const r = await lab.exec(vm, command, timeoutS);
  if (r.code !== 0) throw new Error(`${vm}: ${command.split('\n')[0]}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** The serials of the guest's NVMe controllers bound by the nvme driver. */
const nvmeSerials = async (vm: string) => (await guest(vm, 'cat /sys/class/nvme/nvme*/serial 2>/dev/null; true')).split('\n').map((l) => l.trim()).filter(Boolean).sort();
const hasNamespace = async (vm: string) => (await guest(vm, 'test -b /dev/nvme0n1 && echo yes || true')).trim() === 'yes';

async function labOk(args: string[]) {
  const r = await lab.run(args);
  if (r.code !== 0) throw new Error(`lab ${args.join(' ')}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

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

// Removal, last (it takes host-a down today): QEMU 11.1.3 aborts while unrealizing the
// hot-plugged vfio-user-pci ("memory_region_del_subregion: Assertion `subregion->container ==
// mr' failed", seen in host-a's qemu.log after device_del), so unassign and move cannot pass
// yet; the manager reports the failure and keeps the mapping. Passing here means it is fixed.
test.serial.failing('[qemu] unassign: the guest releases the device, the slot is empty (fails: QEMU aborts on vfio-user-pci unplug)', async (t) => {
  t.regex(await labOk(['unassign', 'host-a', 'di/fn0']), /unassigned di\/fn0 from host-a slot 0 \(\d+ ms\)/);
  t.deepEqual(await nvmeSerials('host-a'), ['PCIEOE-HOTPLUG-FN1'], 'di/fn1 stays');
});
