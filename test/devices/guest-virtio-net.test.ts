// The virtio-net model under the unmodified Linux virtio_net driver, with real
// traffic to a guest on QEMU's own virtio-net through the lab switch, in
// `nic-direct` (host A: the model over vfio-user) and `nic-remote` (host A: the
// model in a DI, through its HI and the switch); host B has QEMU's NIC. One boot
// per topology for everything: identity, MAC/MTU/link in `ip link`, ping with a payload
// pattern, TCP data both ways compared by SHA-256, iperf3 TCP and UDP both
// ways (UDP checked by the kernels' checksum counters — no offloads, so they check every
// datagram in software), link down/up, unbind/rebind and a function reset.
import test, { type ExecutionContext } from 'ava';
import { shListening } from '../support/guest-wait.ts';
import { TestLab } from '../support/lab-harness.ts';
import { logLines } from '../support/log-lines.ts';

const lab = new TestLab('vnet');
test.after.always(() => lab.dispose());

const MAC_A = '02:00:00:00:0a:01';
const IP_A = '10.99.0.1';
const IP_B = '10.99.0.2';
/** The model's interface name, found by MAC (it changes across rebinds). */
const IFACE = `$(ip -o link | grep -i 'ether ${MAC_A}' | cut -d: -f2 | tr -d ' ')`;

