// A DI killed with SIGKILL in the middle of fio and started again with the same arguments, under
// the unmodified Linux nvme driver (`lab up one-host-nvme`): the HI sees the new DI's epoch and
// programs the function again; the guest driver's own timeout path finds a controller that was
// reset, resets it and carries on. No guest reboot: a new fio verify passes on the same device,
// and data written and flushed before the kill reads back intact.
//
// What a run shows (2026-12-02): kill at guest time 26.5 s; the HI reprograms the new DI 2.5 s
// later; the four I/Os in flight on QID 2 time out at 41.9 s (abort), the driver resets the
// controller at 57 s and has its queues back at 57.3 s; the background fio ends at 69.7 s (exit 1:
// an I/O of the kill failed); the new verify run passes. This hung before (the requeued I/Os never
// completed, the driver reset the controller every 2 × io_timeout) until two changes: the NVMe
// model puts the shadow doorbells and event indexes in step at Doorbell Buffer Config (stale pages
// make a host skip its MMIO doorbell; test/nvme/doorbell-buffer.test.ts), and the manager's
// surprise removal taking only hot-plugged functions (this one is on QEMU's command line, so the
// manager stays running and must leave it to the driver).
import test from 'ava';
import { shUntil } from '../support/guest-wait.ts';
import { TestLab } from '../support/lab-harness.ts';
import { FIO, flushedDataAndBackgroundFio, killAndRestart } from './lab-restart.ts';

const lab = new TestLab('hidirs');

test.before(() => lab.up('one-host-nvme'));
test.after.always(() => lab.dispose()); // stops the restarted DI too: it is in lab.json

const guest = (command: string, timeoutS = 300) => lab.sh('host', command, timeoutS);

test.serial('[qemu] the DI killed mid-fio and started again: the guest driver resets the controller, fio verify passes again, flushed data intact', async (t) => {
  const sum = await flushedDataAndBackgroundFio(lab, 'host', 60);
  await guest('echo LAB-KILL-DI >/dev/kmsg');
  const restarted = killAndRestart(lab, 'di');
  t.log(`DI restarted as pid ${restarted}`);

  // The driver's timeout handler meets the new, unprogrammed-by-the-guest controller and resets it.
  const dmesg = await guest(`${shUntil('dmesg | grep -q FIO-EXIT', 'the background fio to end', 240)}; dmesg`, 300);
  const tail = dmesg.slice(dmesg.lastIndexOf('\n', dmesg.indexOf('LAB-KILL-DI')) + 1);
  t.log(tail.split('\n').filter((l) => /nvme|FIO-EXIT|LAB-KILL/.test(l)).slice(0, 20).join('\n'));
  const noisy = /BAR \d read|more like the above/;
  t.log(`HI:\n${lab.log('hi').split('\n').filter((l) => !noisy.test(l)).slice(-25).join('\n')}\nDI:\n${lab.log('di').split('\n').slice(-25).join('\n')}`);
  t.notRegex(tail, /nvme nvme0: Removing|Device not ready|disabling device/, 'the driver kept the controller');
  t.regex(tail, /nvme nvme0: .*(reset|timeout)/i, 'it went through its timeout/reset path');
  const hiLog = lab.log('hi');
  t.regex(hiLog, /channel 1: DI restarted \(new epoch\): channel reset/);
  t.regex(hiLog, /programmed again after the channel reset/);

  // Same device, no reboot: a new verify run passes, and the flushed data is intact.
  t.regex(await guest('ls /dev/nvme0n1 && cat /sys/class/nvme/nvme0/state'), /live/);
  const rand = await guest(`${FIO} --rw=randrw --bs=4k --iodepth=32 --size=32M 2>&1`, 500);
  t.regex(rand, /err= 0/, rand);
  t.notRegex(rand, /verify: bad|verify failed|io_u error/);
  t.is(await guest('dd if=/dev/nvme0n1 bs=1M skip=160 count=4 iflag=direct status=none | md5sum'), sum, 'flushed data read back intact');
});
