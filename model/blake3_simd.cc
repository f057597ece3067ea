// SIMD BLAKE3: compresses 4 (SSE4.1), 8 (AVX2) or 16 (AVX-512) inputs at
// once, one input per vector lane. State word i of every input lives in
// vector v[i]; message blocks are transposed into that layout on load and
// the chaining values transposed back on store. Each function carries its
// own target attribute, so this file builds with the default -march and the
// caller (blake3.cc) only calls what the CPU reports it supports.
#include <cstddef>
#include <cstdint>

#include "model/blake3.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MM_BLAKE3_X86 1
#endif

namespace mm::model::blake3_internal {

#if defined(MM_BLAKE3_X86)

// GCC 12's AVX-512 intrinsics start from a deliberately undefined vector
// (`__m512i __Y = __Y;`) and then warn about it where they are inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace {

#define MM_TARGET_SSE41 __attribute__((target("sse4.1")))
#define MM_TARGET_AVX2 __attribute__((target("avx2")))
#define MM_TARGET_AVX512 __attribute__((target("avx512f")))

// Block counters for `lanes` inputs: input i uses counter + i when the
// inputs are consecutive chunks, else every input uses `counter`.
void LaneCounters(uint64_t counter, bool increment, int lanes, uint32_t* lo,
                  uint32_t* hi) {
  for (int i = 0; i < lanes; ++i) {
    const uint64_t c = counter + (increment ? static_cast<uint64_t>(i) : 0);
    lo[i] = static_cast<uint32_t>(c);
    hi[i] = static_cast<uint32_t>(c >> 32);
  }
}

// How far ahead of the block being compressed to prefetch each input. A
// prefetch past the end of an input is harmless (prefetches never fault).
constexpr size_t kPrefetchBlocksAhead = 2;

uint8_t BlockFlags(size_t block, size_t blocks, uint8_t flags,
                   uint8_t flags_start, uint8_t flags_end) {
  uint8_t block_flags = flags;
  if (block == 0) block_flags |= flags_start;
  if (block + 1 == blocks) block_flags |= flags_end;
  return block_flags;
}

// ---------------------------------------------------------------- SSE4.1

MM_TARGET_SSE41 inline __m128i Add4(__m128i a, __m128i b) {
  return _mm_add_epi32(a, b);
}
MM_TARGET_SSE41 inline __m128i Xor4(__m128i a, __m128i b) {
  return _mm_xor_si128(a, b);
}
MM_TARGET_SSE41 inline __m128i Rot16x4(__m128i x) {
  return _mm_shuffle_epi8(
      x, _mm_set_epi8(13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2));
}
MM_TARGET_SSE41 inline __m128i Rot12x4(__m128i x) {
  return _mm_or_si128(_mm_srli_epi32(x, 12), _mm_slli_epi32(x, 20));
}
MM_TARGET_SSE41 inline __m128i Rot8x4(__m128i x) {
  return _mm_shuffle_epi8(
      x, _mm_set_epi8(12, 15, 14, 13, 8, 11, 10, 9, 4, 7, 6, 5, 0, 3, 2, 1));
}
MM_TARGET_SSE41 inline __m128i Rot7x4(__m128i x) {
  return _mm_or_si128(_mm_srli_epi32(x, 7), _mm_slli_epi32(x, 25));
}

MM_TARGET_SSE41 inline void G4(__m128i& a, __m128i& b, __m128i& c, __m128i& d,
                               __m128i x, __m128i y) {
  a = Add4(Add4(a, b), x);
  d = Rot16x4(Xor4(d, a));
  c = Add4(c, d);
  b = Rot12x4(Xor4(b, c));
  a = Add4(Add4(a, b), y);
  d = Rot8x4(Xor4(d, a));
  c = Add4(c, d);
  b = Rot7x4(Xor4(b, c));
}

template <int R>
MM_TARGET_SSE41 inline void Round4(__m128i* v, const __m128i* m) {
  constexpr const std::array<uint8_t, 16>& s = kMessageSchedule[R];
  G4(v[0], v[4], v[8], v[12], m[s[0]], m[s[1]]);
  G4(v[1], v[5], v[9], v[13], m[s[2]], m[s[3]]);
  G4(v[2], v[6], v[10], v[14], m[s[4]], m[s[5]]);
  G4(v[3], v[7], v[11], v[15], m[s[6]], m[s[7]]);
  G4(v[0], v[5], v[10], v[15], m[s[8]], m[s[9]]);
  G4(v[1], v[6], v[11], v[12], m[s[10]], m[s[11]]);
  G4(v[2], v[7], v[8], v[13], m[s[12]], m[s[13]]);
  G4(v[3], v[4], v[9], v[14], m[s[14]], m[s[15]]);
}

// In place: row i word j becomes row j word i.
MM_TARGET_SSE41 inline void Transpose4x4(__m128i* r) {
  const __m128i t0 = _mm_unpacklo_epi32(r[0], r[1]);
  const __m128i t1 = _mm_unpackhi_epi32(r[0], r[1]);
  const __m128i t2 = _mm_unpacklo_epi32(r[2], r[3]);
  const __m128i t3 = _mm_unpackhi_epi32(r[2], r[3]);
  r[0] = _mm_unpacklo_epi64(t0, t2);
  r[1] = _mm_unpackhi_epi64(t0, t2);
  r[2] = _mm_unpacklo_epi64(t1, t3);
  r[3] = _mm_unpackhi_epi64(t1, t3);
}

MM_TARGET_SSE41 void HashGroup4(const uint8_t* const* inputs, size_t blocks,
                                const uint32_t key[8], uint64_t counter,
                                bool increment, uint8_t flags,
                                uint8_t flags_start, uint8_t flags_end,
                                uint8_t* out) {
  __m128i h[8];
  for (int i = 0; i < 8; ++i) h[i] = _mm_set1_epi32(static_cast<int>(key[i]));
  alignas(16) uint32_t lo[4];
  alignas(16) uint32_t hi[4];
  LaneCounters(counter, increment, 4, lo, hi);
  const __m128i counter_lo = _mm_load_si128(reinterpret_cast<__m128i*>(lo));
  const __m128i counter_hi = _mm_load_si128(reinterpret_cast<__m128i*>(hi));
  for (size_t b = 0; b < blocks; ++b) {
    __m128i m[16];
    for (int q = 0; q < 4; ++q) {
      for (int i = 0; i < 4; ++i) {
        m[4 * q + i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(
            inputs[i] + b * kBlake3BlockBytes + 16 * q));
      }
      Transpose4x4(m + 4 * q);
    }
    __m128i v[16] = {
        h[0],
        h[1],
        h[2],
        h[3],
        h[4],
        h[5],
        h[6],
        h[7],
        _mm_set1_epi32(static_cast<int>(kIv[0])),
        _mm_set1_epi32(static_cast<int>(kIv[1])),
        _mm_set1_epi32(static_cast<int>(kIv[2])),
        _mm_set1_epi32(static_cast<int>(kIv[3])),
        counter_lo,
        counter_hi,
        _mm_set1_epi32(static_cast<int>(kBlake3BlockBytes)),
        _mm_set1_epi32(BlockFlags(b, blocks, flags, flags_start, flags_end)),
    };
    Round4<0>(v, m);
    Round4<1>(v, m);
    Round4<2>(v, m);
    Round4<3>(v, m);
    Round4<4>(v, m);
    Round4<5>(v, m);
    Round4<6>(v, m);
    for (int i = 0; i < 8; ++i) h[i] = Xor4(v[i], v[i + 8]);
  }
  Transpose4x4(h);
  Transpose4x4(h + 4);
  for (int i = 0; i < 4; ++i) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 32 * i), h[i]);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 32 * i + 16), h[4 + i]);
  }
}

