/**
 * A switch port's way between its transport and the switch core: through the fault injector
 * (wire/faults.ts) and the capture (wire/capture.ts), or straight past both while the port has
 * neither, as it has in every lab run and benchmark that sets no faults. At queue depth 1 each
 * frame's trip through the switch is on the critical path of an I/O, and the two wrappers cost
 * a clock read, a capture sink call and a closure per frame each way.
 *
 * A port with faults keeps to the injector until they are all cleared and the last frame it held
 * back (latency, rate, jitter) has left: a frame let past those would overtake them. Loss alone
 * holds nothing back, so a path past the injector that drops frames with the same probability
 * (the switch's native forward, memif-forward.ts) may carry the port's frames meanwhile. Then it goes
 * straight again, so a benchmark that sets faults for one case and clears them measures the next
 * on the switch's fast path, as a lab that never set any. A capture may come and go: it holds
 * nothing back.
 */

import type { Clock } from '../clock.ts';
import type { Rng } from '../rng.ts';
import { capturePort, type FrameSink } from '../wire/capture.ts';
import { type Direction, type FaultConfig, type FineTimer, FaultyPort } from '../wire/faults.ts';
import type { Ingress, PortTransport } from '../wire/port.ts';

export class PortPath implements PortTransport {
  readonly faults: FaultyPort;
  private readonly wrapped: PortTransport;
  /** What the fault injector gave the transport as its receiver (it attaches in its constructor). */
  private toInjector: Ingress | null = null;
  private straight = true;
  private direct = true;

  /** `capturing`: whether frames of this port are being recorded now (asked again by update()); `fineTimer`: see FaultyPort. */
  constructor(
    private readonly transport: PortTransport,
    clock: Clock,
    rng: Rng,
    sink: FrameSink,
    private readonly capturing: () => boolean,
    fineTimer?: () => FineTimer,
  ) {
    const inner: PortTransport = {
      transmit: (frame) => transport.transmit(frame),
      attach: (ingress) => {
        this.toInjector = ingress;
      },
      close: () => transport.close(),
    };
    this.faults = new FaultyPort(inner, clock, rng, fineTimer);
    this.faults.onSettled = () => this.update();
    this.wrapped = capturePort(this.faults, sink);
    this.update();
  }

  /**
   * Called for every frame given to the port here, and whenever its path may have changed: a
   * fast path past the switch (memif-forward.ts) stops writing to the port until it looks again.
   */
  held: (() => void) | null = null;

  /** Whether frames go straight between transport and switch now. */
  get isStraight(): boolean {
    return this.straight;
  }

  /**
   * Whether a path past the injector (the switch's native forward) may carry this port's frames
   * now: no capture, nothing held, and no fault but loss, which that path applies itself with
   * the probabilities `loss` gives.
   */
  get bypassable(): boolean {
    return this.direct;
  }

  /** The loss probability of each direction (toSwitch: frames in from the station; toStation: out to it). */
  loss(direction: Direction): number {
    return this.faults.config(direction).loss;
  }

  /** Faults for one direction, or both (see FaultyPort.set); every frame passes the injector until they are cleared and it holds none. */
  setFaults(faults: Partial<FaultConfig>, direction?: Direction): void {
    this.faults.set(faults, direction);
    this.update();
  }

  /** A capture of this port started or stopped, faults changed, or the injector let its last held frame go. */
  update(): void {
    const capturing = this.capturing();
    this.straight = !this.faults.faulty && !this.faults.holding && !capturing;
    this.direct = this.faults.dropsOnly && !capturing;
    this.held?.();
  }

  transmit(frame: Buffer): void {
    this.held?.();
    if (this.straight) this.transport.transmit(frame);
    else this.wrapped.transmit(frame);
  }

  attach(ingress: Ingress): void {
    this.wrapped.attach(ingress);
    this.transport.attach((frame, crcChecked) => (this.straight ? ingress(frame, crcChecked) : this.toInjector?.(frame, crcChecked)));
  }

  close(): void {
    this.wrapped.close();
  }
}
