/** A PortTransport wrapper that records both directions of a port, as the switch sees them. */

import type { PortTransport } from './port.ts';

export interface FrameSink {
  write(frame: Uint8Array, timeMs?: number): void;
}

export function capturePort(inner: PortTransport, sink: FrameSink, now: () => number = Date.now): PortTransport {
  return {
    transmit(frame) {
      sink.write(frame, now());
      inner.transmit(frame);
    },
    attach(ingress) {
      inner.attach((frame) => {
        sink.write(frame, now());
        ingress(frame);
      });
    },
    close() {
      inner.close();
    },
  };
}
