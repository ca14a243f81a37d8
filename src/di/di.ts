// src/di — the Device Interface: device models behind PCIeOE ports, one channel per host
// (this file), and the process entry (main.ts). It may import src/common, src/pci,
// src/devices/* and src/fabric; never src/hi (npm run deps).

/**
 * The Device Interface: hosts PciFunctions behind PCIeOE and serves them to
 * host domains, one channel (HI↔DI association) per host.
 *
 * Translation, per function: each function is assigned to one channel and a
 * host-side BDF, the id its host addresses it by.
 *   - Config requests: the completer id picks the function *among those of
 *     the arriving channel*; anything else gets UR and is counted — a host can
 *     never reach another host's function, whatever ids it forges.
 *   - Memory requests: decoded against the BARs (as programmed by that host)
 *     of the channel's functions only; no match → UR (reads) / drop and count
 *     (writes).
 *   - Device DMA and MSI-X go out on the function's channel with the host-side
 *     BDF as requester id (what the host's IOMMU would check) and tags from the
 *     channel's allocator. There is no internal DI bus in this model, so the
 *     "DI-local id → host id" translation collapses to using the host id
 *     directly; completions come back on the same channel and are matched by
 *     tag and requester id.
 *
 * Ordering: requests of one channel are handled strictly in arrival order
 * even when a function answers asynchronously (a later MRd must not pass an
 * earlier MWr): the handlers return a promise while a function is busy, and
 * the channel's PcieoePort holds later requests back; completions bypass that
 * queue, since a function may be waiting for its DMA reads while a BAR write
 * is being handled.
 */

import type { PcieoePort } from '../fabric/pcieoe-port.ts';
import { completionFor, errorCompletionFor, urCompletionFor } from '../fabric/tlp/completion.ts';
import { intxMessage } from '../fabric/tlp/intx.ts';
import {
  CplStatus,
  type ConfigTlp,
  type MemReadTlp,
  type MemWriteTlp,
  type Tlp,
  TlpType,
  isConfigRequest,
  isNonPosted,
} from '../fabric/tlp/tlp.ts';
import { memBarBase } from '../pci/bar.ts';
import { formatBdf } from '../pci/bdf.ts';
import { Cfg, CommandBit } from '../pci/config-space.ts';
import type { FunctionPorts, PciFunction } from '../pci/function.ts';
import type { Logger } from '../common/logger.ts';
import { LogLimiter } from '../common/log-limiter.ts';
import { FabricRequestError, enabledRuns } from '../fabric/tlp/endpoint.ts';


/**
 * Completion timeout for the functions' DMA reads, ms (the DI's ports are
 * opened with it): a failed DMA read fails the guest's I/O, and a loaded TCG
 * host can starve the HI for far more than a second; a host known to be gone
 * fails reads at once (TlpEndpoint.setPeerAlive).
 */
export const DI_COMPLETION_TIMEOUT_MS = 5000;

/** What a function's DMA write resolves to: it was posted. */
const POSTED: Promise<void> = Promise.resolve();

export interface DiOptions {
  /** One port per host (channel). */
  ports: readonly PcieoePort[];
  log?: Logger;
  /** Default 4096. */
  maxReadRequest?: number;
  /** Default 4096. */
  maxPayload?: number;
}

export interface DiStats {
  /** Config requests for a function not assigned to the arriving channel (UR). */
  rejectedConfig: number;
  /** Memory reads that hit no BAR of the channel's functions (UR). */
  unclaimedReads: number;
  /** Memory writes that hit no BAR of the channel's functions (dropped). */
  unclaimedWrites: number;
  /** Type 1 config, messages, I/O: not for an endpoint. */
  unsupported: number;
  /** A function threw on an access (non-posted requests got CA). */
  functionErrors: number;
  /** MSI-X and MSI signals dropped: vector masked or not programmed. */
  msixDropped: number;
  msixSent: number;
}

interface Hosted {
  name: string;
  fn: PciFunction;
  assignment?: { channel: number; hostBdf: number };
}