// ------------------------------------------------------------------ AVX2
//
// As for AVX-512 below: the helpers are forced inline so that the kernels
// keep their state in registers (16 of them; the message words live on the
// stack and are read as memory operands).

#define MM_AVX2_INLINE inline __attribute__((always_inline, target("avx2")))

MM_AVX2_INLINE __m256i Add8(__m256i a, __m256i b) {
  return _mm256_add_epi32(a, b);
}
MM_AVX2_INLINE __m256i Xor8(__m256i a, __m256i b) {
  return _mm256_xor_si256(a, b);
}
MM_AVX2_INLINE __m256i Rot16x8(__m256i x) {
  return _mm256_shuffle_epi8(
      x, _mm256_set_epi8(13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2,
                         13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2));
}
MM_AVX2_INLINE __m256i Rot12x8(__m256i x) {
  return _mm256_or_si256(_mm256_srli_epi32(x, 12), _mm256_slli_epi32(x, 20));
}
MM_AVX2_INLINE __m256i Rot8x8(__m256i x) {
  return _mm256_shuffle_epi8(
      x, _mm256_set_epi8(12, 15, 14, 13, 8, 11, 10, 9, 4, 7, 6, 5, 0, 3, 2, 1,
                         12, 15, 14, 13, 8, 11, 10, 9, 4, 7, 6, 5, 0, 3, 2, 1));
}
MM_AVX2_INLINE __m256i Rot7x8(__m256i x) {
  return _mm256_or_si256(_mm256_srli_epi32(x, 7), _mm256_slli_epi32(x, 25));
}

