// Surprise removal with a real QEMU guest (`lab up hotplug`): di/fn0 hot-added into host-a,
// fio running on it, then the DI killed with SIGKILL. Past the HI's grace period the slot's
// presence and link are gone and the HI reports it lost; the manager presses the slot's
// attention button, the guest's pciehp removes the device, and fio ends with an error instead
// of hanging. The DI started again with the same arguments comes back
// with a new epoch: the manager gives it back its function and hot-adds it into the same
// slot; the guest's pciehp probes it, nvme binds, a fio verify passes and data flushed
// before the kill reads back intact.
import test from 'ava';
import { TestLab } from '../support/lab-harness.ts';
import { shIoUnderway, shUntil } from '../support/guest-wait.ts';
import { until } from '../support/until.ts';
import { FIO, kill } from '../hi-di/lab-restart.ts';

const lab = new TestLab('surprise');

test.before(() => lab.up('hotplug'));
test.after.always(() => lab.dispose()); // stops the restarted DI too: it is in lab.json

const guest = (vm: string, command: string, timeoutS = 300) => lab.sh(vm, command, timeoutS);
const labOk = (args: string[]) => lab.ok(args);

const nvmeSerials = async (vm: string) => (await guest(vm, 'cat /sys/class/nvme/nvme*/serial 2>/dev/null; true')).split('\n').map((l) => l.trim()).filter(Boolean);
const bound = async (vm: string) => (await nvmeSerials(vm)).includes('PCIEOE-HOTPLUG-FN0') && (await guest(vm, 'test -b /dev/nvme0n1 && echo yes || true')).trim() === 'yes';
const status = async () => JSON.parse(await labOk(['status', '--json']));
const station = async (name: string) => (await status()).discovery?.stations.find((s: { name: string }) => s.name === name);

test.serial('[qemu] the DI killed under fio: the guest removes the device and fio fails, no hang; the DI back: the function returns and fio verify passes', async (t) => {
  await labOk(['assign', 'host-a', 'di/fn0']);
  await until(() => bound('host-a'), 'host-a nvme driver bound to di/fn0', { timeoutMs: 90_000, everyMs: 250 });
  await until(async () => (await station('hi-host-a'))?.slots?.[0]?.state === 'mapped', 'the manager seeing slot 0 of hi-host-a mapped', { timeoutMs: 30_000, everyMs: 500 });
  const sum = await guest('host-a', 'head -c 4M /dev/urandom >/tmp/ref && dd if=/tmp/ref of=/dev/nvme0n1 bs=1M seek=160 oflag=direct status=none && blockdev --flushbufs /dev/nvme0n1 && md5sum </tmp/ref');
  await guest(
    'host-a',
    `(${FIO} --rw=randrw --bs=4k --iodepth=16 --size=32M --time_based --runtime=600 >/tmp/bg.out 2>&1; echo "FIO-EXIT $?" >/dev/kmsg) >/dev/null 2>&1 </dev/null &\n` +
      `${shIoUnderway('nvme0n1', 500)}; pgrep -x fio >/dev/null`,
  );
  await guest('host-a', 'echo LAB-KILL-DI >/dev/kmsg');
  const killedAt = Date.now();
  const restart = kill(lab, 'di');

  // Removal: the manager and the HI see the DI gone; the guest lets the device go and fio fails.
  await until(async () => (await station('di'))?.alive === false, 'the manager declaring the DI lost', { timeoutMs: 30_000, everyMs: 250 });
  await until(async () => (await station('hi-host-a'))?.slots?.[0]?.state === 'lost', 'hi-host-a reporting slot 0 lost', { timeoutMs: 30_000, everyMs: 250 });
  const dmesg = await guest('host-a', `${shUntil('dmesg | grep -q FIO-EXIT', 'the background fio to end', 180)}; dmesg`, 240);
  t.log(`fio ended ${Date.now() - killedAt} ms after the kill`);
  const tail = dmesg.slice(dmesg.lastIndexOf('\n', dmesg.indexOf('LAB-KILL-DI')) + 1);
  t.log(tail.split('\n').filter((l) => /nvme|pciehp|FIO-EXIT|LAB-KILL|Slot/i.test(l)).slice(0, 25).join('\n'));
  t.regex(tail, /FIO-EXIT [1-9]/, 'fio ended with an error');
  t.regex(tail, /pciehp|nvme/i, 'the guest logged the removal or the errors');
  t.regex(await guest('host-a', 'cat /tmp/bg.out'), /error|err=\s*-?[1-9]/i);
  await until(async () => !(await nvmeSerials('host-a')).includes('PCIEOE-HOTPLUG-FN0'), 'the guest without di/fn0', { timeoutMs: 60_000, everyMs: 500 });
  t.true((await status()).vms.every((v: { running: boolean }) => v.running), 'QEMU is still running');
  t.regex(lab.log('hi-host-a'), /slot 0 \(eep0\): DI silent: surprise removal/);
  t.regex(lab.log('manager'), /di\/fn0 lost in host-a slot 0: attention button pressed/);

  // Return: the DI with the same arguments, a new epoch; the function is presented again.
  restart();
  const backAt = Date.now();
  await until(async () => (await station('di'))?.alive === true, 'the manager seeing the DI back', { timeoutMs: 60_000, everyMs: 250 });
  await until(() => bound('host-a'), 'host-a nvme driver bound to di/fn0 again', { timeoutMs: 120_000, everyMs: 500 });
  t.log(`DI restart → driver bound again: ${Date.now() - backAt} ms`);
  t.is((await station('di')).restarts, 1);
  t.regex(lab.log('manager'), /di\/fn0: hot-added into host-a slot 0 again/);
  const verify = await guest('host-a', `${FIO} --rw=randrw --bs=4k --iodepth=16 --size=16M 2>&1`, 500);
  t.regex(verify, /err= 0/, verify);
  t.notRegex(verify, /verify: bad|verify failed|io_u error/);
  t.is(await guest('host-a', 'dd if=/dev/nvme0n1 bs=1M skip=160 count=4 iflag=direct status=none | md5sum'), sum, 'flushed data read back intact');
  t.deepEqual((await status()).assignments, [{ host: 'host-a', di: 'di', function: 'fn0', slot: 0 }]);
});
