/**
 * Copy a device write into guest memory the way a root complex commits a
 * small TLP: a write that fits in one 64-byte cache line lands dword by dword
 * in ascending address order. NVMe relies on this when a controller posts a
 * 16-byte completion in one write: the host polls DW3's phase tag and must
 * not see it before DW0-2. memcpy (TypedArray.set) promises no store order,
 * and the vCPU reading the queue runs on another thread, so the dwords go
 * out as sequentially consistent Atomics stores; larger and unaligned writes
 * carry data, for which order does not matter.
 */

const LINE = 64;

export function copyInOrder(dst: Uint8Array, src: Uint8Array): void {
  const n = src.length;
  const at = dst.byteOffset;
  if (n > LINE || n % 4 !== 0 || at % 4 !== 0 || Math.floor(at / LINE) !== Math.floor((at + n - 1) / LINE)) {
    dst.set(src);
    return;
  }
  const words = new Int32Array(dst.buffer, at, n / 4);
  for (let i = 0; i < n / 4; i++) {
    const o = 4 * i;
    Atomics.store(words, i, src[o]! | (src[o + 1]! << 8) | (src[o + 2]! << 16) | (src[o + 3]! << 24));
  }
}
