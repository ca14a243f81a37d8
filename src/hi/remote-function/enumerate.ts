// Finding a remote function over TLPs as a host kernel would: identity and
// header type, BAR sizing (placing each BAR in the channel's window), and
// the capabilities the HI serves (PCI Express with FLR, MSI, MSI-X).
import { formatBdf } from '../../pci/bdf.ts';
import { BAR_COUNT, BarBit, barKind, barRegister, memBarSize } from '../../pci/bar.ts';
import { CapId, Cfg, StatusBit } from '../../pci/config-space.ts';
import { DevCapBit, MSIX_BIR_MASK, MsiControl, MsixCap, MsixControl, Pcie } from '../../pci/capabilities.ts';
import type { ConfigAccess } from './config-access.ts';
import type { RemoteLayout } from './layout.ts';
import type { RemoteFunctionOptions } from './options.ts';

/** Header Type without the multi-function bit: 0 is an endpoint. */
const HEADER_LAYOUT_MASK = 0x7f;

/** The remote function's layout; throws if there is no usable function at the BDF. */
export async function enumerateRemote(cfg: ConfigAccess, o: RemoteFunctionOptions): Promise<RemoteLayout> {
  const id = await cfg.read32(Cfg.VendorId);
  if (id === undefined || (id & 0xffff) === 0xffff) throw new Error(`${o.name}: no function at ${formatBdf(o.remoteBdf)} (${cfg.lastError})`);
  const header = await cfg.mustRead32(Cfg.HeaderType & ~3);
  if (((header >>> (8 * (Cfg.HeaderType & 3))) & HEADER_LAYOUT_MASK) !== 0) throw new Error(`${o.name}: ${formatBdf(o.remoteBdf)} is not a type 0 (endpoint) function`);
  const layout: RemoteLayout = { vendorId: id & 0xffff, deviceId: id >>> 16, configSize: 256, bars: [], flr: false };
  await sizeBars(cfg, o, layout);
  if (o.carryIntx) {
    const pin = ((await cfg.mustRead32(Cfg.InterruptLine)) >>> 8) & 0xff;
    if (pin >= 1 && pin <= 4) layout.intxPin = pin;
  }
  await walkCapabilities(cfg, layout, o.hideMsix === true);
  if (layout.msix && !layout.bars[layout.msix.bar]) throw new Error(`${o.name}: MSI-X table in BAR ${layout.msix.bar}, which is not a memory BAR`);
  return layout;
}

/** BAR sizing: all-ones, read back, restore; each memory BAR gets an address in the window. */
async function sizeBars(cfg: ConfigAccess, o: RemoteFunctionOptions, layout: RemoteLayout): Promise<void> {
  const probe = async (at: number) => {
    const orig = await cfg.mustRead32(at);
    await cfg.write32(at, 0xffffffff);
    const mask = await cfg.mustRead32(at);
    await cfg.write32(at, orig);
    return { orig, mask };
  };
  for (let i = 0; i < BAR_COUNT; i++) {
    const at = barRegister(i);
    const { orig, mask } = await probe(at);
    if (mask === 0) continue;
    const kind = barKind(orig);
    if (kind === 'io') {
      o.log('warn', `${o.name}: BAR ${i} is I/O space, not carried over PCIeOE; ignored`);
      continue;
    }
    const size = kind === 'mem64' ? memBarSize(mask, (await probe(at + 4)).mask) : memBarSize(mask);
    if (size > 1n << 31n) throw new Error(`${o.name}: BAR ${i} of ${size} bytes is beyond what the HI serves`);
    const prefetchable = (orig & BarBit.Prefetchable) !== 0;
    layout.bars[i] = { size: Number(size), kind, prefetchable, address: o.window.alloc(Number(size), kind === 'mem64') };
    if (kind === 'mem64') i++;
  }
}

/** The capability list, walked as software does (a loop in it ends the walk). */
async function walkCapabilities(cfg: ConfigAccess, layout: RemoteLayout, hideMsix: boolean): Promise<void> {
  const status = (await cfg.mustRead32(Cfg.Command)) >>> (8 * (Cfg.Status - Cfg.Command));
  if (!(status & StatusBit.CapabilitiesList)) return;
  const seen = new Set<number>();
  let pointerAt: number = Cfg.CapabilitiesPtr; // the byte that names the capability at `at`
  let msixPointerAt = 0;
  for (let at = (await cfg.mustRead32(Cfg.CapabilitiesPtr)) & 0xfc; at !== 0 && !seen.has(at); ) {
    seen.add(at);
    const dw = await cfg.mustRead32(at);
    const control = dw >>> 16; // the register after id and next, for MSI and MSI-X
    const capId = dw & 0xff;
    if (capId === CapId.PciExpress) {
      layout.pcieCap = at;
      layout.configSize = 4096;
      layout.flr = ((await cfg.mustRead32(at + Pcie.DevCap)) & DevCapBit.FlrCapable) !== 0;
    } else if (capId === CapId.Msi) {
      layout.msi = {
        cap: at,
        vectors: 1 << ((control & MsiControl.MmcMask) >>> MsiControl.MmcShift),
        is64: (control & MsiControl.Address64) !== 0,
        perVectorMask: (control & MsiControl.PerVectorMask) !== 0,
      };
    } else if (capId === CapId.MsiX) {
      const table = await cfg.mustRead32(at + MsixCap.Table);
      layout.msix = { cap: at, vectors: (control & MsixControl.TableSizeMask) + 1, bar: table & MSIX_BIR_MASK, tableOffset: table & ~MSIX_BIR_MASK };
      msixPointerAt = pointerAt;
    }
    pointerAt = at + 1;
    at = (dw >>> 8) & 0xfc;
  }
  // Hidden only where MSI or a carried INTx remains: a function with neither would have no
  // interrupt at all. The next-pointer reads and the rest of the chain are unchanged.
  if (hideMsix && layout.msix && (layout.msi || layout.intxPin)) {
    const cap = layout.msix.cap;
    layout.unlinked = { cap, pointerAt: msixPointerAt, next: ((await cfg.mustRead32(cap)) >>> 8) & 0xfc };
    delete layout.msix;
  }
}
