// CRC-32 for the PCIeOE frame check sequence.
#include "native.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace pcieoe {

namespace {

// IEEE 802.3 CRC-32 (reflected, polynomial 0xEDB88320), as zlib computes it.
// zlib.crc32 in this Node costs ~1.9 µs of CPU per 4 KiB frame here, a fifth
// of a link endpoint's time per frame. On x86 with PCLMULQDQ the bulk is
// folded with carry-less multiplies (Intel, "Fast CRC Computation for Generic
// Polynomials Using PCLMULQDQ", 2009; the constants below are the paper's
// bit-reflected k1..k5, P(x) and mu, as zlib/Chromium use them; a fold across
// D bits multiplies by x^(D+32) and x^(D-32) mod P(x), bit-reflected and shifted
// left once, which is how the 2048-bit pair below was computed), ~10x faster,
// and with VPCLMULQDQ four lanes per instruction; everything else goes through
// a slicing-by-8 table. All are checked against a bytewise reference by
// test/native/crc32.test.ts and test/native/dgram-batch.test.ts.
struct CrcTables {
  uint32_t t[8][256];
  CrcTables() {
    for (uint32_t n = 0; n < 256; n++) {
      uint32_t c = n;
      for (int k = 0; k < 8; k++) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
      for (int k = 1; k < 8; k++) t[k][n] = t[0][t[k - 1][n] & 0xff] ^ (t[k - 1][n] >> 8);
    }
  }
};
const CrcTables kCrc;

// On the register (not inverted) CRC state.
uint32_t Crc32Slice8(uint32_t c, const uint8_t* p, size_t n) {
  const auto& t = kCrc.t;
  while (n >= 8) {
    uint32_t lo, hi;
    memcpy(&lo, p, 4);
    memcpy(&hi, p + 4, 4);
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    lo = __builtin_bswap32(lo);
    hi = __builtin_bswap32(hi);
#endif
    lo ^= c;
    c = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
        t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) c = t[0][(c ^ *p++) & 0xff] ^ (c >> 8);
  return c;
}

#if defined(__x86_64__)
#define CLMUL_TARGET __attribute__((target("pclmul,sse4.1")))

CLMUL_TARGET inline __m128i Load16(const uint8_t* q) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(q)); }

// One fold: x times k (each 64-bit half by its constant), plus the next 16 bytes.
CLMUL_TARGET inline __m128i Fold(__m128i x, __m128i k, __m128i next) {
  return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x11), _mm_clmulepi64_si128(x, k, 0x00)), next);
}

// The 16 bytes at q, also stored at the same place in `out` (relative to p0) when copying.
CLMUL_TARGET inline __m128i Take(const uint8_t* q, const uint8_t* p0, uint8_t* out) {
  __m128i v = Load16(q);
  if (out != nullptr) _mm_storeu_si128(reinterpret_cast<__m128i*>(out + (q - p0)), v);
  return v;
}

alignas(16) const uint64_t kK1K2[] = {0x0154442bd4, 0x01c6e41596};  // fold across 512 bits (64 bytes)
alignas(16) const uint64_t kK3K4[] = {0x01751997d0, 0x00ccaa009e};  // fold across 128 bits (16 bytes)

// The last 16-byte blocks folded in, then 128 -> 32 bits: the register state after x and the n bytes at p.
CLMUL_TARGET uint32_t Crc32Finish(__m128i x1, const uint8_t* p, size_t n, const uint8_t* p0, uint8_t* out) {
  alignas(16) static const uint64_t k5k0[] = {0x0163cd6124, 0x0000000000};
  alignas(16) static const uint64_t poly[] = {0x01db710641, 0x01f7011641};
  __m128i k = _mm_load_si128(reinterpret_cast<const __m128i*>(kK3K4));
  for (; n >= 16; p += 16, n -= 16) x1 = Fold(x1, k, Take(p, p0, out));
  // 128 -> 64 bits.
  __m128i mask = _mm_setr_epi32(~0, 0, ~0, 0);
  __m128i x2 = _mm_clmulepi64_si128(x1, k, 0x10);
  x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2);
  k = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(k5k0));
  x2 = _mm_srli_si128(x1, 4);
  x1 = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x1, mask), k, 0x00), x2);
  // Barrett reduction to 32 bits.
  k = _mm_load_si128(reinterpret_cast<const __m128i*>(poly));
  x2 = _mm_clmulepi64_si128(_mm_and_si128(x1, mask), k, 0x10);
  x2 = _mm_clmulepi64_si128(_mm_and_si128(x2, mask), k, 0x00);
  return static_cast<uint32_t>(_mm_extract_epi32(_mm_xor_si128(x1, x2), 1));
}

