// Where the lab keeps things. All overridable by environment so tests and users can run
// side by side: LAB_CACHE (built artefacts, kept across runs), LAB_STATE (sockets, PIDs,
// logs of the lab that is up; short path because unix socket paths are limited to 107
// bytes), LAB_DATA (disk images of the lab's devices).
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
export const cacheRoot = process.env.LAB_CACHE ?? '/var/cache/pcieoe-lab';
export const stateRoot = process.env.LAB_STATE ?? '/run/pcieoe-lab';
export const dataRoot = process.env.LAB_DATA ?? '/var/lib/pcieoe-lab';
export const qemuDir = join(repoRoot, 'lab', 'qemu');
export const topologiesDir = join(repoRoot, 'lab', 'topologies');
