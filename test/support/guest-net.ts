// Network checks between lab guests, shared by the guest NIC tests: each takes the test's
// `sh` (a command in a guest that throws on a non-zero exit).
import type { ExecutionContext } from 'ava';
import { shListening, shUntil } from './guest-wait.ts';

/** A command in a guest, resolving with its standard output; throws on a non-zero exit. */
export type GuestSh = (vm: string, command: string, timeoutS?: number) => Promise<string>;

/** Shell: the interface with this MAC (its name changes across rebinds). */
export const ifaceOf = (mac: string) => `$(ip -o link | grep -i 'ether ${mac}' | cut -d: -f2 | tr -d ' ')`;

/** Pings with a pattern and a large payload; ping itself compares every reply byte. Resolves with the mean RTT, ms. */
export async function patternPing(t: ExecutionContext, sh: GuestSh, from: string, to: string, count = 4): Promise<number> {
  const out = await sh(from, `ping -c ${count} -i 0.3 -W 5 -s 1400 -p a55a0ff0 ${to}`);
  t.regex(out, new RegExp(`${count} packets transmitted, ${count} received`), `${from} -> ${to}\n${out}`);
  t.regex(out, /PATTERN: 0xa55a0ff0/);
  t.notRegex(out, /wrong data|corrupted|DUP/);
  return Number(/rtt min\/avg\/max\/mdev = [\d.]+\/([\d.]+)/.exec(out)?.[1]);
}

/**
 * 16 MiB of random data over one TCP connection (busybox nc listens, bash's /dev/tcp sends;
 * iperf3 -F is no use here: it mangles its buffer after a partial send): the receiver's
 * copy must hash the same.
 */
export async function tcpFile(t: ExecutionContext, sh: GuestSh, from: string, to: string, toIp: string): Promise<void> {
  const bytes = 16 << 20;
  await sh(to, `rm -f /tmp/rx.bin; (busybox nc -l -p 5001 > /tmp/rx.bin 2>/dev/null </dev/null &); ${shListening(5001, 30)}`);
  const sent = await sh(from, `head -c ${bytes} /dev/urandom > /tmp/tx.bin && cat /tmp/tx.bin > /dev/tcp/${toIp}/5001 && sha256sum < /tmp/tx.bin`);
  // nc writes the file as data arrives; wait until all of it is there.
  const got = await sh(to, `${shUntil(`[ "$(stat -c %s /tmp/rx.bin)" = ${bytes} ]`, `${bytes} bytes in /tmp/rx.bin`, 30)}; sha256sum < /tmp/rx.bin`);
  t.is(got, sent, `${from} -> ${to}: the received data differs`);
}

/** UDP and TCP checksum errors the guest's stack counted (it checks every datagram: no offloads). */
export async function csumErrors(sh: GuestSh, vm: string): Promise<number[]> {
  const snmp = await sh(vm, "grep -E '^(Udp|Tcp):' /proc/net/snmp");
  const [tcpH, tcpV, udpH, udpV] = snmp.trim().split('\n').map((l) => l.split(/\s+/));
  return [Number(tcpV![tcpH!.indexOf('InCsumErrors')]), Number(udpV![udpH!.indexOf('InCsumErrors')])];
}
