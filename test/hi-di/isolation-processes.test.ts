// Isolation against a hostile station, with the processes of the two-hosts-shared-card lab (switch,
// one DI with a two-function card, an HI per host; vfio-user test clients play QEMU) and a third
// station on its own switch port that forges host B's MACs and channel id: config writes clearing
// B's Command register, memory writes into B's BAR, ACKs, NAKs, and broadcasts meant to move B's
// MAC to its port. Port security drops all of it at the switch (counted on the attacker's port);
// frames it sends under its own MAC on B's channel the DI refuses (the channel is bound to B's
// MACs). B keeps working throughout and nothing meant for B reaches the attacker.
import test from 'ava';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as turn } from 'node:timers/promises';
import { Cfg, CommandBit } from '../../src/pci/config-space.ts';
import { TestReg } from '../../src/devices/testdev/testdev.ts';
import { FrameType, encodeFrame } from '../../src/fabric/wire/frame.ts';
import { BROADCAST_MAC, type Mac, parseMac } from '../../src/fabric/wire/mac.ts';
import { TlpType, encodeTlp } from '../../src/fabric/tlp/tlp.ts';
import { UnixDgramPort } from '../../src/fabric/wire/unix-dgram-port.ts';
import type { PortCounters } from '../../src/fabric/switch/switch.ts';
import { SwitchControl } from '../../src/fabric/switch/control.ts';
import { PciRegion } from '../../src/vfio-user/protocol.ts';
import { VfioUserClient } from '../../src/vfio-user/client.ts';
import { type ProcessStatus, headlineCounters } from '../../src/lab/status.ts';
import { startSwitch } from '../../src/fabric/switch/switch-process.ts';
import { until } from '../support/until.ts';
import { startProcess, waitForSocket } from './lab-process.ts';

const MACS = {
  hia: ['02:00:00:00:0a:00', '02:00:00:00:0a:01'],
  hib: ['02:00:00:00:0b:00', '02:00:00:00:0b:01'],
  di: ['02:00:00:00:0d:00', '02:00:00:00:0d:01'],
};
const EVIL = parseMac('02:00:00:00:0e:00');
const B = MACS.hib.map(parseMac);
const D = MACS.di.map(parseMac);
const B_FN = 0x0101; // 01:00.1
/** Where host B's HI puts its function's 64-bit BAR0 (the first BAR of its channel's window). */
const B_BAR0 = 0x80_0000_0000n;

type PortReport = { switch: PortCounters; socket: { rxFrames: number }; stations: string[] | 'open' };

function forged(src: Mac, dst: Mac, type: FrameType, seq: number, ack: number, channel: number, payload?: Uint8Array): Buffer {
  return encodeFrame({ dst, src, vlan: null, type, flags: 0, channel, seq, ack, credits: (seq + 1024) & 0xffff }, payload);
}

const common = { tc: 0, attr: 0, poisoned: false, requesterId: 0, lastBe: 0 };
const clearCommand = (tag: number) =>
  encodeTlp({ type: TlpType.CfgWr0, ...common, tag, completerId: B_FN, register: Cfg.Command / 4, firstBe: 0x3, data: new Uint8Array(4) });
const scribble = (tag: number) =>
  encodeTlp({ type: TlpType.MWr64, ...common, tag, address: B_BAR0 + BigInt(TestReg.Scratch), firstBe: 0xf, data: Uint8Array.of(0xef, 0xbe, 0xad, 0xde) });