export class DeviceInterface {
  readonly stats: DiStats = {
    rejectedConfig: 0, unclaimedReads: 0, unclaimedWrites: 0, unsupported: 0, functionErrors: 0, msixDropped: 0, msixSent: 0,
  };
  private readonly functions = new Map<string, Hosted>();
  /** What a host can cause at will (requests it may not make, DMA it fails): counted in stats, a few lines logged a second. */
  private readonly rejectLog = new LogLimiter((m) => this.log('warn', m));
  private readonly channels = new Map<number, PcieoePort>();
  private readonly log: Logger;
  private readonly mrrs: number;
  private readonly mps: number;

  constructor(o: DiOptions) {
    this.log = o.log ?? (() => {});
    for (const port of o.ports) {
      if (this.channels.has(port.id)) throw new Error(`channel ${port.id} given twice`);
      this.channels.set(port.id, port);
      port.serve((tlp) => this.onRequest(port, tlp));
      // The host's HI restarted (or the channel was reset): nothing of the old session may act on the
      // new one (DMA into its memory, interrupts), so its functions start clean, as on a change of hands.
      port.onReset(() => {
        for (const h of this.assignedTo(port)) {
          h.fn.reset();
          this.log('warn', `${h.name}: reset (channel ${port.id} started over)`);
        }
      });
    }
    this.mrrs = o.maxReadRequest ?? 4096;
    this.mps = o.maxPayload ?? 4096;
  }

  addFunction(name: string, fn: PciFunction): void {
    if (this.functions.has(name)) throw new Error(`function ${name} exists already`);
    this.functions.set(name, { name, fn });
  }

  function(name: string): PciFunction | undefined {
    return this.functions.get(name)?.fn;
  }

  channelStats(id: number) {
    return this.channels.get(id)?.endpoint.stats;
  }

  /** Which host holds function `name` (its channel, and the BDF it addresses it as), if any. */
  assignmentOf(name: string): { channel: number; hostBdf: number } | undefined {
    const a = this.functions.get(name)?.assignment;
    return a && { channel: a.channel, hostBdf: a.hostBdf };
  }

  /** Give function `name` to the host on `channel`, which will address it as `hostBdf`. */
  assign(name: string, channel: number, hostBdf: number): void {
    const h = this.functions.get(name);
    if (!h) throw new Error(`no function ${name}`);
    const ch = this.channels.get(channel);
    if (!ch) throw new Error(`no channel ${channel}`);
    for (const other of this.functions.values()) {
      if (other !== h && other.assignment?.channel === channel && other.assignment.hostBdf === hostBdf) {
        throw new Error(`${formatBdf(hostBdf)} on channel ${channel} is ${other.name} already`);
      }
    }
    // A function changing hands starts clean: nothing of the old host's state may leak.
    h.fn.reset();
    h.assignment = { channel, hostBdf };
    h.fn.attach(this.portsFor(h, ch, hostBdf));
    this.log('info', `${h.name} → channel ${channel} as ${formatBdf(hostBdf)}`);
  }

  unassign(name: string): void {
    const h = this.functions.get(name);
    if (!h?.assignment) return;
    h.fn.attach(undefined);
    h.fn.reset();
    h.assignment = undefined;
  }

  close(): void {
    for (const ch of this.channels.values()) ch.close();
    for (const h of this.functions.values()) h.fn.attach(undefined);
  }

  // ---- host → function -----------------------------------------------------

  private onRequest(ch: PcieoePort, tlp: Tlp): void | Promise<void> {
    try {
      if (tlp.type === TlpType.CfgRd0 || tlp.type === TlpType.CfgWr0) return this.config(ch, tlp);
      if (tlp.type === TlpType.MRd32 || tlp.type === TlpType.MRd64) return this.memRead(ch, tlp);
      if (tlp.type === TlpType.MWr32 || tlp.type === TlpType.MWr64) return this.memWrite(ch, tlp);
      // Type 1 config (we are no bridge) and messages: nothing here handles them.
      this.stats.unsupported++;
      if (isNonPosted(tlp)) ch.endpoint.post(urCompletionFor(tlp, 0));
    } catch (err) {
      this.functionError(ch, tlp, err);
    }
  }

