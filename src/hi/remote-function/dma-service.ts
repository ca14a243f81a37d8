// Device DMA of a remote function, served from the vfio-user client's DMA
// map: MWr lands in guest memory, MRd is answered with CplD(s) (by the
// channel's PcieoePort, the memory-read completer), UR when the range is not mapped. Writes without
// an fd go as DMA_WRITE messages; later reads and interrupts wait for them
// (afterWrites), so nothing overtakes data written before it.
import type { PcieoePort } from '../../fabric/pcieoe-port.ts';
import { requestByteCount } from '../../fabric/tlp/byte-enables.ts';
import { urCompletionFor } from '../../fabric/tlp/completion.ts';
import type { MemReadTlp, MemWriteTlp } from '../../fabric/tlp/tlp.ts';
import { copyInOrder } from '../../vfio-user/ordered-copy.ts';
import type { Logger } from '../../common/logger.ts';
import { LogLimiter } from '../../common/log-limiter.ts';
import type { SessionContext } from '../../vfio-user/server.ts';
import { MPS, type RemoteFunctionStats } from './options.ts';

export class DmaService {
  /** Device writes to guest memory still under way (only without an fd); later reads and interrupts wait. */
  private writesInFlight = 0;
  private writeTail: Promise<void> = Promise.resolve();
  /** A device decides how much failing DMA it makes: counted in stats (dmaErrors), a few lines logged a second. */
  private readonly failureLog = new LogLimiter((m) => this.o.log('warn', m));

  constructor(
    private readonly o: {
      /** Completer id of the HI on this channel. */
      hiId: number;
      /** The vfio-user session, while a client is connected. */
      session: () => SessionContext | undefined;
      stats: RemoteFunctionStats;
      log: Logger;
    },
  ) {}

  /** Runs `fn` once every device write issued so far has reached guest memory. */
  afterWrites(fn: () => void): void {
    if (this.writesInFlight === 0) fn();
    else this.writeTail = this.writeTail.then(fn);
  }

  /** Device DMA write: the enabled bytes go to guest memory. Posted: failures are counted. */
  dmaWrite(tlp: MemWriteTlp, runs: [number, number][]): void {
    const ctx = this.o.session();
    const stats = this.o.stats;
    if (!ctx) {
      stats.dmaErrors++;
      return;
    }
    stats.dmaWrites++;
    for (const [start, len] of runs) {
      const iova = Number(tlp.address) + start;
      const bytes = tlp.data.subarray(start, start + len);
      const direct = this.writesInFlight === 0 ? ctx.dma.translate(iova, len, true) : undefined;
      if (direct) {
        copyInOrder(direct, bytes);
        continue;
      }
      // No fd for this range (DMA_WRITE messages): keep order with later writes, reads and interrupts.
      const copy = bytes.slice();
      this.writesInFlight++;
      this.writeTail = this.writeTail
        .then(() => ctx.dma.write(iova, copy))
        .catch((err: Error) => {
          stats.dmaErrors++;
          this.failureLog.line(() => `DMA write 0x${iova.toString(16)}+${len}: ${err.message} (${stats.dmaErrors} DMA errors so far)`);
        })
        .finally(() => this.writesInFlight--);
    }
  }

  /** Device DMA read: CplD(s) from guest memory on `port`, UR when the range is not mapped. */
  dmaRead(tlp: MemReadTlp, port: PcieoePort): void {
    this.o.stats.dmaReads++;
    const fail = (why: string) => {
      this.o.stats.dmaErrors++;
      this.failureLog.line(() => `DMA read 0x${tlp.address.toString(16)}+${requestByteCount(tlp.length, tlp.firstBe, tlp.lastBe)}: ${why}: UR (${this.o.stats.dmaErrors} DMA errors so far)`);
      port.endpoint.post(urCompletionFor(tlp, this.o.hiId));
    };
    this.afterWrites(() => {
      const ctx = this.o.session();
      if (!ctx) return fail('no client');
      // A zero-length read (ordering only) reads nothing: completeRead answers it without calling read().
      void port.completeRead(tlp, {
        completerId: this.o.hiId,
        maxPayload: MPS,
        read: (first, count) => ctx.dma.translate(Number(tlp.address) + first, count, false) ?? ctx.dma.read(Number(tlp.address) + first, count),
        fail: (err) => fail((err as Error).message),
      });
    });
  }
}
