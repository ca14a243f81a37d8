// src/hi — the Host Interface: remote functions (EEPs) served to QEMU over vfio-user, the
// control endpoint, and the process entry (main.ts). It may import src/common, src/pci,
// src/vfio-user, src/direct-attach and src/fabric; never src/di (npm run deps).

/**
 * The Host Interface: the host side of PCIeOE for one VM. It is handed one
 * PcieoePort per DI it talks to and makes one RemoteFunction (EEP) per remote
 * function the VM uses; `serve()` puts an EEP on a vfio-user socket for QEMU.
 *
 * Requests arriving from the fabric are the functions' bus-master traffic:
 *   - an MWr into an EEP's MSI window → that vector's eventfd;
 *   - an Assert/Deassert_INTx message → the INTx level of the EEP that sent it;
 *   - other MRd/MWr → guest memory of the EEP whose remote BDF is the
 *     requester id (the HI's IOMMU, in effect: a function reaches only its own
 *     guest's memory, and only what QEMU mapped);
 *   - anything else (config requests, messages, unknown requesters) is
 *     counted; non-posted ones get UR.
 * Every request is handled within its delivery (the handler never returns a
 * promise) and a TLP's data is used only there: it may be a view of a ring slot
 * valid only during the call, so it is copied straight into guest memory (or,
 * behind DMA_WRITE messages still under way, into a copy queued for them).
 *
 * Each channel's address space is the HI's: BARs of the channel's functions
 * get addresses from its AddressWindow, MSI windows sit at 0xFEE0_0000 (the
 * x86 interrupt range, never guest RAM, so never a DMA target).
 */

import type { PcieoePort } from '../fabric/pcieoe-port.ts';
import { urCompletionFor } from '../fabric/tlp/completion.ts';
import { intxLevel } from '../fabric/tlp/intx.ts';
import { type Tlp, TlpType, isMessage, isNonPosted } from '../fabric/tlp/tlp.ts';
import { formatBdf } from '../pci/bdf.ts';
import { VfioUserServer } from '../vfio-user/server.ts';
import type { Logger } from '../common/logger.ts';
import { AddressWindow, RemoteFunction } from './remote-function/index.ts';
import type { TlpEndpoint } from '../fabric/tlp/endpoint.ts';

/**
 * Completion timeout for config and BAR reads, ms (the HI's ports are opened
 * with it unless told otherwise; it must stay well under QEMU's 5 s): under
 * TCG a starved DI or a replay after a cut link can take several hundred ms,
 * and a host driver takes an all-ones status register for a dead device. A DI
 * known to be gone (all links silent) fails reads at once instead
 * (TlpEndpoint.setPeerAlive).
 */
export const HI_COMPLETION_TIMEOUT_MS = 2000;

export interface HiOptions {
  /** One port per DI (channel). */
  ports: readonly PcieoePort[];
  log?: Logger;
  /** The HI's requester/completer id (a root complex: 00:00.0). */
  hiId?: number;
}

export interface HiStats {
  /** Bus-master requests from a requester id no EEP on the channel has. */
  unknownRequester: number;
  /** Requests a host does not take from a device (config, messages). */
  unsupported: number;
}

const MSI_BASE = 0xfee0_0000n;
/** Per EEP: up to 2048 MSI-X vectors of 4 bytes each, then the MSI address (remote-function/interrupts.ts MSI_OFFSET). */
const MSI_STRIDE = 0x4000n;
const MSI_LIMIT = 0xfef0_0000n;

interface ChannelState {
  port: PcieoePort;
  window: AddressWindow;
  eeps: RemoteFunction[];
}

export class HostInterface {
  readonly stats: HiStats = { unknownRequester: 0, unsupported: 0 };
  private readonly channels = new Map<number, ChannelState>();
  private readonly log: Logger;
  private readonly hiId: number;
  private nextMsi = MSI_BASE;

  constructor(o: HiOptions) {
    this.log = o.log ?? (() => {});
    this.hiId = o.hiId ?? 0;
    for (const port of o.ports) {
      if (this.channels.has(port.id)) throw new Error(`channel ${port.id} given twice`);
      const state: ChannelState = {
        port,
        // 32-bit BARs in 3-3.75 GiB, 64-bit ones from 512 GiB: the channel's own space at the DI.
        window: new AddressWindow({ base32: 0xc000_0000n, limit32: 0xf000_0000n, base64: 0x80_0000_0000n, limit64: 0x100_0000_0000n }),
        eeps: [],
      };
      this.channels.set(port.id, state);
      // onRequest uses a request's data before it returns: DMA writes land (or are copied to wait), MSIs are read.
      port.serve((tlp) => this.onRequest(state, tlp), { dataInCall: true });
      // A DI that restarted (or a channel reset) left its functions unprogrammed: program them again.
      port.onReset(() => {
        for (const eep of state.eeps) eep.reprogram();
      });
    }
  }

