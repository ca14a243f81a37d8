// Interrupt wiring from SET_IRQS (VFIO_DEVICE_SET_IRQS semantics over a socket).
//
// Each IRQ index (INTx, MSI, MSI-X, ERR, REQ) has `count` vectors. A vector
// is delivered by writing 1 to the eventfd the client gave for it. A maskable
// index can be masked per vector with ACTION_MASK/UNMASK. Message interrupts
// (MSI, MSI-X) are edges: one that fires while masked is held as pending and
// sent on unmask, like the PBA of MSI-X. QEMU never masks them here (it
// emulates both capabilities itself). INTx is a level, automasked as in VFIO:
// after it fires it stays masked until the client unmasks it, and at unmask
// only a level still asserted fires again (the device answers `unmasked`), so
// nothing is kept pending for it.
//
// Signalling must never block the event loop, nor throw into device code: so
// SET_IRQS takes only eventfds opened for writing in non-blocking mode (QEMU's
// are); native.eventfdWrite never blocks even when the client turns the shared
// fd blocking later (a full counter just takes no more: the client has a
// wake-up pending); a write that still fails drops that interrupt with a log
// line rather than throwing.
import { readFileSync, readlinkSync } from 'node:fs';
import { native } from '../../native/index.ts';
import { Errno, IrqInfoFlag, IrqSetFlag, ProtocolError, type IrqSet } from './protocol.ts';

export interface IrqIndexDesc {
  count: number;
  /** IrqInfoFlag bits reported by GET_IRQ_INFO. */
  flags: number;
}

interface Vector {
  fd: number; // -1 when none assigned
  masked: boolean;
  pending: boolean;
}

export interface IrqEvents {
  /** Eventfds of an index were (de)assigned. */
  wiringChanged?(index: number): void;
  /** A vector was unmasked (an INTx source still asserted should fire again). */
  unmasked?(index: number, vector: number): void;
  /** Writing a vector's eventfd failed; the interrupt is lost. */
  signalFailed?(index: number, vector: number, err: Error): void;
}

export class IrqTable {
  private readonly vectors: Vector[][];

  constructor(readonly descs: readonly IrqIndexDesc[], private readonly events: IrqEvents = {}) {
    this.vectors = descs.map((d) => Array.from({ length: d.count }, () => ({ fd: -1, masked: false, pending: false })));
  }

  /** Vectors of `index` that have an eventfd. */
  enabledCount(index: number): number {
    return this.vectors[index]?.filter((v) => v.fd >= 0).length ?? 0;
  }

  isWired(index: number, vector: number): boolean {
    return (this.vectors[index]?.[vector]?.fd ?? -1) >= 0;
  }

  /**
   * Signals a vector. Returns true when an eventfd was written; a masked
   * vector becomes pending instead, a vector without eventfd is dropped.
   */
  trigger(index: number, vector: number): boolean {
    const v = this.vectors[index]?.[vector];
    if (!v || v.fd < 0) return false;
    if (v.masked) {
      if (!this.isLevel(index)) v.pending = true;
      return false;
    }
    try {
      native.eventfdWrite(v.fd);
    } catch (err) {
      this.events.signalFailed?.(index, vector, err as Error);
      return false;
    }
    if (this.descs[index]!.flags & IrqInfoFlag.Automasked) v.masked = true;
    return true;
  }

  /** Whether a vector fired while masked and waits for its unmask. */
  isPending(index: number, vector: number): boolean {
    return this.vectors[index]?.[vector]?.pending ?? false;
  }

  /** SET_IRQS. Takes ownership of `fds` (kept, or closed on error). */
  set(req: IrqSet, fds: number[]): void {
    try {
      this.apply(req, fds);
    } catch (err) {
      for (const fd of fds.splice(0)) native.close(fd);
      throw err;
    }
  }

  /** Closes every eventfd (client gone, or device reset by the client). */
  clear(): void {
    this.vectors.forEach((vs, index) => {
      let changed = false;
      for (const v of vs) {
        if (v.fd >= 0) {
          native.close(v.fd);
          changed = true;
        }
        Object.assign(v, { fd: -1, masked: false, pending: false });
      }
      if (changed) this.events.wiringChanged?.(index);
    });
  }

