// src/fabric/wire — Ethernet frames and what carries them: the PCIeOE frame codec, the port
// interface (this file) and its transports (unix datagram, UDP, VXLAN, memif in memif/), fault injection,
// capture and pcap. It may import src/common, native/ and src/fabric's own files (clock, rng).

/**
 * How the switch meets a wire: a port transport carries whole Ethernet frames
 * (no FCS) between the switch and one station. Transports, fault injection and
 * capture all implement this one interface so they stack.
 */

import type { Clock } from '../clock.ts';

export interface PortTransport {
  /** A frame leaving the switch toward the station. The transport must not modify it. */
  transmit(frame: Buffer): void;
  /** Called once by the switch with its ingress handler. */
  attach(ingress: (frame: Buffer) => void): void;
  close(): void;
}

/** The station's end of an in-process port. */
export interface Station {
  send(frame: Buffer): void;
  onFrame: ((frame: Buffer) => void) | null;
}

/**
 * A port inside this process. Frames cross it on the next clock event rather
 * than synchronously, as on a real wire: a sender is never re-entered by the
 * reply to its own frame.
 */
export function inProcessPort(clock: Clock): { port: PortTransport; station: Station } {
  let ingress: ((frame: Buffer) => void) | null = null;
  let open = true;
  const station: Station = {
    onFrame: null,
    send(frame) {
      if (open) clock.setTimer(0, () => open && ingress?.(frame));
    },
  };
  const port: PortTransport = {
    transmit(frame) {
      if (open) clock.setTimer(0, () => open && station.onFrame?.(frame));
    },
    attach(fn) {
      ingress = fn;
    },
    close() {
      open = false;
    },
  };
  return { port, station };
}
