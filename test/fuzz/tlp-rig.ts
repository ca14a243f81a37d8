// The live HI and DI the TLP fuzz tests (tlp-di.test.ts, tlp-hi.test.ts) feed, in one process:
// an in-process switch; a DI with an NVMe controller and a test device on each of two channels;
// on channel 1 a bare station the DI fuzz speaks for (it plays the host), on channel 2 a real HI
// serving its two functions over vfio-user to real clients: a soft NVMe driver (guest RAM a
// memfd mapped at IOVA 0, MSI-X wired) and a test-device client. `check()` is the real I/O the
// fuzz tests run between batches to show the other channel (and function) still works.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import fc from 'fast-check';
import { native } from '../../native/index.ts';
import { realClock } from '../../src/fabric/clock.ts';
import { FabricNode } from '../../src/fabric/link/node.ts';
import { requestByteCount } from '../../src/fabric/tlp/byte-enables.ts';
import { CplStatus, type CompletionTlp, type MemReadTlp, type NonPostedTlp, type Tlp, TlpType, isNonPosted } from '../../src/fabric/tlp/tlp.ts';
import type { Channel } from '../../src/fabric/link/channel.ts';
import { PcieoePort } from '../../src/fabric/pcieoe-port.ts';
import { EthernetSwitch } from '../../src/fabric/switch/switch.ts';
import { inProcessPort, type Station } from '../../src/fabric/wire/port.ts';
import { DI_COMPLETION_TIMEOUT_MS, DeviceInterface } from '../../src/di/di.ts';
import { HI_COMPLETION_TIMEOUT_MS, HostInterface } from '../../src/hi/hi.ts';
import type { RemoteFunction } from '../../src/hi/remote-function/index.ts';
import { NvmeController } from '../../src/devices/nvme/controller.ts';
import type { SoftDriver } from '../../src/devices/nvme/soft-host.ts';
import { TESTDEV_ID_VALUE, TESTDEV_MSIX_VECTORS, TestDevice, TestReg } from '../../src/devices/testdev/testdev.ts';
import { bdf } from '../../src/pci/bdf.ts';
import { Cfg, CommandBit } from '../../src/pci/config-space.ts';
import { VfioUserClient } from '../../src/vfio-user/client.ts';
import { IrqSetFlag, PciIrq, PciRegion } from '../../src/vfio-user/protocol.ts';
import type { Logger } from '../../src/common/logger.ts';
import { fuzzParams, withTimeout } from '../support/fuzz.ts';
import { connectDriver } from '../nvme/vfio-user-driver.ts';

export const FUZZ_CHANNEL = 1;
export const HI_CHANNEL = 2;
export const NVME_BDF = bdf(1, 0, 0);
export const TESTDEV_BDF = bdf(1, 0, 1);
export const FUZZ_MAC = 0x02_00_00_00_0f_00;
const DI_MAC = 0x02_00_00_00_0d_00;
const HI_MAC = 0x02_00_00_00_01_00;
/** Guest RAM of the NVMe client: the soft driver allocates from 64 KiB up; the fuzz may write below. */
export const RAM_SIZE = 1 << 20;
export const FUZZ_RAM_END = 0x1_0000;
const SERIAL = 'FUZZ-HI-NVME';

/** Log lines are counted, and the last few kept (a 10^5-case run must not keep them all). */
export class LogTail {
  count = 0;
  readonly last: string[] = [];
  readonly log: Logger = (level, m) => {
    this.count++;
    this.last.push(`${level}: ${m}`);
    if (this.last.length > 20) this.last.shift();
  };
}

export interface TlpRig {
  di: DeviceInterface;
  hi: HostInterface;
  nvme: NvmeController;
  testdev: TestDevice;
  /** The DI side functions on channel 1 (the fuzzed host's). */
  fuzzNvme: NvmeController;
  fuzzTestdev: TestDevice;
  /** The fuzz station's own channel to the DI (channel 1); what the DI sends arrives at `fromDi`. */
  fuzzChannel: Channel;
  setFromDi(deliver: (payload: Uint8Array) => void): void;
  /** The HI's port on channel 2. */
  hiPort: PcieoePort;
  eeps: RemoteFunction[];
  ram: Uint8Array;
  /** MSI-X eventfds of the NVMe EEP's client, by vector. */
  nvmeEfds: number[];
  drv: SoftDriver;
  testClient: VfioUserClient;
  logs: LogTail;
  /** Real I/O on channel 2 through the HI: NVMe Identify (serial checked) and the test device's ID register. */
  check(what: string): Promise<void>;
}