test('a station forging host B\'s MACs and channel id gets nothing through; B keeps working; the drops are counted', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'pcieoe-isolation-'));
  const dirOf = (p: string) => join(root, p);
  const portNames = ['hia0', 'hia1', 'hib0', 'hib1', 'di0', 'di1'];
  const sw = await startSwitch({
    dir: dirOf('sw'),
    ports: [...portNames, 'evil0'],
    args: [
      ...portNames.flatMap((p) => ['--peer', `${p}=${join(dirOf(p.slice(0, -1)), `link${p.at(-1)}.sock`)}`]),
      ...portNames.flatMap((p) => ['--station', `${p}=${MACS[p.slice(0, -1) as keyof typeof MACS][Number(p.at(-1))]}`]),
      '--peer', `evil0=${join(dirOf('evil'), 'link0.sock')}`, // evil0 learns its station's first MAC and locks
    ],
  });
  const di = startProcess('src/di/main.ts', dirOf('di'), [
    ...MACS.di.flatMap((m, i) => ['--link', `${m}@${sw.portPath(`di${i}`)}`]),
    '--channel', `1=${MACS.hia.join(',')}`,
    '--channel', `2=${MACS.hib.join(',')}`,
    '--function', 'fn0=testdev',
    '--function', 'fn1=testdev',
    '--assign', 'fn0=channel:1,bdf:01:00.0',
    '--assign', 'fn1=channel:2,bdf:01:00.1',
  ]);
  const his = (['hia', 'hib'] as const).map((h, i) => startProcess('src/hi/main.ts', dirOf(h), [
    ...MACS[h].flatMap((m, k) => ['--link', `${m}@${sw.portPath(`${h}${k}`)}`]),
    '--channel', `${i + 1}=${MACS.di.join(',')}`,
    '--eep', `eep0=channel:${i + 1},bdf:01:00.${i}`,
  ]));
  const clients: VfioUserClient[] = [];
  let evil: UnixDgramPort | undefined;
  let diControl: SwitchControl | undefined;
  t.teardown(async () => {
    for (const c of clients) c.close();
    evil?.close();
    diControl?.close();
    for (const p of [...his, di]) if (p.proc.exitCode === null) p.proc.kill('SIGTERM');
    await Promise.all([...his, di].map((p) => p.exited));
    await sw.stop();
    rmSync(root, { recursive: true, force: true });
  });

  const [a, b] = await Promise.all(['hia', 'hib'].map(async (h, i) => {
    const sock = join(dirOf(h), 'eep0.sock');
    await waitForSocket(sock, his[i]!, [di]);
    const c = new VfioUserClient(sock);
    clients.push(c);
    await c.version();
    await c.write32(PciRegion.Config, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);
    return c;
  }));
  await a!.write32(0, TestReg.Scratch, 0xaaaa_0001);
  await b!.write32(0, TestReg.Scratch, 0xbbbb_0002);
  t.is(await b!.read32(0, TestReg.Scratch), 0xbbbb_0002);
  diControl = await SwitchControl.connect(join(dirOf('di'), 'control.sock'));
  type DiReport = { channels: Record<string, { link: { rxWrongBinding: number; rxFrames: number } }> };
  const diBefore = (await diControl.must({ stats: true } as never)) as unknown as DiReport;

  // The attacker's station. Its first frames already carry B's MACs: a learning port must not lock to them.
  const heard: Buffer[] = [];
  mkdirSync(dirOf('evil'));
  evil = new UnixDgramPort({ path: join(dirOf('evil'), 'link0.sock'), peer: sw.portPath('evil0') });
  evil.attach((f) => heard.push(Buffer.from(f)));
  const frames: Buffer[] = [];
  for (let seq = 0; seq < 1024; seq++) {
    const link = seq & 1;
    frames.push(forged(B[link]!, D[link]!, FrameType.Tlp, seq, 0, 2, seq % 2 ? clearCommand(seq & 0xff) : scribble(seq & 0xff)));
    if (seq % 64 === 0) {
      frames.push(forged(B[link]!, D[link]!, FrameType.Ack, seq, (seq + 512) & 0xffff, 2)); // ACK beyond anything sent
      frames.push(forged(B[link]!, D[link]!, FrameType.Nak, seq, seq, 2));
      frames.push(forged(B[link]!, BROADCAST_MAC, FrameType.Management, seq, 0, 2)); // "B is here now"
      frames.push(forged(D[link]!, B[link]!, FrameType.Ack, seq, (seq + 512) & 0xffff, 2)); // the DI, towards B
    }
  }
  const forgedCount = frames.length;
  // Under its own MAC, on B's channel and on A's: the DI's channels are bound to their hosts' MACs.
  const own = Array.from({ length: 64 }, (_, seq) => forged(EVIL, D[0]!, FrameType.Tlp, seq, 0, 1 + (seq & 1), seq & 1 ? scribble(seq) : clearCommand(seq)));
  const onB = own.filter((_, seq) => seq & 1).length;

  // B works while the attack runs.
  let bOps = 0;
  let attacking = true;
  const bLoop = (async () => {
    while (attacking) {
      const v = 0xb000_0000 + bOps;
      await b!.write32(0, TestReg.Scratch, v);
      t.is(await b!.read32(0, TestReg.Scratch), v);
      bOps++;
    }
  })();
  for (let i = 0; i < frames.length; i++) {
    evil.transmit(frames[i]!);
    if (i % 32 === 31) await turn();
  }
  for (const f of own) evil.transmit(f);
  const total = frames.length + own.length;
  const evilCounters = async () => ((await sw.control.must({ counters: true, port: 'evil0' })) as { ports: { evil0: PortReport } }).ports.evil0;
  let report = await evilCounters();
  await until(async () => (report = await evilCounters()).switch.rxFrames >= total, `the switch to read the attacker's ${total} frames`, { everyMs: 50 });
  const diReport = async () => (await diControl!.must({ stats: true } as never)) as unknown as DiReport;
  await until(async () => (await diReport()).channels['2']!.link.rxWrongBinding - diBefore.channels['2']!.link.rxWrongBinding >= onB, 'the DI to see the frames under the attacker\'s own MAC', { everyMs: 50 });
  attacking = false;
  await bLoop;

  t.is(report.switch.rxFrames, total, 'every frame reached the switch');
  t.is(report.switch.rxSourceViolations, forgedCount, 'every frame with another station\'s MAC was dropped at the attacker\'s port');
  t.deepEqual(report.stations, ['02:00:00:00:0e:00'], 'the port locked to the attacker\'s own MAC, not to B\'s');
  t.is(heard.length, 0, 'nothing reached the attacker');
  const diAfter = await diReport();
  t.is(diAfter.channels['2']!.link.rxWrongBinding - diBefore.channels['2']!.link.rxWrongBinding, onB, 'the DI refused the attacker\'s own frames on B\'s channel');
  t.is(diAfter.channels['1']!.link.rxWrongBinding - diBefore.channels['1']!.link.rxWrongBinding, own.length - onB, 'and on A\'s');

  // B's function is as B left it, and still answers; so does A's.
  t.true(bOps > 0, 'B did I/O during the attack');
  t.is(await b!.read32(0, TestReg.Scratch), 0xb000_0000 + bOps - 1);
  t.is((await b!.read32(PciRegion.Config, Cfg.Command)) & CommandBit.Memory, CommandBit.Memory);
  t.is(await a!.read32(0, TestReg.Scratch), 0xaaaa_0001);
  const all = (await sw.control.must({ counters: true })) as { ports: Record<string, PortReport> };
  for (const p of portNames) t.is(all.ports[p]!.switch.rxSourceViolations, 0, `${p} carried only its station's frames`);
  // What `lab status` shows for the switch.
  t.like(headlineCounters({ counters: all } as unknown as ProcessStatus), { forgedSource: forgedCount, 'forgedSource@evil0': forgedCount });
});
