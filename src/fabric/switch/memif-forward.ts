/**
 * The switch's fast path from memif ports to memif ports, in native code
 * (native/src/memif-forward.cc): a burst on a port's receive ring goes to the destination
 * ports' transmit rings in one call, each frame copied slot to slot once, the destination's
 * eventfd written once and only when its consumer sleeps. At QD 1 every frame of an I/O
 * crosses the switch on the critical path, and in JavaScript a forward cost a copy out of the
 * ring, the core's lookup, a queue, a microtask and a copy into the other ring, with caches
 * cooled by the other processes in between.
 *
 * The JavaScript core (switch.ts) stays the switch: it installs a route each time it forwards
 * a known unicast frame unchanged between two memif server ports (FastPath.route), valid while
 * the destination's table entry is fresh, and drops them all when its table or a binding
 * changes. Native code takes only frames that match a route exactly — same ingress port,
 * source, destination and tag — and stops at the first frame it cannot forward, leaving it and
 * every later one on the ring for the port's ordinary receive pass, in order. It never writes
 * to a port whose JS side holds frames for it (queued behind a full ring, faults, a capture),
 * so a frame handed to JavaScript is never overtaken by a later one. Malformed descriptors are
 * left to the JS pass too, which cuts the peer off as before.
 *
 * Traced runs (PCIEOE_TRACE) keep to the JavaScript path, whose events the trace is made of.
 */

import { type MemifForwarder as NativeForwarder, native } from '../../../native/index.ts';
import type { Clock } from '../clock.ts';
import { TRACING } from '../trace.ts';
import type { Mac } from '../wire/mac.ts';
import type { MemifPort } from '../wire/memif/port.ts';
import type { MemifRing } from '../wire/memif/ring.ts';
import type { FastPath } from './switch.ts';
import type { PortPath } from './port-path.ts';

/**
 * Counters per port in the native array: rxFrames, rxBytes, txFrames, txBytes, txSignals, rxWakes,
 * then the loss's decisions: rxLost, rxPassed (frames in from the station), txLost, txPassed (out to it).
 */
const COUNTERS = 10;
const MAX_PORTS = 256;
/** Routes held (one per source, destination and tag seen); beyond them frames take the JS path. */
const MAX_ROUTES = 256;
/** A route's validity is renewed in native code only when it grows by more than this (ms): not per JS frame. */
const RENEW_MS = 1000;

interface Slot {
  /** Index in the native forwarder. */
  readonly i: number;
  readonly port: MemifPort;
  readonly path: PortPath;
  /** The rings registered in native code now (compared by identity with the session's). */
  rx: MemifRing | null;
  tx: MemifRing | null;
}

interface Route {
  /** Switch port id of `from`. */
  fromId: number;
  from: number;
  to: number;
  src: Mac;
  dst: Mac;
  tag: number;
  vid: number;
  until: number;
}

export interface NativeCounts {
  rxFrames: number;
  rxBytes: number;
  txFrames: number;
  txBytes: number;
  txSignals: number;
  /** Wake-ups of the port served in native code, JavaScript not entered. */
  rxWakes: number;
  /** Frames native code dropped for the port's loss, and let pass, in from its station (rx) and out to it (tx). */
  rxLost: number;
  rxPassed: number;
  txLost: number;
  txPassed: number;
}

export class MemifForwarding implements FastPath {
  private readonly counts = new Float64Array(new ArrayBuffer(MAX_PORTS * COUNTERS * 8));
  private readonly hits = new Float64Array(new ArrayBuffer(MAX_ROUTES * 8));
  /** Port i's transmit ring may be written by native code (registered, bypassable, nothing of its own queued in JS). */
  private readonly open = new Uint8Array(MAX_PORTS);
  /** Port i's loss probability in from its station (2i) and out to it (2i + 1), applied in native code. */
  private readonly loss = new Float64Array(MAX_PORTS * 2);
  private readonly forwarder: NativeForwarder;
  /** By switch port id. */
  private readonly slots = new Map<number, Slot>();
  private readonly list: Slot[] = [];
  private routes: Route[] = [];
  /** Destination MAC → indexes of its routes. */
  private byDst = new Map<Mac, number[]>();

  /**
   * `forwarded`: called after a call that forwarded frames (the busy poller's kick). Without it,
   * each port's wake-ups are served in native code (native.MemifForwardPoll), entering JavaScript
   * only for frames native code leaves; with it they all come here, so the poller sees them.
   */
  constructor(
    private readonly clock: Clock,
    private readonly forwarded: (() => void) | null = null,
    /** Seeds native code's own randomness for loss (the switch's --seed). */
    seed = 0,
  ) {
    this.forwarder = new native.MemifForwarder(MAX_PORTS, MAX_ROUTES, this.counts, this.hits, this.open, this.loss, seed);
  }

