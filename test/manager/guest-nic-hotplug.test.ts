// Hot-plug of NIC functions with real QEMU guests (`lab up nic-hotplug`: two guests with free
// HI slots, a DI card with two virtio-net functions and an NVMe one, nothing assigned):
// `lab assign` hot-adds a NIC function into each running guest, the unmodified virtio_net
// driver binds, and the two interfaces reach each other over the lab switch (each NIC's
// wire is a switch port of its own) — ping with a payload pattern both ways and a TCP
// transfer compared by SHA-256.
import test, { type ExecutionContext } from 'ava';
import { shListening } from '../support/guest-wait.ts';
import { TestLab } from '../support/lab-harness.ts';
import { until } from '../support/until.ts';
import { logLines } from '../support/log-lines.ts';

const lab = new TestLab('nichp');

test.before(async () => {
  await lab.up('nic-hotplug');
});
test.after.always(() => lab.dispose());

const NIC = {
  'host-a': { fn: 'di/nic0', mac: '02:00:00:00:0a:01', ip: '10.98.0.1' },
  'host-b': { fn: 'di/nic1', mac: '02:00:00:00:0b:01', ip: '10.98.0.2' },
} as const;
type Host = keyof typeof NIC;
/** The interface with `mac`, found by MAC (the guest names it). */
const iface = (mac: string) => `$(ip -o link | grep -i 'ether ${mac}' | cut -d: -f2 | tr -d ' ')`;

const sh = (vm: string, command: string, timeoutS = 300) => lab.sh(vm, command, timeoutS);
const labOk = (args: string[]) => lab.ok(args);

const hasIface = async (vm: Host) => (await sh(vm, `ip -o link | grep -ci 'ether ${NIC[vm].mac}' || true`)).trim() === '1';

async function ping(t: ExecutionContext, from: Host, to: Host): Promise<void> {
  const out = await sh(from, `ping -c 4 -i 0.3 -W 5 -s 1400 -p a55a0ff0 ${NIC[to].ip}`);
  t.regex(out, /4 packets transmitted, 4 received/, `${from} -> ${to}\n${out}`);
  t.regex(out, /PATTERN: 0xa55a0ff0/);
  t.notRegex(out, /wrong data|corrupted|DUP/);
}

test.serial('[qemu] assign hot-adds a NIC function into each running guest: virtio_net binds, MAC and link right', async (t) => {
  for (const vm of ['host-a', 'host-b'] as const) {
    t.is((await sh(vm, 'lspci -n -d 1af4:1041 | wc -l')).trim(), '0', `${vm} starts with no virtio-net`);
    const start = Date.now();
    t.regex(await labOk(['assign', vm, NIC[vm].fn]), new RegExp(`assigned ${NIC[vm].fn} to ${vm} slot 0 \\(\\d+ ms\\)`));
    await until(() => hasIface(vm), `${vm}: virtio_net bound to ${NIC[vm].fn}`, { timeoutMs: 60_000, everyMs: 250 });
    t.log(`${vm}: assign → interface up: ${Date.now() - start} ms`);
    const bdf = (await sh(vm, 'lspci -D -n -d 1af4:1041 | cut -d" " -f1')).trim();
    const vv = await sh(vm, `lspci -vv -s ${bdf}`);
    t.regex(vv, /Virtio 1\.0 network device/);
    t.regex(vv, /Kernel driver in use: virtio-pci/);
    t.regex(await sh(vm, `readlink /sys/class/net/${iface(NIC[vm].mac)}/device/driver`), /virtio_net\n$/);
    await sh(vm, `ip link set ${iface(NIC[vm].mac)} up && ip addr add ${NIC[vm].ip}/24 dev ${iface(NIC[vm].mac)}`);
    const link = await sh(vm, `ip link show ${iface(NIC[vm].mac)}`);
    t.regex(link, new RegExp(`link/ether ${NIC[vm].mac} `));
    t.regex(link, / mtu 1500 .*state UP/);
  }
});

