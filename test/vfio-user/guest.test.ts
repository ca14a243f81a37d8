// The vfio-user server against real QEMU 11 and a real Linux guest: one `lab up` of
// lab/topologies/testdev.yaml (two test devices served by one process, td0 on a root port,
// td1 in a PCIe switch slot). The in-guest side is guest/testdev-check.pl, a userspace
// driver written for the guest's module-less perl (its header explains why not vfio-pci).
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SHARED_BAR, SharedReg, TESTDEV_ID_VALUE, TestDevice, TestReg } from '../../src/devices/testdev/testdev.ts';
import { servePciFunction } from '../../src/direct-attach/adapter.ts';
import { PciRegion } from '../../src/vfio-user/protocol.ts';
import { TestLab } from '../support/lab-harness.ts';
import { until } from '../support/until.ts';
import { VfioUserClient } from '../../src/vfio-user/client.ts';

const lab = new TestLab('vfio');
const checkScript = readFileSync(new URL('guest/testdev-check.pl', import.meta.url), 'utf8');
const serverLog = () => readFileSync(join(lab.stateDir, 'testdev.log'), 'utf8');

test.before(async () => {
  const up = await lab.run(['up', 'testdev']);
  if (up.code !== 0) throw new Error(`lab up testdev failed:\n${up.stdout}\n${up.stderr}`);
});
test.after.always(() => lab.dispose());

