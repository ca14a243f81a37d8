// Node options every lab process runs with (HI, DI, switch, manager, device servers).
//
// --single-threaded-gc: V8 hands each young-generation scavenge (and parts of full collections) to
// helper threads by default. Here the other CPU is nearly always running a guest's vCPU, so waking
// those helpers and waiting for them costs the process more than the collection itself; on its own
// thread the collection just runs. Measured in docs/performance.md ("Node options of the lab's
// processes").

export const LAB_NODE_OPTIONS: readonly string[] = ['--single-threaded-gc'];

/**
 * The node options for a lab process: the lab's own, then LAB_NODE_ARGS (space-separated, e.g.
 * "--cpu-prof --cpu-prof-dir=D" to profile a benchmark). A later V8 flag wins, so
 * LAB_NODE_ARGS=--no-single-threaded-gc measures without the lab's choice.
 */
export const labNodeArgs = (extra: readonly string[] = []): string[] => [
  ...LAB_NODE_OPTIONS,
  ...(process.env.LAB_NODE_ARGS ?? '').split(' ').filter((a) => a !== ''),
  ...extra,
];
