// Device DMA of a remote function, served from the vfio-user client's DMA
// map: MWr lands in guest memory, MRd is answered with CplD(s) (by the
// channel's PcieoePort, the memory-read completer), UR when the range is not mapped. Writes without
// an fd go as DMA_WRITE messages; later reads and interrupts wait for them
// (afterWrites), so nothing overtakes data written before it.
import type { PcieoePort, ReadCompletion } from '../../fabric/pcieoe-port.ts';
import { requestByteCount } from '../../fabric/tlp/byte-enables.ts';
import { enabledRuns } from '../../fabric/tlp/endpoint.ts';
import { urCompletionFor } from '../../fabric/tlp/completion.ts';
import type { MemReadTlp, MemWriteTlp } from '../../fabric/tlp/tlp.ts';
import { copyInOrder } from '../../vfio-user/ordered-copy.ts';
import type { Logger } from '../../common/logger.ts';
import { LogLimiter } from '../../common/log-limiter.ts';
import type { SessionContext } from '../../vfio-user/server.ts';
import { MPS, type RemoteFunctionStats } from './options.ts';

const EMPTY = new Uint8Array(0);

export class DmaService {
  /** Device writes to guest memory still under way (only without an fd); later reads and interrupts wait. */
  private writesInFlight = 0;
  private writeTail: Promise<void> = Promise.resolve();
  /** A device decides how much failing DMA it makes: counted in stats (dmaErrors), a few lines logged a second. */
  private readonly failureLog = new LogLimiter((m) => this.o.log('warn', m));
  /** The guest memory under the read being answered (answerRead); fromSpan reads from it synchronously. */
  private span: Uint8Array = EMPTY;
  private readonly fromSpan: ReadCompletion;

  constructor(
    private readonly o: {
      /** Completer id of the HI on this channel. */
      hiId: number;
      /** The vfio-user session, while a client is connected. */
      session: () => SessionContext | undefined;
      stats: RemoteFunctionStats;
      log: Logger;
    },
  ) {
    this.fromSpan = {
      completerId: o.hiId,
      maxPayload: MPS,
      read: (first, count) => (first === 0 && count === this.span.length ? this.span : this.span.subarray(first, first + count)),
      // Reading a view of mapped memory does not fail.
      fail: (err) => this.o.log('error', `DMA read from mapped memory: ${(err as Error).message}`),
    };
  }

  /** Every device write issued so far has reached guest memory. */
  get settled(): boolean {
    return this.writesInFlight === 0;
  }

  /** Runs `fn` once every device write issued so far has reached guest memory. */
  afterWrites(fn: () => void): void {
    if (this.writesInFlight === 0) fn();
    else this.writeTail = this.writeTail.then(fn);
  }

  /** Device DMA write: the enabled bytes go to guest memory. Posted: failures are counted. */
  dmaWrite(tlp: MemWriteTlp): void {
    const ctx = this.o.session();
    if (!ctx) {
      this.o.stats.dmaErrors++;
      return;
    }
    this.o.stats.dmaWrites++;
    const n = tlp.data.length;
    // Whole DWs (the data of every DMA write, an NVMe completion entry): one run, found without the byte-enable walk.
    if (tlp.firstBe === 0xf && (n === 4 ? tlp.lastBe === 0 : tlp.lastBe === 0xf)) return this.land(ctx, Number(tlp.address), tlp.data);
    for (const [start, len] of enabledRuns(tlp.firstBe, tlp.lastBe, n / 4)) this.land(ctx, Number(tlp.address) + start, tlp.data.subarray(start, start + len));
  }

  /** `bytes` into guest memory at `iova`: straight into the mapping, or in order behind writes still under way. */
  private land(ctx: SessionContext, iova: number, bytes: Uint8Array): void {
    const direct = this.writesInFlight === 0 ? ctx.dma.translate(iova, bytes.length, true) : undefined;
    if (direct) return copyInOrder(direct, bytes);
    // No fd for this range (DMA_WRITE messages): keep order with later writes, reads and interrupts.
    const stats = this.o.stats;
    const copy = bytes.slice();
    this.writesInFlight++;
    this.writeTail = this.writeTail
      .then(() => ctx.dma.write(iova, copy))
      .catch((err: Error) => {
        stats.dmaErrors++;
        this.failureLog.line(() => `DMA write 0x${iova.toString(16)}+${copy.length}: ${err.message} (${stats.dmaErrors} DMA errors so far)`);
      })
      .finally(() => this.writesInFlight--);
  }

  /** Device DMA read: CplD(s) from guest memory on `port`, UR when the range is not mapped. */
  dmaRead(tlp: MemReadTlp, port: PcieoePort): void {
    this.o.stats.dmaReads++;
    if (this.writesInFlight === 0) this.answerRead(tlp, port);
    else this.writeTail = this.writeTail.then(() => this.answerRead(tlp, port));
  }

  /**
   * The usual read (its whole DW span in memory QEMU shared with an fd) is answered at once through
   * one completer object made with the service, since a closure made per TLP costs more than the
   * rest of the answer under the lab's loader (it names every function it creates).
   */
  private answerRead(tlp: MemReadTlp, port: PcieoePort): void {
    const ctx = this.o.session();
    if (!ctx) return this.failRead(tlp, port, 'no client');
    const span = ctx.dma.translate(Number(tlp.address), tlp.length * 4, false);
    if (span) {
      this.span = span;
      try {
        void port.completeRead(tlp, this.fromSpan);
      } finally {
        this.span = EMPTY;
      }
      return;
    }
    // No fd for this range (DMA_READ messages), or a span that runs past the map: read what is enabled.
    // A zero-length read (ordering only) reads nothing: completeRead answers it without calling read().
    void port.completeRead(tlp, {
      completerId: this.o.hiId,
      maxPayload: MPS,
      read: (first, count) => ctx.dma.translate(Number(tlp.address) + first, count, false) ?? ctx.dma.read(Number(tlp.address) + first, count),
      fail: (err) => this.failRead(tlp, port, (err as Error).message),
    });
  }

  private failRead(tlp: MemReadTlp, port: PcieoePort, why: string): void {
    this.o.stats.dmaErrors++;
    this.failureLog.line(() => `DMA read 0x${tlp.address.toString(16)}+${requestByteCount(tlp.length, tlp.firstBe, tlp.lastBe)}: ${why}: UR (${this.o.stats.dmaErrors} DMA errors so far)`);
    port.endpoint.post(urCompletionFor(tlp, this.o.hiId));
  }
}
