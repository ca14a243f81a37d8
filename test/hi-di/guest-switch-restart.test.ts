// The lab switch killed with SIGKILL in the middle of fio and started again with the same
// arguments, under the unmodified Linux nvme driver (`lab up one-host-nvme`): the HI's and DI's
// links go silent, their ports reach the new switch, and the link layer's replay delivers what
// was lost, so the guest's I/O carries on (or, if the gap outlasted the driver's I/O timeout,
// its timeout/reset path recovers). Either way fio ends on its own, without a hang; a new fio
// verify passes on the same device without a guest reboot, and flushed data reads back intact.
//
// Runs (2026-12-02) saw both: fio carrying on with no error and no reset; and, once, the driver
// finding "controller is down" 15 s after the kill (CSTS 0x3: the model had raised CFS, presumably
// on a DMA read that failed while the switch was gone), resetting it and having its queues back
// 0.3 s later, fio still ending with no error.
import test from 'ava';
import { shUntil } from '../support/guest-wait.ts';
import { TestLab } from '../support/lab-harness.ts';
import { FIO, flushedDataAndBackgroundFio, killAndRestart } from './lab-restart.ts';

const lab = new TestLab('hiswrs');

test.before(() => lab.up('one-host-nvme'));
test.after.always(() => lab.dispose()); // stops the restarted switch too: it is in lab.json

const guest = (command: string, timeoutS = 300) => lab.sh('host', command, timeoutS);

test.serial('[qemu] the switch killed mid-fio and started again: fio ends on its own, a new fio verify passes, flushed data intact', async (t) => {
  const sum = await flushedDataAndBackgroundFio(lab, 'host', 20);
  await guest('echo LAB-KILL-SWITCH >/dev/kmsg');
  const logged = { hi: lab.log('hi').length, di: lab.log('di').length };
  const restarted = killAndRestart(lab, 'sw');
  t.log(`switch restarted as pid ${restarted}`);

  // fio ends by itself: its runtime, plus the driver's timeout path at worst.
  const dmesg = await guest(`${shUntil('dmesg | grep -q FIO-EXIT', 'the background fio to end', 180)}; dmesg`, 240);
  const tail = dmesg.slice(dmesg.lastIndexOf('\n', dmesg.indexOf('LAB-KILL-SWITCH')) + 1);
  t.log(tail.split('\n').filter((l) => /nvme|FIO-EXIT|LAB-KILL/.test(l)).slice(0, 20).join('\n'));
  t.log(`fio: ${(await guest('grep -E "err=|error|verify" /tmp/bg.out || true')).trim()}`);
  t.notRegex(tail, /nvme nvme0: Removing|Device not ready|disabling device/, 'the driver kept the controller');
  // Each end that found its peer silent on every link (the switch gone) found it again after.
  for (const [name, peer] of [['hi', 'DI'], ['di', 'host']] as const) {
    const after = lab.log(name).slice(logged[name]);
    const lost = after.lastIndexOf(`${peer} unreachable`);
    if (lost >= 0) t.regex(after.slice(lost), new RegExp(`: ${peer} reachable`), `${name} log after the kill:\n${after.slice(-2000)}`);
  }

  t.regex(await guest('ls /dev/nvme0n1 && cat /sys/class/nvme/nvme0/state'), /live/);
  const rand = await guest(`${FIO} --rw=randrw --bs=4k --iodepth=32 --size=16M 2>&1`, 300);
  t.regex(rand, /err= 0/, rand);
  t.notRegex(rand, /verify: bad|verify failed|io_u error/);
  t.is(await guest('dd if=/dev/nvme0n1 bs=1M skip=160 count=4 iflag=direct status=none | md5sum'), sum, 'flushed data read back intact');
});
