// The manager's flows: assign, unassign, move. Each checks the table first (a clear error and
// nothing changed), holds the function and slot while it works, has the Applier carry the
// change out on the DI, the HI and the guest, and only then records it, saves the table and
// tells every listener. Each flow is timed.
import { EventEmitter } from 'node:events';
import { type Assignment, AssignmentError, AssignmentTable, functionRef } from './table.ts';
import type { AssignmentStore } from './store.ts';

/** Carries a change out where it happens (DI, HI, guest); see apply.ts for the lab's. */
export interface Applier {
  /** The DI maps the function to the host, the HI serves it in the slot, the guest gets it hot-plugged. */
  map(a: Assignment): Promise<void>;
  /** The guest releases the device, then the HI and the DI drop the mapping. */
  unmap(a: Assignment): Promise<void>;
}

export interface FlowResult {
  assignment: Assignment;
  ms: number;
}

export type ManagerEvent =
  | { event: 'assigned'; assignment: Assignment; ms: number }
  | { event: 'unassigned'; assignment: Assignment; ms: number }
  | { event: 'moved'; from: Assignment; assignment: Assignment; ms: number }
  | { event: 'failed'; op: string; function: string; error: string };

export class Manager extends EventEmitter<{ event: [ManagerEvent] }> {
  constructor(
    readonly table: AssignmentTable,
    private readonly store: AssignmentStore,
    private readonly applier: Applier,
    /** The topology the table belongs to, saved with it. */
    private readonly topology: string,
  ) {
    super();
  }

  private tell(e: ManagerEvent) {
    this.emit('event', e);
  }

  private async timed<T>(op: string, ref: string, work: () => Promise<T>): Promise<{ value: T; ms: number }> {
    const start = performance.now();
    try {
      const value = await work();
      return { value, ms: Math.round(performance.now() - start) };
    } catch (err) {
      if (!(err instanceof AssignmentError)) this.tell({ event: 'failed', op, function: ref, error: (err as Error).message });
      throw err;
    }
  }

  private commit(set?: Assignment, removed?: string) {
    if (removed) this.table.delete(removed);
    if (set) this.table.set(set);
    this.store.save(this.topology, this.table.list());
  }

  async assign(host: string, ref: string, slot?: number): Promise<FlowResult> {
    const a = this.table.checkAssign(host, ref, slot);
    const { ms } = await this.table.reserve(`assign to ${host}`, ref, [a], () =>
      this.timed('assign', ref, async () => {
        await this.applier.map(a);
        this.commit(a);
      }),
    );
    this.tell({ event: 'assigned', assignment: a, ms });
    return { assignment: a, ms };
  }

  async unassign(host: string, ref: string): Promise<FlowResult> {
    const a = this.table.checkUnassign(host, ref);
    const { ms } = await this.table.reserve(`unassign from ${host}`, ref, [a], () =>
      this.timed('unassign', ref, async () => {
        // A guest that does not let go fails here: the mapping stays, and so does the table.
        await this.applier.unmap(a);
        this.commit(undefined, ref);
      }),
    );
    this.tell({ event: 'unassigned', assignment: a, ms });
    return { assignment: a, ms };
  }

  /** Unassign from the holder, then assign to `host` (its lowest free slot unless `slot`). */
  async move(ref: string, host: string, slot?: number): Promise<FlowResult & { from: Assignment }> {
    this.table.resolve(ref);
    const from = this.table.holderOf(ref);
    if (!from) throw new AssignmentError('not-assigned', `${ref} is not assigned to any host; use assign`);
    if (from.host === host) throw new AssignmentError('already-assigned', `${ref} is already on ${host} (slot ${from.slot})`);
    // Check the destination before taking the function away from where it is.
    const probe = new AssignmentTable(this.table.inventory, this.table.list().filter((x) => functionRef(x) !== ref));
    const to = probe.checkAssign(host, ref, slot);
    const { ms } = await this.table.reserve(`move to ${host}`, ref, [from, to], () =>
      this.timed('move', ref, async () => {
        await this.applier.unmap(from);
        this.commit(undefined, ref);
        await this.applier.map(to);
        this.commit(to);
      }),
    );
    this.tell({ event: 'moved', from, assignment: to, ms });
    return { from, assignment: to, ms };
  }
}