export async function tlpRig(t: ExecutionContext): Promise<TlpRig> {
  const dir = mkdtempSync(join(tmpdir(), 'pcieoe-tlpfuzz-'));
  const logs = new LogTail();
  const log = logs.log;
  const clock = realClock;
  const sw = new EthernetSwitch({ clock });
  const station = (name: string): Station => {
    const { port, station } = inProcessPort(clock);
    sw.addPort(port, { mode: 'access', vid: 1 }, name);
    return station;
  };
  // Heartbeats as in the processes; links count as dead only after 5 s (a loaded test host stalls).
  const tuning = { heartbeatInterval: 50, deadInterval: 5000 };

  const diNode = new FabricNode([{ station: station('di'), mac: DI_MAC }], clock, null, tuning);
  const diPorts = ([[FUZZ_CHANNEL, FUZZ_MAC], [HI_CHANNEL, HI_MAC]] as const).map(
    ([id, mac]) => new PcieoePort(diNode, { id, peerMacs: [mac], completionTimeoutMs: DI_COMPLETION_TIMEOUT_MS, peerName: 'host', log }),
  );
  const di = new DeviceInterface({ ports: diPorts, log });
  const nvmeOf = (name: string) => new NvmeController({ serial: `${SERIAL}-${name}`, namespaces: [{ path: join(dir, `${name}.img`), size: 1 << 20, lbaSize: 512 }], log });
  const fuzzNvme = nvmeOf('fuzz');
  const fuzzTestdev = new TestDevice({ msi: true });
  const nvme = nvmeOf('hi');
  const testdev = new TestDevice();
  await Promise.all([fuzzNvme.open(), nvme.open()]);
  di.addFunction('fuzz-nvme', fuzzNvme);
  di.addFunction('fuzz-test', fuzzTestdev);
  di.addFunction('nvme', nvme);
  di.addFunction('test', testdev);
  di.assign('fuzz-nvme', FUZZ_CHANNEL, NVME_BDF);
  di.assign('fuzz-test', FUZZ_CHANNEL, TESTDEV_BDF);
  di.assign('nvme', HI_CHANNEL, NVME_BDF);
  di.assign('test', HI_CHANNEL, TESTDEV_BDF);

  const fuzzNode = new FabricNode([{ station: station('fuzz'), mac: FUZZ_MAC }], clock, null, tuning);
  let fromDi: (payload: Uint8Array) => void = () => {};
  const fuzzChannel = fuzzNode.addChannel(FUZZ_CHANNEL, [DI_MAC], (p) => fromDi(p));

  const hiNode = new FabricNode([{ station: station('hi'), mac: HI_MAC }], clock, null, tuning);
  const hiPort = new PcieoePort(hiNode, { id: HI_CHANNEL, peerMacs: [DI_MAC], completionTimeoutMs: HI_COMPLETION_TIMEOUT_MS, peerName: 'DI', log });
  const hi = new HostInterface({ ports: [hiPort], log });

  const closers: (() => void)[] = [];
  t.teardown(async () => {
    for (const c of closers.reverse()) c();
    hi.close();
    di.close();
    for (const n of [hiNode, diNode, fuzzNode]) n.close();
    sw.close();
    await Promise.all([nvme.close(), fuzzNvme.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  const eeps = [await hi.addEep('nvme', HI_CHANNEL, NVME_BDF), await hi.addEep('test', HI_CHANNEL, TESTDEV_BDF)];
  const [nvmeServer, testServer] = eeps.map((e) => hi.serve(e, join(dir, `${e.name}.sock`)));
  closers.push(() => nvmeServer!.close(), () => testServer!.close());

  // The NVMe client, set up as QEMU sets up a device.
  const nvmeClient = await connectDriver(nvmeServer!.path, RAM_SIZE);
  closers.push(() => nvmeClient.close());
  const { drv, efds: nvmeEfds } = nvmeClient;
  const ram = drv.mem.bytes;
  await drv.enable();
  const identifyBuf = drv.alloc(4096);

  const testClient = new VfioUserClient(testServer!.path);
  closers.push(() => testClient.close());
  await testClient.version();
  const testEfds = Array.from({ length: TESTDEV_MSIX_VECTORS }, () => native.eventfd());
  closers.push(() => testEfds.forEach((fd) => native.close(fd)));
  await testClient.setIrqs({ flags: IrqSetFlag.DataEventfd | IrqSetFlag.ActionTrigger, index: PciIrq.Msix, start: 0, count: testEfds.length }, testEfds);
  await testClient.write32(PciRegion.Config, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);

  let checks = 0;
  const check = async (what: string) => {
    const n = ++checks;
    ram.fill(0, identifyBuf, identifyBuf + 4096);
    const cqe = await withTimeout(drv.submit(0, { opcode: 0x06, prp1: identifyBuf, cdw10: 1 }), 20_000, `NVMe Identify on channel 2 (${what}, check ${n})`);
    if (cqe.status !== 0) throw new Error(`Identify on channel 2 failed with status 0x${cqe.status.toString(16)} (${what})`);
    const serial = Buffer.from(ram.subarray(identifyBuf + 4, identifyBuf + 24)).toString('latin1').trim();
    if (serial !== `${SERIAL}-hi`) throw new Error(`Identify on channel 2 returned serial "${serial}" (${what})`);
    const id = await withTimeout(testClient.read32(0, TestReg.Id), 20_000, `test device ID on channel 2 (${what})`);
    if (id !== TESTDEV_ID_VALUE) throw new Error(`test device on channel 2 reads ID 0x${id.toString(16)} (${what})`);
  };
  await check('before the fuzz');

  return {
    di, hi, nvme, testdev, fuzzNvme, fuzzTestdev, fuzzChannel, hiPort, eeps, ram, nvmeEfds, drv, testClient, logs, check,
    setFromDi: (d) => (fromDi = d),
  };
}

/** Unhandled rejections and uncaught exceptions while `t` runs (ava would report them, but not which case). */
export function watchProcess(t: ExecutionContext): string[] {
  const seen: string[] = [];
  const onRejection = (err: unknown) => seen.push(`unhandled rejection: ${(err as Error)?.stack ?? String(err)}`);
  const onException = (err: Error) => seen.push(`uncaught exception: ${err.stack}`);
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtExceptionMonitor', onException);
  t.teardown(() => {
    process.off('unhandledRejection', onRejection);
    process.off('uncaughtExceptionMonitor', onException);
  });
  return seen;
}

// ---- what both fuzz tests do with TLPs ----------------------------------------------------------

/** Damage done to an encoded TLP: a bit flipped, cut short, another Length field, a digest (TD) added. */
/**
 * The frame both TLP fuzz tests run in: fuzzParams(t, 400) cases of 1–4 (input, damage) pairs; `runCase` sends a
 * case and checks what came back, and troubles the process saw (watchProcess) fail the case; every 50 cases (500
 * under FUZZ_RUNS) and after the run, the rig's real I/O check. Then `report()` (prefixed with the number of cases)
 * and the rig's last log lines are logged, and the log rate held to 50 lines a second at most (logs live in RAM).
 */
export async function fuzzCases<I>(
  t: ExecutionContext,
  r: TlpRig,
  troubles: string[],
  input: fc.Arbitrary<I>,
  runCase: (inputs: [I, Damage][], what: string) => Promise<void>,
  report: () => string,
): Promise<void> {
  const batch = process.env.FUZZ_RUNS ? 500 : 50;
  const started = performance.now();
  const logsBefore = r.logs.count;
  let cases = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(fc.tuple(input, damage), { minLength: 1, maxLength: 4 }), async (inputs) => {
      const what = `case ${++cases}`;
      await runCase(inputs, what);
      if (troubles.length > 0) throw new Error(`${what}: ${troubles.join('\n')}`);
      if (cases % batch === 0) await r.check(what);
    }),
    { ...fuzzParams(t, 400), includeErrorInReport: true },
  );
  await r.check('after the fuzz');
  t.deepEqual(troubles, []);
  t.log(`${cases} cases: ${report()}; ${r.logs.count} log lines`);
  t.log(`last log lines:\n${r.logs.last.join('\n')}`);
  const seconds = (performance.now() - started) / 1000;
  t.true(r.logs.count - logsBefore <= 50 * (seconds + 1), `${r.logs.count - logsBefore} log lines in ${seconds.toFixed(1)} s`);
}

export type Damage = { kind: 'none' } | { kind: 'flip'; bit: number } | { kind: 'cut'; at: number } | { kind: 'length'; value: number } | { kind: 'digest' };

export const damage: fc.Arbitrary<Damage> = fc.oneof(
  { weight: 12, arbitrary: fc.constant({ kind: 'none' as const }) },
  { weight: 1, arbitrary: fc.nat().map((bit) => ({ kind: 'flip' as const, bit })) },
  { weight: 1, arbitrary: fc.nat().map((at) => ({ kind: 'cut' as const, at })) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0x3ff }).map((value) => ({ kind: 'length' as const, value })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'digest' as const }) },
);