  private functionError(ch: PcieoePort, tlp: Tlp, err: unknown): void {
    this.stats.functionErrors++;
    this.log('error', `channel ${ch.id}: function error on TLP type 0x${tlp.type.toString(16)}: ${(err as Error)?.stack ?? String(err)}`);
    if (isNonPosted(tlp)) ch.endpoint.post(errorCompletionFor(tlp, isConfigRequest(tlp) ? tlp.completerId : 0, CplStatus.CA));
  }

  private assignedTo(ch: PcieoePort): Hosted[] {
    const out: Hosted[] = [];
    for (const h of this.functions.values()) if (h.assignment?.channel === ch.id) out.push(h);
    return out;
  }

  private config(ch: PcieoePort, tlp: ConfigTlp): void {
    const h = this.assignedTo(ch).find((x) => x.assignment!.hostBdf === tlp.completerId);
    if (!h) {
      this.stats.rejectedConfig++;
      this.rejectLog.line(() => `channel ${ch.id}: config ${tlp.type === TlpType.CfgRd0 ? 'read' : 'write'} for ${formatBdf(tlp.completerId)}, not assigned to this channel: UR (${this.stats.rejectedConfig} so far)`);
      ch.endpoint.post(urCompletionFor(tlp, tlp.completerId));
      return;
    }
    const offset = tlp.register * 4;
    const inside = offset + 4 <= h.fn.config.size;
    if (tlp.type === TlpType.CfgRd0 || tlp.type === TlpType.CfgRd1) {
      // Beyond a conventional function's 256 bytes reads as zero (no extended capabilities).
      ch.endpoint.post(completionFor(tlp, tlp.completerId, inside ? h.fn.configRead(offset, 4) : new Uint8Array(4)));
      return;
    }
    const data = tlp.type === TlpType.CfgWr0 || tlp.type === TlpType.CfgWr1 ? tlp.data : undefined;
    if (inside && data) for (const [start, len] of enabledRuns(tlp.firstBe, 0, 1)) h.fn.configWrite(offset + start, data.subarray(start, start + len));
    ch.endpoint.post(completionFor(tlp, tlp.completerId));
  }

  /** The function BAR claiming [address, address+length) among the channel's functions. */
  private claim(ch: PcieoePort, address: bigint, length: number): { h: Hosted; bar: number; offset: number } | undefined {
    for (const h of this.assignedTo(ch)) {
      const cs = h.fn.config;
      if (!(cs.get16(Cfg.Command) & CommandBit.Memory)) continue;
      for (let i = 0; i < h.fn.bars.length; i++) {
        const b = h.fn.bars[i];
        if (!b || b.kind === 'io') continue;
        const base = memBarBase(cs, i, b);
        // An unprogrammed BAR decodes nothing.
        if (base === 0n) continue;
        if (address >= base && address + BigInt(length) <= base + BigInt(b.size)) return { h, bar: i, offset: Number(address - base) };
      }
    }
    return undefined;
  }

  private memRead(ch: PcieoePort, tlp: MemReadTlp): void | Promise<void> {
    const span = tlp.length * 4;
    const hit = this.claim(ch, tlp.address, span);
    if (!hit) {
      this.stats.unclaimedReads++;
      ch.endpoint.post(urCompletionFor(tlp, 0));
      return;
    }
    // A zero-length read (no byte enabled) only orders: completeRead does not call read(), so no register is touched.
    return ch.completeRead(tlp, {
      completerId: hit.h.assignment!.hostBdf,
      maxPayload: this.mps,
      read: (first, count) => hit.h.fn.barRead(hit.bar, hit.offset + first, count),
      fail: (err) => this.functionError(ch, tlp, err),
    });
  }

  private memWrite(ch: PcieoePort, tlp: MemWriteTlp): void | Promise<void> {
    const hit = this.claim(ch, tlp.address, tlp.data.length);
    if (!hit) {
      this.stats.unclaimedWrites++;
      return;
    }
    return this.writeRuns(ch, tlp, hit, enabledRuns(tlp.firstBe, tlp.lastBe, tlp.data.length / 4), 0);
  }

