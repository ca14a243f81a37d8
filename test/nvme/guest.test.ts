// The NVMe model under the unmodified Linux 6.1 driver: boots lab topology
// nvme-direct (the model attached over vfio-user), then checks what issue 4
// asks of a guest — the driver binds, nvme-cli works, fio verifies data —
// and that data survives a guest reboot and a restart of the server process.
import test from 'ava';
import { TestLab } from '../support/lab-harness.ts';
import { shUntil } from '../support/guest-wait.ts';

// Own state and data directories: never the user's lab.
const testLab = new TestLab('nvme');
const lab = (args: string[]) => testLab.run(args);
const labUp = (topology: string) => testLab.up(topology);

/** Runs a shell command in the guest; fails the test with its output if it exits non-zero. */
async function guest(cmd: string, timeoutS = 300): Promise<string> {
  const r = await testLab.exec('host-a', cmd, timeoutS);
  if (r.code !== 0) throw new Error(`guest: ${cmd}\nexit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

const fio = (args: string) =>
  guest(`fio --name=t --direct=1 --ioengine=libaio --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=0 ${args} 2>&1`);

test.after.always(() => testLab.dispose());

test.serial('[qemu] Linux nvme driver binds; nvme-cli and fio verify pass; nvme reset, unbind/rebind; data survives a guest reboot and a server restart', async (t) => {
  await labUp('nvme-direct');

  const dmesg = await guest('dmesg | grep -i nvme');
  t.regex(dmesg, /nvme nvme0: pci function/);
  t.regex(dmesg, /nvme nvme0: 2\/0\/0 default\/read\/poll queues/, 'one I/O queue per vCPU');
  t.notRegex(dmesg, /timeout|failed|error/i);
  // OACS bit 8 offered: the driver sent Doorbell Buffer Config, so the I/O queues run on shadow doorbells.
  t.regex(testLab.log('nvme'), /shadow doorbells @0x/);

  const list = await guest('nvme list');
  t.regex(list, /\/dev\/nvme0n1 .*PCIEOE[0-9A-F]{14} +PCIeOE NVMe model +1 +1\.07 +GB \/ +1\.07 +GB +512 +B/);
  t.regex(list, /\/dev\/nvme0n2 .* 2 +268\.44 +MB .* 4 KiB/);
  const idCtrl = await guest('nvme id-ctrl /dev/nvme0');
  for (const re of [/^mdts +: 5$/m, /^ver +: 0x10400$/m, /^vwc +: 0x1$/m, /^nn +: 2$/m, /^subnqn +: nqn\.2026-11\.org\.pcieoe:nvme:PCIEOE/m]) t.regex(idCtrl, re);
  t.regex(await guest('nvme id-ns /dev/nvme0n2'), /lbaf +0 : ms:0 +lbads:12 +rp:0 \(in use\)/);
  t.regex(await guest('nvme smart-log /dev/nvme0'), /temperature\s+: 35 ?°?C/);

  // 4 KiB random read/write at QD 64 (2 jobs x 32, each on its own 16 MiB) on the
  // 512 B namespace, 512 B random writes, and 64 KiB sequential write then read
  // on the 4 KiB namespace: every block verified.
  const rand = await fio('--filename=/dev/nvme0n1 --rw=randrw --bs=4k --iodepth=32 --numjobs=2 --size=16M --offset_increment=16M --group_reporting');
  t.regex(rand, /err= 0/);
  t.notRegex(rand, /verify: bad|crc32c: verify failed/);
  t.regex(await fio('--filename=/dev/nvme0n1 --rw=randwrite --bs=512 --iodepth=16 --size=2M --offset=64M'), /err= 0/);
  t.regex(await fio('--filename=/dev/nvme0n2 --rw=write --bs=64k --iodepth=8 --size=16M'), /err= 0/);

  // A controller reset (CC.EN 1 → 0 → 1), and a driver unbind / rebind (shutdown, then a new probe), then more I/O.
  const live = (what: string) => shUntil('grep -qx live /sys/class/nvme/nvme0/state && test -b /dev/nvme0n1', what);
  await guest(`nvme reset /dev/nvme0 && ${live('nvme0 live after the reset')}`);
  const fn = (await guest('basename $(readlink /sys/class/nvme/nvme0/device)')).trim();
  await guest(`echo ${fn} > /sys/bus/pci/drivers/nvme/unbind && echo ${fn} > /sys/bus/pci/drivers/nvme/bind && ${live('nvme0n1 after the rebind')}`);
  t.regex(await fio('--filename=/dev/nvme0n1 --rw=randwrite --bs=4k --iodepth=4 --size=4M --offset=128M'), /err= 0/);

  // A guest reboot: the kernel shuts the controller down (CC.SHN), the next boot's driver
  // enables it again (after DEVICE_RESET), and data written before is read back.
  const beforeReboot = (await guest('dd if=/dev/urandom of=/dev/nvme0n1 bs=64k count=16 seek=2048 oflag=direct 2>/dev/null; dd if=/dev/nvme0n1 bs=64k count=16 skip=2048 iflag=direct 2>/dev/null | md5sum')).split(' ')[0];
  const rebooted = await lab(['reboot', 'host-a']);
  t.is(rebooted.code, 0, rebooted.stderr);
  t.is((await guest('dd if=/dev/nvme0n1 bs=64k count=16 skip=2048 iflag=direct 2>/dev/null | md5sum')).split(' ')[0], beforeReboot);

  // Data written before `lab down` (server SIGTERM: flush and close) is there after `lab up`.
  const sum = (await guest('dd if=/dev/urandom of=/dev/nvme0n1 bs=64k count=16 seek=4096 oflag=direct 2>/dev/null; dd if=/dev/nvme0n1 bs=64k count=16 skip=4096 iflag=direct 2>/dev/null | md5sum')).split(' ')[0];
  t.is((await lab(['down'])).code, 0);
  await labUp('nvme-direct');
  t.is((await guest('dd if=/dev/nvme0n1 bs=64k count=16 skip=4096 iflag=direct 2>/dev/null | md5sum')).split(' ')[0], sum);
  t.is((await lab(['down'])).code, 0);
});

test.serial('[qemu] a two-function card: two controllers, distinct serials and subsystems, independent data', async (t) => {
  await labUp('nvme-card');
  const serials = (await guest('cat /sys/class/nvme/nvme*/serial')).trim().split(/\s+/);
  t.is(serials.length, 2);
  t.not(serials[0], serials[1]);
  const nqns = (await guest('cat /sys/class/nvme-subsystem/*/subsysnqn')).trim().split(/\s+/);
  t.is(new Set(nqns).size, 2, 'one subsystem per function');
  // Different patterns on the two functions, each read back unchanged.
  const out = await guest(
    'for n in 0 1; do yes "fn$n" | head -c 1048576 | dd of=/dev/nvme${n}n1 bs=64k oflag=direct 2>/dev/null; done; ' +
      'for n in 0 1; do dd if=/dev/nvme${n}n1 bs=64k count=16 iflag=direct 2>/dev/null | md5sum; yes "fn$n" | head -c 1048576 | md5sum; done',
  );
  const sums = out.trim().split('\n').map((l) => l.split(' ')[0]);
  t.is(sums[0], sums[1]);
  t.is(sums[2], sums[3]);
  t.not(sums[0], sums[2]);
});
