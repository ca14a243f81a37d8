// The assignment table: which host holds which DI function, in which of its HI slots. The
// manager is its only writer. Every rule a change must pass is checked here, before anything
// is touched, and a change in progress reserves its function and slot, so that of two
// concurrent changes of the same function exactly one goes ahead and the other is told why.

export interface Assignment {
  host: string;
  di: string;
  function: string;
  slot: number;
}

/** What exists: hosts with their HI slots, DIs with their functions (from the topology). */
export interface Inventory {
  hosts: { name: string; slots: number }[];
  dis: { name: string; functions: { name: string; bdf: string; model: string }[] }[];
}

export type AssignmentErrorCode =
  | 'unknown-host'
  | 'unknown-function'
  | 'already-assigned'
  | 'not-assigned'
  | 'no-free-slot'
  | 'bad-slot'
  | 'slot-taken'
  | 'busy';

export class AssignmentError extends Error {
  constructor(
    readonly code: AssignmentErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export const functionRef = (a: { di: string; function: string }) => `${a.di}/${a.function}`;
const slotKey = (host: string, slot: number) => `${host}#${slot}`;

export class AssignmentTable {
  private readonly byFunction = new Map<string, Assignment>();
  /** Functions and slots a change is working on. */
  private readonly reserved = new Map<string, string>();

  constructor(
    readonly inventory: Inventory,
    initial: Assignment[] = [],
  ) {
    for (const a of initial) {
      this.checkAssign(a.host, functionRef(a), a.slot);
      this.byFunction.set(functionRef(a), { ...a });
    }
  }

  list(): Assignment[] {
    return [...this.byFunction.values()].map((a) => ({ ...a }));
  }

  holderOf(ref: string): Assignment | undefined {
    const a = this.byFunction.get(ref);
    return a && { ...a };
  }

  usedSlots(host: string): Map<number, string> {
    return new Map([...this.byFunction.values()].filter((a) => a.host === host).map((a) => [a.slot, functionRef(a)]));
  }

  private host(name: string) {
    const h = this.inventory.hosts.find((x) => x.name === name);
    if (!h) throw new AssignmentError('unknown-host', `no host named "${name}" (hosts: ${this.inventory.hosts.map((x) => x.name).join(', ') || 'none'})`);
    return h;
  }

  /** The DI and function a "<di>/<function>" names. */
  resolve(ref: string): { di: string; function: string; bdf: string } {
    const [diName, fnName] = ref.split('/');
    const di = this.inventory.dis.find((d) => d.name === diName);
    if (!di || fnName === undefined) throw new AssignmentError('unknown-function', `no DI named "${diName}" (DIs: ${this.inventory.dis.map((d) => d.name).join(', ') || 'none'}; functions are named "<di>/<function>")`);
    const fn = di.functions.find((f) => f.name === fnName);
    if (!fn) throw new AssignmentError('unknown-function', `DI "${diName}" has no function "${fnName}" (functions: ${di.functions.map((f) => f.name).join(', ')})`);
    return { di: di.name, function: fn.name, bdf: fn.bdf };
  }

  /** Checks that `ref` may go to `host` (in `slot`, or its lowest free one); returns the assignment it would make. */
  checkAssign(hostName: string, ref: string, slot?: number): Assignment {
    const host = this.host(hostName);
    const fn = this.resolve(ref);
    const held = this.byFunction.get(ref);
    if (held) throw new AssignmentError('already-assigned', `${ref} is already assigned to ${held.host} (slot ${held.slot}); unassign or move it`);
    const used = this.usedSlots(host.name);
    const free = (s: number) => !used.has(s) && !this.reserved.has(slotKey(host.name, s));
    if (slot === undefined) {
      slot = [...Array(host.slots).keys()].find(free);
      if (slot === undefined) throw new AssignmentError('no-free-slot', `host ${host.name} has no free slot (all ${host.slots} hold functions)`);
    } else if (!Number.isInteger(slot) || slot < 0 || slot >= host.slots) {
      throw new AssignmentError('bad-slot', `host ${host.name} has slots 0 to ${host.slots - 1}, not ${slot}`);
    } else if (!free(slot)) {
      throw new AssignmentError('slot-taken', `slot ${slot} of ${host.name} holds ${used.get(slot) ?? this.reserved.get(slotKey(host.name, slot))}`);
    }
    return { host: host.name, di: fn.di, function: fn.function, slot };
  }

  /** Checks that `ref` is assigned to `host`; returns that assignment. */
  checkUnassign(hostName: string, ref: string): Assignment {
    this.host(hostName);
    this.resolve(ref);
    const held = this.byFunction.get(ref);
    if (!held) throw new AssignmentError('not-assigned', `${ref} is not assigned to any host`);
    if (held.host !== hostName) throw new AssignmentError('not-assigned', `${ref} is assigned to ${held.host}, not ${hostName}`);
    return { ...held };
  }

  /**
   * Holds `ref` (and the slots named) for the duration of `work`; a second change of any of
   * them meanwhile fails with "busy". Call it right after the check, with no await between.
   */
  async reserve<T>(what: string, ref: string, slots: { host: string; slot: number }[], work: () => Promise<T>): Promise<T> {
    const keys = [ref, ...slots.map((s) => slotKey(s.host, s.slot))];
    const clash = keys.find((k) => this.reserved.has(k));
    if (clash) throw new AssignmentError('busy', `${clash.includes('#') ? `slot ${clash.split('#')[1]} of ${clash.split('#')[0]}` : clash} is being changed (${this.reserved.get(clash)}); try again when it is done`);
    for (const k of keys) this.reserved.set(k, what);
    try {
      return await work();
    } finally {
      for (const k of keys) this.reserved.delete(k);
    }
  }

  /** Records a change that has been applied. */
  set(a: Assignment): void {
    this.byFunction.set(functionRef(a), { ...a });
  }

  delete(ref: string): void {
    this.byFunction.delete(ref);
  }
}
