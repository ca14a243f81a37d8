// Where the HI places remote BARs: a bump allocator over one channel's
// address space at the DI (a 32-bit and a 64-bit window), naturally aligned.

export class AddressWindow {
  private next32: bigint;
  private next64: bigint;
  constructor(private readonly w: { base32: bigint; limit32: bigint; base64: bigint; limit64: bigint }) {
    this.next32 = w.base32;
    this.next64 = w.base64;
  }

  alloc(size: number, is64: boolean): bigint {
    const s = BigInt(size);
    const align = (a: bigint) => (a + s - 1n) & ~(s - 1n);
    const at = align(is64 ? this.next64 : this.next32);
    if (at + s > (is64 ? this.w.limit64 : this.w.limit32)) throw new Error(`BAR window exhausted (${size} bytes, ${is64 ? '64' : '32'}-bit)`);
    if (is64) this.next64 = at + s;
    else this.next32 = at + s;
    return at;
  }
}
