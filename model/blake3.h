// BLAKE3, written for this project from the published algorithm: 1024-byte
// chunks of sixteen 64-byte blocks, a 7-round compression function over a
// 16-word state, and a binary tree of chaining values whose left subtrees
// always hold the largest power of two of chunks. Only the plain hash mode
// (no key, no key derivation) is offered, with extendable output.
//
// Speed comes from compressing many chunks side by side with SIMD (SSE4.1,
// AVX2, AVX-512; see blake3_simd.cc), picked at run time from what the CPU
// supports; the portable code is always there and gives the same digests.
//
// Thread-safety: a Blake3Hasher is a value; distinct objects may be used from
// distinct threads, one object needs external synchronisation. The free
// functions are thread-safe.
//
//   Blake3Hasher hasher;
//   hasher.Update("model ");
//   hasher.Update("data");
//   std::array<uint8_t, 32> digest = hasher.Finalize();
//   std::string hex = Blake3Hex("model data");  // "ce3f0c5f..."
#ifndef MM_MODEL_BLAKE3_H_
#define MM_MODEL_BLAKE3_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace mm::model {

inline constexpr size_t kBlake3BlockBytes = 64;
inline constexpr size_t kBlake3ChunkBytes = 1024;
inline constexpr size_t kBlake3DigestBytes = 32;

// The eight 32-bit words that summarise a chunk or a subtree.
using Blake3ChainingValue = std::array<uint32_t, 8>;

// Which compression code runs. Every backend produces identical digests;
// the SIMD ones differ only in how many chunks they compress at once.
enum class Blake3Backend { kPortable, kSse41, kAvx2, kAvx512 };

// "portable", "sse4.1", "avx2" or "avx512".
std::string_view Blake3BackendName(Blake3Backend backend);
// The backends this CPU can run, portable first, fastest last.
std::vector<Blake3Backend> SupportedBlake3Backends();
// The fastest backend this CPU can run (what a default hasher uses).
Blake3Backend BestBlake3Backend();

class Blake3Hasher {
 public:
  // A hasher for a whole input, using the fastest backend of this CPU.
  Blake3Hasher();

  // A hasher that uses `backend`; FAILED_PRECONDITION when this CPU cannot
  // run it. For tests and benchmarks comparing backends.
  static absl::StatusOr<Blake3Hasher> WithBackend(Blake3Backend backend);

  // A hasher for one subtree of a larger input: the part that starts at
  // chunk `first_chunk` (byte offset first_chunk * 1024). The part must be
  // a whole subtree of the input's tree (see Blake3LeftSubtreeBytes), so
  // `first_chunk` is a multiple of the largest power of two not above the
  // part's chunk count. Finish it with FinalizeChainingValue(), never
  // Finalize() or FinalizeXof(): a subtree is never the root, so its hasher
  // compresses every whole chunk as it arrives instead of keeping the last
  // one back for a root flag it will not need (which makes each Update cost
  // the same whatever its size). Used to hash parts of one file on several
  // threads.
  static Blake3Hasher ForSubtree(uint64_t first_chunk,
                                 Blake3Backend backend = BestBlake3Backend());

  // Adds bytes. Any split of the input into Update calls gives the same
  // digest.
  void Update(absl::Span<const uint8_t> data);
  void Update(std::string_view data);

  // The 32-byte digest of everything added so far. The hasher stays usable:
  // more Update calls continue the same input.
  std::array<uint8_t, kBlake3DigestBytes> Finalize() const;
  // Extendable output: fills `out` (any length) with the output stream, of
  // which Finalize() is the first 32 bytes.
  void FinalizeXof(absl::Span<uint8_t> out) const;
  // The chaining value of a subtree (not a digest: the root flag is not
  // set). Only meaningful for a hasher made by ForSubtree over a part that
  // is not the whole input.
  Blake3ChainingValue FinalizeChainingValue() const;