MM_AVX2_INLINE void G8(__m256i& a, __m256i& b, __m256i& c, __m256i& d,
                       __m256i x, __m256i y) {
  a = Add8(Add8(a, b), x);
  d = Rot16x8(Xor8(d, a));
  c = Add8(c, d);
  b = Rot12x8(Xor8(b, c));
  a = Add8(Add8(a, b), y);
  d = Rot8x8(Xor8(d, a));
  c = Add8(c, d);
  b = Rot7x8(Xor8(b, c));
}

template <int R>
MM_AVX2_INLINE void Round8(__m256i* v, const __m256i* m) {
  constexpr const std::array<uint8_t, 16>& s = kMessageSchedule[R];
  G8(v[0], v[4], v[8], v[12], m[s[0]], m[s[1]]);
  G8(v[1], v[5], v[9], v[13], m[s[2]], m[s[3]]);
  G8(v[2], v[6], v[10], v[14], m[s[4]], m[s[5]]);
  G8(v[3], v[7], v[11], v[15], m[s[6]], m[s[7]]);
  G8(v[0], v[5], v[10], v[15], m[s[8]], m[s[9]]);
  G8(v[1], v[6], v[11], v[12], m[s[10]], m[s[11]]);
  G8(v[2], v[7], v[8], v[13], m[s[12]], m[s[13]]);
  G8(v[3], v[4], v[9], v[14], m[s[14]], m[s[15]]);
}

// One compression of 8 blocks side by side; see Compress16.
MM_AVX2_INLINE void Compress8(__m256i* h, const __m256i* m, __m256i counter_lo,
                              __m256i counter_hi, uint32_t block_flags) {
  __m256i v[16] = {
      h[0],
      h[1],
      h[2],
      h[3],
      h[4],
      h[5],
      h[6],
      h[7],
      _mm256_set1_epi32(static_cast<int>(kIv[0])),
      _mm256_set1_epi32(static_cast<int>(kIv[1])),
      _mm256_set1_epi32(static_cast<int>(kIv[2])),
      _mm256_set1_epi32(static_cast<int>(kIv[3])),
      counter_lo,
      counter_hi,
      _mm256_set1_epi32(static_cast<int>(kBlake3BlockBytes)),
      _mm256_set1_epi32(static_cast<int>(block_flags)),
  };
  Round8<0>(v, m);
  Round8<1>(v, m);
  Round8<2>(v, m);
  Round8<3>(v, m);
  Round8<4>(v, m);
  Round8<5>(v, m);
  Round8<6>(v, m);
  h[0] = Xor8(v[0], v[8]);
  h[1] = Xor8(v[1], v[9]);
  h[2] = Xor8(v[2], v[10]);
  h[3] = Xor8(v[3], v[11]);
  h[4] = Xor8(v[4], v[12]);
  h[5] = Xor8(v[5], v[13]);
  h[6] = Xor8(v[6], v[14]);
  h[7] = Xor8(v[7], v[15]);
}

