/**
 * A switch port that is a VXLAN tunnel endpoint (RFC 7348): each Ethernet
 * frame (no FCS) travels to one remote VTEP in a UDP datagram behind an
 * 8-byte VXLAN header, so a lab's switch can span machines and meet standard
 * gear (a Linux `vxlan` device, a hardware VTEP).
 *
 * VXLAN header (RFC 7348 §5), big-endian:
 *
 *   off  size  field
 *    0    1    flags: 0x08 = I, "the VNI is valid"; the other bits reserved
 *    1    3    reserved
 *    4    3    VXLAN Network Identifier (VNI)
 *    7    1    reserved
 *    8    n    inner Ethernet frame
 *
 * Reserved bits are sent as zero and ignored on receipt, as the RFC says.
 * The tunnel is point to point: datagrams from any address but the
 * configured remote VTEP's (any source port), without the I flag, too short,
 * or for another VNI are dropped and counted.
 */

import * as dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import type { Ingress, PortTransport } from './port.ts';

/** IANA-assigned VXLAN UDP port. */
export const VXLAN_PORT = 4789;
export const VXLAN_HEADER_BYTES = 8;
const FLAG_I = 0x08;
const MAX_VNI = 0xff_ffff;

export interface VxlanEndpoint {
  address: string;
  port: number;
}

export interface VxlanPortOptions {
  vni: number;
  /** Local UDP address and port. Default 127.0.0.1, port 0 (any free port). */
  local?: Partial<VxlanEndpoint>;
  /** The remote VTEP; can be set later with setRemote(). */
  remote?: VxlanEndpoint;
}

export interface VxlanCounters {
  rxFrames: number;
  rxBytes: number;
  /** Shorter than a VXLAN header, or without the I flag. */
  rxBadHeader: number;
  rxWrongVni: number;
  /** From an address other than the remote VTEP's. */
  rxForeign: number;
  txFrames: number;
  txBytes: number;
  /** Frames transmitted before a remote VTEP was set. */
  txNoRemote: number;
  txErrors: number;
}

/** The 8-byte header for `vni`. */
export function vxlanHeader(vni: number): Buffer {
  if (!Number.isInteger(vni) || vni < 0 || vni > MAX_VNI) throw new RangeError(`VNI ${vni} is not a 24-bit number`);
  const h = Buffer.alloc(VXLAN_HEADER_BYTES);
  h[0] = FLAG_I;
  h.writeUIntBE(vni, 4, 3);
  return h;
}

export class VxlanPort implements PortTransport {
  readonly counters: VxlanCounters = {
    rxFrames: 0, rxBytes: 0, rxBadHeader: 0, rxWrongVni: 0, rxForeign: 0, txFrames: 0, txBytes: 0, txNoRemote: 0, txErrors: 0,
  };
  /** The header every frame is sent behind: one buffer, sent with the frame as a two-part datagram, no copy. */
  private readonly header: Buffer;
  private ingress: Ingress | null = null;
  private closed = false;
  private lastError: string | null = null;

  private constructor(private readonly socket: dgram.Socket, readonly vni: number, private remote: VxlanEndpoint | null) {
    this.header = vxlanHeader(vni);
    socket.on('message', (msg, rinfo) => this.receive(msg, rinfo));
    // Sending to a closed remote port on loopback reports ECONNREFUSED asynchronously: count it, carry on.
    socket.on('error', (err) => {
      this.counters.txErrors++;
      this.lastError = err.message;
    });
  }

  static async open(options: VxlanPortOptions): Promise<VxlanPort> {
    vxlanHeader(options.vni); // validates the VNI before a socket exists
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(options.local?.port ?? 0, options.local?.address ?? '127.0.0.1', () => {
        socket.off('error', reject);
        resolve();
      });
    });
    return new VxlanPort(socket, options.vni, options.remote ?? null);
  }

  /** This VTEP's bound address and UDP port. */
  get local(): VxlanEndpoint {
    const a = this.socket.address() as AddressInfo;
    return { address: a.address, port: a.port };
  }

  /** The remote VTEP frames go to, if set. */
  get remoteVtep(): VxlanEndpoint | null {
    return this.remote;
  }

  get error(): string | null {
    return this.lastError;
  }

  setRemote(remote: VxlanEndpoint | null): void {
    this.remote = remote;
  }

  attach(ingress: Ingress): void {
    this.ingress = ingress;
  }

  transmit(frame: Buffer): void {
    if (this.closed) return;
    if (!this.remote) {
      this.counters.txNoRemote++;
      return;
    }
    this.counters.txFrames++;
    this.counters.txBytes += frame.length;
    this.socket.send([this.header, frame], this.remote.port, this.remote.address);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
  }

  private receive(msg: Buffer, from: dgram.RemoteInfo): void {
    const c = this.counters;
    // Only the address: VTEPs pick the UDP source port per flow (RFC 7348 §5 recommends a hash of the inner headers).
    if (!this.remote || from.address !== this.remote.address) {
      c.rxForeign++;
      return;
    }
    if (msg.length < VXLAN_HEADER_BYTES || (msg[0]! & FLAG_I) === 0) {
      c.rxBadHeader++;
      return;
    }
    if (msg.readUIntBE(4, 3) !== this.vni) {
      c.rxWrongVni++;
      return;
    }
    c.rxFrames++;
    c.rxBytes += msg.length - VXLAN_HEADER_BYTES;
    this.ingress?.(msg.subarray(VXLAN_HEADER_BYTES));
  }
}
