/**
 * Surprise removal: what the HI shows the host of each hot-plug slot it serves, as a PCIe
 * downstream port with a hot-plug slot would (PCIe Base 6.0 §7.5.3.11 Slot Status, §7.5.3.8
 * Link Status), driven by the liveness of the slot's DI channel.
 *
 *   DI unreachable (every link silent) past `graceMs` → Presence Detect State 0, Data Link
 *       Layer Link Active 0, Presence Detect Changed and Data Link Layer State Changed set,
 *       and the host is interrupted (`raise`): a surprise removal;
 *   DI heard again (a restarted DI: its new epoch reset the channel and the HI programmed
 *       the function again) → presence and link back, both Changed bits set, `raise` again.
 *
 * The changed bits stay set until the host clears them (RW1C, `acknowledge`), as on
 * hardware. A link flap shorter than `graceMs` changes nothing: the link layer resends.
 */

import type { Clock, TimerHandle } from '../fabric/clock.ts';

/** Slot Status register bits (16 bits). */
export const enum SlotStatus {
  PresenceDetectChanged = 0x0008,
  PresenceDetectState = 0x0040,
  DataLinkLayerStateChanged = 0x0100,
}

/** Link Status register: Data Link Layer Link Active. */
export const LINK_STATUS_DLL_ACTIVE = 0x2000;

/**
 * How long a DI may stay unreachable (silent on every link past the stations' 1 s) before its
 * slots show a surprise removal, ms, so a DI starved of CPU under TCG keeps its guests.
 */
export const SURPRISE_REMOVAL_GRACE_MS = 2000;

export interface SlotView {
  slot: number;
  eep: string;
  channel: number;
  present: boolean;
  /** Slot Status as a downstream port would show it. */
  slotStatus: number;
  /** Link Status (only Data Link Layer Link Active is modelled). */
  linkStatus: number;
  removals: number;
  returns: number;
}

export interface SlotPresenceOptions {
  clock: Clock;
  graceMs?: number;
  /** Interrupt the host: the slot's presence changed (present: it is back). */
  raise: (slot: number, eep: string, present: boolean) => void;
}

interface Slot {
  eep: string;
  channel: number;
  status: number;
  linkActive: boolean;
  removals: number;
  returns: number;
}

export class SlotPresence {
  private readonly slots = new Map<number, Slot>();
  /** Channels whose peer is silent now, with the timer that will declare their slots removed. */
  private readonly silent = new Map<number, TimerHandle | null>();

  constructor(private readonly o: SlotPresenceOptions) {}

  /** A function is served in `slot` (present, link up). */
  add(slot: number, eep: string, channel: number): void {
    this.slots.set(slot, { eep, channel, status: SlotStatus.PresenceDetectState, linkActive: true, removals: 0, returns: 0 });
  }

  /** The slot is empty again (an orderly unmap). */
  remove(slot: number): void {
    this.slots.delete(slot);
  }

  /** Whether the function in `slot` is shown as present. */
  present(slot: number): boolean {
    return this.slots.get(slot)?.linkActive ?? false;
  }

  /** The DI on `channel` became reachable (`alive`) or silent on every link. */
  peerState(channel: number, alive: boolean): void {
    const pending = this.silent.get(channel);
    if (!alive) {
      if (this.silent.has(channel)) return;
      this.silent.set(
        channel,
        this.o.clock.setTimer(this.o.graceMs ?? SURPRISE_REMOVAL_GRACE_MS, () => {
          this.silent.set(channel, null);
          this.change(channel, false);
        }),
      );
      return;
    }
    if (pending) this.o.clock.clearTimer(pending);
    this.silent.delete(channel);
    this.change(channel, true);
  }

  /** The host cleared changed bits of `slot` (RW1C). */
  acknowledge(slot: number, bits: number): void {
    const s = this.slots.get(slot);
    if (s) s.status &= ~(bits & (SlotStatus.PresenceDetectChanged | SlotStatus.DataLinkLayerStateChanged));
  }

  view(): SlotView[] {
    return [...this.slots.entries()]
      .sort(([a], [b]) => a - b)
      .map(([slot, s]) => ({
        slot,
        eep: s.eep,
        channel: s.channel,
        present: s.linkActive,
        slotStatus: s.status,
        linkStatus: s.linkActive ? LINK_STATUS_DLL_ACTIVE : 0,
        removals: s.removals,
        returns: s.returns,
      }));
  }

  close(): void {
    for (const t of this.silent.values()) if (t) this.o.clock.clearTimer(t);
    this.silent.clear();
  }

  private change(channel: number, present: boolean): void {
    for (const [slot, s] of this.slots) {
      if (s.channel !== channel || s.linkActive === present) continue;
      s.linkActive = present;
      s.status = (present ? s.status | SlotStatus.PresenceDetectState : s.status & ~SlotStatus.PresenceDetectState) |
        SlotStatus.PresenceDetectChanged | SlotStatus.DataLinkLayerStateChanged;
      if (present) s.returns++;
      else s.removals++;
      this.o.raise(slot, s.eep, present);
    }
  }
}
