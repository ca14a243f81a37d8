// The hot-plug flows as a user runs them, timed end to end (`lab demo hotplug`, bench/hotplug.ts):
// each asks the lab's manager (its API, as `lab assign/move/unassign` do) and then watches the
// guest until the flow is done where it matters — a hot-added function's namespace is there
// (pciehp probed it, the nvme driver bound), a removed one is gone.
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ManagerClient } from '../manager/client.ts';
import type { FlowResult } from '../manager/manager.ts';
import { agentExec } from './agent.ts';
import { stateRoot } from './paths.ts';
import { requireState, type VmState } from './state.ts';

/** One flow: the manager's own time for it, and the time until the guest showed the result. */
export interface FlowTime {
  managerMs: number;
  /** Until the driver bound (assign, move) or the device was gone from the guest (unassign). */
  totalMs: number;
  /** The namespace block device on the host that has the function now (assign, move). */
  device?: string;
}

const vm = (name: string): VmState => {
  const v = requireState().vms.find((x) => x.name === name);
  if (!v) throw new Error(`no VM named "${name}" in this lab`);
  return v;
};

/** The namespace block device (/dev/nvmeXn1) of the controller with `serial`, if the guest has one bound. */
export async function namespaceOf(host: string, serial: string): Promise<string | undefined> {
  const r = await agentExec(
    vm(host).agent,
    `for c in /sys/class/nvme/nvme*; do [ "$(tr -d ' ' < $c/serial 2>/dev/null)" = "${serial}" ] || continue; for n in $c/nvme*n*; do [ -b /dev/$(basename $n) ] && echo /dev/$(basename $n); done; done; true`,
    { timeoutMs: 30_000 },
  );
  return r.stdout.trim().split('\n').filter(Boolean)[0];
}

async function poll<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  for (const end = Date.now() + timeoutMs; ; await sleep(100)) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
  }
}

async function managerCall<T>(req: Parameters<ManagerClient['call']>[0]): Promise<T> {
  const client = await ManagerClient.connect(join(stateRoot, 'manager'));
  try {
    return await client.call<T>(req);
  } finally {
    client.close();
  }
}

/** Assign `ref` (di/function, NVMe with `serial`) to `host`; done when its namespace is there. */
export async function timedAssign(host: string, ref: string, serial: string, timeoutMs = 120_000): Promise<FlowTime> {
  const start = performance.now();
  const r = await managerCall<FlowResult>({ op: 'assign', host, function: ref });
  const device = await poll(`${host}: nvme driver bound to ${ref}`, timeoutMs, () => namespaceOf(host, serial));
  return { managerMs: r.ms, totalMs: Math.round(performance.now() - start), device };
}

/** Move `ref` to `host`; done when its namespace is there. */
export async function timedMove(ref: string, host: string, serial: string, timeoutMs = 120_000): Promise<FlowTime> {
  const start = performance.now();
  const r = await managerCall<FlowResult>({ op: 'move', function: ref, host });
  const device = await poll(`${host}: nvme driver bound to ${ref}`, timeoutMs, () => namespaceOf(host, serial));
  return { managerMs: r.ms, totalMs: Math.round(performance.now() - start), device };
}

/** Unassign `ref` from `host`; done when the guest has no controller with `serial`. */
export async function timedUnassign(host: string, ref: string, serial: string, timeoutMs = 60_000): Promise<FlowTime> {
  const start = performance.now();
  const r = await managerCall<FlowResult>({ op: 'unassign', host, function: ref });
  await poll(`${host}: ${ref} gone`, timeoutMs, async () => ((await namespaceOf(host, serial)) === undefined ? true : undefined));
  return { managerMs: r.ms, totalMs: Math.round(performance.now() - start) };
}
