// Socket files left on disk by an earlier run: bind() fails on them, so servers remove them first.
import { lstatSync, unlinkSync } from 'node:fs';

/**
 * Removes the unix socket file at `path` if there is one (an earlier run's, or our own on close).
 * Nothing there is fine; anything else there (a file, a folder) is not ours to delete: throws naming it.
 */
export function removeStaleSocket(path: string): void {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!isSocket) throw new Error(`${path} exists and is not a socket: not removing it`);
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err; // gone meanwhile is as good
  }
}
