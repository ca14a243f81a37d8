// The NVMe model behind PCIeOE under the unmodified Linux nvme driver: `lab up
// one-host-nvme` (switch, DI hosting an NVMe controller, HI; the guest has the
// HI's EEP in a slot of its PCIe switch). The driver must bind through HI +
// switch + DI, nvme-cli and fio verify must pass, and a DI killed mid-I/O must
// end in I/O errors or removal in the guest, never a hang, with the HI alive.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TestLab } from '../support/lab-harness.ts';
import { shIoUnderway } from '../support/guest-wait.ts';
import { logLines } from '../support/log-lines.ts';

const lab = new TestLab('hidinv');

test.before(async () => {
  const up = await lab.run(['up', 'one-host-nvme']);
  if (up.code !== 0) throw new Error(`lab up one-host-nvme failed:\n${up.stdout}\n${up.stderr}`);
});
test.after.always(() => lab.dispose());

async function guest(command: string, timeoutS = 300): Promise<string> {
  const r = await lab.exec('host', command, timeoutS);
  if (r.code !== 0) throw new Error(`guest: ${command.split('\n')[0]}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

const fio = (args: string) =>
  guest(`fio --name=t --direct=1 --ioengine=libaio --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=0 ${args} 2>&1`, 500);

const logOf = (name: string) => readFileSync(join(lab.stateDir, `${name}.log`), 'utf8');
const pidOf = (name: string): number => {
  const s = JSON.parse(readFileSync(join(lab.stateDir, 'lab.json'), 'utf8')) as { processes: { name: string; pid: number }[] };
  return s.processes.find((p) => p.name === name)!.pid;
};
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test.serial('[qemu] the guest nvme driver binds to the remote controller under the switch slot; nvme list', async (t) => {
  const tree = await guest('lspci -tv -nn');
  // Root port → switch upstream port → downstream port → the NVMe function.
  t.regex(tree, /-\[[0-9a-f]{2}-[0-9a-f]{2}\]----00\.0-\[[0-9a-f]{2}-[0-9a-f]{2}\]--\+-00\.0-\[[0-9a-f]{2}\]----00\.0 +.*\[1234:4e56\]/, tree);
  const bdf = (await guest('lspci -D -n -d 1234:4e56 | cut -d" " -f1')).trim();
  t.regex(bdf, /^0000:[0-9a-f]{2}:00\.0$/, 'exactly one NVMe function');
  t.regex(await guest(`readlink -f /sys/bus/pci/devices/${bdf}`), /pci0000:00\/[^/]+\/[^/]+\/[^/]+\/[^/]+\n$/);
  const vv = await guest(`lspci -vv -s ${bdf}`);
  t.regex(vv, /Non-Volatile memory controller: .*NVM Express/);
  t.regex(vv, /Kernel driver in use: nvme/);
  // 17 vectors in the remote table; the driver enables MSI-X and uses 1 + one per vCPU.
  t.regex(vv, /MSI-X: Enable\+ Count=17 Masked-/);
  const dmesg = await guest('dmesg | grep -i nvme');
  t.regex(dmesg, new RegExp(`nvme nvme0: pci function ${bdf.replace(/\./g, '\\.')}`));
  t.regex(dmesg, /nvme nvme0: 2\/0\/0 default\/read\/poll queues/, 'one I/O queue (and vector) per vCPU');
  t.notRegex(dmesg, /timeout|failed|error|reset/i);
  t.regex(await guest('nvme list'), /\/dev\/nvme0n1 .* PCIEOE-DI-NVME0 +PCIeOE NVMe model +1 +268\.44 +MB \/ +268\.44 +MB +512 +B/);
  t.regex(await guest('nvme id-ctrl /dev/nvme0'), /^mdts +: 5$/m);
});

test.serial('[qemu] the HI\'s control endpoint: visible with lspci in the switch, its BAR shows status and the mapping table', async (t) => {
  const bdf = (await guest('lspci -D -n -d 1234:4849 | cut -d" " -f1')).trim();
  t.regex(bdf, /^0000:[0-9a-f]{2}:00\.0$/, 'exactly one HI control endpoint');
  t.regex(await guest(`readlink -f /sys/bus/pci/devices/${bdf}`), /pci0000:00\/[^/]+\/[^/]+\/[^/]+\/[^/]+\n$/, 'in a slot of the guest\'s switch');
  const vv = await guest(`lspci -vv -s ${bdf}`);
  t.regex(vv, /System peripheral: Device 1234:4849/);
  t.regex(vv, /Region 0: Memory at ([0-9a-f]+) \(32-bit, non-prefetchable\) \[size=4K\]/);
  // Read BAR0 through an mmap of resource0 (real CPU loads, 4 bytes at a time), up to the first NUL.
  const perl =
    `open(my $f, "<", "/sys/bus/pci/devices/${bdf}/resource0") or die "open: $!"; ` +
    'my $m = syscall(9, 0, 4096, 1, 1, fileno($f), 0); $m == -1 and die "mmap: $!"; my $s = ""; ' +
    'for (my $i = 0; $i < 4096; $i += 4) { my $w = unpack("P4", pack("J", $m + $i)); $s .= $w; last if $w =~ /\\0/; } ' +
    '$s =~ s/\\0.*//s; print $s;';
  const text = await guest(`perl -e '${perl}'`);
  t.regex(text, /^PCIeOE HI 1\n/);
  t.regex(text, /^channel 1 peer reachable links up,up$/m);
  t.regex(text, /^eep eep0 channel 1 remote 01:00\.0 id 1234:4e56 msix [1-9]\d* dma-errors 0 mmio-read-failures 0$/m, text);
});

test.serial('[qemu] fio verify through HI + switch + DI: 4 KiB random QD32, 64 KiB sequential write then read', async (t) => {
  const rand = await fio('--filename=/dev/nvme0n1 --rw=randrw --bs=4k --iodepth=32 --size=32M');
  t.regex(rand, /err= 0/);
  t.notRegex(rand, /verify: bad|verify failed|io_u error/);
  const seq = await fio('--filename=/dev/nvme0n1 --rw=write --bs=64k --iodepth=8 --size=16M --offset=64M');
  t.regex(seq, /err= 0/);
  t.regex(seq, /read: IOPS=/, 'the verify pass read everything back');
  t.notRegex(await guest('dmesg'), /nvme.*(timeout|reset|error)|I\/O error/i);
  // No completion timed out on either side, nothing was refused.
  t.deepEqual(logLines(logOf('hi'), /all-ones|failed|uncaught|unhandled/), []);
  t.deepEqual(logLines(logOf('di'), /DMA .*timeout|function error|uncaught|unhandled/), []);
});

// Last: it takes the device away. The guest driver notices only when an I/O
// times out (nvme_core.io_timeout, 30 s), then reads CSTS: all-ones from the
// HI, which answers at once once its links to the DI are silent; the driver
// resets, fails to re-enable and removes the controller, failing the I/O.
test.serial('[qemu] the DI killed mid-I/O: I/O errors or removal in the guest after the driver times the I/O out, no hang, the HI stays up', async (t) => {
  await guest('(fio --name=bg --direct=1 --ioengine=libaio --filename=/dev/nvme0n1 --rw=randrw --bs=4k --iodepth=16 --size=32M --time_based --runtime=300 >/tmp/bg.out 2>&1; echo "FIO-EXIT $?" >/dev/kmsg) >/dev/null 2>&1 &\n' +
    `${shIoUnderway('nvme0n1', 1000)}; pgrep -x fio >/dev/null`);
  const hiPid = pidOf('hi');
  const diPid = pidOf('di');
  // The marker is written before the kill: (error time − marker time) bounds the real delay from above.
  await guest('echo LAB-KILL-DI >/dev/kmsg');
  process.kill(diPid, 'SIGKILL');
  const out = await guest('for i in $(seq 1 600); do dmesg | grep -q FIO-EXIT && break; sleep 0.2; done; dmesg', 200);
  const at = (re: RegExp) => {
    const m = new RegExp(`^\\[ *([0-9.]+)\\] .*${re.source}`, 'm').exec(out);
    return m ? Number(m[1]) : undefined;
  };
  const kill = at(/LAB-KILL-DI/)!;
  const failed = [at(/I\/O error, dev nvme0n1/), at(/nvme nvme0: Removing/), at(/FIO-EXIT [1-9]/)].filter((x): x is number => x !== undefined);
  t.true(failed.length > 0, `no I/O error or removal in the guest:\n${out.slice(-3000)}`);
  const delay = Math.min(...failed) - kill;
  t.log(`I/O error or removal ${delay.toFixed(1)} s after the kill`);
  // The driver's 30 s I/O timeout, later on a slow machine; past 100 s it would be a hang.
  t.true(delay <= 100, `${delay.toFixed(1)} s`);
  t.regex(out, /FIO-EXIT [1-9]/, 'fio ended, with an error');
  // The guest is alive and the block device is gone or failing; the HI process lives on.
  t.is((await guest('echo alive')).trim(), 'alive');
  t.true(alive(hiPid), 'the HI is still running');
  t.regex(logOf('hi'), /channel 1: DI unreachable/);
  t.deepEqual(logLines(logOf('hi'), /uncaught|unhandled/), []);
});
