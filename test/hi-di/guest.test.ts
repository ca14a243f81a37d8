// The PCIeOE path against real QEMU 11 and a real Linux guest: `lab up
// one-host-one-card` (switch, DI with the test device, HI; the guest has the
// HI's EEP in a PCIe switch slot). The in-guest driver is the direct-attach
// test's script (test/vfio-user/guest/testdev-check.pl): the same checks must
// pass when the device is behind the fabric.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TestLab } from '../support/lab-harness.ts';

const lab = new TestLab('hidi');
const checkScript = readFileSync(new URL('../vfio-user/guest/testdev-check.pl', import.meta.url), 'utf8');

test.before(async () => {
  const up = await lab.run(['up', 'one-host-one-card']);
  if (up.code !== 0) throw new Error(`lab up one-host-one-card failed:\n${up.stdout}\n${up.stderr}`);
});
test.after.always(() => lab.dispose());

async function guest(command: string): Promise<string> {
  const r = await lab.exec('host', command, 120);
  if (r.code !== 0) throw new Error(`guest: ${command.split('\n')[0]}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

test.serial('the remote test device under the guest\'s PCIe switch: lspci, BAR, MSI-X, DMA and interrupts through HI + switch + DI', async (t) => {
  const bdf = (await guest('lspci -D -n -d 1234:0e0e | cut -d" " -f1')).trim();
  t.regex(bdf, /^0000:[0-9a-f]{2}:00\.0$/, 'exactly one test device');
  // Below the root port, the switch's upstream port and a downstream slot.
  t.regex(await guest(`readlink -f /sys/bus/pci/devices/${bdf}`), /pci0000:00\/[^/]+\/[^/]+\/[^/]+\/[^/]+\n$/);
  const vv = await guest(`lspci -vv -nn -s ${bdf}`);
  t.regex(vv, /System peripheral \[0880\]: Device \[1234:0e0e\] \(rev 01\)/);
  t.regex(vv, /Region 0: Memory at [0-9a-f]+ \(64-bit, non-prefetchable\) \[size=16K\]/);
  t.regex(vv, /Express \(v2\) Endpoint/);
  t.regex(vv, /MSI-X: Enable- Count=4 Masked-\n\s+Vector table: BAR=0 offset=00002000/);
  t.regex(vv, /MSI: Enable- Count=1\/4 Maskable\+ 64bit\+/, 'the remote MSI capability, as QEMU emulates it');

  const out = await guest(`cat > /tmp/testdev-check.pl <<'PERL_EOF'\n${checkScript}\nPERL_EOF\nperl /tmp/testdev-check.pl ${bdf}`);
  const r = Object.fromEntries(out.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  t.is(r.id_mmap, '0x7e570e0e', 'ID read through the resource0 mapping: MRd over PCIeOE');
  t.is(r.id_devmem, '0x7e570e0e');
  t.is(r.scratch_mmap, r.scratch_written, 'scratch round trip: MWr then MRd');
  t.is(r.msix_control, '8003');
  t.is(r.dma_no_busmaster_status, '0x00000004', 'no DMA without Bus Master Enable');
  t.is(r.irqs_without_busmaster, '0');
  t.is(r.dma_status, '0x00000002');
  t.is(r.dma_copied, '1', 'the DI\'s MRd/MWr reached guest RAM through the HI');
  t.is(r.dma_unmapped_status, '0x00000004', 'DMA outside guest RAM: UR from the HI, ERROR in the device');
  t.is(r.dma_flash_status, '0x00000002', 'BIOS flash has no fd: the HI serves the MRd with DMA_READ messages');
  t.is(r.dma_flash_copied, '1');
  t.is(r.irqs_with_busmaster, '6', '3 copies + 3 software interrupts: MSI-X MWr → HI MSI window → eventfd → guest');
  // The script's MSI part is newer than this test: check it where it ran.
  if (r.msi_control !== undefined) {
    t.is(r.msix_control_off, '0003');
    t.is(r.msi_control, '0185', 'MSI enabled, 1 of 4 vectors, 64-bit, per-vector mask');
    t.is(r.irqs_msi, '2', 'two software interrupts as MSI: MWr to the HI\'s MSI address → SET_IRQS index 1 eventfd');
    t.is(r.irqs_msi_masked, '0', 'nothing while the vector is masked (QEMU masks)');
    t.is(r.msi_pending, '00000001');
    t.is(r.irqs_msi_unmasked, '1', 'the pending message arrives at unmask');
    t.is(r.msi_pending_after, '00000000');
  }

  // Neither side saw anything it had to refuse, and the HI never timed out.
  const hiLog = readFileSync(join(lab.stateDir, 'hi.log'), 'utf8');
  t.notRegex(hiLog, /all-ones|uncaught|unhandled/);
});
