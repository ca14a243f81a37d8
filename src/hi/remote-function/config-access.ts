// CfgRd0/CfgWr0 to one remote function, a DW at a time, over a TLP endpoint.
import type { TlpEndpoint } from '../../fabric/tlp/endpoint.ts';
import { TlpType } from '../../fabric/tlp/tlp.ts';
import { formatBdf } from '../../pci/bdf.ts';

export class ConfigAccess {
  lastError = '';
  constructor(private readonly ep: TlpEndpoint, private readonly requesterId: number, private readonly completerId: number) {}

  private common(register: number, firstBe: number) {
    return { tc: 0, attr: 0, poisoned: false, requesterId: this.requesterId, completerId: this.completerId, register, firstBe, lastBe: 0 };
  }

  /** The DW at `offset` (DW-aligned), or undefined when the request failed. */
  async read32(offset: number): Promise<number | undefined> {
    const o = await this.ep.request({ type: TlpType.CfgRd0, ...this.common(offset >> 2, 0xf) });
    if (o.status !== 'ok') {
      this.lastError = o.status;
      return undefined;
    }
    return new DataView(o.data.buffer, o.data.byteOffset).getUint32(0, true);
  }

  async mustRead32(offset: number): Promise<number> {
    const v = await this.read32(offset);
    if (v === undefined) throw new Error(`config read 0x${offset.toString(16)} of ${formatBdf(this.completerId)}: ${this.lastError}`);
    return v;
  }

  write32(offset: number, value: number): Promise<boolean> {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, value >>> 0, true);
    return this.writeBytes(offset, b);
  }

  /** A 16-bit register (or two bytes of one). */
  write16(offset: number, value: number): Promise<boolean> {
    return this.writeBytes(offset, new Uint8Array([value & 0xff, (value >>> 8) & 0xff]));
  }

  /** Any bytes at any offset: one CfgWr per DW touched, with byte enables; all sent before any completes. */
  async writeBytes(offset: number, bytes: Uint8Array): Promise<boolean> {
    const reqs: Promise<{ status: string }>[] = [];
    for (let at = offset; at < offset + bytes.length; ) {
      const dw = at & ~3;
      const end = Math.min(dw + 4, offset + bytes.length);
      const data = new Uint8Array(4);
      let be = 0;
      for (let k = at; k < end; k++) {
        data[k - dw] = bytes[k - offset]!;
        be |= 1 << (k - dw);
      }
      reqs.push(this.ep.request({ type: TlpType.CfgWr0, ...this.common(dw >> 2, be), data }));
      at = end;
    }
    const outcomes = await Promise.all(reqs);
    const bad = outcomes.find((o) => o.status !== 'ok');
    if (bad) this.lastError = bad.status;
    return !bad;
  }
}
