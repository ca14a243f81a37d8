// A DI killed with SIGKILL in the middle of fio and started again with the same arguments, under
// the unmodified Linux nvme driver (`lab up one-host-nvme`): the HI sees the new DI's epoch and
// programs the function again; the guest driver's own timeout path finds a controller that was
// reset, resets it and carries on. No guest reboot: a new fio verify passes on the same device,
// and data written and flushed before the kill reads back intact.
//
// SKIPPED — known failure (2026-12-02): everything up to the driver's reset works (kill at guest
// time 18.6 s, the HI reprograms the new DI 1.5 s later, I/O timeouts at 34 s, "reset controller"
// at 49 s, "2/0/0 default/read/poll queues" at 49.9 s), but the four I/Os requeued on QID 2 never
// complete on the new controller (not even found by the driver's CQ poll; Abort answers status 0),
// so the driver resets it again every 2 × io_timeout and fio hangs. Suspect: the NVMe model's
// shadow doorbells (Doorbell Buffer Config) across a controller reset with requests outstanding;
// next: reproduce with `nvme reset` under fio on nvme-direct, then with the DBBUF off.
import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDetached, startTimeOf } from '../../src/lab/procs.ts';
import { TestLab } from '../support/lab-harness.ts';

const lab = new TestLab('hidirs');
let restarted: number | undefined;

test.before(async () => {
  await lab.up('one-host-nvme');
});
test.after.always(async () => {
  await lab.dispose(); // stops the restarted DI too: it is in lab.json
  if (restarted !== undefined) {
    try {
      process.kill(restarted, 'SIGKILL');
    } catch {
      // gone already
    }
  }
});

async function guest(command: string, timeoutS = 300): Promise<string> {
  const r = await lab.exec('host', command, timeoutS);
  if (r.code !== 0) throw new Error(`guest: ${command.split('\n')[0]}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** Shell: re-check `cond` every 0.1 s, for at most `timeoutS`, then fail saying what it waited for. */
const shWait = (cond: string, what: string, timeoutS: number) =>
  `i=0; until ${cond}; do i=$((i+1)); [ $i -ge ${timeoutS * 10} ] && { echo "timed out waiting for ${what}" >&2; exit 1; }; sleep 0.1; done`;
/** Shell: block-layer reads plus writes completed on nvme0n1. */
const IOS = "$(awk '{print $1 + $5}' /sys/block/nvme0n1/stat)";

const FIO = 'fio --name=t --filename=/dev/nvme0n1 --direct=1 --ioengine=libaio --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=0';

interface LabJson {
  processes: { name: string; pid: number; startTime: string; log: string }[];
}

/** SIGKILL a lab process and start it again with the same command line and environment; lab.json follows. */
function killAndRestart(name: string): number {
  const file = join(lab.stateDir, 'lab.json');
  const state = JSON.parse(readFileSync(file, 'utf8')) as LabJson;
  const p = state.processes.find((x) => x.name === name)!;
  const split = (f: string) => readFileSync(`/proc/${p.pid}/${f}`, 'latin1').split('\0').filter((x) => x !== '');
  const argv = split('cmdline');
  const env = Object.fromEntries(split('environ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  process.kill(p.pid, 'SIGKILL');
  const rec = startDetached(argv, p.log, undefined, env);
  Object.assign(p, rec, { startTime: startTimeOf(rec.pid) ?? rec.startTime });
  writeFileSync(file, JSON.stringify(state, null, 2));
  return rec.pid;
}

test.serial.skip('[qemu] the DI killed mid-fio and started again: the guest driver resets the controller, fio verify passes again, flushed data intact', async (t) => {
  // A shorter I/O timeout than the driver's 30 s, so its timeout path (abort, then reset) runs sooner; still
  // long enough for the DI to be back when it reads CSTS (all-ones then would make it give the device up).
  await guest('echo 15000 > /sys/block/nvme0n1/queue/io_timeout');
  // Data written and flushed before the kill.
  const sum = await guest('head -c 4M /dev/urandom >/tmp/ref && dd if=/tmp/ref of=/dev/nvme0n1 bs=1M seek=160 oflag=direct status=none && blockdev --flushbufs /dev/nvme0n1 && md5sum </tmp/ref');
  await guest(`(${FIO} --rw=randrw --bs=4k --iodepth=16 --size=32M --time_based --runtime=60 >/tmp/bg.out 2>&1; echo "FIO-EXIT $?" >/dev/kmsg) >/dev/null 2>&1 &\n` +
    `base=${IOS}; ${shWait(`[ ${IOS} -ge $((base + 2000)) ]`, '2000 I/Os under way', 60)}; pgrep -x fio >/dev/null`);
  await guest('echo LAB-KILL-DI >/dev/kmsg');
  restarted = killAndRestart('di');
  t.log(`DI restarted as pid ${restarted}`);

  // The driver's timeout handler meets the new, unprogrammed-by-the-guest controller and resets it.
  const dmesg = await guest(`${shWait('dmesg | grep -q FIO-EXIT', 'the background fio to end', 240)}; dmesg`, 300);
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
