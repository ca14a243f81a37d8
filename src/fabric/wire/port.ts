// src/fabric/wire — Ethernet frames and what carries them: the PCIeOE frame codec, the port
// interface (this file) and its transports (unix datagram, UDP, VXLAN, memif in memif/), fault injection,
// capture and pcap. It may import src/common, native/ and src/fabric's own files (clock, rng).

/**
 * How the switch meets a wire: a port transport carries whole Ethernet frames
 * (no FCS) between the switch and one station. Transports, fault injection and
 * capture all implement this one interface so they stack.
 */

import type { Clock } from '../clock.ts';
import { type OutgoingFrame, encodeFrame } from './frame.ts';

/**
 * Where a transport hands each frame it received. `crcChecked`: the transport found the
 * frame's PCIeOE CRC good while copying it in (frame.ts copyCheckedFrame), so decodeFrame
 * need not read it again; absent or false, nothing is vouched for. `transient`: the frame is
 * a view of the transport's own memory (a memif ring slot), valid only during this call, the
 * slot being the peer's again once it returns; given only to an ingress attached `inPlace`.
 */
export type Ingress = (frame: Buffer, crcChecked?: boolean, transient?: boolean) => void;

export interface PortTransport {
  /** A frame leaving the switch toward the station. The transport must not modify it. */
  transmit(frame: Buffer): void;
  /**
   * A PCIeOE frame given as header and payload, for a transport that encodes it where it
   * sends it (memif: into the ring slot, no copy of the frame in between). Optional: see
   * transmitFrame() below for the others.
   */
  transmitFrame?(frame: OutgoingFrame): void;
  /**
   * Called once by the switch with its ingress handler. `inPlace`: the ingress copies
   * whatever it keeps of a frame past the call, so the transport may hand it views of its
   * own memory (`transient`) instead of a copy per frame. Default false.
   */
  attach(ingress: Ingress, inPlace?: boolean): void;
  close(): void;
}

/** Send a PCIeOE frame on `port`: encoded by the transport where it can, else encoded here and transmitted. */
export function transmitFrame(port: PortTransport, frame: OutgoingFrame): void {
  if (port.transmitFrame) port.transmitFrame(frame);
  else port.transmit(encodeFrame(frame, frame.payload));
}

/** The station's end of an in-process port. */
export interface Station {
  send(frame: Buffer): void;
  /** A PCIeOE frame given as header and payload (PortTransport.transmitFrame); optional. */
  sendFrame?(frame: OutgoingFrame): void;
  onFrame: Ingress | null;
  /** onFrame copies what it keeps past the call, so it may be given transient frames (PortTransport.attach's inPlace). Default false. */
  onFrameInPlace?: boolean;
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
