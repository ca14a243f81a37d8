// Artefacts built once and kept under the cache directory, keyed by their recipe: the hash
// of the files that make them. A build writes to a partial directory and renames it into
// place only when complete, so an interrupted build is simply redone on the next run.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { basename, join } from 'node:path';
import { cacheRoot } from './paths.ts';

export function recipeKey(files: string[]): string {
  const h = createHash('sha256');
  for (const f of files) h.update(basename(f)).update('\0').update(readFileSync(f)).update('\0');
  return h.digest('hex').slice(0, 12);
}

export function artefactDir(name: string, recipe: string[]): string {
  return join(cacheRoot, `${name}-${recipeKey(recipe)}`);
}

/** Returns the artefact's directory, building it with `build(partialDir)` if it is not there. */
export async function cached(name: string, recipe: string[], build: (dir: string) => Promise<void>): Promise<string> {
  const dir = artefactDir(name, recipe);
  if (existsSync(dir)) return dir;
  mkdirSync(cacheRoot, { recursive: true });
  // One builder at a time (two `lab` commands may start together); the others wait for it.
  const lock = `${dir}.lock`;
  while (!tryLock(lock)) {
    await sleep(1000);
    if (existsSync(dir)) return dir;
  }
  try {
    return await build1(name, dir, build);
  } finally {
    rmSync(lock, { force: true });
  }
}

/** Takes the lock file, or returns false while a live process holds it. */
function tryLock(lock: string): boolean {
  try {
    writeFileSync(lock, String(process.pid), { flag: 'wx' });
    return true;
  } catch {
    let holder = 0;
    try {
      holder = Number(readFileSync(lock, 'utf8'));
    } catch {} // released in between: try again
    if (holder && existsSync(`/proc/${holder}`)) return false;
    rmSync(lock, { force: true }); // left by a builder that died
    return tryLock(lock);
  }
}

async function build1(name: string, dir: string, build: (dir: string) => Promise<void>): Promise<string> {
  if (existsSync(dir)) return dir;
  for (const stale of readdirSync(cacheRoot)) {
    if (stale.startsWith(`${basename(dir)}.partial`)) removeTree(join(cacheRoot, stale));
  }
  const partial = `${dir}.partial-${process.pid}`;
  mkdirSync(partial);
  try {
    await build(partial);
  } catch (err) {
    removeTree(partial);
    throw err;
  }
  renameSync(partial, dir);
  // Artefacts of older recipes are dead weight (hundreds of MB each).
  for (const old of readdirSync(cacheRoot)) {
    if (/^[0-9a-f]{12}$/.test(old.slice(name.length + 1)) && old.startsWith(`${name}-`) && join(cacheRoot, old) !== dir) removeTree(join(cacheRoot, old));
  }
  return dir;
}

/** rm -rf that refuses to descend into a tree something is still mounted in (a killed
 * chroot build could leave /dev bound there, and deleting through it would be a disaster). */
export function removeTree(dir: string): void {
  const mounts = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m === dir || m.startsWith(dir + '/'));
  if (mounts.length) throw new Error(`refusing to delete ${dir}: still mounted there: ${mounts.join(', ')}`);
  rmSync(dir, { recursive: true, force: true });
}
