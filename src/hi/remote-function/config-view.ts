// Config space of a remote function as QEMU sees it (design §4b):
//   - reads go to the function as CfgRd, except the registers QEMU emulates
//     or the HI owns: BARs read as their type bits only (QEMU reads them once
//     to learn mem64/prefetchable, then emulates), ROM BAR 0, Interrupt Pin 0
//     unless the HI carries INTx (carryIntx; otherwise QEMU then wires no INTx), and Command.Memory as
//     the guest last wrote it — the remote's stays on, the HI needs it; with
//     hideMsix the MSI-X capability is skipped in the capability list.
//   - writes go as CfgWr, minus the bytes of BARs, ROM and the MSI and MSI-X
//     capabilities (QEMU emulates both; their programming is the HI's, driven
//     by SET_IRQS).
import { BAR_COUNT, barTypeBits } from '../../pci/bar.ts';
import { DevCtlBit, MsixCap, Pcie, msiLayout } from '../../pci/capabilities.ts';
import { Cfg, CommandBit } from '../../pci/config-space.ts';
import type { Logger } from '../../common/logger.ts';
import type { ConfigAccess } from './config-access.ts';
import type { RemoteLayout } from './layout.ts';
import type { RemoteFunctionStats } from './options.ts';

const BARS_END = Cfg.Bar0 + 4 * BAR_COUNT;
const ROM_BAR_END = Cfg.RomBar + 4;

export class ConfigView {
  /** Command.Memory as the guest last wrote it. */
  guestMemory = false;

  constructor(
    private readonly cfg: ConfigAccess,
    private readonly layout: RemoteLayout,
    private readonly stats: RemoteFunctionStats,
    private readonly log: Logger,
  ) {}

  async read(offset: number, count: number): Promise<Uint8Array> {
    const out = new Uint8Array(count);
    const firstDw = offset >> 2;
    const lastDw = (offset + count - 1) >> 2;
    const reads: Promise<void>[] = [];
    for (let dw = firstDw; dw <= lastDw; dw++) {
      reads.push(
        this.cfg.read32(dw * 4).then((value) => {
          if (value === undefined) this.stats.configFailures++;
          const bytes = value ?? 0xffffffff;
          for (let i = 0; i < 4; i++) {
            const at = dw * 4 + i;
            if (at >= offset && at < offset + count) out[at - offset] = this.virtualise(at, (bytes >>> (8 * i)) & 0xff);
          }
        }),
      );
    }
    await Promise.all(reads);
    return out;
  }

  /** Forwards a guest config write; true when it started a function-level reset. */
  async write(offset: number, data: Uint8Array): Promise<boolean> {
    const bytes = data.slice();
    if (offset <= Cfg.Command && Cfg.Command < offset + bytes.length) {
      const i = Cfg.Command - offset;
      this.guestMemory = (bytes[i]! & CommandBit.Memory) !== 0;
      bytes[i] = bytes[i]! | CommandBit.Memory; // the HI's MMIO forwarding needs decode on
    }
    const pcie = this.layout.pcieCap;
    const flrAt = pcie === undefined ? -1 : pcie + Pcie.DevCtl + 1;
    const flr = flrAt >= offset && flrAt < offset + bytes.length && (bytes[flrAt - offset]! & (DevCtlBit.InitiateFlr >> 8)) !== 0;
    // Runs of forwarded bytes, each written DW by DW with byte enables.
    const writes: Promise<boolean>[] = [];
    let i = 0;
    while (i < bytes.length) {
      if (this.hidden(offset + i)) {
        i++;
        continue;
      }
      let j = i;
      while (j < bytes.length && !this.hidden(offset + j)) j++;
      writes.push(this.cfg.writeBytes(offset + i, bytes.subarray(i, j)));
      i = j;
    }
    const ok = await Promise.all(writes);
    if (ok.includes(false)) {
      this.stats.configFailures++;
      this.log('warn', `config write 0x${offset.toString(16)}/${data.length} failed`);
    }
    if (flr) this.guestMemory = false;
    return flr;
  }

  /** The byte QEMU should see at config offset `at`, given the remote's `actual`. */
  private virtualise(at: number, actual: number): number {
    if (at === Cfg.Command) return (actual & ~CommandBit.Memory) | (this.guestMemory ? CommandBit.Memory : 0);
    if (at >= Cfg.Bar0 && at < BARS_END) {
      const b = this.layout.bars[(at - Cfg.Bar0) >> 2];
      return b && (at & 3) === 0 ? barTypeBits(b) : 0;
    }
    if (at >= Cfg.RomBar && at < ROM_BAR_END) return 0;
    if (at === Cfg.InterruptPin) return this.layout.intxPin ?? 0;
    if (at === this.layout.unlinked?.pointerAt) return this.layout.unlinked.next;
    return actual;
  }

  /** Bytes of a guest config write that must not reach the function. */
  private hidden(at: number): boolean {
    const m = this.layout.msix;
    const msi = this.layout.msi;
    // The whole MSI capability body is the HI's (QEMU keeps the guest's values).
    if (msi !== undefined && at >= msi.cap + 2 && at < msi.cap + msiLayout(msi.is64, msi.perVectorMask).length) return true;
    return (at >= Cfg.Bar0 && at < BARS_END) || (at >= Cfg.RomBar && at < ROM_BAR_END) || (m !== undefined && at >= m.cap && at < m.cap + MsixCap.Length);
  }
}
