// The event loop of a lab process (HI, DI, switch, manager, device servers): what Node's command
// line cannot set, applied by each process's main before it opens anything.
import { native } from '../../native/index.ts';

/**
 * Turns off libuv's idle-time metric, whose zero-timeout poll before every blocking wait is one
 * more system call per wake-up (see native/src/poll.cc). Nothing in the lab reads the metric
 * (performance.eventLoopUtilization). LAB_IDLE_METRICS=on keeps it, to measure what it costs.
 */
export function tuneLabLoop(): void {
  if (process.env.LAB_IDLE_METRICS !== 'on') native.stopIdleTimeMetrics();
}
