// The shipped topologies (lab/topologies/*.yaml) with their descriptions: `lab list`, and the
// list in the README (a test keeps the two the same).
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { topologiesDir } from './paths.ts';
import { loadTopology } from './topology.ts';

export interface CatalogEntry {
  /** What `lab up` takes: the file's name without .yaml. */
  name: string;
  description: string;
  file: string;
}

export function catalog(dir = topologiesDir): CatalogEntry[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => {
      const file = join(dir, f);
      const t = loadTopology(file);
      return { name: f.slice(0, -'.yaml'.length), description: t.description ?? '', file };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** One line per topology: "name  description", names padded to one column. */
export function catalogText(entries: CatalogEntry[]): string {
  const width = Math.max(...entries.map((e) => e.name.length));
  return entries.map((e) => `${e.name.padEnd(width)}  ${e.description}`).join('\n');
}
