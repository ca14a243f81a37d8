// `lab setup`: everything the lab needs on a fresh machine, built once and cached.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { artefactDir, cached } from './cache.ts';
import { hostMirror } from './mirror.ts';
import { cacheRoot, qemuDir } from './paths.ts';
import { runLogged, step } from './progress.ts';

/** Host commands the lab runs, and the Debian package that brings each. */
const HOST_TOOLS: Record<string, string> = {
  mmdebstrap: 'mmdebstrap',
  zstd: 'zstd',
  cpio: 'cpio',
  unshare: 'util-linux',
  taskset: 'util-linux',
  // Decodes the fabric's captures with the shipped PCIeOE dissector (lab/wireshark).
  tshark: 'tshark',
  // DPDK's testpmd with its memif driver (dpdk-dev pulls librte-net-memif23 and librte-mempool-ring23): the memif interop test.
  'dpdk-testpmd': 'dpdk-dev',
  // The web console's browser test drives it headless with playwright-core (test/manager/guest-console.test.ts).
  chromium: 'chromium',
};

const sidRecipe = [join(qemuDir, 'sid-chroot.sh')];
const guestRecipe = ['guest-image.sh', 'guest/init', 'guest/lab-agent'].map((f) => join(qemuDir, f));

/** mmdebstrap mounts /dev, /proc and /sys in its target: in a private mount namespace those
 * mounts vanish with it, even when it is killed half-way. */
const privateMounts = ['unshare', '--mount', '--propagation', 'private', '--'];

export interface LabArtefacts {
  sidRoot: string;
  qemuVersion: string;
  kernel: string;
  initrd: string;
  kernelVersion: string;
}

const has = (cmd: string) => {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

function logFile(name: string): string {
  mkdirSync(join(cacheRoot, 'logs'), { recursive: true });
  const file = join(cacheRoot, 'logs', `${name}.log`);
  writeFileSync(file, '');
  return file;
}

async function hostPackages(): Promise<void> {
  const missing = [...new Set(Object.entries(HOST_TOOLS).filter(([cmd]) => !has(cmd)).map(([, pkg]) => pkg))];
  if (!missing.length) return;
  const log = logFile('host-packages');
  await step(`host packages: ${missing.join(' ')}`, log, async () => {
    await runLogged(['apt-get', 'update'], log);
    await runLogged(['apt-get', 'install', '-y', '--no-install-recommends', ...missing], log, {
      ...process.env,
      DEBIAN_FRONTEND: 'noninteractive',
    });
  });
}

/** Finds the artefacts if they are built; undefined otherwise. */
export function builtArtefacts(): LabArtefacts | undefined {
  const sidRoot = join(artefactDir('sid-qemu', sidRecipe), 'root');
  const guest = artefactDir('guest', guestRecipe);
  if (!existsSync(sidRoot) || !existsSync(guest)) return undefined;
  return {
    sidRoot,
    qemuVersion: readFileSync(join(sidRoot, '.lab-qemu-version'), 'utf8').trim(),
    kernel: join(guest, 'vmlinuz'),
    initrd: join(guest, 'initrd.zst'),
    kernelVersion: readFileSync(join(guest, 'kernel-version'), 'utf8').trim(),
  };
}

export async function setup(): Promise<LabArtefacts> {
  if (process.getuid?.() !== 0) throw new Error('lab setup must run as root (it builds chroots and runs QEMU in one)');
  await hostPackages();
  const existing = builtArtefacts();
  if (existing) return existing;
  const mirror = hostMirror();
  await cached('sid-qemu', sidRecipe, (dir) => {
    const log = logFile('sid-qemu');
    return step('sid chroot with QEMU 11 (vfio-user-pci)', log, () =>
      runLogged([...privateMounts, join(qemuDir, 'sid-chroot.sh'), join(dir, 'root'), mirror], log),
    );
  });
  await cached('guest', guestRecipe, (dir) => {
    const log = logFile('guest');
    return step('guest kernel and root file system (initramfs)', log, () =>
      runLogged([...privateMounts, join(qemuDir, 'guest-image.sh'), dir, mirror], log),
    );
  });
  return builtArtefacts()!;
}
