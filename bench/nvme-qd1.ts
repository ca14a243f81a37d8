// QD 1 4 KiB random reads without a guest: the NVMe model attached directly (nvme-main over
// vfio-user) against the same model behind HI + switch + DI (separate processes on memif or unix datagram
// sockets, as the lab runs them), driven by one soft NVMe driver per path that does what a
// guest's driver does (shadow doorbells, MSI-X on an eventfd, CQ head doorbell) with no guest
// in the way. The paths alternate in rounds, so load from anything else hits both alike; the
// difference of the means is what the fabric adds per I/O.
//
//   npm run bench -- nvme-qd1      (NVME_QD1_SECONDS per path and round, default 3; 2 with --quick;
//                                   NVME_QD1_ROUNDS, default 3; NVME_QD1_WARM s per path first, default 3 (2 with --quick);
//                                   NVME_QD1_LINKS, default 2 (the lab's);
//                                   NVME_QD1_TRANSPORT=memif|unix, how stations reach the switch,
//                                   default memif (the lab's);
//                                   NVME_QD1_PIN=1 pins the servers to CPU 1 (taskset -a),
//                                   NVME_QD1_DRIVER_PIN=1 the soft drivers (this process);
//                                   NVME_QD1_SWITCH_ARGS='--busy-poll 500' adds switch options;
//                                   NVME_QD1_NICE=-10 runs the lab
//                                   processes at that nice value; PCIEOE_TRACE=DIR traces them,
//                                   see bench/trace-chain.ts (NVME_QD1_TRACE_SWITCH=0: not the switch,
//                                   which then keeps its native path); NVME_QD1_PROF=DIR: --cpu-prof of HI, DI,
//                                   switch and the direct server, NVME_QD1_PROF_INTERVAL µs apart;
//                                   NVME_QD1_NODE_ARGS='--log-deopt ...' more node options for them;
//                                   after the measured rounds, one more round per path under perf record
//                                   (CPU time, kernel included; bench/lib/perf-record.ts) says where each
//                                   process's CPU per I/O went, recorded for the report; NVME_QD1_PERF=DIR
//                                   keeps the recordings in DIR (and /tmp/perf-<pid>.map, their JIT
//                                   symbols), NVME_QD1_PERF=0 leaves the round out (so does a machine
//                                   without perf);
//                                   NVME_QD1_BACK_TO_BACK=0 leaves out the third path: another HI and DI
//                                   cabled back to back over memif, no switch between them;
//                                   NVME_QD1_IO=write:64 another I/O than read:4, for profiling)
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, setPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { native } from '../native/index.ts';
import { NVME_MSIX_VECTORS } from '../src/devices/nvme/controller.ts';
import { GuestMemory, PAGE, SoftDriver, expectOk } from '../src/devices/nvme/soft-host.ts';
import { Cfg, CommandBit } from '../src/pci/config-space.ts';
import { repoRoot, startSwitch } from '../src/fabric/switch/switch-process.ts';
import { VfioUserClient, waitEventfd } from '../src/vfio-user/client.ts';
import { IrqSetFlag, PciIrq, PciRegion } from '../src/vfio-user/protocol.ts';
import { labNodeArgs } from '../src/common/node-options.ts';
import { record, recordSettings } from './lib/results.ts';
import { perfAvailable, perfLine, perfRecord, perfSamples, perfSplits, tally } from './lib/perf-record.ts';

const QUICK = process.argv.includes('--quick') || process.env.BENCH_QUICK === '1';
const SECONDS = Number(process.env.NVME_QD1_SECONDS ?? (QUICK ? 2 : 3));
const ROUNDS = Number(process.env.NVME_QD1_ROUNDS ?? 3);
/**
 * Each path's warm-up before the rounds, s (NVME_QD1_WARM). The servers start fresh, and V8 optimises
 * their hot paths over the first seconds of traffic: after a 0.3 s warm-up the first PCIeOE round was
 * 2-2.5 times the later ones (1770 against 720-850 µs) and set a third of the mean. A lab's processes
 * run long, so the rounds measure them warm.
 */
