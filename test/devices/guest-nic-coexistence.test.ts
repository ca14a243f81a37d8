// PCIeOE and ordinary Ethernet on one switch (issue 14), in `nic-coexistence`: host A's NIC is
// the virtio-net model in the DI's card, reached through host A's HI and the switch; host B
// has QEMU's own virtio-net on the same switch; both hosts have an NVMe function of one DI
// card. One boot: MAC/MTU/link in `ip link` on both ends, ping with a payload pattern and TCP
// data compared by SHA-256 both ways, then iperf3 TCP and UDP both ways while fio writes and
// verifies on both hosts' NVMe functions; the switch's per-port counters show the PCIeOE
// ports (HI and DI links) and the NIC wires (model and QEMU NIC) both carried the traffic.
import test from 'ava';
import { TestLab } from '../support/lab-harness.ts';
import { shIoUnderway, shUntil } from '../support/guest-wait.ts';
import { csumErrors, ifaceOf, patternPing, tcpFile } from '../support/guest-net.ts';
import { logLines } from '../support/log-lines.ts';

const lab = new TestLab('coex');
test.after.always(() => lab.dispose());

const MAC_A = '02:00:00:00:0a:01';
const MAC_B = '02:00:00:00:0b:01';
const IP_A = '10.99.0.1';
const IP_B = '10.99.0.2';
/** The switch ports as the lab derives them: PCIeOE links of the HIs and the DI, and the two NIC wires. */
const PCIEOE_PORTS = ['hia0', 'hia1', 'hib0', 'hib1', 'di0', 'di1'];
const ETHERNET_PORTS = ['di-net0', 'b'];

