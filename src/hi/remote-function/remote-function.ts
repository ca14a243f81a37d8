// One embedded endpoint (EEP) of the HI: a remote PCIe function, reached over
// PCIeOE, served to QEMU as a vfio-user device. The class ties the parts
// together: enumeration, the guest's config view, BAR access as MRd/MWr,
// interrupts and the DMA service.
//
// BARs: a read is MRd + completion, answered all-ones after the completion
// timeout (default 2 s: far beyond a PCIe fabric's round trip, inside
// QEMU's 5 s x-msg-timeout); a write is a posted MWr, acknowledged at once.
// A reset (DEVICE_RESET, or a guest write that starts an FLR) is followed by
// re-programming BARs, memory decode and MSI/MSI-X (restore()).
import { TRACING, trace } from '../../fabric/trace.ts';
import type { PcieoePort } from '../../fabric/pcieoe-port.ts';
import type { MemReadTlp, MemWriteTlp } from '../../fabric/tlp/tlp.ts';
import { formatBdf, formatPciId } from '../../pci/bdf.ts';
import { BAR_MEM_BASE_MASK, barRegister, barTypeBits } from '../../pci/bar.ts';
import { DevCtlBit, Pcie } from '../../pci/capabilities.ts';
import { Cfg, CommandBit } from '../../pci/config-space.ts';
import type { IrqIndexDesc } from '../../vfio-user/irq.ts';
import { pciIrqTable, pciRegionTable } from '../../vfio-user/pci-regions.ts';
import { IrqInfoFlag, PciIrq, PciRegion } from '../../vfio-user/protocol.ts';
import type { Logger } from '../../common/logger.ts';
import { LogLimiter } from '../../common/log-limiter.ts';
import type { RegionDesc, SessionContext, VfioUserDevice } from '../../vfio-user/server.ts';
import { ConfigAccess } from './config-access.ts';
import { ConfigView } from './config-view.ts';
import { DmaService } from './dma-service.ts';
import { enumerateRemote } from './enumerate.ts';
import { RemoteInterrupts } from './interrupts.ts';
import { describeLayout, type RemoteLayout } from './layout.ts';
import { MPS, type RemoteFunctionOptions, type RemoteFunctionStats } from './options.ts';

/** How long reprogram() keeps trying a function that does not hold its programming yet. */
const REPROGRAM_TRIES_MS = 30_000;

export class RemoteFunction implements VfioUserDevice {
  readonly regions: RegionDesc[];
  readonly irqs: IrqIndexDesc[];
  readonly canReset = true;
  readonly stats: RemoteFunctionStats = { mmioReadFailures: 0, configFailures: 0, dmaReads: 0, dmaWrites: 0, dmaErrors: 0, msix: 0, msixMerged: 0, intx: 0, msixSpurious: 0 };
  private ctx?: SessionContext;
  private readonly log: Logger;
  private readonly view: ConfigView;
  private readonly dma: DmaService;
  private readonly interrupts: RemoteInterrupts;
  /** A guest polling a dead device fails reads by the thousand: counted in stats, a few lines logged a second. */
  private readonly failureLog = new LogLimiter((m) => this.log('warn', m));
  /** Counts reprogram() calls: a newer one supersedes an attempt still retrying. */
  private reprogramming = 0;

  private constructor(private readonly o: RemoteFunctionOptions, private readonly cfg: ConfigAccess, readonly layout: RemoteLayout) {
    this.log = (level, m) => o.log(level, `${o.name}: ${m}`);
    const session = () => this.ctx;
    this.view = new ConfigView(cfg, layout, this.stats, this.log);
    this.dma = new DmaService({ hiId: o.hiId, session, stats: this.stats, log: this.log });
    this.interrupts = new RemoteInterrupts({
      layout, cfg, endpoint: o.endpoint, hiId: o.hiId, msiBase: o.msiBase, session, afterWrites: (fn) => this.dma.afterWrites(fn), writesSettled: () => this.dma.settled, stats: this.stats,
    });
    this.regions = pciRegionTable({ bars: layout.bars, configSize: layout.configSize });
    this.irqs = pciIrqTable({
      // INTx only when carried (carryIntx): a level, automasked as VFIO's, unmasked by QEMU after the guest's EOI.
      intx: layout.intxPin ? { count: 1, flags: IrqInfoFlag.Eventfd | IrqInfoFlag.Maskable | IrqInfoFlag.Automasked } : { count: 0, flags: IrqInfoFlag.Eventfd },
      // MSI as the function offers it; QEMU emulates the capability (and its per-vector mask) for the guest.
      msi: { count: layout.msi?.vectors ?? 0, flags: IrqInfoFlag.Eventfd | IrqInfoFlag.Maskable | IrqInfoFlag.NoResize },
      msix: { count: layout.msix?.vectors ?? 0, flags: IrqInfoFlag.Eventfd | IrqInfoFlag.NoResize },
    });
  }

