// Process entry: serves NVMe controllers over vfio-user, one socket each, in
// $LAB_SOCKET_DIR (or --dir). Each --socket starts a controller; the --ns
// options after it are its namespaces (NSID 1, 2, ...):
//
//   node --import tsx src/direct-attach/nvme-main.ts \
//     --socket nvme0 --ns file=nvme0-ns1.img,size=1G,lba=512 --ns file=nvme0-ns2.img,size=256M,lba=4096 \
//     --socket nvme1 --serial MYSERIAL1 --ns file=nvme1.img,size=1G
//
// Relative files live in $LAB_DATA/<topology> (the lab's data directory, as
// `lab up` sets it; the lab is not imported: devices do not depend on it). A
// client that disconnects leaves the controller waiting for the next one
// (QEMU never reconnects, but a rebooted or re-plugged guest does). SIGTERM
// and SIGINT flush and close every file before exiting.
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { servePciFunction } from './adapter.ts';
import { exitOnHelp } from '../common/command-line.ts';
import type { VfioUserServer } from '../vfio-user/server.ts';
import { processLogger } from '../common/logger.ts';
import { NvmeController, type NvmeControllerConfig } from '../devices/nvme/controller.ts';

interface ControllerArgs {
  socket: string;
  serial?: string;
  namespaces: NvmeControllerConfig['namespaces'];
}

export function parseArgs(argv: string[], dataDir: string): ControllerArgs[] {
  const out: ControllerArgs[] = [];
  const value = (i: number, opt: string) => {
    const v = argv[i + 1];
    if (v === undefined) throw new Error(`${opt} needs a value`);
    return v;
  };
  for (let i = 0; i < argv.length; i += 2) {
    const opt = argv[i]!;
    const v = value(i, opt);
    const cur = out[out.length - 1];
    if (opt === '--socket') {
      if (!/^[a-z0-9-]+$/.test(v)) throw new Error(`--socket ${v}: expected a name like "nvme0"`);
      out.push({ socket: v, namespaces: [] });
    } else if (!cur) throw new Error(`${opt} before the first --socket`);
    else if (opt === '--serial') cur.serial = v;
    else if (opt === '--ns') cur.namespaces.push(parseNs(v, dataDir));
    else throw new Error(`unknown option ${opt}`);
  }
  if (!out.length) throw new Error('no --socket given');
  for (const c of out) if (!c.namespaces.length) throw new Error(`--socket ${c.socket}: no --ns`);
  return out;
}

function parseNs(spec: string, dataDir: string): NvmeControllerConfig['namespaces'][number] {
  const kv = new Map(spec.split(',').map((p) => p.split('=', 2) as [string, string]));
  const file = kv.get('file');
  if (!file) throw new Error(`--ns ${spec}: file= is required`);
  const size = kv.get('size') ?? '1G';
  if (!/^\d+[KMGT]$/.test(size)) throw new Error(`--ns ${spec}: size like "1G"`);
  const lba = Number(kv.get('lba') ?? 512);
  if (lba !== 512 && lba !== 4096) throw new Error(`--ns ${spec}: lba is 512 or 4096`);
  return { path: isAbsolute(file) ? file : resolve(dataDir, file), size: parseSize(size), lbaSize: lba };
}

const SIZE_UNITS: Record<string, number> = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };
const parseSize = (s: string) => Number(s.slice(0, -1)) * SIZE_UNITS[s.at(-1)!]!;

/** A serial that differs between controllers and stays the same across restarts. */
export function defaultSerial(topology: string, socket: string, files: string[]): string {
  return 'PCIEOE' + createHash('sha256').update(`${topology}\0${socket}\0${files.join('\0')}`).digest('hex').slice(0, 14).toUpperCase();
}

/**
 * NVME_CPU_PROFILE=<file>: record a V8 CPU profile until SIGTERM (the lab
 * starts processes itself and Node refuses --cpu-prof in NODE_OPTIONS).
 */
async function startProfiler(file: string | undefined): Promise<() => Promise<void>> {
  if (!file) return async () => {};
  const { Session } = await import('node:inspector/promises');
  const { writeFileSync } = await import('node:fs');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return async () => {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(file, JSON.stringify(profile));
  };
}

const COMMAND_LINE = {
  name: 'nvme',
  usage: 'usage: nvme-main.ts --socket NAME [--serial S] --ns file=F,size=S[,lba=512|4096] [--ns ...] [--socket NAME ...]   (sockets in $LAB_SOCKET_DIR)',
};

async function main(): Promise<void> {
  exitOnHelp(COMMAND_LINE);
  const stopProfiler = await startProfiler(process.env.NVME_CPU_PROFILE);
  const topology = process.env.LAB_TOPOLOGY ?? 'nvme';
  const socketDir = process.env.LAB_SOCKET_DIR;
  if (!socketDir) throw new Error('LAB_SOCKET_DIR is not set');
  const dataDir = join(process.env.LAB_DATA ?? '/var/lib/pcieoe-lab', topology);
  const specs = parseArgs(process.argv.slice(2), dataDir);
  const log = processLogger('nvme');
  const served: { ctrl: NvmeController; server: VfioUserServer }[] = [];
  for (const [i, s] of specs.entries()) {
    for (const ns of s.namespaces) mkdirSync(dirname(ns.path), { recursive: true });
    const serial = s.serial ?? defaultSerial(topology, s.socket, s.namespaces.map((n) => n.path));
    const ctrl = new NvmeController({ serial, cntlid: i + 1, namespaces: s.namespaces, log: (l, m) => log(l, `nvme ${s.socket}: ${m}`) });
    await ctrl.open();
    const server = servePciFunction(ctrl, { path: join(socketDir, `${s.socket}.sock`), name: s.socket, log });
    served.push({ ctrl, server });
    log('info', `nvme ${s.socket}: serial ${serial}, ${s.namespaces.map((n, j) => `ns${j + 1} ${n.path} ${n.size} B/${n.lbaSize}`).join('; ')}`);
  }
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log('info', `${signal}: flushing and closing`);
    for (const { server } of served) server.close();
    await Promise.all(served.map(({ ctrl }) => ctrl.close()));
    await stopProfiler();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

// Run only as the entry point (tests import parseArgs).
if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  main().catch((err) => {
    console.error(`nvme: ${(err as Error).message}`);
    process.exit(1);
  });
}
