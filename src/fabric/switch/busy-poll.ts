/**
 * Adaptive busy polling for a forwarding process, as NAPI or a DPDK switch
 * does it: while frames keep coming, the event loop polls its sockets without
 * sleeping; after `windowUs` with nothing received it sleeps in epoll again.
 *
 * Why: on these machines (nested virtualization) a CPU that went idle takes
 * tens of microseconds to wake for the next datagram, and a switch in the
 * middle of every round trip pays that once per burst in each direction.
 * Polling costs a whole CPU while traffic flows, so it is for a switch that
 * owns a CPU (the fabric bench's spread placement), not for one sharing two
 * cores with TCG guests.
 *
 * A pending zero timer (realClock: a setImmediate) makes libuv poll with a
 * zero timeout, so the port sockets' readiness callbacks keep firing while
 * the loop spins.
 */

import type { Clock } from '../clock.ts';
import type { PortTransport } from '../wire/port.ts';

export class BusyPoller {
  private spinning = false;
  private active = false;
  private idleSince = 0;
  private closed = false;

  constructor(
    private readonly windowUs: number,
    private readonly clock: Clock,
  ) {
    if (!(windowUs > 0)) throw new RangeError(`busy-poll window must be > 0 µs, got ${windowUs}`);
  }

  /** Whether the loop is being kept from sleeping. */
  get polling(): boolean {
    return this.spinning;
  }

  /** Something arrived: keep (or start) spinning. */
  kick(): void {
    this.active = true;
    if (this.spinning || this.closed) return;
    this.spinning = true;
    this.idleSince = this.clock.now();
    this.clock.setTimer(0, this.spin);
  }

  /** Wrap a port so that every frame it receives kicks the poller. */
  watch(port: PortTransport): PortTransport {
    return {
      transmit: (frame) => port.transmit(frame),
      attach: (ingress) =>
        port.attach((frame) => {
          this.kick();
          ingress(frame);
        }),
      close: () => port.close(),
    };
  }

  close(): void {
    this.closed = true;
  }

  private readonly spin = (): void => {
    const now = this.clock.now();
    if (this.active) {
      this.active = false;
      this.idleSince = now;
    } else if (this.closed || (now - this.idleSince) * 1000 > this.windowUs) {
      this.spinning = false;
      return;
    }
    this.clock.setTimer(0, this.spin);
  };
}
