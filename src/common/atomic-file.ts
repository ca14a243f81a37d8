// Files other processes read while their writer runs (lab.json, the manager's api.json, its
// table and stations.json): written beside and renamed over, so a reader sees the old whole
// file or the new one, never a truncated one.
import { renameSync, writeFileSync } from 'node:fs';

/** Writes `text` to `file` atomically (a temporary file in the same directory, then rename). */
export function writeFileAtomic(file: string, text: string, mode?: number): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text, mode === undefined ? undefined : { mode });
  renameSync(tmp, file);
}