const WARM_SECONDS = Number(process.env.NVME_QD1_WARM ?? (QUICK ? 2 : 3));
/** NVME_QD1_PIN=CPULIST: taskset the server processes there (the soft drivers stay unpinned). */
const PIN = process.env.NVME_QD1_PIN;
/** Extra switch options, space-separated (e.g. its busy polling, a placement experiment). */
const SWITCH_ARGS = process.env.NVME_QD1_SWITCH_ARGS?.split(' ').filter((a) => a !== '') ?? [];
/** NVME_QD1_DRIVER_PIN=CPULIST: taskset this process (the soft drivers) there. */
const DRIVER_PIN = process.env.NVME_QD1_DRIVER_PIN;
const NICE = process.env.NVME_QD1_NICE === undefined ? undefined : Number(process.env.NVME_QD1_NICE);
/** NVM command set opcodes. */
const NVM_WRITE = 0x01;
const NVM_READ = 0x02;
const NS_BYTES = 64 << 20;
/**
 * What each I/O is (NVME_QD1_IO=read|write:KIB, default read:4): random, aligned to its size; e.g.
 * write:64 profiles the fabric's 64 KiB write path (16 MRds and their CplDs) without a guest. Figures
 * are recorded under the I/O's name, so a run with another I/O leaves the report's QD 1 figures alone.
 */
const IO = ((spec: string) => {
  const m = /^(read|write):(4|8|16|32|64)$/.exec(spec);
  if (!m) throw new Error(`NVME_QD1_IO: "${spec}" is not read or write, a colon and KiB (4, 8, 16, 32 or 64)`);
  return { write: m[1] === 'write', kib: Number(m[2]) };
})(process.env.NVME_QD1_IO ?? 'read:4');
/** "4 KiB read", as the figures are named. */
const WHAT = `${IO.kib} KiB ${IO.write ? 'write' : 'read'}`;
/** Links per station (the lab's default is 2). */
const LINKS = Number(process.env.NVME_QD1_LINKS ?? 2);
const HI_MACS = ['02:00:00:00:01:00', '02:00:00:00:01:01'].slice(0, LINKS);
const DI_MACS = ['02:00:00:00:0d:00', '02:00:00:00:0d:01'].slice(0, LINKS);
const TRANSPORT = process.env.NVME_QD1_TRANSPORT ?? 'memif';
/**
 * A third path, HI and DI cabled back to back: what a hop costs without the lab switch's process
 * (a hardware switch takes no CPU from the hosts; the lab's shares the two CPUs with everything).
 */
const BACK_TO_BACK = process.env.NVME_QD1_BACK_TO_BACK !== '0';
if (TRANSPORT !== 'memif' && TRANSPORT !== 'unix') throw new Error(`NVME_QD1_TRANSPORT=${TRANSPORT}: expected memif or unix`);

/** utime + stime of a process, µs (clock ticks of 10 ms: meaningful over seconds). */
function cpuUsOf(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) * 10_000;
}

/**
 * The profiled round (see above): on unless NVME_QD1_PERF=0 or perf is missing; a round of its own, so
 * perf's sampling (it slows every process it samples) stays out of the measured figures.
 */
const PERF = process.env.NVME_QD1_PERF !== '0' && perfAvailable();
if (process.env.NVME_QD1_PERF && process.env.NVME_QD1_PERF !== '0' && !PERF) throw new Error('NVME_QD1_PERF needs perf (apt-get install linux-perf)');
/** The workload the profiled round's figures are recorded under. */
const PERF_WORKLOAD = `soft driver QD 1 ${WHAT}`;
/** Which servers carry each path (the others idle while it runs). */
const CARRIERS: Record<string, string[]> = { direct: ['direct'], PCIeOE: ['switch', 'di', 'hi'], 'back to back': ['b2b DI', 'b2b HI'] };
/**
 * Node options of every lab process: NVME_QD1_PROF=DIR profiles each into DIR (NVME_QD1_PROF_INTERVAL µs
 * between samples, node's default 1000), NVME_QD1_NODE_ARGS adds any (space-separated, e.g. V8's --log-deopt).
 */