  // Combines the chaining values of a left and right subtree into their
  // parent's chaining value, or, for the root, into the digest.
  static Blake3ChainingValue ParentChainingValue(
      const Blake3ChainingValue& left, const Blake3ChainingValue& right);
  static std::array<uint8_t, kBlake3DigestBytes> RootFromChildren(
      const Blake3ChainingValue& left, const Blake3ChainingValue& right);

 private:
  // What the final compression of a node needs; the root output and the
  // chaining value both come from it.
  struct Output {
    Blake3ChainingValue input_cv;
    std::array<uint32_t, 16> block_words;
    uint64_t counter;
    uint32_t block_len;
    uint32_t flags;
  };

  Blake3Hasher(uint64_t first_chunk, Blake3Backend backend);

  Output ChunkOutput() const;
  Output RootOutput() const;
  // Compresses the full block in `block_` into the chunk's chaining value.
  void CompressBufferedBlock();
  void AddChunkBytes(const uint8_t* data, size_t len);
  // Pushes the chaining value of a finished subtree of 2^level chunks that
  // ends the input seen so far, merging completed siblings. Only called
  // when more input is known to follow or in a subtree hasher, so no merge
  // can be the root.
  void PushSubtree(const Blake3ChainingValue& cv, int level);
  void ResetChunk(uint64_t chunk_index);

  Blake3Backend backend_;
  // Chunk index where this hasher's input starts; non-zero for subtrees.
  uint64_t first_chunk_;
  // Made by ForSubtree: whole chunks are compressed as soon as they are
  // complete, since none can be the root.
  bool subtree_ = false;
  // Whole chunks already folded into `stack_`, counted from first_chunk_.
  uint64_t chunks_done_ = 0;
  // One chaining value per set bit of chunks_done_, largest subtree first.
  std::array<Blake3ChainingValue, 64> stack_;
  int stack_size_ = 0;
  // The chunk being filled.
  Blake3ChainingValue chunk_cv_;
  uint64_t chunk_index_ = 0;
  int blocks_compressed_ = 0;
  std::array<uint8_t, kBlake3BlockBytes> block_;
  size_t block_len_ = 0;
};

// Lower-case hex of the BLAKE3 digest of `data`.
std::string Blake3Hex(std::string_view data);

// Bytes in the left subtree of a node covering `total_bytes` (> 1024): the
// largest power-of-two number of chunks that leaves at least one byte for
// the right subtree.
uint64_t Blake3LeftSubtreeBytes(uint64_t total_bytes);