export function damaged(bytes: Uint8Array, d: Damage): Uint8Array {
  let b = bytes;
  if (d.kind === 'flip' && b.length > 0) b[(d.bit >> 3) % b.length]! ^= 1 << (d.bit & 7);
  if (d.kind === 'cut') b = b.subarray(0, d.at % (b.length + 1));
  if (d.kind === 'length' && b.length >= 4) {
    b[2] = (b[2]! & ~3) | (d.value >> 8);
    b[3] = d.value & 0xff;
  }
  if (d.kind === 'digest' && b.length >= 4) {
    b[2]! |= 0x80;
    b = Uint8Array.from([...b, 1, 2, 3, 4]);
  }
  return b;
}

/** True once in `n`. */
export const rarely = (n: number) => fc.integer({ min: 1, max: n }).map((x) => x === 1);

export const json = (x: unknown) => JSON.stringify(x, (_, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v instanceof Uint8Array ? `${v.length} bytes` : v));

export interface Answered {
  req: NonPostedTlp;
  cs: CompletionTlp[];
  /** The request and its answers, for an error message. */
  show(): string;
}

/**
 * The non-posted requests of a case with the completions for each (by requester id and tag);
 * throws when a completion answers nothing asked or a request has none. Requests whose tag the
 * fuzz used twice in the case are left out: which answer is whose is ambiguous.
 */
