/**
 * Work deferred to the end of the current turn: once the callback or timer that is running now,
 * and every promise continuation it started, has settled, and before the event loop moves on.
 *
 * Stations hold the frames of a turn to hand them to their port together, and the NVMe model
 * raises an interrupt once for the completions of a turn. A setImmediate did that a phase later
 * (the check phase), which is a second entry into JavaScript per wake-up and, measured, several
 * µs between a device's last send and its flush. Here the run is a process.nextTick queued from a
 * microtask: Node runs ticks only when the microtask queue is empty, so every continuation queued
 * meanwhile has run first.
 *
 * Callbacks run in the order they were deferred; one deferred while the run is under way (a held
 * frame sent by an interrupt raised in the same run) runs in it too, so all of them still reach a
 * port before its flush, which is itself a microtask.
 */

const pending: (() => void)[] = [];
let armed = false;

function run(): void {
  let i = 0;
  try {
    // Index loop: callbacks may defer more while it runs.
    for (; i < pending.length; i++) pending[i]!();
  } finally {
    // A callback that threw is dropped; any after it run at the next turn's end.
    pending.splice(0, Math.min(i + 1, pending.length));
    armed = pending.length > 0;
    if (armed) queueMicrotask(arm);
  }
}

const arm = (): void => process.nextTick(run);

export function atTurnEnd(fn: () => void): void {
  pending.push(fn);
  if (armed) return;
  armed = true;
  queueMicrotask(arm);
}
