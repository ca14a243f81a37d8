// The assignment table on disk (<state>/manager/assignments.json), so a restarted manager,
// or a lab brought up again, has the assignments it had. Written whole to a temporary file
// and renamed over the old one: a crash leaves the old table or the new one, never half.
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { writeFileAtomic } from '../common/atomic-file.ts';
import { join } from 'node:path';
import { z } from 'zod';
import type { Assignment } from './table.ts';

const fileSchema = z.strictObject({
  version: z.literal(1),
  /** The topology the table belongs to (a table is only restored into the same one). */
  topology: z.string(),
  assignments: z.array(z.strictObject({ host: z.string(), di: z.string(), function: z.string(), slot: z.number().int().min(0) })),
});

export class AssignmentStore {
  readonly file: string;

  constructor(readonly dir: string) {
    this.file = join(dir, 'assignments.json');
  }

  /** The saved table, or undefined if none was ever saved; a damaged file is an error naming it. */
  load(): { topology: string; assignments: Assignment[] } | undefined {
    if (!existsSync(this.file)) return undefined;
    let parsed;
    try {
      parsed = fileSchema.safeParse(JSON.parse(readFileSync(this.file, 'utf8')));
    } catch (err) {
      throw new Error(`${this.file}: not JSON (${(err as Error).message})`);
    }
    if (!parsed.success) throw new Error(`${this.file}: not an assignment table: ${z.prettifyError(parsed.error)}`);
    return { topology: parsed.data.topology, assignments: parsed.data.assignments };
  }

  save(topology: string, assignments: Assignment[]): void {
    mkdirSync(this.dir, { recursive: true });
    writeFileAtomic(this.file, JSON.stringify({ version: 1, topology, assignments }, null, 2) + '\n');
  }

  clear(): void {
    rmSync(this.file, { force: true });
  }
}