  get name(): string {
    return this.o.name;
  }

  get remoteBdf(): number {
    return this.o.remoteBdf;
  }

  /**
   * Find the function over TLPs as a host kernel would, place its BARs, turn
   * on memory decode. Throws if there is no usable function at the BDF.
   */
  static async enumerate(o: RemoteFunctionOptions): Promise<RemoteFunction> {
    const cfg = new ConfigAccess(o.endpoint, o.hiId, o.remoteBdf);
    const f = new RemoteFunction(o, cfg, await enumerateRemote(cfg, o));
    await f.restore();
    f.log('info', `${formatBdf(o.remoteBdf)} ${formatPciId(f.layout.vendorId, f.layout.deviceId)}: ${describeLayout(f.layout)}`);
    return f;
  }

  // ---- vfio-user: QEMU → function ---------------------------------------------

  regionRead(region: number, offset: number, count: number): Promise<Uint8Array> {
    if (region === PciRegion.Config) return this.view.read(offset, count);
    if (TRACING) trace(`mmio-r:${region}:${offset.toString(16)}`);
    const bar = this.layout.bars[region]!; // the server checked the region exists
    return this.o.endpoint.readMemory(bar.address + BigInt(offset), count, this.o.hiId, MPS).catch((err: Error) => {
      this.stats.mmioReadFailures++;
      this.failureLog.line(() => `BAR ${region} read +0x${offset.toString(16)}/${count}: ${err.message}; all-ones (${this.stats.mmioReadFailures} so far)`);
      return new Uint8Array(count).fill(0xff);
    });
  }

  regionWrite(region: number, offset: number, data: Uint8Array): void | Promise<void> {
    if (region === PciRegion.Config) return this.configWrite(offset, data);
    if (TRACING) trace(`mmio-w:${region}:${offset.toString(16)}`);
    const bar = this.layout.bars[region]!;
    this.o.endpoint.writeMemory(bar.address + BigInt(offset), data, this.o.hiId, MPS);
  }

  /** DEVICE_RESET: function-level reset of the remote function, then the HI's programming again. */
  async reset(): Promise<void> {
    const pcie = this.layout.pcieCap;
    if (pcie !== undefined && this.layout.flr) {
      // Initiate FLR is the top bit of DevCtl's high byte: write that byte only.
      const devctl = (await this.cfg.read32(pcie + Pcie.DevCtl)) ?? 0;
      await this.cfg.writeBytes(pcie + Pcie.DevCtl + 1, new Uint8Array([((devctl >>> 8) & 0xff) | (DevCtlBit.InitiateFlr >> 8)]));
    } else {
      this.log('warn', 'no FLR capability: reset only re-programs BARs and MSI-X');
    }
    this.view.guestMemory = false;
    this.interrupts.resetIntx();
    await this.restore();
  }

  /**
   * The function lost what the HI programmed (its DI restarted, or the channel
   * was reset): BARs, memory decode and MSI/MSI-X again, as after a reset. The
   * guest's driver finds its device reset and recovers on its own (an NVMe
   * controller's timeout handler resets it); Bus Master stays the guest's to set.
   */
  reprogram(): void {
    this.log('warn', 'channel reset: programming the function again');
    const generation = ++this.reprogramming;
    const deadline = Date.now() + REPROGRAM_TRIES_MS;
    const attempt = async (): Promise<void> => {
      // A restarted DI speaks before it has assigned its functions (they answer UR until then):
      // program, read back, and try again until the function holds what was written.
      // A function the DI has not assigned yet refuses the writes (UR): that is one more try, not the end.
      const done = await this.restore().then(() => this.programmed(), () => false);
      if (generation !== this.reprogramming || done) return;
      if (Date.now() > deadline) throw new Error(`the function does not hold its BARs after ${REPROGRAM_TRIES_MS / 1000} s`);
      await new Promise((r) => setTimeout(r, 100));
      if (generation === this.reprogramming) return attempt();
    };
    attempt().then(
      () => generation === this.reprogramming && this.log('info', 'programmed again after the channel reset'),
      (err: Error) => this.log('warn', `programming after a channel reset: ${err.message}`),
    );
  }