// Folds n bytes (n >= 64, a multiple of 16) into the register state c; with
// `out`, every 16 bytes loaded are also stored there (a copy in the same pass).
CLMUL_TARGET uint32_t Crc32Clmul(uint32_t c, const uint8_t* p, size_t n, uint8_t* out = nullptr) {
  const uint8_t* p0 = p;
  __m128i x1 = _mm_xor_si128(Take(p, p0, out), _mm_cvtsi32_si128(static_cast<int>(c)));
  __m128i x2 = Take(p + 16, p0, out), x3 = Take(p + 32, p0, out), x4 = Take(p + 48, p0, out);
  p += 64;
  n -= 64;
  __m128i k = _mm_load_si128(reinterpret_cast<const __m128i*>(kK1K2));
  for (; n >= 64; p += 64, n -= 64) {  // four lanes in parallel
    x1 = Fold(x1, k, Take(p, p0, out));
    x2 = Fold(x2, k, Take(p + 16, p0, out));
    x3 = Fold(x3, k, Take(p + 32, p0, out));
    x4 = Fold(x4, k, Take(p + 48, p0, out));
  }
  k = _mm_load_si128(reinterpret_cast<const __m128i*>(kK3K4));
  x1 = Fold(x1, k, x2);
  x1 = Fold(x1, k, x3);
  x1 = Fold(x1, k, x4);
  return Crc32Finish(x1, p, n, p0, out);
}

// The same folding four 128-bit lanes per instruction (VPCLMULQDQ on 512-bit
// registers). On this lab's EPYC (Zen 4, under KVM) a legacy PCLMULQDQ takes
// ~1.5 ns, one on a 512-bit register (four multiplies) ~0.65 ns: a 4 KiB
// frame's CRC 700 -> ~100 ns, and each endpoint reads or writes every frame
// once with it folded in. Four registers (256 bytes) in flight, folded across
// 2048 bits, so the loop waits on throughput rather than on one multiply's
// latency; then into one register across 512 bits (the 128-bit code's k1 k2,
// per lane), and its four lanes into one across 128 bits.
#define VCLMUL_TARGET __attribute__((target("avx512f,vpclmulqdq,pclmul,sse4.1")))

VCLMUL_TARGET inline __m512i Take64(const uint8_t* q, const uint8_t* p0, uint8_t* out) {
  __m512i v = _mm512_loadu_si512(q);
  if (out != nullptr) _mm512_storeu_si512(out + (q - p0), v);
  return v;
}

// x (four lanes) times k, per lane as Fold, plus the next 64 bytes (0x96: a ^ b ^ c).
VCLMUL_TARGET inline __m512i Fold64(__m512i x, __m512i k, __m512i next) {
  return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x11), _mm512_clmulepi64_epi128(x, k, 0x00), next, 0x96);
}

