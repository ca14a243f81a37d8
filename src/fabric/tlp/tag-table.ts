/**
 * A requester's outstanding non-posted requests, by tag, in issue order.
 *
 * Why not a Map: a device's DMA read of a 64 KiB page list is 16 requests issued together and
 * completed before the next burst, and V8 grows a Map's hash table as they go out and shrinks
 * it as they complete, allocating a new table each time: on 64 KiB writes that rehashing and
 * the garbage it leaves were ≈ 5 % of the DI's CPU (perf). Here a slot per tag holds the
 * entry, and a list in issue order (the completion-timeout sweep's order, since every request
 * has the same timeout) keeps entries that are done until they reach its head or the list
 * is compacted; neither allocates per request.
 */
export class TagTable<T> {
  private readonly byTag: (T | undefined)[];
  private count = 0;
  /** How many times each tag has been freed: an entry of the issue order is live while its tag's count is still the one it was set at. */
  private readonly freed: Uint32Array;
  /** Issue order: entry i was set for tag orderTags[i] when it had been freed orderFreed[i] times. */
  private orderTags: number[] = [];
  private orderFreed: number[] = [];
  private head = 0;

  constructor(readonly tags: number) {
    this.byTag = new Array<T | undefined>(tags).fill(undefined);
    this.freed = new Uint32Array(tags);
  }

  get size(): number {
    return this.count;
  }

  get(tag: number): T | undefined {
    return this.byTag[tag];
  }

  /** `entry` is outstanding with `tag`, which must be free. */
  set(tag: number, entry: T): void {
    if (!(tag >= 0 && tag < this.tags && Number.isInteger(tag))) throw new RangeError(`tag ${tag} outside 0..${this.tags - 1}`);
    if (this.byTag[tag] !== undefined) throw new Error(`tag ${tag} is in use`);
    this.byTag[tag] = entry;
    this.count++;
    this.orderTags.push(tag);
    this.orderFreed.push(this.freed[tag]!);
    // At most `tags` are live: compacting when the list holds 4 × that keeps it O(1) a request.
    if (this.orderTags.length - this.head > 4 * this.tags) this.compact();
  }

  /** `tag`'s request is done; returns it (undefined if none was outstanding). */
  delete(tag: number): T | undefined {
    const entry = this.byTag[tag];
    if (entry === undefined) return undefined;
    this.byTag[tag] = undefined;
    this.freed[tag]!++;
    this.count--;
    this.skipDone();
    return entry;
  }

  /** The outstanding requests, oldest first (safe to delete while iterating). */
  *[Symbol.iterator](): IterableIterator<[number, T]> {
    for (let i = this.head; i < this.orderTags.length; i++) if (this.live(i)) yield [this.orderTags[i]!, this.byTag[this.orderTags[i]!]!];
  }

  clear(): void {
    for (const [tag] of this) this.delete(tag);
  }

  /** A tag not freed since entry i was set is still held by that entry. */
  private live(i: number): boolean {
    return this.freed[this.orderTags[i]!] === this.orderFreed[i];
  }

  /** Drop done entries from the head of the issue order (all of it once nothing is outstanding). */
  private skipDone(): void {
    if (this.count === 0) {
      this.orderTags.length = 0;
      this.orderFreed.length = 0;
      this.head = 0;
      return;
    }
    while (this.head < this.orderTags.length && !this.live(this.head)) this.head++;
  }

  private compact(): void {
    let w = 0;
    for (let i = this.head; i < this.orderTags.length; i++) {
      if (!this.live(i)) continue;
      this.orderTags[w] = this.orderTags[i]!;
      this.orderFreed[w] = this.orderFreed[i]!;
      w++;
    }
    this.orderTags.length = w;
    this.orderFreed.length = w;
    this.head = 0;
  }
}