  /**
   * The enabled runs of a BAR write from run `i` on, each after the one before has settled (a doorbell:
   * one run, at once). A delivered TLP's data is valid only during its delivery (it may be a view of a
   * ring slot): each run is handed to the function synchronously, which takes what it keeps, and runs
   * still to go when a function answers later are copied first.
   */
  private writeRuns(ch: PcieoePort, tlp: MemWriteTlp, hit: { h: Hosted; bar: number; offset: number }, runs: [number, number][], i: number): void | Promise<void> {
    for (; i < runs.length; i++) {
      const [start, len] = runs[i]!;
      const r = hit.h.fn.barWrite(hit.bar, hit.offset + start, tlp.data.subarray(start, start + len));
      if (r instanceof Promise) {
        const rest = i + 1 < runs.length ? { ...tlp, data: tlp.data.slice() } : tlp;
        return r.then(() => this.writeRuns(ch, rest, hit, runs, i + 1), (err) => this.functionError(ch, rest, err));
      }
    }
  }

  // ---- function → host -----------------------------------------------------

  private portsFor(h: Hosted, ch: PcieoePort, hostBdf: number): FunctionPorts {
    const ep = ch.endpoint;
    const readFailed = (err: unknown): never => {
      if (err instanceof FabricRequestError) this.rejectLog.line(`${h.name}: DMA ${err.message}`);
      throw err;
    };
    return {
      dma: {
        // The read's own promise, with a handler for failures: an async function would add a promise
        // and its steps per 4 KiB piece of a device's read (sixteen per 64 KiB write).
        dmaRead: (addr, length) => {
          try {
            return ep.readMemory(BigInt(addr), length, hostBdf, this.mrrs).catch(readFailed);
          } catch (err) {
            return Promise.reject(err);
          }
        },
        // A scatter list (an NVMe write's pages): every MRd at once, each CplD's data in place, one promise.
        dmaReadInto: (segments, into) => {
          try {
            return ep.readMemoryInto(segments, into, hostBdf, this.mrrs).catch(readFailed);
          } catch (err) {
            return Promise.reject(err);
          }
        },
        // Posted: the MWrs are encoded (the data copied) before this returns, so one settled promise
        // serves every write instead of an async function's own per 4 KiB piece; and the model may
        // reuse `data` once it has settled (its read buffers: Namespace.recycle).
        dmaWrite: (addr, data) => {
          try {
            ep.writeMemory(BigInt(addr), data, hostBdf, this.mps);
          } catch (err) {
            return Promise.reject(err);
          }
          return POSTED;
        },
      },
      irq: {
        msix: (vector) => {
          const e = h.fn.msixEntry(vector);
          if (!e || e.masked || e.address === 0n) {
            // TODO: a masked vector should set its PBA bit and fire on unmask; the HI never masks.
            this.stats.msixDropped++;
            return;
          }
          const data = new Uint8Array(4);
          new DataView(data.buffer).setUint32(0, e.data, true);
          ep.writeMemory(e.address, data, hostBdf, this.mps);
          this.stats.msixSent++;
        },
        msi: (vector) => {
          // Masking is the host's (QEMU emulates the capability for the guest; the HI leaves the mask bits clear).
          const m = h.fn.msiMessage(vector);
          if (!m || m.masked || m.address === 0n) {
            this.stats.msixDropped++;
            return;
          }
          const data = new Uint8Array(4);
          new DataView(data.buffer).setUint16(0, m.data, true);
          ep.writeMemory(m.address, data, hostBdf, this.mps);
          this.stats.msixSent++;
        },
        intx: (asserted) => {
          // A level change of the pin is an Assert/Deassert_INTx message on the function's channel.
          const pin = h.fn.config.get8(Cfg.InterruptPin);
          if (pin >= 1 && pin <= 4) ep.post(intxMessage(hostBdf, pin, asserted));
        },
      },
    };
  }
}