VCLMUL_TARGET uint32_t Crc32Vclmul(uint32_t c, const uint8_t* p, size_t n, uint8_t* out = nullptr) {
  alignas(16) static const uint64_t k2048[] = {0x011542778a, 0x01322d1430};  // fold across 2048 bits (256 bytes)
  const uint8_t* p0 = p;
  __m512i x = _mm512_xor_si512(Take64(p, p0, out), _mm512_inserti32x4(_mm512_setzero_si512(), _mm_cvtsi32_si128(static_cast<int>(c)), 0));
  p += 64;
  n -= 64;
  __m512i k = _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(kK1K2)));
  if (n >= 192) {
    __m512i x2 = Take64(p, p0, out), x3 = Take64(p + 64, p0, out), x4 = Take64(p + 128, p0, out);
    p += 192;
    n -= 192;
    __m512i k4 = _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(k2048)));
    for (; n >= 256; p += 256, n -= 256) {
      x = Fold64(x, k4, Take64(p, p0, out));
      x2 = Fold64(x2, k4, Take64(p + 64, p0, out));
      x3 = Fold64(x3, k4, Take64(p + 128, p0, out));
      x4 = Fold64(x4, k4, Take64(p + 192, p0, out));
    }
    x = Fold64(x, k, x2);
    x = Fold64(x, k, x3);
    x = Fold64(x, k, x4);
  }
  for (; n >= 64; p += 64, n -= 64) x = Fold64(x, k, Take64(p, p0, out));
  __m128i k1 = _mm_load_si128(reinterpret_cast<const __m128i*>(kK3K4));
  __m128i x1 = _mm512_castsi512_si128(x);
  x1 = Fold(x1, k1, _mm512_extracti32x4_epi32(x, 1));
  x1 = Fold(x1, k1, _mm512_extracti32x4_epi32(x, 2));
  x1 = Fold(x1, k1, _mm512_extracti32x4_epi32(x, 3));
  return Crc32Finish(x1, p, n, p0, out);
}

const bool kHaveClmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
// PCIEOE_CRC_FOLD=128 keeps to the 128-bit code (its tests run the addon both ways).
const bool kHaveVclmul = kHaveClmul && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("vpclmulqdq") &&
                         !(getenv("PCIEOE_CRC_FOLD") != nullptr && strcmp(getenv("PCIEOE_CRC_FOLD"), "128") == 0);
#endif

// CRC-32 of p[0, n) continuing from `crc` (zlib convention: 0 to start);
// with `out`, p[0, n) is copied there in the same pass (the ranges must not overlap).
uint32_t Crc32(uint32_t crc, const uint8_t* p, size_t n, uint8_t* out = nullptr) {
  uint32_t c = ~crc;
#if defined(__x86_64__)
  if (kHaveClmul && n >= 64) {
    size_t bulk = n & ~static_cast<size_t>(15);
    c = kHaveVclmul ? Crc32Vclmul(c, p, bulk, out) : Crc32Clmul(c, p, bulk, out);
    p += bulk;
    n -= bulk;
    if (out != nullptr) out += bulk;
  }
#endif
  if (out != nullptr) memcpy(out, p, n);
  return ~Crc32Slice8(c, p, n);
}

const uint8_t kZeros[4] = {0, 0, 0, 0};

// crc32(data, initial = 0, start = 0, end = data.length, zeroAt?) -> CRC-32
// of data[start, end) continuing from `initial` (zlib.crc32's convention).
// The range arguments spare the caller a subarray() per call on the hot path;
// with zeroAt, the four bytes there count as zero (a frame's own CRC field),
// so a frame is checked in one call rather than three.
Napi::Value Crc32Js(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array data = ArgBytes(info, 0);
  uint32_t initial = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 0;
  size_t len = data.ByteLength();
  size_t start = info.Length() > 2 && info[2].IsNumber() ? ArgCount(info, 2) : 0;
  size_t end = info.Length() > 3 && info[3].IsNumber() ? ArgCount(info, 3) : len;
  if (start > end || end > len) throw Napi::RangeError::New(env, "crc32 range out of bounds");
  const uint8_t* p = data.Data();
  if (info.Length() > 4 && info[4].IsNumber()) {
    size_t hole = ArgCount(info, 4);
    if (hole < start || hole + 4 > end) throw Napi::RangeError::New(env, "crc32 zeroAt outside the range");
    uint32_t c = Crc32(initial, p + start, hole - start);
    c = Crc32(c, kZeros, 4);
    return Napi::Number::New(env, Crc32(c, p + hole + 4, end - hole - 4));
  }
  return Napi::Number::New(env, Crc32(initial, p + start, end - start));
}