// In place: row i word j becomes row j word i, for 8 rows of 8 words.
MM_AVX2_INLINE void Transpose8x8(__m256i* r) {
  __m256i t[8];
#pragma GCC unroll 4
  for (int p = 0; p < 4; ++p) {
    t[2 * p] = _mm256_unpacklo_epi32(r[2 * p], r[2 * p + 1]);
    t[2 * p + 1] = _mm256_unpackhi_epi32(r[2 * p], r[2 * p + 1]);
  }
  // u[4g + k] holds, in each 128-bit lane L, column 4L + k of rows
  // 4g..4g+3.
  __m256i u[8];
#pragma GCC unroll 2
  for (int g = 0; g < 2; ++g) {
    u[4 * g + 0] = _mm256_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 1] = _mm256_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 2] = _mm256_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
    u[4 * g + 3] = _mm256_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
  }
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    r[k] = _mm256_permute2x128_si256(u[k], u[4 + k], 0x20);
    r[4 + k] = _mm256_permute2x128_si256(u[k], u[4 + k], 0x31);
  }
}

// Block counters of 8 inputs as vectors; see LaneCounters.
MM_AVX2_INLINE void Counters8(uint64_t counter, bool increment, __m256i& lo,
                              __m256i& hi) {
  alignas(32) uint32_t lo_words[8];
  alignas(32) uint32_t hi_words[8];
  LaneCounters(counter, increment, 8, lo_words, hi_words);
  lo = _mm256_load_si256(reinterpret_cast<const __m256i*>(lo_words));
  hi = _mm256_load_si256(reinterpret_cast<const __m256i*>(hi_words));
}

MM_TARGET_AVX2 void HashGroup8(const uint8_t* const* inputs, size_t blocks,
                               const uint32_t key[8], uint64_t counter,
                               bool increment, uint8_t flags,
                               uint8_t flags_start, uint8_t flags_end,
                               uint8_t* out) {
  __m256i h[8];
  for (int i = 0; i < 8; ++i) {
    h[i] = _mm256_set1_epi32(static_cast<int>(key[i]));
  }
  __m256i counter_lo;
  __m256i counter_hi;
  Counters8(counter, increment, counter_lo, counter_hi);
  for (size_t b = 0; b < blocks; ++b) {
    __m256i m[16];
#pragma GCC unroll 2
    for (int half = 0; half < 2; ++half) {
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) {
        m[8 * half + i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(
            inputs[i] + b * kBlake3BlockBytes + 32 * half));
      }
      Transpose8x8(m + 8 * half);
    }
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(inputs[i]) +
                       (b + kPrefetchBlocksAhead) * kBlake3BlockBytes,
                   _MM_HINT_T0);
    }
    Compress8(h, m, counter_lo, counter_hi,
              BlockFlags(b, blocks, flags, flags_start, flags_end));
  }
  Transpose8x8(h);
  for (int i = 0; i < 8; ++i) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 32 * i), h[i]);
  }
}

// 8 whole chunks lying one after another from `input`, counters from
// `counter`; the next 8 chunks are prefetched while these are compressed.
// See HashChunks16.
MM_TARGET_AVX2 void HashChunks8(const uint8_t* input, const uint32_t key[8],
                                uint64_t counter, uint8_t* out) {
  __m256i h[8];
  for (int i = 0; i < 8; ++i) {
    h[i] = _mm256_set1_epi32(static_cast<int>(key[i]));
  }
  __m256i counter_lo;
  __m256i counter_hi;
  Counters8(counter, /*increment=*/true, counter_lo, counter_hi);
  constexpr size_t kBlocks = kBlake3ChunkBytes / kBlake3BlockBytes;
  const uint8_t* next_group = input + 8 * kBlake3ChunkBytes;
  for (size_t b = 0; b < kBlocks; ++b) {
    __m256i m[16];
#pragma GCC unroll 2
    for (int half = 0; half < 2; ++half) {
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) {
        m[8 * half + i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(
            input + i * kBlake3ChunkBytes + b * kBlake3BlockBytes + 32 * half));
      }
      Transpose8x8(m + 8 * half);
    }
    // The next group's 8 KiB, half a KiB per block.
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(next_group) +
                       b * (kBlake3ChunkBytes / 2) + i * 64,
                   _MM_HINT_T0);
    }
    const uint32_t block_flags =
        (b == 0 ? kFlagChunkStart : 0) | (b + 1 == kBlocks ? kFlagChunkEnd : 0);
    Compress8(h, m, counter_lo, counter_hi, block_flags);
  }
  Transpose8x8(h);
  for (int i = 0; i < 8; ++i) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 32 * i), h[i]);
  }
}

