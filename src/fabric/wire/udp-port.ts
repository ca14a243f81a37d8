/**
 * Ports over UDP on the loopback address (node:dgram), one frame per
 * datagram: a stand-in for unix datagram sockets, which Node cannot open
 * without the native addon, so the switch runs for real across processes.
 */

import * as dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import type { Ingress, PortTransport } from './port.ts';

const HOST = '127.0.0.1';

/**
 * The switch's side: a bound socket. The station's address is learned from
 * the first datagram it sends (frames before that have nowhere to go).
 */
export class UdpSwitchPort implements PortTransport {
  private peer: { port: number; address: string } | null = null;
  private ingress: Ingress | null = null;
  /** Frames transmitted before any station spoke. */
  droppedNoPeer = 0;

  private constructor(private readonly socket: dgram.Socket) {
    socket.on('message', (msg, rinfo) => {
      this.peer = { port: rinfo.port, address: rinfo.address };
      this.ingress?.(msg);
    });
  }

  static async open(port = 0): Promise<UdpSwitchPort> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(port, HOST, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    return new UdpSwitchPort(socket);
  }

  get port(): number {
    return (this.socket.address() as AddressInfo).port;
  }

  transmit(frame: Buffer): void {
    if (!this.peer) {
      this.droppedNoPeer++;
      return;
    }
    this.socket.send(frame, this.peer.port, this.peer.address);
  }

  attach(ingress: Ingress): void {
    this.ingress = ingress;
  }

  close(): void {
    this.socket.close();
  }
}

/** A station's side: a socket connected to one switch port. */
export class UdpStation {
  onFrame: ((frame: Buffer) => void) | null = null;

  private constructor(private readonly socket: dgram.Socket) {
    socket.on('message', (msg) => this.onFrame?.(msg));
  }

  static async connect(switchPort: number): Promise<UdpStation> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.connect(switchPort, HOST, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    return new UdpStation(socket);
  }

  send(frame: Buffer): void {
    this.socket.send(frame);
  }

  close(): void {
    this.socket.close();
  }
}
