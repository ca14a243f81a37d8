/**
 * A PCIeOE node's attachment to the fabric: N links (stations on switch
 * ports) shared by any number of link-layer Channels, one per HI↔DI
 * association. Incoming frames are sorted to their Channel by the channel id
 * in the PCIeOE header (the Channel itself checks MACs, VLAN and CRC).
 *
 * The transport is pluggable: a link is a `Station` (port.ts) — the
 * in-process switch port in tests, or a unix datagram socket to the switch
 * process via `stationOf(new UnixDgramPort(...))`.
 *
 * Shared by the HI and DI process entries (which never import each other).
 */

import type { Clock } from '../clock.ts';
import { type OutgoingFrame, TAGGED_L2_BYTES, encodeFrame, TPID_8021Q, UNTAGGED_L2_BYTES, type VlanTag } from '../wire/frame.ts';
import { Channel, type ChannelOptions } from './channel.ts';
import type { Mac } from '../wire/mac.ts';
import { type Ingress, type PortTransport, type Station, transmitFrame } from '../wire/port.ts';
import { MANAGEMENT_CHANNEL } from '../wire/management.ts';
import { keptCopy } from '../slab.ts';

/**
 * A station over any PortTransport whose far end is a switch port (e.g. UnixDgramPort).
 *
 * Frames sent are held until the end of the event-loop turn (setImmediate: after this poll
 * phase's I/O callbacks and every promise continuation they started) and then given to the
 * port together, which writes them in one flush. A device's answer is often several sends
 * apart by promise continuations (an NVMe read's data, its completion entry, its MSI-X):
 * flushed one by one (the ports flush at the end of the current microtask run) each would
 * wake the switch and the peer on its own; a wake-up costs tens of µs of CPU here, the wait
 * for the check phase none.
 *
 * The port is attached in place (PortTransport.attach): frames reach an onFrame that says it
 * copies what it keeps (onFrameInPlace, as FabricNode) as the transport has them, possibly a
 * view of its memory valid only during the call; any other onFrame gets each such frame copied.
 */
export function stationOf(port: PortTransport): Station & { sendFrame(frame: OutgoingFrame): void; close(): void } {
  const held: (Buffer | OutgoingFrame)[] = [];
  let scheduled = false;
  let open = true;
  const release = () => {
    scheduled = false;
    for (let i = 0; i < held.length; i++) {
      const f = held[i]!;
      if (f instanceof Uint8Array) port.transmit(f);
      else transmitFrame(port, f);
    }
    held.length = 0;
  };
  const hold = (frame: Buffer | OutgoingFrame) => {
    if (!open) return;
    held.push(frame);
    if (!scheduled) {
      scheduled = true;
      setImmediate(release);
    }
  };
  const station = {
    onFrame: null as Ingress | null,
    onFrameInPlace: false,
    send: hold,
    /** Encoded by the port where it sends it (PortTransport.transmitFrame). */
    sendFrame: hold,
    close: () => {
      release();
      open = false;
      port.close();
    },
  };
  port.attach((frame, crcChecked, transient) => {
    const onFrame = station.onFrame;
    if (onFrame === null) return;
    if (transient && !station.onFrameInPlace) onFrame(keptCopy(frame)); // the CRC is checked again, on the copy
    else onFrame(frame, crcChecked, transient);
  }, true);
  return station;
}

/** The channel id of a PCIeOE frame, or undefined if it is too short to carry one. */
export function peekChannel(frame: Uint8Array): number | undefined {
  if (frame.length < UNTAGGED_L2_BYTES + 4) return undefined;
  const tagged = ((frame[12]! << 8) | frame[13]!) === TPID_8021Q;
  const hdr = tagged ? TAGGED_L2_BYTES : UNTAGGED_L2_BYTES;
  if (frame.length < hdr + 4) return undefined;
  return (frame[hdr + 2]! << 8) | frame[hdr + 3]!;
}

export interface NodeLink {
  station: Station;
  /** This node's MAC on the link. */
  mac: Mac;
}

export type ChannelTuning = Partial<Omit<ChannelOptions, 'channel' | 'links' | 'send' | 'deliver' | 'clock'>>;

export class FabricNode {
  private readonly channels = new Map<number, Channel>();
  /** Frames for a channel this node does not have (counted, dropped). */
  rxUnknownChannel = 0;
  /** Frames on the management channel (0: discovery, management) go here: management-responder.ts. Never transient (copied if need be). */
  onManagement: ((link: number, frame: Buffer) => void) | null = null;

  constructor(
    readonly links: readonly NodeLink[],
    readonly clock: Clock,
    private readonly vlan: VlanTag | null,
    private readonly tuning: ChannelTuning = {},
  ) {
    if (links.length === 0) throw new RangeError('a fabric node needs at least one link');
    // Channels copy what they keep of a frame (ChannelOptions.deliverTransient), so stations may hand them ring slots.
    links.forEach((l, i) => {
      l.station.onFrame = (frame, crcChecked, transient) => this.ingress(i, frame, crcChecked, transient);
      l.station.onFrameInPlace = true;
    });
  }

  /**
   * A channel to a peer whose link i has MAC peerMacs[i]; link i of this node
   * pairs with link i of the peer (as many pairs as both have links).
   */
  addChannel(id: number, peerMacs: readonly Mac[], deliver: ChannelOptions['deliver'], extra: ChannelTuning = {}): Channel {
    if (this.channels.has(id)) throw new Error(`channel ${id} exists already`);
    const n = Math.min(this.links.length, peerMacs.length);
    if (n === 0) throw new RangeError(`channel ${id}: no peer MAC`);
    const ch = new Channel({
      ...this.tuning,
      ...extra,
      channel: id,
      links: Array.from({ length: n }, (_, i) => ({ localMac: this.links[i]!.mac, peerMac: peerMacs[i]!, vlan: this.vlan })),
      send: (link, frame) => this.links[link]!.station.send(frame),
      sendFrame: (link, frame) => {
        const station = this.links[link]!.station;
        if (station.sendFrame) station.sendFrame(frame);
        else station.send(encodeFrame(frame, frame.payload));
      },
      deliver,
      clock: this.clock,
    });
    this.channels.set(id, ch);
    return ch;
  }

  channel(id: number): Channel | undefined {
    return this.channels.get(id);
  }

  close(): void {
    for (const ch of this.channels.values()) ch.close();
    this.channels.clear();
  }

  private ingress(link: number, frame: Buffer, crcChecked?: boolean, transient?: boolean): void {
    const id = peekChannel(frame);
    if (id === MANAGEMENT_CHANNEL && this.onManagement) return this.onManagement(link, transient ? keptCopy(frame) : frame);
    const ch = id === undefined ? undefined : this.channels.get(id);
    if (!ch || link >= ch.linkStates.length) {
      this.rxUnknownChannel++;
      return;
    }
    ch.receive(link, frame, crcChecked, transient);
  }
}