// --------------------------------------------------------------- AVX-512
//
// Everything below is forced inline into the two kernels (HashGroup16 and
// HashChunks16) so that the 16 state vectors and the transposes stay in
// registers; as separate functions they went through the stack.

#define MM_AVX512_INLINE \
  inline __attribute__((always_inline, target("avx512f")))

MM_AVX512_INLINE void G16(__m512i& a, __m512i& b, __m512i& c, __m512i& d,
                          __m512i x, __m512i y) {
  a = _mm512_add_epi32(_mm512_add_epi32(a, b), x);
  d = _mm512_ror_epi32(_mm512_xor_si512(d, a), 16);
  c = _mm512_add_epi32(c, d);
  b = _mm512_ror_epi32(_mm512_xor_si512(b, c), 12);
  a = _mm512_add_epi32(_mm512_add_epi32(a, b), y);
  d = _mm512_ror_epi32(_mm512_xor_si512(d, a), 8);
  c = _mm512_add_epi32(c, d);
  b = _mm512_ror_epi32(_mm512_xor_si512(b, c), 7);
}

template <int R>
MM_AVX512_INLINE void Round16(__m512i* v, const __m512i* m) {
  constexpr const std::array<uint8_t, 16>& s = kMessageSchedule[R];
  G16(v[0], v[4], v[8], v[12], m[s[0]], m[s[1]]);
  G16(v[1], v[5], v[9], v[13], m[s[2]], m[s[3]]);
  G16(v[2], v[6], v[10], v[14], m[s[4]], m[s[5]]);
  G16(v[3], v[7], v[11], v[15], m[s[6]], m[s[7]]);
  G16(v[0], v[5], v[10], v[15], m[s[8]], m[s[9]]);
  G16(v[1], v[6], v[11], v[12], m[s[10]], m[s[11]]);
  G16(v[2], v[7], v[8], v[13], m[s[12]], m[s[13]]);
  G16(v[3], v[4], v[9], v[14], m[s[14]], m[s[15]]);
}

// One compression of 16 blocks side by side: `h` (the eight chaining-value
// vectors) becomes the next chaining values. `m` holds the transposed
// message words.
MM_AVX512_INLINE void Compress16(__m512i* h, const __m512i* m,
                                 __m512i counter_lo, __m512i counter_hi,
                                 uint32_t block_flags) {
  __m512i v[16] = {
      h[0],
      h[1],
      h[2],
      h[3],
      h[4],
      h[5],
      h[6],
      h[7],
      _mm512_set1_epi32(static_cast<int>(kIv[0])),
      _mm512_set1_epi32(static_cast<int>(kIv[1])),
      _mm512_set1_epi32(static_cast<int>(kIv[2])),
      _mm512_set1_epi32(static_cast<int>(kIv[3])),
      counter_lo,
      counter_hi,
      _mm512_set1_epi32(static_cast<int>(kBlake3BlockBytes)),
      _mm512_set1_epi32(static_cast<int>(block_flags)),
  };
  Round16<0>(v, m);
  Round16<1>(v, m);
  Round16<2>(v, m);
  Round16<3>(v, m);
  Round16<4>(v, m);
  Round16<5>(v, m);
  Round16<6>(v, m);
  h[0] = _mm512_xor_si512(v[0], v[8]);
  h[1] = _mm512_xor_si512(v[1], v[9]);
  h[2] = _mm512_xor_si512(v[2], v[10]);
  h[3] = _mm512_xor_si512(v[3], v[11]);
  h[4] = _mm512_xor_si512(v[4], v[12]);
  h[5] = _mm512_xor_si512(v[5], v[13]);
  h[6] = _mm512_xor_si512(v[6], v[14]);
  h[7] = _mm512_xor_si512(v[7], v[15]);
}