// Internals shared by blake3.cc and blake3_simd.cc; not for other callers.
namespace blake3_internal {

inline constexpr uint32_t kIv[8] = {0x6A09E667, 0xBB67AE85, 0x3C6EF372,
                                    0xA54FF53A, 0x510E527F, 0x9B05688C,
                                    0x1F83D9AB, 0x5BE0CD19};
inline constexpr uint8_t kFlagChunkStart = 1;
inline constexpr uint8_t kFlagChunkEnd = 2;
inline constexpr uint8_t kFlagParent = 4;
inline constexpr uint8_t kFlagRoot = 8;

// Message word order of each of the 7 rounds: round r+1 reads, at position
// i, the word that round r read at position kPermutation[i].
inline constexpr uint8_t kPermutation[16] = {2, 6,  3,  10, 7, 0,  4,  13,
                                             1, 11, 12, 5,  9, 14, 15, 8};
constexpr std::array<std::array<uint8_t, 16>, 7> MakeMessageSchedule() {
  std::array<std::array<uint8_t, 16>, 7> schedule{};
  for (uint8_t i = 0; i < 16; ++i) schedule[0][i] = i;
  for (int r = 1; r < 7; ++r) {
    for (int i = 0; i < 16; ++i) {
      schedule[r][i] = schedule[r - 1][kPermutation[i]];
    }
  }
  return schedule;
}
inline constexpr std::array<std::array<uint8_t, 16>, 7> kMessageSchedule =
    MakeMessageSchedule();

// Hashes `num_inputs` inputs that are each `blocks` whole 64-byte blocks
// long, writing one 32-byte chaining value per input to `out`. Every input
// starts from `key`; input i uses block counter `counter + i` when
// `increment_counter` (chunks) or `counter` (parents). The first block gets
// `flags | flags_start`, the last `flags | flags_end`. `out` must not
// overlap the inputs.
using HashManyFn = void (*)(const uint8_t* const* inputs, size_t num_inputs,
                            size_t blocks, const uint32_t key[8],
                            uint64_t counter, bool increment_counter,
                            uint8_t flags, uint8_t flags_start,
                            uint8_t flags_end, uint8_t* out);

void HashManyPortable(const uint8_t* const* inputs, size_t num_inputs,
                      size_t blocks, const uint32_t key[8], uint64_t counter,
                      bool increment_counter, uint8_t flags,
                      uint8_t flags_start, uint8_t flags_end, uint8_t* out);
// Defined in blake3_simd.cc. Each handles any num_inputs (the tail goes to
// narrower code) and must only be called when the CPU supports it.
void HashManySse41(const uint8_t* const* inputs, size_t num_inputs,
                   size_t blocks, const uint32_t key[8], uint64_t counter,
                   bool increment_counter, uint8_t flags, uint8_t flags_start,
                   uint8_t flags_end, uint8_t* out);
void HashManyAvx2(const uint8_t* const* inputs, size_t num_inputs,
                  size_t blocks, const uint32_t key[8], uint64_t counter,
                  bool increment_counter, uint8_t flags, uint8_t flags_start,
                  uint8_t flags_end, uint8_t* out);
void HashManyAvx512(const uint8_t* const* inputs, size_t num_inputs,
                    size_t blocks, const uint32_t key[8], uint64_t counter,
                    bool increment_counter, uint8_t flags, uint8_t flags_start,
                    uint8_t flags_end, uint8_t* out);
// Hashes `num_chunks` whole chunks lying one after another from `input`,
// the first with chunk counter `counter`, writing one chaining value per
// chunk to `out` (which must not overlap the input). The bulk of any large
// input goes through this.
using HashChunksFn = void (*)(const uint8_t* input, size_t num_chunks,
                              uint64_t counter, uint8_t* out);
// HashChunksFn on top of a HashManyFn, for the backends without a kernel of
// their own for contiguous chunks.
void HashChunksWith(HashManyFn hash_many, const uint8_t* input,
                    size_t num_chunks, uint64_t counter, uint8_t* out);
// Defined in blake3_simd.cc, with the same CPU requirements as
// HashManyAvx2 and HashManyAvx512.
void HashChunksAvx2(const uint8_t* input, size_t num_chunks, uint64_t counter,
                    uint8_t* out);
void HashChunksAvx512(const uint8_t* input, size_t num_chunks, uint64_t counter,
                      uint8_t* out);
// Whether the CPU (and OS) support each SIMD backend.
bool CpuHasSse41();
bool CpuHasAvx2();
bool CpuHasAvx512();

// The instruction sets the SIMD backends use.
struct CpuFeatures {
  bool sse41 = false;
  bool avx2 = false;
  bool avx512 = false;
};
// This CPU's (asked each time; cheap).
CpuFeatures DetectCpuFeatures();

// OK when a CPU with `cpu` can run `backend`, else FAILED_PRECONDITION
// naming the backend. The AVX-512 code hands its last inputs to the AVX2
// code, so it needs both. A pure function of `cpu`, so the refusal can be
// tested on any machine.
absl::Status CheckBackendRuns(Blake3Backend backend, const CpuFeatures& cpu);

// The full 16-word output of one compression (portable).
void Compress(const uint32_t cv[8], const uint32_t block[16], uint64_t counter,
              uint32_t block_len, uint32_t flags, uint32_t out[16]);

}  // namespace blake3_internal

}  // namespace mm::model

#endif  // MM_MODEL_BLAKE3_H_