  private apply(req: IrqSet, fds: number[]): void {
    const desc = this.descs[req.index];
    if (!desc) throw new ProtocolError(Errno.EINVAL, `SET_IRQS: no IRQ index ${req.index}`);
    const data = req.flags & IrqSetFlag.DataMask;
    const action = req.flags & IrqSetFlag.ActionMaskAll;
    if ((req.flags & ~(IrqSetFlag.DataMask | IrqSetFlag.ActionMaskAll)) !== 0) throw new ProtocolError(Errno.EINVAL, `SET_IRQS: unknown flags 0x${req.flags.toString(16)}`);
    if (!isSingleBit(data) || !isSingleBit(action)) throw new ProtocolError(Errno.EINVAL, `SET_IRQS: flags 0x${req.flags.toString(16)} need exactly one DATA and one ACTION bit`);
    if (data !== IrqSetFlag.DataEventfd && fds.length > 0) throw new ProtocolError(Errno.EINVAL, `SET_IRQS: ${fds.length} unexpected fd(s) without DATA_EVENTFD`);
    const vs = this.vectors[req.index]!;

    // VFIO: DATA_NONE + TRIGGER with count 0 disables the whole index.
    if (req.count === 0) {
      if (data !== IrqSetFlag.DataNone || action !== IrqSetFlag.ActionTrigger) throw new ProtocolError(Errno.EINVAL, 'SET_IRQS: count 0 is only valid with DATA_NONE|ACTION_TRIGGER');
      this.disable(req.index, 0, vs.length);
      return;
    }
    if (req.start + req.count > vs.length) throw new ProtocolError(Errno.EINVAL, `SET_IRQS: vectors ${req.start}..${req.start + req.count - 1} beyond index ${req.index}'s ${vs.length}`);

    if (data === IrqSetFlag.DataEventfd) {
      if (action !== IrqSetFlag.ActionTrigger) throw new ProtocolError(Errno.ENOTSUP, 'SET_IRQS: eventfds are supported for ACTION_TRIGGER only');
      // QEMU sends either one fd per vector, or none to de-assign a run.
      if (fds.length === 0) {
        this.disable(req.index, req.start, req.count);
        return;
      }
      if (fds.length !== req.count) throw new ProtocolError(Errno.EINVAL, `SET_IRQS: ${fds.length} fd(s) for count ${req.count}`);
      fds.forEach((fd, i) => {
        const problem = eventfdProblem(fd);
        if (problem) throw new ProtocolError(Errno.EINVAL, `SET_IRQS: fd for vector ${req.start + i} ${problem}`);
      });
      fds.forEach((fd, i) => {
        const v = vs[req.start + i]!;
        if (v.fd >= 0) native.close(v.fd);
        Object.assign(v, { fd, masked: false, pending: false });
      });
      fds.length = 0; // now owned by the table
      this.events.wiringChanged?.(req.index);
      return;
    }

    if ((action === IrqSetFlag.ActionMask || action === IrqSetFlag.ActionUnmask) && !(desc.flags & IrqInfoFlag.Maskable)) {
      throw new ProtocolError(Errno.EINVAL, `SET_IRQS: IRQ index ${req.index} is not maskable`);
    }
    for (let i = 0; i < req.count; i++) {
      if (data === IrqSetFlag.DataBool && req.bools![i] === 0) continue;
      const n = req.start + i;
      const v = vs[n]!;
      if (action === IrqSetFlag.ActionTrigger) {
        // A data-less trigger: the client asks the server to signal the vector.
        this.trigger(req.index, n);
      } else if (action === IrqSetFlag.ActionMask) {
        v.masked = true;
      } else {
        v.masked = false;
        if (v.pending) {
          v.pending = false;
          this.trigger(req.index, n);
        }
        this.events.unmasked?.(req.index, n);
      }
    }
  }

  private disable(index: number, start: number, count: number): void {
    const vs = this.vectors[index]!;
    for (let n = start; n < start + count; n++) {
      const v = vs[n]!;
      if (v.fd >= 0) native.close(v.fd);
      Object.assign(v, { fd: -1, masked: false, pending: false });
    }
    this.events.wiringChanged?.(index);
  }

  private isLevel(index: number): boolean {
    return (this.descs[index]!.flags & IrqInfoFlag.Automasked) !== 0;
  }
}

const O_ACCMODE = 0o3;
const O_RDONLY = 0;
const O_NONBLOCK = 0o4000;

/** Why `fd` cannot carry interrupts, or undefined when it is a writable non-blocking eventfd. */
export function eventfdProblem(fd: number): string | undefined {
  let target: string;
  let flags: number;
  try {
    target = readlinkSync(`/proc/self/fd/${fd}`);
    const line = /^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
    if (!line) return 'has no flags in fdinfo';
    flags = parseInt(line[1]!, 8);
  } catch (err) {
    return `cannot be inspected: ${(err as Error).message}`;
  }
  if (target !== 'anon_inode:[eventfd]') return `is not an eventfd (${target})`;
  if ((flags & O_ACCMODE) === O_RDONLY) return 'is a read-only eventfd';
  if (!(flags & O_NONBLOCK)) return 'is a blocking eventfd (signalling it could block the server)';
  return undefined;
}

function isSingleBit(x: number): boolean {
  return x !== 0 && (x & (x - 1)) === 0;
}