// In place: row i word j becomes row j word i, for 16 rows of 16 words.
MM_AVX512_INLINE void Transpose16x16(__m512i* r) {
  __m512i t[16];
#pragma GCC unroll 8
  for (int p = 0; p < 8; ++p) {
    t[2 * p] = _mm512_unpacklo_epi32(r[2 * p], r[2 * p + 1]);
    t[2 * p + 1] = _mm512_unpackhi_epi32(r[2 * p], r[2 * p + 1]);
  }
  // u[4g + k] holds, in each 128-bit lane L, column 4L + k of rows
  // 4g..4g+3.
  __m512i u[16];
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g) {
    u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
    u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
  }
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    // Lanes 0,1 of rows 0-3 and 4-7, then of rows 8-11 and 12-15; then the
    // same for lanes 2,3.
    const __m512i low_a = _mm512_shuffle_i32x4(u[k], u[4 + k], 0x44);
    const __m512i high_a = _mm512_shuffle_i32x4(u[k], u[4 + k], 0xEE);
    const __m512i low_b = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0x44);
    const __m512i high_b = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0xEE);
    r[k] = _mm512_shuffle_i32x4(low_a, low_b, 0x88);
    r[4 + k] = _mm512_shuffle_i32x4(low_a, low_b, 0xDD);
    r[8 + k] = _mm512_shuffle_i32x4(high_a, high_b, 0x88);
    r[12 + k] = _mm512_shuffle_i32x4(high_a, high_b, 0xDD);
  }
}

// Writes the 16 chaining values held word-wise in h[0..7] (h[w] lane i is
// word w of input i) as 16 consecutive 32-byte values. An 8x16 transpose:
// half the shuffles of padding to 16x16.
MM_AVX512_INLINE void StoreChainingValues16(const __m512i* h, uint8_t* out) {
  __m512i t[8];
#pragma GCC unroll 4
  for (int p = 0; p < 4; ++p) {
    t[2 * p] = _mm512_unpacklo_epi32(h[2 * p], h[2 * p + 1]);
    t[2 * p + 1] = _mm512_unpackhi_epi32(h[2 * p], h[2 * p + 1]);
  }
  // u[4g + k] holds, in each 128-bit lane L, words 4g..4g+3 of input
  // 4L + k.
  __m512i u[8];
#pragma GCC unroll 2
  for (int g = 0; g < 2; ++g) {
    u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
    u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
  }
  // Output vector 2L + k/2 (k even) holds inputs 4L + k and 4L + k + 1:
  // words 0-3 and 4-7 of the first, then of the second.
#pragma GCC unroll 2
  for (int k = 0; k < 4; k += 2) {
    // Lanes 0,1 of u[k] and u[4+k], then lanes 2,3.
    const __m512i a01 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0x44);
    const __m512i a23 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0xEE);
    const __m512i b01 = _mm512_shuffle_i32x4(u[k + 1], u[5 + k], 0x44);
    const __m512i b23 = _mm512_shuffle_i32x4(u[k + 1], u[5 + k], 0xEE);
    // a01 = [u_k.L0, u_k.L1, u_4+k.L0, u_4+k.L1]; pick L0 of each source
    // (inputs k and k+1 of 128-bit lane 0), then L1.
    const __m512i in0 = _mm512_shuffle_i32x4(a01, b01, 0x88);
    const __m512i in1 = _mm512_shuffle_i32x4(a01, b01, 0xDD);
    const __m512i in2 = _mm512_shuffle_i32x4(a23, b23, 0x88);
    const __m512i in3 = _mm512_shuffle_i32x4(a23, b23, 0xDD);
    // inN holds inputs 4N + k and 4N + k + 1, words 0-3 and 4-7 each.
    _mm512_storeu_si512(out + 32 * (0 + k), in0);
    _mm512_storeu_si512(out + 32 * (4 + k), in1);
    _mm512_storeu_si512(out + 32 * (8 + k), in2);
    _mm512_storeu_si512(out + 32 * (12 + k), in3);
  }
}

// Counters of 16 consecutive chunks from `counter`, low and high words,
// with the carry into the high word where the low word wraps.
MM_AVX512_INLINE void ChunkCounters16(uint64_t counter, __m512i& lo,
                                      __m512i& hi) {
  const __m512i base = _mm512_set1_epi32(static_cast<int>(counter));
  lo = _mm512_add_epi32(base, _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
                                                10, 11, 12, 13, 14, 15));
  const __mmask16 wrapped = _mm512_cmplt_epu32_mask(lo, base);
  hi = _mm512_set1_epi32(static_cast<int>(counter >> 32));
  hi = _mm512_mask_add_epi32(hi, wrapped, hi, _mm512_set1_epi32(1));
}

