/**
 * The HI's hot-plug slots as the manager and the host see them: slot s holds EEP "eep<s>"
 * (the lab's naming, src/lab/derive.ts) when it is served; each served slot's presence
 * follows its DI's liveness (slot-state.ts). From this the HI builds its SlotReport for the
 * manager (free, mapped, lost), answers {"slots":true} on its control socket, and, on a
 * surprise removal, interrupts the host: the EEP's vfio device request (REQ), vfio's way to
 * ask for a device back. QEMU 11's vfio-user-pci does not listen for it (it has no x-req), so
 * in the lab the manager, seeing the slot lost in the SlotReport, presses the slot's
 * attention button instead and hot-adds the function again once its DI is back
 * (src/manager/station-restore.ts).
 */

import type { Clock } from '../fabric/clock.ts';
import type { PcieoePort } from '../fabric/pcieoe-port.ts';
import { MgmtKind, type SlotReport, SlotState } from '../fabric/wire/management.ts';
import type { Logger } from '../common/logger.ts';
import type { RemoteFunction } from './remote-function/index.ts';
import { SlotPresence, type SlotView } from './slot-state.ts';

export interface HiSlotsOptions {
  clock: Clock;
  /** How many hot-plug slots the host has. */
  count: number;
  ports: readonly PcieoePort[];
  /** EEPs served now, by name, with their channel. */
  served: () => Map<string, { eep: RemoteFunction; channel: number }>;
  /** Whether a surprise removal also sends the host the vfio device request (REQ). */
  request: boolean;
  /**
   * Whether `eep` was hot-plugged (mapped on the control socket, not --eep). Only those can be
   * taken from the guest: QEMU 11.1.3 aborts removing a vfio-user-pci with MSI-X, and only
   * hot-plugged EEPs hide it (hotplug-control.ts).
   */
  hotplugged: (eep: string) => boolean;
  graceMs?: number;
  log: Logger;
}

const slotOf = (eep: string) => /^eep(\d+)$/.exec(eep)?.[1];

export class HiSlots {
  private readonly presence: SlotPresence;
  /** Interrupts raised toward the host (surprise removals and returns). */
  readonly stats = { removals: 0, returns: 0, deviceRequests: 0 };

  constructor(private readonly o: HiSlotsOptions) {
    this.presence = new SlotPresence({ clock: o.clock, graceMs: o.graceMs, raise: (slot, eep, present) => this.raise(slot, eep, present) });
    for (const port of o.ports)
      port.onPeerState((alive) => {
        this.sync();
        this.presence.peerState(port.id, alive);
      });
  }

  /** Slots of EEPs served now, with presence and status bits, and whether each was hot-plugged. */
  view(): (SlotView & { hotplugged: boolean })[] {
    this.sync();
    return this.presence.view().map((v) => ({ ...v, hotplugged: this.o.hotplugged(v.eep) }));
  }

  /** The SlotReport body: every slot, free, mapped or lost. */
  report(): Omit<SlotReport, 'id'> {
    const bySlot = new Map(this.view().map((v) => [v.slot, v]));
    const served = this.o.served();
    return {
      kind: MgmtKind.SlotReport,
      slots: [...Array(this.o.count).keys()].map((slot) => {
        const v = bySlot.get(slot);
        if (!v) return { slot, state: SlotState.Free, channel: 0, bdf: 0 };
        return { slot, state: v.present ? SlotState.Mapped : SlotState.Lost, channel: v.channel, bdf: served.get(v.eep)?.eep.remoteBdf ?? 0 };
      }),
    };
  }

  /** {"slots":true} on the control socket; undefined for other requests. */
  control(raw: unknown): Record<string, unknown> | undefined {
    if (typeof raw !== 'object' || raw === null || (raw as { slots?: unknown }).slots !== true) return undefined;
    return { slots: this.view(), ...this.stats };
  }

  close(): void {
    this.presence.close();
  }

  /** Track the EEPs served now (mapped and unmapped through any path). */
  private sync(): void {
    const served = this.o.served();
    const known = new Set(this.presence.view().map((v) => v.eep));
    for (const [name, x] of served) {
      const slot = slotOf(name);
      if (slot !== undefined && !known.has(name)) {
        this.presence.add(Number(slot), name, x.channel);
        // Mapped while its DI is silent: that shows once the grace period passes.
        const port = this.o.ports.find((p) => p.id === x.channel);
        if (port && !port.channel.isPeerAlive) this.presence.peerState(x.channel, false);
      }
    }
    for (const name of known) if (!served.has(name)) this.presence.remove(Number(slotOf(name)));
  }

  private raise(slot: number, eep: string, present: boolean): void {
    if (present) this.stats.returns++;
    else this.stats.removals++;
    this.o.log(present ? 'info' : 'warn', `slot ${slot} (${eep}): ${present ? 'function back (DI reachable again): presence and link restored' : 'DI silent: surprise removal (presence and link down)'}`);
    if (!present && this.o.request && this.o.hotplugged(eep)) {
      const sent = this.o.served().get(eep)?.eep.requestRelease() ?? false;
      if (sent) this.stats.deviceRequests++;
      this.o.log('info', `slot ${slot} (${eep}): device request to the host ${sent ? 'sent' : 'not wired (no REQ eventfd)'}`);
    }
  }
}