const QD1_NODE_ARGS = [
  // JIT frames named in perf's samples (node writes /tmp/perf-<pid>.map).
  ...(PERF ? ['--perf-basic-prof'] : []),
  ...(process.env.NVME_QD1_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.NVME_QD1_PROF] : []),
  ...(process.env.NVME_QD1_PROF && process.env.NVME_QD1_PROF_INTERVAL ? ['--cpu-prof-interval', process.env.NVME_QD1_PROF_INTERVAL] : []),
  ...(process.env.NVME_QD1_NODE_ARGS?.split(' ').filter((a) => a !== '') ?? []),
];

const children: ChildProcess[] = [];
function start(entry: string, dir: string, args: string[]): ChildProcess {
  mkdirSync(dir, { recursive: true });
  const p = spawn(process.execPath, [...labNodeArgs(QD1_NODE_ARGS), '--import', 'tsx', join(repoRoot, entry), ...args], {
    cwd: repoRoot,
    env: { ...process.env, LAB_SOCKET_DIR: dir, LAB_DATA: dir },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(p);
  return p;
}

async function socketOf(path: string, p: ChildProcess): Promise<string> {
  for (let i = 0; i < 600 && !existsSync(path); i++) {
    if (p.exitCode !== null) throw new Error(`${p.spawnargs.join(' ')} exited (${p.exitCode}) before ${path} appeared`);
    await sleep(50);
  }
  if (!existsSync(path)) throw new Error(`${path} did not appear`);
  return path;
}

/** A soft driver on a vfio-user socket, set up as a guest's nvme driver is: I/O queue 1 on vector 1, shadow doorbells. */
async function driver(socket: string) {
  const client = new VfioUserClient(socket);
  const ramSize = 4 << 20;
  // Sealed as QEMU's memory-backend-memfd makes guest RAM, so the servers map it as they map a guest's
  // (an unsealed fd is reached by pread/pwrite and an fstat per access: not what a guest costs).
  const memfd = native.sealedMemfd('guest-ram', ramSize);
  const ram = native.mmap(memfd, 0, ramSize, true);
  const efds = Array.from({ length: NVME_MSIX_VECTORS }, () => native.eventfd());
  await client.version();
  await client.dmaMap(0, ramSize, { fd: memfd });
  for (let s = 0; s < efds.length; s += 16) {
    const batch = efds.slice(s, s + 16);
    await client.setIrqs({ flags: IrqSetFlag.DataEventfd | IrqSetFlag.ActionTrigger, index: PciIrq.Msix, start: s, count: batch.length }, batch);
  }
  await client.write32(PciRegion.Config, Cfg.Command, CommandBit.Memory | CommandBit.BusMaster);
  // BAR writes are posted, as QEMU's vfio-user-pci sends them (no reply unless x-no-posted-writes): a
  // doorbell write then costs the driver no wait for a reply, and the server no reply to send ahead of
  // the doorbell's own work. Messages on the socket are handled in order, so a later read still follows.
  const posted = (o: number, v: number) => {
    const d = new Uint8Array(4);
    new DataView(d.buffer).setUint32(0, v >>> 0, true);
    client.postRegionWrite(0, o, d);
    return Promise.resolve();
  };
  const drv = new SoftDriver(new GuestMemory(new Uint8Array(ram)), { read32: (o) => client.read32(0, o), write32: posted }, 1);
  drv.reapTimeoutMs = 10_000;
  await drv.enable();
  await drv.createIoQueue(1, 64, 1);
  expectOk(await drv.useDoorbellBuffer());
  const pages = (IO.kib * 1024) / PAGE;
  const buf = drv.alloc(pages * PAGE);
  // PRP2: the second page, or a list of the pages after the first (NVMe PRP rules).
  let prp2 = 0;
  if (pages === 2) prp2 = buf + PAGE;
  else if (pages > 2) {
    prp2 = drv.alloc(PAGE);
    for (let i = 1; i < pages; i++) drv.mem.u64(prp2 + 8 * (i - 1), buf + i * PAGE);
  }
  const sectors = (IO.kib * 1024) / 512;
  const slots = NS_BYTES / (IO.kib * 1024);
  return {
    /** QD 1 random I/Os (NVME_QD1_IO) for `seconds`: each I/O's latency, µs. */
    async run(seconds: number): Promise<number[]> {
      const lat: number[] = [];
      const end = performance.now() + seconds * 1000;
      while (performance.now() < end) {
        const lba = Math.floor(Math.random() * slots) * sectors;
        const t0 = performance.now();
        const irq = waitEventfd(efds[1]!, 10_000);
        await drv.post(1, { opcode: IO.write ? NVM_WRITE : NVM_READ, nsid: 1, prp1: buf, prp2, cdw10: lba, cdw12: sectors - 1 });
        await irq;
        expectOk(await drv.reap(1));
        lat.push((performance.now() - t0) * 1000);
      }
      return lat;
    },
    close() {
      client.close();
      efds.forEach((fd) => native.close(fd));
      native.munmap(ram);
      native.close(memfd);
    },
  };
}

const root = mkdtempSync(join(tmpdir(), 'nvme-qd1-'));
try {
  const swPorts = ['hi0', 'hi1', 'di0', 'di1'];
  // A traced switch keeps to its JavaScript path (switch/memif-forward.ts); untraced, its native one.
  const swEnv = process.env.NVME_QD1_TRACE_SWITCH === '0' ? { PCIEOE_TRACE: '' } : undefined;
  const sw = await startSwitch(
    TRANSPORT === 'memif'
      ? { dir: join(root, 'sw'), ports: [], nodeArgs: QD1_NODE_ARGS, env: swEnv, args: [...swPorts.flatMap((p) => ['--port', `${p}=memif`]), ...SWITCH_ARGS] }
      : { dir: join(root, 'sw'), ports: swPorts, nodeArgs: QD1_NODE_ARGS, env: swEnv, args: [...swPorts.flatMap((p) => ['--peer', `${p}=${join(root, p.slice(0, 2), `link${p[2]}.sock`)}`]), ...SWITCH_ARGS] },
  );
  children.push(sw.proc);
  /** A station's --link to switch port `p`. */
  const link = (mac: string, p: string) => `${mac}@${TRANSPORT === 'memif' ? `memif:${join(sw.dir, `${p}.memif`)}` : sw.portPath(p)}`;
  const direct = start('src/direct-attach/nvme-main.ts', join(root, 'direct'), ['--socket', 'direct', '--serial', 'QD1-DIRECT', '--ns', `file=direct.img,size=${NS_BYTES >> 20}M,lba=512`]);
  /**
   * A DI serving the remote NVMe function and an HI mapping it, in `<prefix>di` and `<prefix>hi`
   * (the DI first: the HI enumerates the function as it starts); link i of each is `--link` given by diLink and hiLink.
   */
  const remotePath = (prefix: string, serial: string, diLink: (mac: string, i: number) => string, hiLink: (mac: string, i: number) => string) => {
    const di = start('src/di/main.ts', join(root, `${prefix}di`), [
      ...DI_MACS.flatMap((m, i) => ['--link', diLink(m, i)]),
      '--channel', `1=${HI_MACS.join(',')}`,
      '--function', `fn0=nvme:file:remote.img,size:${NS_BYTES >> 20}M,serial:${serial}`,
      '--assign', 'fn0=channel:1,bdf:01:00.0',
    ]);
    const hi = start('src/hi/main.ts', join(root, `${prefix}hi`), [
      ...HI_MACS.flatMap((m, i) => ['--link', hiLink(m, i)]),
      '--channel', `1=${DI_MACS.join(',')}`,
      '--eep', 'eep0=channel:1,bdf:01:00.0',
    ]);
    return { di, hi };
  };
  const { di, hi } = remotePath('', 'QD1-REMOTE', (m, i) => link(m, `di${i}`), (m, i) => link(m, `hi${i}`));
  // Back to back: the DI serves each link's memif socket, the HI connects to it.
  const cable = (i: number) => join(root, 'b2b-di', `link${i}.memif`);
  const b2b = BACK_TO_BACK ? remotePath('b2b-', 'QD1-B2B', (m, i) => `${m}@memif-serve:${cable(i)}`, (m, i) => `${m}@memif:${cable(i)}`) : undefined;
  const serverProcs = [sw.proc, direct, di, hi, ...(b2b ? [b2b.di, b2b.hi] : [])];
  if (NICE !== undefined) for (const p of serverProcs) setPriority(p.pid!, NICE);
  // Every thread of each server (libuv's pool too) on the CPUs given: wake-ups among them stay on one CPU.
  if (PIN) for (const p of serverProcs) execFileSync('taskset', ['-a', '-p', '-c', PIN, String(p.pid)], { stdio: 'ignore' });
  if (DRIVER_PIN) execFileSync('taskset', ['-a', '-p', '-c', DRIVER_PIN, String(process.pid)], { stdio: 'ignore' });
  const paths: Record<string, Awaited<ReturnType<typeof driver>>> = {
    direct: await driver(await socketOf(join(root, 'direct', 'direct.sock'), direct)),
    PCIeOE: await driver(await socketOf(join(root, 'hi', 'eep0.sock'), hi)),
  };
  if (b2b) paths['back to back'] = await driver(await socketOf(join(root, 'b2b-hi', 'eep0.sock'), b2b.hi));
  const servers = PIN ? `servers (direct, switch, DI, HI) pinned to CPU ${PIN}` : 'servers unpinned';
  const placement = `${servers}, ${DRIVER_PIN ? `the driver pinned to CPU ${DRIVER_PIN}` : 'the driver unpinned'}${NICE === undefined ? '' : `, lab processes at nice ${NICE}`}; ${LINKS} ${TRANSPORT} link(s) per station${SWITCH_ARGS.length ? `; switch ${SWITCH_ARGS.join(' ')}` : ''}`;
  console.log(`NVMe QD 1 ${IO.kib} KiB rand${IO.write ? 'write' : 'read'}, soft driver (no guest), ${ROUNDS} rounds x ${SECONDS} s per path; ${placement}; load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  recordSettings('nvme-qd1', { secondsPerRound: SECONDS, rounds: ROUNDS, placement, loadAverage: loadavg()[0]!.toFixed(1) });
  for (const p of Object.values(paths)) await p.run(WARM_SECONDS); // warm: page cache, JIT
  const lat: Record<string, number[]> = Object.fromEntries(Object.keys(paths).map((n) => [n, []]));
  // CPU of every lab process while each path runs: what an I/O costs, and what they burn when idle.
  const procs: Record<string, ChildProcess> = { direct, switch: sw.proc, di, hi, ...(b2b ? { 'b2b DI': b2b.di, 'b2b HI': b2b.hi } : {}) };
  const cpu: Record<string, Record<string, number>> = Object.fromEntries(Object.keys(paths).map((n) => [n, {}]));
  for (let r = 0; r < ROUNDS; r++) {
    const means: string[] = [];
    for (const [name, p] of Object.entries(paths)) {
      const before = Object.entries(procs).map(([n, c]) => [n, cpuUsOf(c.pid!)] as const);
      const round = await p.run(SECONDS);
      // A loop, not push(...round): spreading 100 000 arguments overflows the stack (NVME_QD1_SECONDS=12).
      for (const us of round) lat[name]!.push(us);
      for (const [n, us] of before) cpu[name]![n] = (cpu[name]![n] ?? 0) + cpuUsOf(procs[n]!.pid!) - us;
      means.push(`${name} ${(round.reduce((a, b) => a + b, 0) / round.length).toFixed(0)} µs`);
    }
    // Each round's means: a trend over the rounds is warm-up (JIT, caches), not the path.
    console.log(`round ${r + 1}: mean ${means.join(', ')}`);
  }
  const stats = (v: number[]) => {
    const s = [...v].sort((a, b) => a - b);
    return { mean: s.reduce((a, b) => a + b, 0) / s.length, median: s[s.length >> 1]!, p99: s[Math.floor(s.length * 0.99)]!, n: s.length };
  };
  const d = stats(lat.direct!);
  const f = stats(lat.PCIeOE!);
  for (const name of Object.keys(paths)) {
    const s = stats(lat[name]!);
    const perIo = Object.entries(cpu[name]!).map(([n, us]) => `${n} ${(us / s.n).toFixed(0)}`).join(', ');
    console.log(`${name.padEnd(12)} ${s.n} I/Os  mean ${s.mean.toFixed(0)} µs  median ${s.median.toFixed(0)} µs  p99 ${s.p99.toFixed(0)} µs;  CPU µs per I/O: ${perIo}`);
    record({ kind: 'value', bench: 'nvme-qd1', name: `soft driver QD 1 ${WHAT}, ${name}: mean`, value: s.mean, unit: 'µs' });
  }
  console.log(`PCIeOE adds ${(f.mean - d.mean).toFixed(0)} µs mean, ${(f.median - d.median).toFixed(0)} µs median per I/O (load average now ${loadavg()[0]!.toFixed(1)})`);
  if (lat['back to back']) {
    const b = stats(lat['back to back']);
    console.log(`back to back adds ${(b.mean - d.mean).toFixed(0)} µs mean, ${(b.median - d.median).toFixed(0)} µs median per I/O`);
    record({ kind: 'value', bench: 'nvme-qd1', name: `soft driver QD 1 ${WHAT}: PCIeOE back to back (no switch) mean added over direct`, value: b.mean - d.mean, unit: 'µs' });
  }
  record({ kind: 'value', bench: 'nvme-qd1', name: `soft driver QD 1 ${WHAT}: PCIeOE mean added over direct`, value: f.mean - d.mean, unit: 'µs' });
  if (PERF) {
    const dir = process.env.NVME_QD1_PERF || join(root, 'perf');
    mkdirSync(dir, { recursive: true });
    console.log(`one more round per path under perf record (${dir}): CPU µs per I/O, where it went`);
    for (const [name, p] of Object.entries(paths)) {
      const file = join(dir, `${name.replaceAll(' ', '-')}.data`);
      // perf may be installed and still refuse (perf_event_paranoid, no permission): the figures measured above stand.
      const recording = perfRecord(Object.values(procs).map((c) => c.pid!), SECONDS, file).then(
        () => true,
        (err: Error) => (console.log(`  ${name}: no profile (${err.message})`), false),
      );
      const ios = (await p.run(SECONDS)).length;
      if (!(await recording)) continue;
      const names = Object.fromEntries((CARRIERS[name] ?? []).map((n) => [n, procs[n]!.pid!]));
      for (const split of perfSplits(tally(perfSamples(file)), names, ios)) {
        console.log(`  ${name}: ${perfLine(split)}`);
        for (const [category, us] of split.parts) record({ kind: 'cpu-split', bench: 'nvme-qd1', workload: PERF_WORKLOAD, path: name, process: split.name, category, us });
      }
    }
  }
  // How much of the switch's traffic its native memif-to-memif path carried (switch/memif-forward.ts).
  const ports = Object.values(((await sw.control.must({ counters: true })) as { ports: Record<string, { switch: { rxFrames: number }; fastPath?: { rxFrames: number } | null }> }).ports);
  const sum = (f: (p: (typeof ports)[number]) => number) => ports.reduce((a, p) => a + f(p), 0);
  console.log(`switch: ${sum((p) => p.switch.rxFrames)} frames in, ${sum((p) => p.fastPath?.rxFrames ?? 0)} of them forwarded natively`);
  for (const p of Object.values(paths)) p.close();
} finally {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  // A process that does not end on SIGTERM (seen: the switch, now and then) must not hold the bench
  // (and the guest lock around it) for ever.
  const kill = setTimeout(() => children.forEach((c) => c.exitCode === null && c.signalCode === null && c.kill('SIGKILL')), 5000);
  await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : undefined)));
  clearTimeout(kill);
  rmSync(root, { recursive: true, force: true });
  // --perf-basic-prof's symbol maps, one per server: kept with kept recordings (perf report needs them).
  if (PERF && !process.env.NVME_QD1_PERF) for (const c of children) rmSync(`/tmp/perf-${c.pid}.map`, { force: true });
}
