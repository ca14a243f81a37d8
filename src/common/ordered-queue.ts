/**
 * Handles items one at a time, strictly in arrival order, even when handling
 * one is asynchronous: a handler that returns a promise holds back the items
 * after it until the promise settles. A vfio-user session's messages and a
 * PCIeOE port's requests both need this (a later read must not pass an
 * earlier write whose handler is still waiting on a device).
 *
 * The handler is expected to settle its own errors; one that throws
 * synchronously throws out of push().
 */
export class OrderedQueue<T> {
  private items: T[] = [];
  private busy = false;

  constructor(private readonly handle: (item: T) => void | Promise<unknown>) {}

  get length(): number {
    return this.items.length;
  }

  /** Nothing waits and nothing is being handled: an item pushed now is handled within push(). */
  get idle(): boolean {
    return !this.busy && this.items.length === 0;
  }

  push(item: T): void {
    this.items.push(item);
    if (!this.busy) this.drain();
  }

  /** Drops what waits (the item being handled still finishes) and returns it. */
  clear(): T[] {
    return this.items.splice(0);
  }

  private drain(): void {
    while (this.items.length > 0) {
      const r = this.handle(this.items.shift()!);
      if (r instanceof Promise) {
        this.busy = true;
        void r.finally(() => {
          this.busy = false;
          this.drain();
        });
        return;
      }
    }
  }
}