  /** The TLP endpoint of channel `id` (the control socket forges requests on it). */
  endpoint(id: number): TlpEndpoint | undefined {
    return this.channels.get(id)?.port.endpoint;
  }

  /** Enumerate the function at `remoteBdf` behind `channel` and make it an EEP. */
  async addEep(name: string, channel: number, remoteBdf: number, o: { hideMsix?: boolean; carryIntx?: boolean } = {}): Promise<RemoteFunction> {
    const ch = this.channels.get(channel);
    if (!ch) throw new Error(`no channel ${channel}`);
    if (ch.eeps.some((e) => e.remoteBdf === remoteBdf)) throw new Error(`${formatBdf(remoteBdf)} on channel ${channel} is an EEP already`);
    if (this.nextMsi + MSI_STRIDE > MSI_LIMIT) throw new Error('MSI window exhausted');
    const msiBase = this.nextMsi;
    this.nextMsi += MSI_STRIDE;
    let eep: RemoteFunction;
    try {
      eep = await RemoteFunction.enumerate({ name, endpoint: ch.port.endpoint, hiId: this.hiId, remoteBdf, window: ch.window, msiBase, log: this.log, ...o });
    } catch (err) {
      // A retry (the DI may not be up yet) must not use up the MSI range.
      if (this.nextMsi === msiBase + MSI_STRIDE) this.nextMsi = msiBase;
      throw err;
    }
    ch.eeps.push(eep);
    return eep;
  }

  /** Forget a hot-unplugged EEP: its channel routes nothing to it any more, and its BDF may be mapped again. */
  removeEep(eep: RemoteFunction): void {
    for (const ch of this.channels.values()) {
      const i = ch.eeps.indexOf(eep);
      if (i >= 0) ch.eeps.splice(i, 1);
    }
  }

  /** Serve an EEP to QEMU on a vfio-user socket. */
  serve(eep: RemoteFunction, path: string): VfioUserServer {
    return new VfioUserServer({ path, device: eep, name: eep.name, log: this.log }).listen();
  }

  close(): void {
    for (const ch of this.channels.values()) ch.port.close();
  }

  private onRequest(ch: ChannelState, tlp: Tlp): void {
    if (tlp.type === TlpType.MWr32 || tlp.type === TlpType.MWr64) {
      if (inMsiRange(tlp.address)) {
        for (const eep of ch.eeps) {
          const v = eep.msiVector(tlp.address);
          if (v !== undefined) return eep.deliverMsi(v, tlp);
          if (eep.isMsiAddress(tlp.address)) return eep.deliverPlainMsi(tlp);
        }
      }
      const eep = eepOf(ch, tlp.requesterId);
      if (!eep) {
        this.stats.unknownRequester++;
        return;
      }
      return eep.dmaWrite(tlp);
    }
    if (tlp.type === TlpType.MRd32 || tlp.type === TlpType.MRd64) {
      const eep = eepOf(ch, tlp.requesterId);
      if (!eep || (inMsiRange(tlp.address) && ch.eeps.some((e) => e.msiVector(tlp.address) !== undefined || e.isMsiAddress(tlp.address)))) {
        this.stats.unknownRequester++;
        ch.port.endpoint.post(urCompletionFor(tlp, this.hiId));
        return;
      }
      return eep.dmaRead(tlp, ch.port);
    }
    const intx = isMessage(tlp) ? intxLevel(tlp) : undefined;
    const from = intx && eepOf(ch, tlp.requesterId);
    if (from) return from.deliverIntx(intx.asserted);
    this.stats.unsupported++;
    if (isNonPosted(tlp)) ch.port.endpoint.post(urCompletionFor(tlp, this.hiId));
  }
}

/** Whether `address` lies in the range the EEPs' MSI windows are placed in (the test that keeps DMA off the windows' BigInt arithmetic). */
const inMsiRange = (address: bigint) => address >= MSI_BASE && address < MSI_LIMIT;

/** The EEP on `ch` whose remote BDF is `requesterId` (a loop: this runs for every DMA TLP). */
function eepOf(ch: ChannelState, requesterId: number): RemoteFunction | undefined {
  for (const e of ch.eeps) if (e.remoteBdf === requesterId) return e;
  return undefined;
}