async function sh(vm: string, command: string, timeoutS = 300): Promise<string> {
  const r = await lab.exec(vm, command, timeoutS);
  if (r.code !== 0) throw new Error(`${vm}: ${command.split('\n')[0]}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** Pings with a pattern and a large payload; ping itself compares every reply byte. */
async function ping(t: ExecutionContext, from: string, to: string, count = 4): Promise<number> {
  const out = await sh(from, `ping -c ${count} -i 0.3 -W 5 -s 1400 -p a55a0ff0 ${to}`);
  t.regex(out, new RegExp(`${count} packets transmitted, ${count} received`), `${from} -> ${to}\n${out}`);
  t.regex(out, /PATTERN: 0xa55a0ff0/);
  t.notRegex(out, /wrong data|corrupted|DUP/);
  return Number(/rtt min\/avg\/max\/mdev = [\d.]+\/([\d.]+)/.exec(out)?.[1]);
}


/**
 * 16 MiB of random data over one TCP connection (busybox nc listens, bash's
 * /dev/tcp sends; iperf3 -F is no use here: it mangles its buffer after a
 * partial send): the receiver's copy must hash the same.
 */
async function tcpFile(t: ExecutionContext, from: string, to: string, toIp: string): Promise<void> {
  const bytes = 16 << 20;
  // Send once nc listens: LISTEN (0A) on port 5001 (0x1389) in /proc/net/tcp or tcp6 (busybox nc listens on IPv6).
  await sh(to, `rm -f /tmp/rx.bin; (busybox nc -l -p 5001 > /tmp/rx.bin 2>/dev/null </dev/null &); ${shListening(5001)}`);
  const sent = await sh(from, `head -c ${bytes} /dev/urandom > /tmp/tx.bin && cat /tmp/tx.bin > /dev/tcp/${toIp}/5001 && sha256sum < /tmp/tx.bin`);
  // nc writes the file as data arrives; wait until all of it is there.
  const got = await sh(to, `for n in $(seq 100); do [ "$(stat -c %s /tmp/rx.bin)" = ${bytes} ] && break; sleep 0.2; done; sha256sum < /tmp/rx.bin`);
  t.is(got, sent, `${from} -> ${to}: the received data differs`);
}

/** iperf3 TCP throughput, bits/s. */
async function tcpRate(from: string, to: string, toIp: string): Promise<number> {
  await sh(to, 'iperf3 -s -D -1');
  const r = JSON.parse(await sh(from, `iperf3 -c ${toIp} -t 3 -J`));
  return r.end.sum_received.bits_per_second;
}

async function udp(t: ExecutionContext, from: string, to: string, toIp: string): Promise<void> {
  await sh(to, 'iperf3 -s -D -1');
  const r = JSON.parse(await sh(from, `iperf3 -c ${toIp} -u -b 20M -t 2 -J`));
  const s = r.end.sum;
  t.true(s.packets - s.lost_packets > 100, `${from} -> ${to} UDP: ${s.packets} sent, ${s.lost_packets} lost`);
}

/** UDP and TCP checksum errors the guest's stack counted (it checks every datagram: no offloads). */
async function csumErrors(vm: string): Promise<number[]> {
  const snmp = await sh(vm, "grep -E '^(Udp|Tcp):' /proc/net/snmp");
  const [tcpH, tcpV, udpH, udpV] = snmp.trim().split('\n').map((l) => l.split(/\s+/));
  return [Number(tcpV![tcpH!.indexOf('InCsumErrors')]), Number(udpV![udpH!.indexOf('InCsumErrors')])];
}

/** Every check, on one boot of `topology`; `processLog` is the process hosting the model. */
async function nicChecks(t: ExecutionContext, topology: string, processLog: string): Promise<void> {
  await lab.up(topology);
  // Identity: the driver bound the modern device through virtio-pci.
  const bdf = (await sh('host-a', 'lspci -D -n -d 1af4:1041 | cut -d" " -f1')).trim();
  t.regex(bdf, /^0000:[0-9a-f]{2}:[0-9a-f]{2}\.0$/);
  const vv = await sh('host-a', `lspci -vv -s ${bdf}`);
  t.regex(vv, /Ethernet controller: Red Hat, Inc\. Virtio 1\.0 network device/);
  t.regex(vv, /Kernel driver in use: virtio-pci/);
  t.regex(vv, /MSI-X: Enable\+ Count=3/);
  t.regex(await sh('host-a', `readlink /sys/class/net/${IFACE}/device/driver`), /virtio_net\n$/);
  // The ring layout the driver took (feature bit 34, RING_PACKED): the model offers it unless VIRTIO_NET_PACKED=0.
  const features = (await sh('host-a', `cat /sys/class/net/${IFACE}/device/features`)).trim();
  t.is(features[34] === '1', process.env.VIRTIO_NET_PACKED !== '0', `negotiated features ${features}`);

  // MAC, MTU (the MTU feature makes it the maximum too) and link, as `ip link` shows them.
  await sh('host-a', `ip link set ${IFACE} up && ip addr add ${IP_A}/24 dev ${IFACE}`);
  const link = await sh('host-a', `ip -d link show ${IFACE}`);
  t.regex(link, new RegExp(`link/ether ${MAC_A} `));
  t.regex(link, / mtu 1500 /);
  t.regex(link, / maxmtu 1500 /);
  t.regex(link, /LOWER_UP/);
  t.regex(link, /state UP/);

  const rtt = await ping(t, 'host-a', IP_B);
  await ping(t, 'host-b', IP_A);
  const before = [await csumErrors('host-a'), await csumErrors('host-b')];
  await tcpFile(t, 'host-a', 'host-b', IP_B);
  await tcpFile(t, 'host-b', 'host-a', IP_A);
  const aToB = await tcpRate('host-a', 'host-b', IP_B);
  const bToA = await tcpRate('host-b', 'host-a', IP_A);
  await udp(t, 'host-a', 'host-b', IP_B);
  await udp(t, 'host-b', 'host-a', IP_A);
  t.deepEqual([await csumErrors('host-a'), await csumErrors('host-b')], before, 'no TCP/UDP checksum errors');
  t.log(`ping rtt ${rtt} ms; TCP A->B ${(aToB / 1e6).toFixed(0)} Mb/s, B->A ${(bToA / 1e6).toFixed(0)} Mb/s`);

  // Administrative down and up: the queues keep working.
  await sh('host-a', `ip link set ${IFACE} down`);
  t.regex(await sh('host-a', `ip link show ${IFACE}`), /state DOWN/);
  await sh('host-a', `ip link set ${IFACE} up`);
  await ping(t, 'host-a', IP_B);

  // Unbind and rebind the PCI driver (virtio reset, new queues), with a function reset in between.
  await sh('host-a', `echo ${bdf} > /sys/bus/pci/drivers/virtio-pci/unbind`);
  t.is((await sh('host-a', `ip -o link | grep -ci 'ether ${MAC_A}' || true`)).trim(), '0', 'interface gone with the driver');
  await sh('host-a', `echo 1 > /sys/bus/pci/devices/${bdf}/reset`);
  await sh('host-a', `echo ${bdf} > /sys/bus/pci/drivers/virtio-pci/bind`);
  await sh('host-a', `for n in $(seq 50); do [ -n "${IFACE}" ] && break; sleep 0.2; done; ip link set ${IFACE} up && ip addr add ${IP_A}/24 dev ${IFACE}`);
  await ping(t, 'host-a', IP_B);
  await ping(t, 'host-b', IP_A);
  t.notRegex(await sh('host-a', 'dmesg'), /virtio_net.*(error|fail)|NEEDS_RESET|rx error/i);
  t.deepEqual(logLines(lab.log(processLog), /DEVICE_NEEDS_RESET/), []);
  t.is((await lab.run(['down'])).code, 0);
}

test.serial('[qemu] direct attach (nic-direct): identity, link, ping, TCP data, iperf3 TCP/UDP both ways, down/up, rebind, reset', (t) =>
  nicChecks(t, 'nic-direct', 'nic'));

test.serial('[qemu] through HI + switch + DI (nic-remote): the same checks', (t) => nicChecks(t, 'nic-remote', 'di'));