  /** Whether the function decodes memory at the BARs the HI placed. */
  private async programmed(): Promise<boolean> {
    const cmd = await this.cfg.read32(Cfg.Command);
    if (cmd === undefined || !(cmd & CommandBit.Memory)) return false;
    for (const [i, b] of this.layout.bars.entries()) {
      if (!b) continue;
      const lo = await this.cfg.read32(barRegister(i));
      const hi = b.kind === 'mem64' ? await this.cfg.read32(barRegister(i) + 4) : 0;
      if (lo === undefined || hi === undefined) return false;
      if ((BigInt(hi) << 32n) + BigInt((lo & BAR_MEM_BASE_MASK) >>> 0) !== b.address) return false;
    }
    return true;
  }

  connected(ctx: SessionContext): void {
    this.ctx = ctx;
  }

  disconnected(): void {
    this.ctx = undefined;
    // The next client gets a clean function: no DMA or interrupts meant for the old one.
    this.reset().catch((err: Error) => this.log('warn', `reset after disconnect: ${err.message}`));
  }

  /**
   * Ask the host to let the device go (vfio's device request, the REQ interrupt): QEMU turns
   * it into an unplug request at the slot. False if no client wired the REQ eventfd.
   */
  requestRelease(): boolean {
    return this.ctx?.irqs.trigger(PciIrq.Req, 0) ?? false;
  }

  irqUnmasked(index: number): void {
    if (index === PciIrq.Intx) this.interrupts.intxUnmasked();
  }

  irqWiringChanged(index: number): void {
    if (index === PciIrq.Msix) this.interrupts.programMsix().catch((err: Error) => this.log('warn', `MSI-X programming: ${err.message}`));
    if (index === PciIrq.Msi) this.interrupts.programMsi().catch((err: Error) => this.log('warn', `MSI programming: ${err.message}`));
  }

  // ---- fabric: function → host ------------------------------------------------

  /** The vector an MWr to `address` signals, if it is in this EEP's MSI-X window. */
  msiVector(address: bigint): number | undefined {
    return this.interrupts.msiVector(address);
  }

  /** Whether `address` is this EEP's MSI (not MSI-X) address. */
  isMsiAddress(address: bigint): boolean {
    return this.interrupts.isMsiAddress(address);
  }

  /** An MSI message from the function. */
  deliverPlainMsi(tlp: MemWriteTlp): void {
    this.interrupts.deliverPlainMsi(tlp);
  }

  /** An MSI-X message from the function (an MWr into the MSI window). */
  deliverMsi(vector: number, tlp: MemWriteTlp): void {
    this.interrupts.deliverMsix(vector, tlp);
  }

  /** An Assert/Deassert_INTx message from the function. */
  deliverIntx(asserted: boolean): void {
    this.interrupts.deliverIntx(asserted);
  }

  /** Device DMA write into guest memory (see DmaService). */
  dmaWrite(tlp: MemWriteTlp): void {
    this.dma.dmaWrite(tlp);
  }

  /** Device DMA read from guest memory (see DmaService). */
  dmaRead(tlp: MemReadTlp, port: PcieoePort): void {
    this.dma.dmaRead(tlp, port);
  }

  // ---- internals ----------------------------------------------------------------

  private async configWrite(offset: number, data: Uint8Array): Promise<void> {
    if (await this.view.write(offset, data)) await this.restore();
  }

  /** BAR addresses, memory decode on, MSI-X as wired: the HI's state in the function. */
  private async restore(): Promise<void> {
    const cfg = this.cfg;
    this.layout.bars.forEach((b, i) => {
      if (!b) return;
      void cfg.write32(barRegister(i), Number(b.address & BigInt(BAR_MEM_BASE_MASK)) | barTypeBits(b));
      if (b.kind === 'mem64') void cfg.write32(barRegister(i) + 4, Number(b.address >> 32n));
    });
    // Memory Space on; Bus Master stays as it is (the guest's to set, as with VFIO).
    const cmd = (await cfg.read32(Cfg.Command)) ?? 0;
    await cfg.writeBytes(Cfg.Command, new Uint8Array([(cmd & 0xff) | CommandBit.Memory]));
    await this.interrupts.programMsix();
    await this.interrupts.programMsi();
  }
}
