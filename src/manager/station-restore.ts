// A DI that restarted holds only the mappings of its command line (what `lab up` gave it):
// when its heartbeat comes with a new epoch, the manager gives it back every function the
// table says a host holds, so the hosts' HIs, which kept serving their slots, find their
// functions again (the HI programs each again when the channel starts over). Mapping what is
// mapped already is answered ok, so a repeat does no harm.
//
// A guest that took the device away meanwhile (the HI's surprise removal: the vfio device
// request, then the guest's pciehp powered the slot off) gets it hot-added again: the
// function is presented anew and the guest's pciehp probes it.
import { controlCall } from '../lab/control-client.ts';
import type { Fabric } from '../lab/derive.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { qmp } from '../lab/qmp.ts';
import type { Assignment } from './table.ts';

export interface DiMap {
  function: string;
  channel: number;
  bdf: string;
}

/** The DI map requests that restore `di`'s share of the table. */
export function mapsOf(fabric: Fabric, assignments: readonly Assignment[], di: string): DiMap[] {
  const d = fabric.dis.find((x) => x.process === di);
  if (!d) return [];
  return assignments
    .filter((a) => a.di === di)
    .flatMap((a) => {
      const fn = d.functions.find((f) => f.name === a.function);
      const channel = d.channels[a.host];
      return fn && channel !== undefined ? [{ function: a.function, channel, bdf: fn.bdf }] : [];
    });
}

/** Sends each map to the DI's control socket; resolves with how many it took. */
export async function giveBack(di: string, control: string, maps: readonly DiMap[]): Promise<number> {
  for (const m of maps) await controlCall(`DI ${di}`, control, { map: m });
  return maps.length;
}

/**
 * Waits (up to `waitMs`) for the guest to have removed the slot's device, then hot-adds it
 * with `add` (the applier's map: DI, HI, device_add). Resolves true if it was added again,
 * false if the guest kept the device (its driver recovers on the reprogrammed function).
 */
export async function presentAgain(a: Assignment, qmpSocket: string, add: (a: Assignment) => Promise<void>, waitMs = 20_000): Promise<boolean> {
  const eep = `eep${a.slot}`;
  const present = async () => ((await qmp(qmpSocket, 'qom-list', { path: '/machine/peripheral' })).return as { name: string }[] | undefined)?.some((p) => p.name === eep) ?? true;
  for (const end = Date.now() + waitMs; await present(); await sleep(200)) if (Date.now() > end) return false;
  await add(a);
  return true;
}