// The CRC of n bytes of `in` continuing from c, copied to `out` in the same pass; views of one
// buffer that overlap are moved first (memmove), then the copy is checked.
uint32_t CopyAndCrc(uint32_t c, const uint8_t* in, size_t n, uint8_t* out) {
  if (in < out + n && out < in + n) {
    memmove(out, in, n);
    return Crc32(c, out, n);
  }
  return Crc32(c, in, n, out);
}

// The CRC of a 24-byte PCIeOE header with its CRC field (bytes 12-15) counted as zero.
uint32_t HeaderCrc(const uint8_t* h) {
  uint32_t c = Crc32(0, h, 12);
  c = Crc32(c, kZeros, 4);
  return Crc32(c, h + 16, 8);
}

// crc32Copy(dst, offset, src, initial = 0) -> CRC-32 of src continuing from
// `initial`, src copied to dst[offset, offset + src.length) in the same pass:
// a frame's payload is read once when it is encoded, not once to copy and
// once to check.
Napi::Value Crc32CopyJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array dst = ArgBytes(info, 0);
  size_t offset = ArgCount(info, 1);
  Napi::Uint8Array src = ArgBytes(info, 2);
  uint32_t initial = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Uint32Value() : 0;
  size_t n = src.ByteLength();
  if (offset > dst.ByteLength() || n > dst.ByteLength() - offset) throw Napi::RangeError::New(env, "crc32Copy: src does not fit dst at offset");
  return Napi::Number::New(env, CopyAndCrc(initial, src.Data(), n, dst.Data() + offset));
}

// copyCrc32(dst, offset, src, start, end, crcStart, crcEnd, zeroAt) -> CRC-32
// of src[crcStart, crcEnd) with the four bytes at zeroAt counted as zero,
// while src[start, end) is copied to dst[offset, ...): a received frame is
// copied out of shared memory and its check sequence computed in one pass
// (crcStart <= zeroAt, zeroAt + 4 <= crcEnd, all within [start, end)).
Napi::Value CopyCrc32Js(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array dst = ArgBytes(info, 0);
  size_t offset = ArgCount(info, 1);
  Napi::Uint8Array src = ArgBytes(info, 2);
  size_t start = ArgCount(info, 3), end = ArgCount(info, 4);
  size_t crcStart = ArgCount(info, 5), crcEnd = ArgCount(info, 6), hole = ArgCount(info, 7);
  if (start > end || end > src.ByteLength()) throw Napi::RangeError::New(env, "copyCrc32: range outside src");
  if (offset > dst.ByteLength() || end - start > dst.ByteLength() - offset) throw Napi::RangeError::New(env, "copyCrc32: range does not fit dst at offset");
  if (crcStart < start || crcStart > hole || hole + 4 > crcEnd || crcEnd > end) throw Napi::RangeError::New(env, "copyCrc32: CRC range or zeroAt outside the copied range");
  const uint8_t* in = src.Data();
  uint8_t* out = dst.Data() + offset - start;  // out[i] receives in[i]
  if (in + start < out + end && out + start < in + end) throw Napi::RangeError::New(env, "copyCrc32: src and dst overlap");
  memcpy(out + start, in + start, crcStart - start);
  uint32_t c = Crc32(0, in + crcStart, hole - crcStart, out + crcStart);
  memcpy(out + hole, in + hole, 4);
  c = Crc32(c, kZeros, 4);
  c = Crc32(c, in + hole + 4, crcEnd - hole - 4, out + hole + 4);
  memcpy(out + crcEnd, in + crcEnd, end - crcEnd);
  return Napi::Number::New(env, c);
}