  /** Switch port `id` is memif server `port` behind `path`: its frames may take the fast path. */
  add(id: number, port: MemifPort, path: PortPath): void {
    if (port.role !== 'server' || TRACING || this.list.length >= MAX_PORTS) return;
    const slot: Slot = { i: this.list.length, port, path, rx: null, tx: null };
    this.slots.set(id, slot);
    this.list.push(slot);
    port.rxBypass = (ring, max) => this.forward(slot, ring, max);
    if (this.forwarded === null) port.rxPoller = (fd, onReadable) => new native.MemifForwardPoll(this.forwarder, slot.i, fd, onReadable);
    // Frames for the port through JavaScript, or faults (loss aside) or a capture on it: native code keeps off
    // its ring until a receive pass here has looked again (forward() below), so nothing overtakes them.
    path.held = () => {
      this.open[slot.i] = 0;
    };
  }

  /** Native counts of switch port `id`, or null if it is not a fast-path port. */
  counters(id: number): NativeCounts | null {
    const s = this.slots.get(id);
    if (s === undefined) return null;
    const c = this.counts;
    const o = s.i * COUNTERS;
    return {
      rxFrames: c[o]!, rxBytes: c[o + 1]!, txFrames: c[o + 2]!, txBytes: c[o + 3]!, txSignals: c[o + 4]!, rxWakes: c[o + 5]!,
      rxLost: c[o + 6]!, rxPassed: c[o + 7]!, txLost: c[o + 8]!, txPassed: c[o + 9]!,
    };
  }

  route(from: number, to: number, src: Mac, dst: Mac, tag: number, vid: number, until: number): void {
    const a = this.slots.get(from);
    const b = this.slots.get(to);
    if (a === undefined || b === undefined) return;
    let ks = this.byDst.get(dst);
    for (const k of ks ?? []) {
      const r = this.routes[k]!;
      if (r.from !== a.i || r.src !== src || r.tag !== tag) continue;
      if (r.to === b.i && until <= r.until + RENEW_MS) return;
      r.to = b.i;
      r.until = until;
      this.forwarder.setRoute(k, r.from, src, dst, tag, r.to, until);
      return;
    }
    if (this.routes.length >= MAX_ROUTES) return;
    const k = this.routes.length;
    this.routes.push({ fromId: from, from: a.i, to: b.i, src, dst, tag, vid, until });
    if (ks === undefined) this.byDst.set(dst, (ks = []));
    ks.push(k);
    this.forwarder.setRoute(k, a.i, src, dst, tag, b.i, until);
  }

  seen(visit: (vid: number, port: number, mac: Mac, at: number) => void): void {
    for (let k = 0; k < this.routes.length; k++) {
      const at = this.hits[k]!;
      if (at === 0) continue;
      const r = this.routes[k]!;
      visit(r.vid, r.fromId, r.src, at);
    }
  }

  invalidate(): void {
    if (this.routes.length === 0) return;
    this.routes = [];
    this.byDst = new Map();
    this.forwarder.clearRoutes();
  }

  /** Port `s`'s receive pass: forward what native code can, before the rest is copied out. */
  private forward(s: Slot, ring: MemifRing, max: number): number {
    // Wake-ups served natively moved the ring's tail, the server's published position, past what they took.
    ring.position = ring.tail;
    if (this.routes.length === 0 || !s.path.bypassable) return 0;
    if (s.rx !== ring) {
      this.forwarder.setRx(s.i, ring.bytes, ring.regions);
      s.rx = ring;
    }
    // Which ports native code may write now: their rings registered as they are this turn, nothing
    // of theirs waiting in JS; and each port's loss as set now (a change closed the port until here).
    for (const o of this.list) {
      this.loss[2 * o.i] = o.path.loss('toSwitch');
      this.loss[2 * o.i + 1] = o.path.loss('toStation');
      const tx = o.port.txRing;
      if (tx !== o.tx) {
        if (tx === null) this.forwarder.setTx(o.i, null);
        else this.forwarder.setTx(o.i, tx.bytes, tx.regions, o.port.txEventFd);
        o.tx = tx;
      }
      this.open[o.i] = tx !== null && o.path.bypassable && o.port.txWaiting === 0 ? 1 : 0;
    }
    const r = this.forwarder.forward(s.i, ring.position, max, this.clock.now());
    const n = Math.floor(r / 65536);
    if (n === 0) return 0;
    ring.position = r;
    this.forwarded?.();
    return n;
  }
}