async function guest(command: string): Promise<string> {
  const r = await lab.exec('guest', command, 120);
  if (r.code !== 0) throw new Error(`guest: ${command.split('\n')[0]}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** Test devices as the guest enumerates them: full BDF → sysfs path (to tell root port from switch slot). */
async function testDevices(): Promise<Map<string, string>> {
  const out = await guest('for d in $(lspci -D -n -d 1234:0e0e | cut -d" " -f1); do echo "$d $(readlink -f /sys/bus/pci/devices/$d)"; done');
  return new Map(out.trim().split('\n').filter(Boolean).map((l) => l.split(' ') as [string, string]));
}

test.serial('lspci -vv: IDs, class, 64-bit 16K BAR0, PCIe endpoint, MSI-X with 4 vectors, MSI, on a root port and in a switch slot', async (t) => {
  const devs = await testDevices();
  t.is(devs.size, 2, [...devs.keys()].join(', '));
  const paths = [...devs.values()];
  // td0 sits right below a root port, td1 below the switch's upstream and downstream ports.
  t.true(paths.some((p) => /pci0000:00\/[^/]+\/[^/]+$/.test(p)), paths.join('\n'));
  t.true(paths.some((p) => /pci0000:00\/[^/]+\/[^/]+\/[^/]+\/[^/]+$/.test(p)), paths.join('\n'));
  for (const bdf of devs.keys()) {
    const vv = await guest(`lspci -vv -nn -s ${bdf}`);
    t.regex(vv, /System peripheral \[0880\]: Device \[1234:0e0e\] \(rev 01\)/, bdf);
    t.regex(vv, /Region 0: Memory at [0-9a-f]+ \(64-bit, non-prefetchable\) \[size=16K\]/, bdf);
    t.regex(vv, /Express \(v2\) Endpoint/, bdf);
    t.regex(vv, /MSI-X: Enable- Count=4 Masked-\n\s+Vector table: BAR=0 offset=00002000\n\s+PBA: BAR=0 offset=00003000/, bdf);
    t.regex(vv, /MSI: Enable- Count=1\/4 Maskable\+ 64bit\+/, bdf);
    t.regex(vv, /Interrupt: pin A/, bdf);
  }
});

test.serial('guest driver script: BAR registers via resource0 and devmem, DMA between guest pages and from the BIOS flash, MSI-X and MSI (with its mask) counted in /proc/interrupts', async (t) => {
  const devs = await testDevices();
  t.is(devs.size, 2);
  for (const bdf of devs.keys()) {
    const out = await guest(`cat > /tmp/testdev-check.pl <<'PERL_EOF'\n${checkScript}\nPERL_EOF\nperl /tmp/testdev-check.pl ${bdf}`);
    const r = Object.fromEntries(out.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    t.log(`${bdf}: ${r.msi_borrowed}; DMA ${r.dma_buffers}`);
    t.is(r.id_mmap, '0x7e570e0e', `${bdf}: ID read through the resource0 mapping`);
    t.is(r.id_devmem, '0x7e570e0e', `${bdf}: ID read through devmem`);
    t.is(r.scratch_mmap, r.scratch_written, `${bdf}: scratch round trip`);
    t.is(r.scratch_devmem, r.scratch_written);
    t.is(r.msix_control, '8003', `${bdf}: MSI-X enabled, 4 vectors`);
    t.is(r.dma_no_busmaster_status, '0x00000004', `${bdf}: ERROR without Bus Master Enable`);
    t.is(r.dma_no_busmaster_dst_untouched, '1');
    t.is(r.irqs_without_busmaster, '0', `${bdf}: no MSI without Bus Master Enable`);
    t.is(r.dma_status, '0x00000002', `${bdf}: DONE`);
    t.is(r.dma_copied, '1', `${bdf}: destination page holds the source pattern`);
    t.is(r.dma_buffers_stayed, '1', `${bdf}: buffers did not move during the copy`);
    t.is(r.dma_count, '1');
    t.is(r.dma_unmapped_status, '0x00000004', `${bdf}: ERROR for an address outside guest RAM`);
    t.is(r.dma_flash_status, '0x00000002', `${bdf}: DONE copying from the BIOS flash (DMA_READ messages)`);
    t.is(r.dma_flash_copied, '1', `${bdf}: DMA_READ reply data where QEMU puts it`);
    t.is(r.irqs_with_busmaster, '6', `${bdf}: 3 copy completions + 3 software interrupts`);
    t.is(r.msix_control_off, '0003', `${bdf}: MSI-X off`);
    t.is(r.msi_control, '0185', `${bdf}: MSI enabled, 1 of 4 vectors, 64-bit, per-vector mask`);
    t.is(r.irqs_msi, '2', `${bdf}: two software interrupts as MSI (SET_IRQS index 1)`);
    t.is(r.irqs_msi_masked, '0', `${bdf}: nothing while the vector is masked`);
    t.is(r.msi_pending, '00000001', `${bdf}: pending while masked`);
    t.is(r.irqs_msi_unmasked, '1', `${bdf}: the pending message arrives at unmask`);
    t.is(r.msi_pending_after, '00000000');
  }
});

// The shared page is off in the lab's testdev process (a mappable region turns off
// QEMU's posted writes for the whole device), so this test serves a third device
// with it from the test process and hot-plugs it into the switch's free slot.
test.serial('sparse mmap: QEMU maps the shared BAR2 page; guest stores through it land in the server\'s memfd, untrapped', async (t) => {
  const before = new Set((await testDevices()).keys());
  const logs: string[] = [];
  const dev = new TestDevice({ msi: true, sharedPage: true });
  const server = servePciFunction(dev, { path: join(lab.stateDir, 'td2.sock'), name: 'td2', log: (level, m) => logs.push(`${level} ${m}`) });
  // QEMU dies with this process's server gone mid-session; the lab is torn down after the file anyway.
  t.teardown(() => {
    server.close();
    dev.close();
  });
  const add = await lab.run(['qmp', 'guest', 'device_add', JSON.stringify({ driver: 'vfio-user-pci', id: 'td2', bus: 'sw.1', socket: { type: 'unix', path: server.path } })]);
  t.is(add.code, 0, add.stdout + add.stderr);
  let bdf = '';
  await until(async () => {
    bdf = [...(await testDevices()).keys()].find((b) => !before.has(b)) ?? '';
    return bdf !== '';
  }, 'the hot-plugged device in the guest', { timeoutMs: 30_000, everyMs: 200 });
  const vv = await guest(`lspci -vv -s ${bdf}`);
  t.regex(vv, /Region 2: Memory at [0-9a-f]+ \(32-bit, non-prefetchable\) (\[disabled\] )?\[size=8K\]/, 'disabled: no driver enabled Memory Space');

  // Guest side: Memory Space on (nothing enabled it: no driver), stores into the
  // shared page with devmem, the device's sum and trap counter read back, then a
  // device store (SHARED_STAMP) read through a CPU load from the resource2 mapping.
  const out = await guest(`set -e
sys=/sys/bus/pci/devices/${bdf}
setpci -s ${bdf} COMMAND=0x02
base=$(sed -n 3p $sys/resource | cut -d' ' -f1)
busybox devmem $((base + ${SharedReg.Page} + 0x10)) 32 0x11223344
busybox devmem $((base + ${SharedReg.Page} + 0x20)) 32 0x01010101
echo sum=$(busybox devmem $((base + ${SharedReg.Sum})) 32)
echo trapped=$(busybox devmem $((base + ${SharedReg.Trapped})) 32)
busybox devmem $((base + ${SharedReg.Stamp})) 32 0xc0ffee42
perl -e 'open(my $f, "<", "$ARGV[0]/resource2") or die "resource2: $!"; my $m = syscall(9, 0, 8192, 1, 1, fileno($f), 0); $m == -1 and die "mmap: $!"; printf "stamp=0x%08x\n", unpack("L<", unpack("P4", pack("J", $m + $ARGV[1])));' $sys ${SharedReg.Page + SharedReg.StampAt}
`);
  const r = Object.fromEntries(out.trim().split('\n').map((l) => l.split('=') as [string, string]));
  t.is(r.sum, '0x12233445', 'the device summed what the guest stored');
  t.is(r.trapped, '0x00000000', 'no access to the page came as REGION_READ/WRITE: QEMU mapped it');
  t.is(r.stamp, '0xc0ffee42', 'the device store is visible through the guest mapping');
  // Server side: the same bytes in the device's memory, read as the device reads them.
  const sum = dev.barRead(SHARED_BAR, SharedReg.Sum, 4) as Uint8Array;
  t.is(new DataView(sum.buffer, sum.byteOffset).getUint32(0, true), (0x12233445 + 0xc0ffee42) >>> 0, 'plus the stamp');
  t.deepEqual(logs.filter((l) => !l.startsWith('info')), []);
});

// QEMU 11.1.3 aborts on device_del of any vfio-user-pci device with MSI-X:
// vfio_user_instance_finalize() removes its PBA overlay from a BAR region that
// object finalization has already torn down ("memory_region_del_subregion: Assertion
// `subregion->container == mr' failed"); the same device without MSI-X unplugs fine.
// Marked failing so that a fixed QEMU shows up here as "passed unexpectedly".
test.serial.failing('device_del of an MSI-X vfio-user device: the guest loses it and QEMU keeps running (QEMU 11.1.3 bug)', async (t) => {
  const before = (await testDevices()).size;
  const del = await lab.run(['qmp', 'guest', 'device_del', JSON.stringify({ id: 'td0' })]);
  t.is(del.code, 0, del.stdout + del.stderr);
  await until(() => /vfio-user td0: client disconnected/.test(serverLog()), 'td0 disconnect after device_del', { timeoutMs: 30_000 });
  t.is((await testDevices()).size, before - 1);
});

test.serial('after its QEMU client left, the server keeps listening and serves a new client on the same socket', async (t) => {
  await until(() => /vfio-user td0: client disconnected/.test(serverLog()), 'td0 disconnect', { timeoutMs: 30_000 });
  const c = new VfioUserClient(join(lab.stateDir, 'sockets', 'testdev', 'td0.sock'));
  try {
    await c.version();
    t.is((await c.deviceInfo()).numRegions, PciRegion.Count);
    t.is(await c.read32(PciRegion.Bar0, TestReg.Id), TESTDEV_ID_VALUE);
  } finally {
    c.close();
  }
  t.is(serverLog().match(/vfio-user td0: client connected/g)?.length, 2);
});

test.serial('the server logged no warnings or errors against real QEMU', (t) => {
  const bad = serverLog().split('\n').filter((l) => / (warn|error) /.test(l));
  t.deepEqual(bad, [], 'no DMA_MAP refused, no unsealed guest RAM (it would be reached with pread), no SET_IRQS fd refused');
  t.regex(serverLog(), /client connected/);
});