export function answersOf(sent: readonly Tlp[], completions: readonly CompletionTlp[], what: string): Answered[] {
  const key = (x: { requesterId: number; tag: number }) => `${x.requesterId}:${x.tag}`;
  const asked = new Map<string, NonPostedTlp[]>();
  for (const s of sent) if (isNonPosted(s)) asked.set(key(s), [...(asked.get(key(s)) ?? []), s]);
  const got = new Map<string, CompletionTlp[]>();
  for (const c of completions) {
    if (!asked.has(key(c))) throw new Error(`${what}: a completion answers nothing asked: ${json(c)}`);
    got.set(key(c), [...(got.get(key(c)) ?? []), c]);
  }
  const out: Answered[] = [];
  for (const [k, reqs] of asked) {
    if (reqs.length > 1) continue;
    const req = reqs[0]!;
    const cs = got.get(k) ?? [];
    const show = () => `${what}: request ${json(req)} answered ${json(cs)}`;
    if (cs.length === 0) throw new Error(`${show()}: no completion`);
    out.push({ req, cs, show });
  }
  return out;
}

/** A failed request's answer is exactly one Cpl with one of `statuses`. */
export function isClearError(a: Answered, statuses: readonly CplStatus[]): boolean {
  const first = a.cs[0]!;
  if (first.status === CplStatus.SC) return false;
  if (a.cs.length !== 1 || first.type !== TlpType.Cpl || !statuses.includes(first.status)) throw new Error(`${a.show()}: not one clear ${statuses.join('/')} completion`);
  return true;
}

/** The bytes a memory read's CplDs carry; throws unless they count its byte count down to 0. */
export function readData(a: Answered & { req: MemReadTlp }): Uint8Array {
  let remaining = requestByteCount(a.req.length, a.req.firstBe, a.req.lastBe);
  const bytes: number[] = [];
  for (const c of a.cs) {
    if (c.type !== TlpType.CplD || c.status !== CplStatus.SC || c.byteCount !== remaining) throw new Error(`${a.show()}: CplDs do not count down the ${remaining} bytes due`);
    const skip = c.lowerAddress & 3;
    const n = Math.min(remaining, c.data.length - skip);
    bytes.push(...c.data.subarray(skip, skip + n));
    remaining -= n;
  }
  if (remaining !== 0) throw new Error(`${a.show()}: ${remaining} bytes never came`);
  return Uint8Array.from(bytes);
}