// sealFrame(buf, hdr, payload): the last step of encoding a PCIeOE frame whose 24-byte header
// stands at buf[hdr]: the payload copied in behind it, and the CRC of header and payload (the
// CRC field, at hdr + 12, counted as zero) written into that field, big-endian; returns the
// CRC. One call where crc32 over the header and crc32Copy over the payload were two: on the
// sending side each is a native call per frame, its arguments checked one N-API call each.
Napi::Value SealFrameJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array buf = ArgBytes(info, 0);
  size_t hdr = ArgCount(info, 1);
  Napi::Uint8Array src = ArgBytes(info, 2);
  size_t n = src.ByteLength(), len = buf.ByteLength();
  if (hdr > len || len - hdr < 24 || n > len - hdr - 24) throw Napi::RangeError::New(env, "sealFrame: header and payload do not fit buf at hdr");
  uint8_t* h = buf.Data() + hdr;
  uint32_t c = CopyAndCrc(HeaderCrc(h), src.Data(), n, h + 24);
  h[12] = static_cast<uint8_t>(c >> 24);
  h[13] = static_cast<uint8_t>(c >> 16);
  h[14] = static_cast<uint8_t>(c >> 8);
  h[15] = static_cast<uint8_t>(c);
  return Napi::Number::New(env, c);
}

// framesCrcOk(region, spans, count, ok): for i < count, ok[i] = 1 when region[start, end)
// (spans: 2 * count u32 in native byte order, start and end of each) is a PCIeOE frame, tagged or
// not, whose payload lies inside it and whose CRC field (big-endian, counted as zero) holds
// the CRC of its header and payload; else 0 (not PCIeOE, too short, outside the region,
// damaged). The frames of one receive pass checked in one call: per frame, an N-API call's
// argument checks cost more than the CRC of 4 KiB (see sealFrame). The layout is as
// frame.ts's pcieoeHeaderAt and decodeFrame read it.
Napi::Value FramesCrcOkJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array region = ArgBytes(info, 0);
  Napi::Uint8Array spans = ArgBytes(info, 1);
  size_t count = ArgCount(info, 2);
  Napi::Uint8Array ok = ArgBytes(info, 3);
  if (spans.ByteLength() / 8 < count || ok.ByteLength() < count) throw Napi::RangeError::New(env, "framesCrcOk: fewer spans or results than count");
  const uint8_t* base = region.Data();
  size_t len = region.ByteLength();
  for (size_t i = 0; i < count; i++) {
    uint32_t se[2];
    memcpy(se, spans.Data() + 8 * i, 8);
    ok.Data()[i] = 0;
    if (se[0] > se[1] || se[1] > len || se[1] - se[0] < 18 + 24) continue;
    const uint8_t* f = base + se[0];
    size_t n = se[1] - se[0], o = 12;
    unsigned type = (f[12] << 8) | f[13];
    if (type == 0x8100) {
      o = 16;
      type = (f[16] << 8) | f[17];
    }
    if (type != 0x88b5) continue;
    const uint8_t* h = f + o + 2;
    size_t payload = (size_t{h[10]} << 8) | h[11];
    if (o + 2 + 24 + payload > n) continue;
    uint32_t c = Crc32(HeaderCrc(h), h + 24, payload);
    uint32_t field = (uint32_t{h[12]} << 24) | (uint32_t{h[13]} << 16) | (uint32_t{h[14]} << 8) | h[15];
    ok.Data()[i] = c == field ? 1 : 0;
  }
  return env.Undefined();
}

}  // namespace

void RegisterCrc32(Napi::Env env, Napi::Object exports) {
  exports.Set("crc32", Napi::Function::New(env, Crc32Js));
  exports.Set("crc32Copy", Napi::Function::New(env, Crc32CopyJs));
  exports.Set("copyCrc32", Napi::Function::New(env, CopyCrc32Js));
  exports.Set("sealFrame", Napi::Function::New(env, SealFrameJs));
  exports.Set("framesCrcOk", Napi::Function::New(env, FramesCrcOkJs));
}

}  // namespace pcieoe