test.serial('[qemu] the two hot-plugged NICs reach each other over the switch: ping with a pattern, TCP data intact', async (t) => {
  await ping(t, 'host-a', 'host-b');
  await ping(t, 'host-b', 'host-a');
  const bytes = 4 << 20;
  await sh('host-b', `rm -f /tmp/rx.bin; (busybox nc -l -p 5001 > /tmp/rx.bin 2>/dev/null </dev/null &); ${shListening(5001)}`);
  const sent = await sh('host-a', `head -c ${bytes} /dev/urandom > /tmp/tx.bin && cat /tmp/tx.bin > /dev/tcp/${NIC['host-b'].ip}/5001 && sha256sum < /tmp/tx.bin`);
  const got = await sh('host-b', `for n in $(seq 100); do [ "$(stat -c %s /tmp/rx.bin)" = ${bytes} ] && break; sleep 0.2; done; sha256sum < /tmp/rx.bin`);
  t.is(got, sent, 'the received data differs');
  t.notRegex(await sh('host-a', 'dmesg'), /virtio_net.*(error|fail)|NEEDS_RESET/i);
  t.deepEqual(logLines(lab.log('di'), /DEVICE_NEEDS_RESET/), []);
  // The NVMe function of the same card is still free and assignable beside the NIC.
  t.regex(await labOk(['assign', 'host-a', 'di/fn2']), /assigned di\/fn2 to host-a slot 1/);
  await until(async () => (await sh('host-a', 'cat /sys/class/nvme/nvme*/serial 2>/dev/null; true')).includes('PCIEOE-NICHP-FN2'), 'host-a nvme bound to di/fn2', { timeoutMs: 60_000, everyMs: 250 });
  await ping(t, 'host-a', 'host-b');
});

test.serial('[qemu] a hot-plugged NIC runs on INTx (MSI-X hidden) and unassign removes it without QEMU aborting', async (t) => {
  const vm = 'host-a';
  const bdf = (await sh(vm, 'lspci -D -n -d 1af4:1041 | cut -d" " -f1')).trim();
  const vv = await sh(vm, `lspci -vv -s ${bdf}`);
  t.notRegex(vv, /MSI-X/, 'the HI unlinks MSI-X (QEMU 11.1.3 aborts removing a vfio-user-pci that has it)');
  t.regex(vv, /Interrupt: pin A routed to IRQ \d+/);
  const irq = /Interrupt: pin A routed to IRQ (\d+)/.exec(vv)![1]!;
  const line = (await sh(vm, `grep -E '^ *${irq}:' /proc/interrupts`)).trim();
  t.regex(line, /IO-APIC/, `virtio_net on INTx: ${line}`);
  t.log(`/proc/interrupts: ${line}`);
  t.regex(line, /virtio/);
  await ping(t, 'host-a', 'host-b');
  const count = async () => (await sh(vm, `grep -E '^ *${irq}:' /proc/interrupts`)).trim().split(/\s+/).slice(1).filter((f) => /^\d+$/.test(f)).reduce((a, b) => a + Number(b), 0);
  t.true((await count()) > 0, 'the INTx line fired');
  const unassigned = await labOk(['unassign', vm, NIC[vm].fn]);
  t.regex(unassigned, new RegExp(`unassigned ${NIC[vm].fn} from ${vm} slot 0`));
  t.log(unassigned.trim());
  t.false(await hasIface(vm), 'the interface is gone');
  t.is((await sh(vm, 'lspci -n -d 1af4:1041 | wc -l')).trim(), '0');
  const status = JSON.parse(await labOk(['status', '--json'])) as { vms: { running: boolean }[] };
  t.true(status.vms.every((v) => v.running), 'QEMU still runs');
  // The NVMe function assigned beside it is untouched.
  t.regex(await sh(vm, 'cat /sys/class/nvme/nvme*/serial'), /PCIEOE-NICHP-FN2/);
});