async function sh(vm: string, command: string, timeoutS = 300): Promise<string> {
  const r = await lab.exec(vm, command, timeoutS);
  if (r.code !== 0) throw new Error(`${vm}: ${command.split('\n')[0]}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

async function iperf(from: string, to: string, toIp: string, args: string): Promise<{ end: Record<string, Record<string, number>> }> {
  await sh(to, 'iperf3 -s -D -1');
  return JSON.parse(await sh(from, `iperf3 -c ${toIp} ${args} -J`));
}

type PortCounters = Record<string, { switch: { rxFrames: number; rxBytes: number; txFrames: number; txBytes: number } }>;
/** The switch's per-port counters, as `lab status --json` reports them. */
async function switchPorts(): Promise<PortCounters> {
  const r = await lab.run(['status', '--json']);
  if (r.code !== 0) throw new Error(`lab status --json: exit ${r.code}\n${r.stderr}`);
  const sw = (JSON.parse(r.stdout) as { processes: { name: string; counters?: { ports?: PortCounters } }[] }).processes.find((p) => p.name === 'sw');
  if (!sw?.counters?.ports) throw new Error(`lab status --json: no port counters for the switch\n${r.stdout}`);
  return sw.counters.ports;
}

/** The block device of the guest's NVMe controller with this serial. */
const nvmeBySerial = (serial: string) => `/dev/$(grep -l '^${serial}' /sys/class/nvme/nvme*/serial | head -1 | cut -d/ -f5)n1`;

/**
 * fio writing and verifying (crc32c) 32 MiB at QD 16, over and over until /tmp/stop-fio
 * appears, in the background; /tmp/fio.rc then holds its exit status and the passes done.
 */
const fioLoop = (dev: string) =>
  `rm -f /tmp/stop-fio /tmp/fio.rc /tmp/fio.log; (n=0; rc=0; while [ ! -e /tmp/stop-fio ]; do ` +
  `fio --name=verify --filename=${dev} --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=16 --size=32M ` +
  `--verify=crc32c --verify_fatal=1 --randrepeat=0 >> /tmp/fio.log 2>&1 || { rc=$?; break; }; n=$((n+1)); done; ` +
  `echo "$rc $n" > /tmp/fio.rc) </dev/null >/dev/null 2>&1 &`; // ends in "&": follow it with a newline, not ";"

test.before(async () => {
  await lab.up('nic-coexistence');
  await sh('host-a', `i=${ifaceOf(MAC_A)}; [ -n "$i" ] && ip link set "$i" up && ip addr add ${IP_A}/24 dev "$i"`);
});

test.serial('[qemu] both NICs: the model (host A, through PCIeOE) and QEMU\'s (host B); MAC, MTU, link in ip link; one NVMe function each', async (t) => {
  const bdf = (await sh('host-a', 'lspci -D -n -d 1af4:1041 | cut -d" " -f1')).trim();
  t.regex(bdf, /^0000:[0-9a-f]{2}:[0-9a-f]{2}\.0$/, 'host A has the modern virtio-net function');
  t.regex(await sh('host-a', `lspci -k -s ${bdf}`), /Kernel driver in use: virtio-pci/);
  for (const [vm, mac] of [['host-a', MAC_A], ['host-b', MAC_B]] as const) {
    const link = await sh(vm, `ip -d link show ${ifaceOf(mac)}`);
    t.regex(link, new RegExp(`link/ether ${mac} `), vm);
    t.regex(link, / mtu 1500 /, vm);
    t.regex(link, /LOWER_UP/, vm);
    t.regex(link, /state UP/, vm);
  }
  // The model offers the MTU feature, so its maximum is the MTU too.
  t.regex(await sh('host-a', `ip -d link show ${ifaceOf(MAC_A)}`), / maxmtu 1500 /);
  t.regex(await sh('host-a', 'cat /sys/class/nvme/nvme*/serial'), /^PCIEOE-CARD-FN0\s*$/);
  t.regex(await sh('host-b', 'cat /sys/class/nvme/nvme*/serial'), /^PCIEOE-CARD-FN1\s*$/);
});

test.serial('[qemu] patterned ping and 16 MiB over TCP each way arrive intact', async (t) => {
  await patternPing(t, sh, 'host-a', IP_B);
  await patternPing(t, sh, 'host-b', IP_A);
  await tcpFile(t, sh, 'host-a', 'host-b', IP_B);
  await tcpFile(t, sh, 'host-b', 'host-a', IP_A);
});

test.serial('[qemu] iperf3 TCP and UDP both ways while fio verifies on both NVMe functions; the switch counts PCIeOE and Ethernet frames', async (t) => {
  const before = await switchPorts();
  const csumBefore = [await csumErrors(sh, 'host-a'), await csumErrors(sh, 'host-b')];
  for (const [vm, serial] of [['host-a', 'PCIEOE-CARD-FN0'], ['host-b', 'PCIEOE-CARD-FN1']] as const) {
    const dev = nvmeBySerial(serial);
    await sh(vm, `d=${dev}; [ -b "$d" ] || { echo "no block device for ${serial}" >&2; exit 1; }; ${fioLoop('$d')}
${shIoUnderway('$(basename $d)', 64)}`);
  }
  const rates: string[] = [];
  for (const [from, to, toIp] of [['host-a', 'host-b', IP_B], ['host-b', 'host-a', IP_A]] as const) {
    const tcp = await iperf(from, to, toIp, '-t 3');
    // How fast is the benchmark's business (bench/nic.ts); here only that data crossed, intact (checksums below).
    t.true(tcp.end.sum_received!.bytes! > 0, `${from} -> ${to} TCP moved ${tcp.end.sum_received!.bytes} bytes`);
    const udp = await iperf(from, to, toIp, '-u -b 20M -t 2');
    const s = udp.end.sum!;
    t.true(s.packets! - s.lost_packets! > 0, `${from} -> ${to} UDP: ${s.packets} sent, ${s.lost_packets} lost`);
    rates.push(`${from} -> ${to}: TCP ${(tcp.end.sum_received!.bits_per_second! / 1e6).toFixed(0)} Mb/s, UDP ${s.packets! - s.lost_packets!}/${s.packets} datagrams`);
  }
  // fio ran through all of it: stop it, and every pass must have verified.
  for (const vm of ['host-a', 'host-b']) {
    const [rc, passes] = (await sh(vm, `touch /tmp/stop-fio; ${shUntil('[ -s /tmp/fio.rc ]', 'fio to stop', 240)}; cat /tmp/fio.rc`)).trim().split(' ').map(Number);
    const log = await sh(vm, 'cat /tmp/fio.log');
    t.is(rc, 0, `${vm}: fio failed\n${log}`);
    t.true(passes! >= 1, `${vm}: fio completed ${passes} passes`);
    // fio's summary says "err= 0" for a clean job; a verify failure prints "verify: bad ..." or a non-zero err.
    t.notRegex(log, /verify: bad|verify failed|err= *[1-9]/i, vm);
    t.regex(log, /err= 0/, vm);
  }
  t.deepEqual([await csumErrors(sh, 'host-a'), await csumErrors(sh, 'host-b')], csumBefore, 'no TCP/UDP checksum errors');

  const after = await switchPorts();
  const moved = (p: string) => after[p]!.switch.rxFrames - (before[p]?.switch.rxFrames ?? 0);
  for (const p of [...PCIEOE_PORTS, ...ETHERNET_PORTS]) t.truthy(after[p], `the switch has port ${p}`);
  // PCIeOE: the HIs and the DI exchanged TLPs on their links (NVMe I/O and the model's DMA).
  for (const group of [['hia0', 'hia1'], ['hib0', 'hib1'], ['di0', 'di1']]) t.true(group.reduce((n, p) => n + moved(p), 0) > 1000, `PCIeOE frames from ${group.join('/')}`);
  // Ordinary Ethernet: both NIC wires sent frames into the switch (iperf3 data one way, ACKs the other).
  for (const p of ETHERNET_PORTS) t.true(moved(p) > 1000, `Ethernet frames from port ${p}: ${moved(p)}`);
  t.log(rates.join('; '));
  t.log(Object.keys(after).map((p) => `${p} rx ${moved(p)}`).join(', '));
  t.deepEqual(logLines(lab.log('di'), /DEVICE_NEEDS_RESET/), []);
});
