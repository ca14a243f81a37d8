/**
 * The switch as a real separate process, and link endpoints in this process
 * that reach it over real unix datagram sockets, with the addresses they use.
 * Shared by the tests and bench/fabric.ts (so it lives in src/: benchmarks
 * never import tests).
 */

import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { realClock } from '../clock.ts';
import type { VlanTag } from '../wire/frame.ts';
import { Channel, type ChannelOptions } from '../link/channel.ts';
import type { Mac } from '../wire/mac.ts';
import { SwitchControl } from './control.ts';
import { MemifPort } from '../wire/memif/port.ts';
import { UnixDgramPort } from '../wire/unix-dgram-port.ts';
import { transmitFrame } from '../wire/port.ts';
import { labNodeArgs } from '../../common/node-options.ts';

/** The VLAN and station MACs of endpoint A's and B's link i in the fabric tests and benchmarks. */
export const VLAN: VlanTag = { pcp: 5, dei: false, vid: 100 };
export const macA = (i: number) => 0x02_00_00_00_0a_00 + (i << 4);
export const macB = (i: number) => 0x02_00_00_00_0b_00 + (i << 4);

export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
export const switchMain = path.join(repoRoot, 'src/fabric/switch/main.ts');

export interface SwitchProcess {
  /** LAB_SOCKET_DIR of the switch; stations bind here too. */
  dir: string;
  proc: ChildProcess;
  control: SwitchControl;
  /** Output so far (stdout and stderr). */
  output(): string;
  /** The switch port NAME's socket. */
  portPath(name: string): string;
  /** SIGTERM and wait: resolves with the exit code (null if killed by a signal). */
  stop(): Promise<number | null>;
}

export async function startSwitch(opts: {
  ports: string[];
  args?: string[];
  /** taskset CPU list to pin the switch to. */
  cpu?: string;
  dir?: string;
  /** Extra node options (e.g. --cpu-prof). */
  nodeArgs?: string[];
  /** Environment variables set (or, as '', cleared) for the switch only. */
  env?: Record<string, string>;
}): Promise<SwitchProcess> {
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'fabric-switch-'));
  const node = [process.execPath, ...labNodeArgs(opts.nodeArgs), '--import', 'tsx', switchMain, ...opts.ports.flatMap((p) => ['--port', p]), ...(opts.args ?? [])];
  const argv = opts.cpu === undefined ? node : ['taskset', '-c', opts.cpu, ...node];
  const proc = spawn(argv[0]!, argv.slice(1), { cwd: repoRoot, env: { ...process.env, ...opts.env, LAB_SOCKET_DIR: dir }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const wanted = [...opts.ports, 'control'].map((p) => path.join(dir, `${p}.sock`));
  const end = Date.now() + 30_000;
  while (!wanted.every((p) => fs.existsSync(p))) {
    if (proc.exitCode !== null || Date.now() > end) {
      proc.kill('SIGKILL');
      throw new Error(`switch did not come up: ${out}`);
    }
    await sleep(20);
  }
  // The socket file appears when it is bound, a moment before it listens: refused until then.
  let control: SwitchControl | undefined;
  while (control === undefined) {
    try {
      control = await SwitchControl.connect(path.join(dir, 'control.sock'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ECONNREFUSED' || proc.exitCode !== null || Date.now() > end) {
        proc.kill('SIGKILL');
        throw err;
      }
      await sleep(20);
    }
  }
  return {
    dir,
    proc,
    control,
    output: () => out,
    portPath: (name) => path.join(dir, `${name}.sock`),
    async stop() {
      control.close();
      if (proc.exitCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
}

export interface Endpoint {
  channel: Channel;
  ports: (UnixDgramPort | MemifPort)[];
  close(): void;
}

/**
 * A link-layer endpoint whose link i is a station socket `<dir>/<name><i>-station.sock`
 * talking to switch port `<dir>/<name><i>.sock`; with `memif`, a memif client of switch
 * port `<dir>/<name><i>.memif` (switch-main `--port <name><i>=memif`).
 */
export function endpoint(opts: {
  dir: string;
  name: string;
  links: number;
  mac: (link: number) => Mac;
  peerMac: (link: number) => Mac;
  vlan: VlanTag | null;
  channel?: Partial<Omit<ChannelOptions, 'links' | 'send' | 'clock'>> & Pick<ChannelOptions, 'deliver'>;
  memif?: boolean;
}): Endpoint {
  const ports = Array.from({ length: opts.links }, (_, i) =>
    opts.memif
      ? new MemifPort({ socket: path.join(opts.dir, `${opts.name}${i}.memif`), role: 'client' })
      : new UnixDgramPort({ path: path.join(opts.dir, `${opts.name}${i}-station.sock`), peer: path.join(opts.dir, `${opts.name}${i}.sock`) }),
  );
  const channel = new Channel({
    channel: 1,
    ...opts.channel!,
    links: ports.map((_, i) => ({ localMac: opts.mac(i), peerMac: opts.peerMac(i), vlan: opts.vlan })),
    send: (i, frame) => ports[i]!.transmit(frame),
    sendFrame: (i, frame) => transmitFrame(ports[i]!, frame),
    clock: realClock,
  });
  // The channel copies what it keeps of a frame (ChannelOptions.deliverTransient says what its deliver does).
  ports.forEach((p, i) => p.attach((frame, crcChecked, transient) => channel.receive(i, frame, crcChecked, transient), true));
  return {
    channel,
    ports,
    close() {
      channel.close();
      for (const p of ports) p.close();
    },
  };
}

/** The switch-main arguments that point port `<name><i>` back at its station socket. */
export function peerArgs(dir: string, name: string, links: number): string[] {
  return Array.from({ length: links }, (_, i) => ['--peer', `${name}${i}=${path.join(dir, `${name}${i}-station.sock`)}`]).flat();
}