MM_TARGET_AVX512 void HashGroup16(const uint8_t* const* inputs, size_t blocks,
                                  const uint32_t key[8], uint64_t counter,
                                  bool increment, uint8_t flags,
                                  uint8_t flags_start, uint8_t flags_end,
                                  uint8_t* out) {
  __m512i h[8];
  for (int i = 0; i < 8; ++i) {
    h[i] = _mm512_set1_epi32(static_cast<int>(key[i]));
  }
  __m512i counter_lo;
  __m512i counter_hi;
  ChunkCounters16(counter, counter_lo, counter_hi);
  if (!increment) {
    counter_lo = _mm512_set1_epi32(static_cast<int>(counter));
    counter_hi = _mm512_set1_epi32(static_cast<int>(counter >> 32));
  }
  for (size_t b = 0; b < blocks; ++b) {
    __m512i m[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) {
      m[i] = _mm512_loadu_si512(inputs[i] + b * kBlake3BlockBytes);
      // Sixteen strided streams are more than the hardware prefetcher
      // follows well; ask for each lane's data a few blocks ahead.
      _mm_prefetch(reinterpret_cast<const char*>(inputs[i]) +
                       (b + kPrefetchBlocksAhead) * kBlake3BlockBytes,
                   _MM_HINT_T0);
    }
    Transpose16x16(m);
    Compress16(h, m, counter_lo, counter_hi,
               BlockFlags(b, blocks, flags, flags_start, flags_end));
  }
  StoreChainingValues16(h, out);
}

// 16 whole chunks lying one after another from `input`, counters from
// `counter`: the common case of a large input, so its block count and flags
// are constants and the next 16 chunks are prefetched while these are
// compressed.
MM_TARGET_AVX512 void HashChunks16(const uint8_t* input, const uint32_t key[8],
                                   uint64_t counter, uint8_t* out) {
  __m512i h[8];
  for (int i = 0; i < 8; ++i) {
    h[i] = _mm512_set1_epi32(static_cast<int>(key[i]));
  }
  __m512i counter_lo;
  __m512i counter_hi;
  ChunkCounters16(counter, counter_lo, counter_hi);
  constexpr size_t kBlocks = kBlake3ChunkBytes / kBlake3BlockBytes;
  const uint8_t* next_group = input + 16 * kBlake3ChunkBytes;
  for (size_t b = 0; b < kBlocks; ++b) {
    __m512i m[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) {
      m[i] = _mm512_loadu_si512(input + i * kBlake3ChunkBytes +
                                b * kBlake3BlockBytes);
    }
    // The next group's 16 KiB, one KiB per block: sequential, so these
    // lines come from memory well before they are read, whatever the
    // hardware prefetcher makes of the 16 strided streams above. Past the
    // end of the input they are harmless (prefetches never fault).
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(next_group) +
                       b * kBlake3ChunkBytes + i * 64,
                   _MM_HINT_T0);
    }
    Transpose16x16(m);
    const uint32_t block_flags =
        (b == 0 ? kFlagChunkStart : 0) | (b + 1 == kBlocks ? kFlagChunkEnd : 0);
    Compress16(h, m, counter_lo, counter_hi, block_flags);
  }
  StoreChainingValues16(h, out);
}

}  // namespace

void HashManySse41(const uint8_t* const* inputs, size_t num_inputs,
                   size_t blocks, const uint32_t key[8], uint64_t counter,
                   bool increment_counter, uint8_t flags, uint8_t flags_start,
                   uint8_t flags_end, uint8_t* out) {
  while (num_inputs >= 4) {
    HashGroup4(inputs, blocks, key, counter, increment_counter, flags,
               flags_start, flags_end, out);
    inputs += 4;
    num_inputs -= 4;
    out += 4 * 32;
    if (increment_counter) counter += 4;
  }
  HashManyPortable(inputs, num_inputs, blocks, key, counter, increment_counter,
                   flags, flags_start, flags_end, out);
}

