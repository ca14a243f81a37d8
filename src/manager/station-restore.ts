// A DI that restarted holds only the mappings of its command line (what `lab up` gave it):
// when its heartbeat comes with a new epoch, the manager gives it back every function the
// table says a host holds, so the hosts' HIs, which kept serving their slots, find their
// functions again (the HI programs each again when the channel starts over). Mapping what is
// mapped already is answered ok, so a repeat does no harm.
//
// Surprise removal in the guest: when an HI reports a slot lost (its DI silent past the HI's
// grace period), the manager presses that slot's attention button (QMP device_del) and the
// guest's pciehp takes the device away; I/O in flight fails. (The HI also sends the vfio
// device request, but QEMU 11's vfio-user-pci has no x-req and never listens for it.) When
// the DI is back, each function the guest removed is hot-added again into the same slot: the
// guest's pciehp probes it and the driver binds.
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

/** Presses the attention button of each slot an HI newly reports lost; forgets a slot once it is mapped again. */
export class SurpriseRemoval {
  /** "<host>#<slot>" already asked to go. */
  private readonly pressed = new Set<string>();

  constructor(
    private readonly fabric: Fabric,
    private readonly assignments: () => Assignment[],
    private readonly qmpOf: (host: string) => string | undefined,
    /** An HI process's control socket. */
    private readonly hiControlOf: (hi: string) => string | undefined,
    private readonly log: (level: 'info' | 'warn', m: string) => void,
  ) {}

  /**
   * Only a function hot-plugged into the guest is taken away (the HI says which: {"slots":true}):
   * one on QEMU's command line (the topology's initial assignments) keeps MSI-X, and QEMU 11.1.3
   * aborts removing a vfio-user-pci with it; that guest's driver sees errors and recovers on
   * its own when the DI is back.
   */
  private async press(socket: string, hiControl: string | undefined, slot: number): Promise<string> {
    if (!hiControl) return 'its HI is not running';
    const { slots } = (await controlCall('HI', hiControl, { slots: true })) as { slots: { slot: number; hotplugged: boolean }[] };
    if (!slots.find((x) => x.slot === slot)?.hotplugged) return 'on QEMU\'s command line (not hot-plugged): left in place';
    const r = await qmp(socket, 'device_del', { id: `eep${slot}` });
    return r.error ? `device_del: ${r.error.desc}` : 'pressed';
  }

  /** An HI's slots as it reported them (station.ts). */
  report(hi: string, slots: readonly { slot: number; state: string }[]): void {
    const host = this.fabric.hosts.find((h) => h.process === hi)?.host;
    if (!host) return;
    for (const s of slots) {
      const key = `${host}#${s.slot}`;
      if (s.state !== 'lost') {
        this.pressed.delete(key);
        continue;
      }
      const a = this.assignments().find((x) => x.host === host && x.slot === s.slot);
      const socket = this.qmpOf(host);
      if (!a || !socket || this.pressed.has(key)) continue;
      this.pressed.add(key);
      const what = `${a.di}/${a.function} lost in ${host} slot ${s.slot}`;
      this.press(socket, this.hiControlOf(hi), s.slot).then(
        (outcome) => this.log(outcome === 'pressed' ? 'info' : 'warn', `${what}: ${outcome === 'pressed' ? 'attention button pressed, the guest removes it' : outcome}`),
        (err: Error) => this.log('warn', `${what}: device_del: ${err.message}`),
      );
    }
  }
}
