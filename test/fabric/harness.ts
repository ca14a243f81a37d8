/**
 * A whole simulated fabric for tests: two link-layer endpoints, A and B, each
 * with `links` ports into one switch, every port behind a fault injector, all
 * on simulated time.
 */

import { type FrameSink, capturePort } from '../../src/fabric/wire/capture.ts';
import { Channel, type ChannelOptions } from '../../src/fabric/link/channel.ts';
import { Receiver, type ReceiverOptions, type ReceiverStats } from '../../src/fabric/link/receiver.ts';
import type { Clock } from '../../src/fabric/clock.ts';
import { FaultyPort } from '../../src/fabric/wire/faults.ts';
import { inProcessPort } from '../../src/fabric/wire/port.ts';
import { seededRng } from '../../src/fabric/rng.ts';
import { SimClock } from '../../src/fabric/sim-clock.ts';
import { EthernetSwitch } from '../../src/fabric/switch/switch.ts';
import { VLAN, macA, macB } from '../../src/fabric/switch/switch-process.ts';

export { VLAN, macA, macB };

export type EndpointOptions = Partial<Omit<ChannelOptions, 'links' | 'send' | 'deliver' | 'clock'>>;

export interface Fabric {
  clock: SimClock;
  sw: EthernetSwitch;
  a: Channel;
  b: Channel;
  /** Fault injectors of A's and B's ports, by link. */
  portsA: FaultyPort[];
  portsB: FaultyPort[];
  gotA: Buffer[];
  gotB: Buffer[];
  close(): void;
}

export function buildFabric(opts: {
  links?: number;
  seed?: number;
  a?: EndpointOptions;
  b?: EndpointOptions;
  onDeliverA?: (p: Uint8Array) => void;
  onDeliverB?: (p: Uint8Array) => void;
  /** Record a port as the switch sees it. */
  capture?: (side: 'a' | 'b', link: number) => FrameSink | undefined;
  /**
   * Hand the channels every frame as a memif station received in place would: transient, in
   * one scratch "slot" that the next frame reuses and that is scribbled over after each call.
   * 'keeping': the application keeps each delivered payload as given (no deliverTransient, so
   * the channel must copy); 'copying': deliverTransient, and the application copies at once.
   */
  inPlace?: 'keeping' | 'copying';
} = {}): Fabric {
  const links = opts.links ?? 1;
  const clock = new SimClock();
  const rng = seededRng(opts.seed ?? 1);
  const sw = new EthernetSwitch({ clock });
  const gotA: Buffer[] = [];
  const gotB: Buffer[] = [];
  const slot = Buffer.alloc(70_000);
  const side = (mine: (i: number) => number, theirs: (i: number) => number, got: Buffer[], o: EndpointOptions | undefined, hook?: (p: Uint8Array) => void) => {
    const ports: FaultyPort[] = [];
    const stations = Array.from({ length: links }, (_, i) => {
      const { port, station } = inProcessPort(clock);
      const faulty = new FaultyPort(port, clock, rng);
      ports.push(faulty);
      const name = mine === macA ? 'a' : 'b';
      const sink = opts.capture?.(name, i);
      const transport = sink ? capturePort(faulty, sink, () => 1_700_000_000_000 + clock.now()) : faulty;
      sw.addPort(transport, { mode: 'trunk', vids: [VLAN.vid] }, `${name}${i}`);
      return station;
    });
    const channel = new Channel({
      channel: 7,
      links: stations.map((_, i) => ({ localMac: mine(i), peerMac: theirs(i), vlan: VLAN })),
      send: (i, frame) => stations[i]!.send(frame),
      deliver: (p) => {
        // Copy: the payload is a view into a frame buffer the test does not own (unless a
        // 'keeping' application is played: then the channel must have made it one it may keep).
        got.push(opts.inPlace === 'keeping' ? Buffer.from(p.buffer, p.byteOffset, p.length) : Buffer.from(p));
        hook?.(p);
      },
      deliverTransient: opts.inPlace === 'copying',
      clock,
      replayTimeout: 1,
      ackDelay: 0.05,
      nakDelay: 0.05,
      heartbeatInterval: 2,
      ...o,
    });
    stations.forEach((s, i) => {
      s.onFrame = opts.inPlace
        ? (f) => {
            const view = slot.subarray(0, f.length);
            view.set(f);
            channel.receive(i, view, false, true);
            view.fill(0xa5);
          }
        : (f) => channel.receive(i, f);
    });
    return { ports, channel };
  };
  const A = side(macA, macB, gotA, opts.a, opts.onDeliverA);
  const B = side(macB, macA, gotB, opts.b, opts.onDeliverB);
  return {
    clock, sw, a: A.channel, b: B.channel, portsA: A.ports, portsB: B.ports, gotA, gotB,
    close() {
      A.channel.close();
      B.channel.close();
      sw.close();
    },
  };
}

/** Small distinct payloads: the index in the first 4 bytes. */
export function numbered(n: number, size = 16): Buffer[] {
  return Array.from({ length: n }, (_, i) => {
    const b = Buffer.alloc(size, i & 0xff);
    b.writeUInt32BE(i, 0);
    return b;
  });
}

/** One link-layer receiver on its own (64 slots, ACK delay 1 ms, NAK delay 3 ms, replay timeout 5 ms), with fresh stats. */
export function lone(o: { clock: Clock; deliver: ReceiverOptions['deliver']; transmit: (r: Receiver, ...a: Parameters<ReceiverOptions['transmit']>) => void }) {
  const stats: ReceiverStats = { txAck: 0, txNak: 0, rxDelivered: 0, rxDuplicate: 0, rxOutOfOrder: 0, rxOutsideWindow: 0, probeAnswersWithheld: 0 };
  const r: Receiver = new Receiver({
    clock: o.clock,
    stats,
    rxSlots: 64,
    ackDelay: 1,
    nakDelay: 3,
    replayTimeout: 5,
    manualRelease: false,
    deliver: o.deliver,
    transmit: (...a) => o.transmit(r, ...a),
    everyLiveLinkPassed: () => false,
  });
  return { r, stats };
}