void HashManyAvx2(const uint8_t* const* inputs, size_t num_inputs,
                  size_t blocks, const uint32_t key[8], uint64_t counter,
                  bool increment_counter, uint8_t flags, uint8_t flags_start,
                  uint8_t flags_end, uint8_t* out) {
  while (num_inputs >= 8) {
    HashGroup8(inputs, blocks, key, counter, increment_counter, flags,
               flags_start, flags_end, out);
    inputs += 8;
    num_inputs -= 8;
    out += 8 * 32;
    if (increment_counter) counter += 8;
  }
  // Every AVX2 CPU has SSE4.1.
  HashManySse41(inputs, num_inputs, blocks, key, counter, increment_counter,
                flags, flags_start, flags_end, out);
}

void HashManyAvx512(const uint8_t* const* inputs, size_t num_inputs,
                    size_t blocks, const uint32_t key[8], uint64_t counter,
                    bool increment_counter, uint8_t flags, uint8_t flags_start,
                    uint8_t flags_end, uint8_t* out) {
  while (num_inputs >= 16) {
    HashGroup16(inputs, blocks, key, counter, increment_counter, flags,
                flags_start, flags_end, out);
    inputs += 16;
    num_inputs -= 16;
    out += 16 * 32;
    if (increment_counter) counter += 16;
  }
  // Every AVX-512 CPU has AVX2.
  HashManyAvx2(inputs, num_inputs, blocks, key, counter, increment_counter,
               flags, flags_start, flags_end, out);
}

void HashChunksAvx512(const uint8_t* input, size_t num_chunks, uint64_t counter,
                      uint8_t* out) {
  while (num_chunks >= 16) {
    HashChunks16(input, kIv, counter, out);
    input += 16 * kBlake3ChunkBytes;
    num_chunks -= 16;
    out += 16 * 32;
    counter += 16;
  }
  HashChunksAvx2(input, num_chunks, counter, out);
}

void HashChunksAvx2(const uint8_t* input, size_t num_chunks, uint64_t counter,
                    uint8_t* out) {
  while (num_chunks >= 8) {
    HashChunks8(input, kIv, counter, out);
    input += 8 * kBlake3ChunkBytes;
    num_chunks -= 8;
    out += 8 * 32;
    counter += 8;
  }
  HashChunksWith(HashManySse41, input, num_chunks, counter, out);
}

bool CpuHasSse41() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.1");
}
bool CpuHasAvx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
}
bool CpuHasAvx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#else  // Not x86: only the portable code exists.

void HashManySse41(const uint8_t* const* inputs, size_t num_inputs,
                   size_t blocks, const uint32_t key[8], uint64_t counter,
                   bool increment_counter, uint8_t flags, uint8_t flags_start,
                   uint8_t flags_end, uint8_t* out) {
  HashManyPortable(inputs, num_inputs, blocks, key, counter, increment_counter,
                   flags, flags_start, flags_end, out);
}
void HashManyAvx2(const uint8_t* const* inputs, size_t num_inputs,
                  size_t blocks, const uint32_t key[8], uint64_t counter,
                  bool increment_counter, uint8_t flags, uint8_t flags_start,
                  uint8_t flags_end, uint8_t* out) {
  HashManyPortable(inputs, num_inputs, blocks, key, counter, increment_counter,
                   flags, flags_start, flags_end, out);
}
void HashManyAvx512(const uint8_t* const* inputs, size_t num_inputs,
                    size_t blocks, const uint32_t key[8], uint64_t counter,
                    bool increment_counter, uint8_t flags, uint8_t flags_start,
                    uint8_t flags_end, uint8_t* out) {
  HashManyPortable(inputs, num_inputs, blocks, key, counter, increment_counter,
                   flags, flags_start, flags_end, out);
}
void HashChunksAvx512(const uint8_t* input, size_t num_chunks, uint64_t counter,
                      uint8_t* out) {
  HashChunksWith(HashManyPortable, input, num_chunks, counter, out);
}
void HashChunksAvx2(const uint8_t* input, size_t num_chunks, uint64_t counter,
                    uint8_t* out) {
  HashChunksWith(HashManyPortable, input, num_chunks, counter, out);
}
bool CpuHasSse41() { return false; }
bool CpuHasAvx2() { return false; }
bool CpuHasAvx512() { return false; }

#endif

}  // namespace mm::model::blake3_internal
