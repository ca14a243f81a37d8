// Directories that hold sockets, state and logs: only the lab's own user may
// enter them, whatever the umask, and also when an earlier run left them open.
import { chmodSync, mkdirSync } from 'node:fs';

/** mkdir -p with mode 0700 for every level it creates, and 0700 for `path` itself even if it existed. */
export function makePrivateDir(path: string): void {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  chmodSync(path, 0o700);
}
