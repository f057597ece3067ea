#include "model/blake3.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/strings.h"

namespace mm::model {
namespace {

using blake3_internal::Compress;
using blake3_internal::HashChunksFn;
using blake3_internal::HashManyFn;
using blake3_internal::kFlagChunkEnd;
using blake3_internal::kFlagChunkStart;
using blake3_internal::kFlagParent;
using blake3_internal::kFlagRoot;
using blake3_internal::kIv;

// Chunks hashed as one batch (a subtree): all chunk chaining values at once,
// then each level of parents at once. Large enough that almost every parent
// is compressed 16 at a time too (with 64, a twentieth of the compressions
// went through narrower code), small enough that the 8 KiB of chaining
// values stay in L1.
constexpr uint64_t kMaxBatchChunks = 256;

using blake3_internal::kMessageSchedule;

inline uint32_t RotateRight(uint32_t x, int n) { return std::rotr(x, n); }

inline uint32_t LoadLe32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}

inline void StoreLe32(uint8_t* p, uint32_t x) {
  p[0] = static_cast<uint8_t>(x);
  p[1] = static_cast<uint8_t>(x >> 8);
  p[2] = static_cast<uint8_t>(x >> 16);
  p[3] = static_cast<uint8_t>(x >> 24);
}

inline void G(uint32_t* v, int a, int b, int c, int d, uint32_t x, uint32_t y) {
  v[a] = v[a] + v[b] + x;
  v[d] = RotateRight(v[d] ^ v[a], 16);
  v[c] = v[c] + v[d];
  v[b] = RotateRight(v[b] ^ v[c], 12);
  v[a] = v[a] + v[b] + y;
  v[d] = RotateRight(v[d] ^ v[a], 8);
  v[c] = v[c] + v[d];
  v[b] = RotateRight(v[b] ^ v[c], 7);
}

Blake3ChainingValue FirstEight(const uint32_t words[16]) {
  Blake3ChainingValue cv;
  std::copy(words, words + 8, cv.begin());
  return cv;
}

Blake3ChainingValue CvFromBytes(const uint8_t* bytes) {
  Blake3ChainingValue cv;
  for (int i = 0; i < 8; ++i) cv[i] = LoadLe32(bytes + 4 * i);
  return cv;
}

// The compression code of one backend.
struct Kernels {
  HashManyFn hash_many;
  HashChunksFn hash_chunks;
};

void HashChunksPortable(const uint8_t* input, size_t num_chunks,
                        uint64_t counter, uint8_t* out) {
  blake3_internal::HashChunksWith(blake3_internal::HashManyPortable, input,
                                  num_chunks, counter, out);
}
void HashChunksSse41(const uint8_t* input, size_t num_chunks, uint64_t counter,
                     uint8_t* out) {
  blake3_internal::HashChunksWith(blake3_internal::HashManySse41, input,
                                  num_chunks, counter, out);
}

Kernels KernelsFor(Blake3Backend backend) {
  switch (backend) {
    case Blake3Backend::kSse41:
      return {blake3_internal::HashManySse41, HashChunksSse41};
    case Blake3Backend::kAvx2:
      return {blake3_internal::HashManyAvx2, blake3_internal::HashChunksAvx2};
    case Blake3Backend::kAvx512:
      return {blake3_internal::HashManyAvx512,
              blake3_internal::HashChunksAvx512};
    case Blake3Backend::kPortable:
      break;
  }
  return {blake3_internal::HashManyPortable, HashChunksPortable};
}

bool BackendSupported(Blake3Backend backend) {
  return blake3_internal::CheckBackendRuns(backend,
                                           blake3_internal::DetectCpuFeatures())
      .ok();
}

// The chaining value of `chunks` (a power of two, at most kMaxBatchChunks)
// whole chunks starting at chunk index `first_chunk`: all chunks at once,
// then each level of parents at once.
Blake3ChainingValue HashSubtree(const Kernels& kernels, const uint8_t* input,
                                uint64_t chunks, uint64_t first_chunk) {
  const uint8_t* parents_in[kMaxBatchChunks / 2] = {};
  alignas(64) uint8_t cvs[kMaxBatchChunks * 32];
  alignas(64) uint8_t parents[kMaxBatchChunks / 2 * 32];
  kernels.hash_chunks(input, chunks, first_chunk, cvs);
  uint64_t count = chunks;
  while (count > 1) {
    // Each parent's block is two adjacent 32-byte chaining values.
    for (uint64_t i = 0; i < count / 2; ++i) parents_in[i] = cvs + 64 * i;
    kernels.hash_many(parents_in, count / 2, 1, kIv, 0,
                      /*increment_counter=*/false, kFlagParent, 0, 0, parents);
    count /= 2;
    std::memcpy(cvs, parents, count * 32);
  }
  return CvFromBytes(cvs);
}

void ParentBlock(const Blake3ChainingValue& left,
                 const Blake3ChainingValue& right, uint32_t block[16]) {
  std::copy(left.begin(), left.end(), block);
  std::copy(right.begin(), right.end(), block + 8);
}

}  // namespace

namespace blake3_internal {

void Compress(const uint32_t cv[8], const uint32_t block[16], uint64_t counter,
              uint32_t block_len, uint32_t flags, uint32_t out[16]) {
  uint32_t v[16] = {cv[0],
                    cv[1],
                    cv[2],
                    cv[3],
                    cv[4],
                    cv[5],
                    cv[6],
                    cv[7],
                    kIv[0],
                    kIv[1],
                    kIv[2],
                    kIv[3],
                    static_cast<uint32_t>(counter),
                    static_cast<uint32_t>(counter >> 32),
                    block_len,
                    flags};
  for (int r = 0; r < 7; ++r) {
    const std::array<uint8_t, 16>& s = kMessageSchedule[r];
    // Columns, then diagonals.
    G(v, 0, 4, 8, 12, block[s[0]], block[s[1]]);
    G(v, 1, 5, 9, 13, block[s[2]], block[s[3]]);
    G(v, 2, 6, 10, 14, block[s[4]], block[s[5]]);
    G(v, 3, 7, 11, 15, block[s[6]], block[s[7]]);
    G(v, 0, 5, 10, 15, block[s[8]], block[s[9]]);
    G(v, 1, 6, 11, 12, block[s[10]], block[s[11]]);
    G(v, 2, 7, 8, 13, block[s[12]], block[s[13]]);
    G(v, 3, 4, 9, 14, block[s[14]], block[s[15]]);
  }
  for (int i = 0; i < 8; ++i) {
    out[i] = v[i] ^ v[i + 8];
    out[i + 8] = v[i + 8] ^ cv[i];
  }
}

void HashManyPortable(const uint8_t* const* inputs, size_t num_inputs,
                      size_t blocks, const uint32_t key[8], uint64_t counter,
                      bool increment_counter, uint8_t flags,
                      uint8_t flags_start, uint8_t flags_end, uint8_t* out) {
  for (size_t i = 0; i < num_inputs; ++i) {
    uint32_t cv[8];
    std::copy(key, key + 8, cv);
    const uint64_t input_counter = counter + (increment_counter ? i : 0);
    for (size_t b = 0; b < blocks; ++b) {
      uint32_t block_flags = flags;
      if (b == 0) block_flags |= flags_start;
      if (b + 1 == blocks) block_flags |= flags_end;
      uint32_t words[16];
      for (int w = 0; w < 16; ++w) {
        words[w] = LoadLe32(inputs[i] + b * kBlake3BlockBytes + 4 * w);
      }
      uint32_t state[16];
      Compress(cv, words, input_counter, kBlake3BlockBytes, block_flags, state);
      std::copy(state, state + 8, cv);
    }
    for (int w = 0; w < 8; ++w) StoreLe32(out + 32 * i + 4 * w, cv[w]);
  }
}

void HashChunksWith(HashManyFn hash_many, const uint8_t* input,
                    size_t num_chunks, uint64_t counter, uint8_t* out) {
  constexpr size_t kGroup = 64;
  const uint8_t* inputs[kGroup];
  while (num_chunks > 0) {
    const size_t group = std::min(num_chunks, kGroup);
    for (size_t i = 0; i < group; ++i) {
      inputs[i] = input + i * kBlake3ChunkBytes;
    }
    hash_many(inputs, group, kBlake3ChunkBytes / kBlake3BlockBytes, kIv,
              counter, /*increment_counter=*/true, 0, kFlagChunkStart,
              kFlagChunkEnd, out);
    input += group * kBlake3ChunkBytes;
    num_chunks -= group;
    counter += group;
    out += group * 32;
  }
}

CpuFeatures DetectCpuFeatures() {
  return {
      .sse41 = CpuHasSse41(), .avx2 = CpuHasAvx2(), .avx512 = CpuHasAvx512()};
}

absl::Status CheckBackendRuns(Blake3Backend backend, const CpuFeatures& cpu) {
  bool runs = false;
  switch (backend) {
    case Blake3Backend::kPortable:
      runs = true;
      break;
    case Blake3Backend::kSse41:
      runs = cpu.sse41;
      break;
    case Blake3Backend::kAvx2:
      runs = cpu.avx2;
      break;
    case Blake3Backend::kAvx512:
      runs = cpu.avx512 && cpu.avx2;
      break;
  }
  if (runs) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "BLAKE3 backend ", AsAbsl(Blake3BackendName(backend)),
      " is not supported by this CPU; use one of SupportedBlake3Backends()"));
}

}  // namespace blake3_internal

std::string_view Blake3BackendName(Blake3Backend backend) {
  switch (backend) {
    case Blake3Backend::kPortable:
      return "portable";
    case Blake3Backend::kSse41:
      return "sse4.1";
    case Blake3Backend::kAvx2:
      return "avx2";
    case Blake3Backend::kAvx512:
      return "avx512";
  }
  return "unknown";
}

std::vector<Blake3Backend> SupportedBlake3Backends() {
  std::vector<Blake3Backend> backends;
  for (Blake3Backend backend : {Blake3Backend::kPortable, Blake3Backend::kSse41,
                                Blake3Backend::kAvx2, Blake3Backend::kAvx512}) {
    if (BackendSupported(backend)) backends.push_back(backend);
  }
  return backends;
}

Blake3Backend BestBlake3Backend() {
  // The CPU cannot change under a running process, so ask once.
  static const Blake3Backend best = SupportedBlake3Backends().back();
  return best;
}

Blake3Hasher::Blake3Hasher() : Blake3Hasher(0, BestBlake3Backend()) {}

Blake3Hasher::Blake3Hasher(uint64_t first_chunk, Blake3Backend backend)
    : backend_(backend), first_chunk_(first_chunk) {
  ResetChunk(first_chunk);
}

absl::StatusOr<Blake3Hasher> Blake3Hasher::WithBackend(Blake3Backend backend) {
  RETURN_IF_ERROR(blake3_internal::CheckBackendRuns(
      backend, blake3_internal::DetectCpuFeatures()));
  return Blake3Hasher(0, backend);
}

Blake3Hasher Blake3Hasher::ForSubtree(uint64_t first_chunk,
                                      Blake3Backend backend) {
  Blake3Hasher hasher(first_chunk, backend);
  hasher.subtree_ = true;
  return hasher;
}

void Blake3Hasher::ResetChunk(uint64_t chunk_index) {
  std::copy(kIv, kIv + 8, chunk_cv_.begin());
  chunk_index_ = chunk_index;
  blocks_compressed_ = 0;
  block_len_ = 0;
  block_.fill(0);
}

void Blake3Hasher::CompressBufferedBlock() {
  uint32_t words[16];
  for (int w = 0; w < 16; ++w) words[w] = LoadLe32(block_.data() + 4 * w);
  uint32_t state[16];
  Compress(chunk_cv_.data(), words, chunk_index_, kBlake3BlockBytes,
           blocks_compressed_ == 0 ? kFlagChunkStart : 0, state);
  chunk_cv_ = FirstEight(state);
  ++blocks_compressed_;
  block_len_ = 0;
  block_.fill(0);
}

void Blake3Hasher::AddChunkBytes(const uint8_t* data, size_t len) {
  while (len > 0) {
    // A full block is compressed only once more bytes arrive: the chunk's
    // last block needs the CHUNK_END flag, unknown until then.
    if (block_len_ == kBlake3BlockBytes) CompressBufferedBlock();
    const size_t take = std::min(kBlake3BlockBytes - block_len_, len);
    std::memcpy(block_.data() + block_len_, data, take);
    block_len_ += take;
    data += take;
    len -= take;
  }
}

void Blake3Hasher::PushSubtree(const Blake3ChainingValue& subtree_cv,
                               int level) {
  Blake3ChainingValue cv = subtree_cv;
  chunks_done_ += uint64_t{1} << level;
  // Each trailing zero of the count above `level` is a completed sibling
  // waiting on the stack.
  uint64_t count = chunks_done_ >> level;
  while ((count & 1) == 0) {
    cv = ParentChainingValue(stack_[--stack_size_], cv);
    count >>= 1;
  }
  stack_[stack_size_++] = cv;
}

void Blake3Hasher::Update(std::string_view data) {
  Update(absl::Span<const uint8_t>(
      reinterpret_cast<const uint8_t*>(data.data()), data.size()));
}

void Blake3Hasher::Update(absl::Span<const uint8_t> data) {
  const uint8_t* p = data.data();
  size_t n = data.size();
  if (n == 0) return;
  // A root hasher keeps the input's last chunk back (at least one byte of
  // it) until Finalize, which must flag that chunk ROOT if it is the only
  // one; a subtree hasher never needs to.
  const size_t keep_back = subtree_ ? 0 : 1;
  const size_t chunk_filled =
      blocks_compressed_ * kBlake3BlockBytes + block_len_;
  if (chunk_filled > 0) {
    const size_t take = std::min(n, kBlake3ChunkBytes - chunk_filled);
    AddChunkBytes(p, take);
    p += take;
    n -= take;
    if (n < keep_back || chunk_filled + take < kBlake3ChunkBytes) return;
    // The chunk is full and, for a root hasher, more input follows, so it
    // is not the root.
    Output output = ChunkOutput();
    uint32_t state[16];
    Compress(output.input_cv.data(), output.block_words.data(), output.counter,
             output.block_len, output.flags, state);
    PushSubtree(FirstEight(state), 0);
    ResetChunk(first_chunk_ + chunks_done_);
  }
  const Kernels kernels = KernelsFor(backend_);
  // Whole subtrees, leaving what must be kept back for the chunk state.
  while (n >= kBlake3ChunkBytes + keep_back) {
    uint64_t chunks = std::bit_floor((n - keep_back) / kBlake3ChunkBytes);
    chunks = std::min(chunks, kMaxBatchChunks);
    // A subtree must start at a multiple of its own size.
    while (chunks_done_ % chunks != 0) chunks /= 2;
    const Blake3ChainingValue cv =
        HashSubtree(kernels, p, chunks, first_chunk_ + chunks_done_);
    PushSubtree(cv, std::countr_zero(chunks));
    p += chunks * kBlake3ChunkBytes;
    n -= chunks * kBlake3ChunkBytes;
  }
  ResetChunk(first_chunk_ + chunks_done_);
  AddChunkBytes(p, n);
}

Blake3Hasher::Output Blake3Hasher::ChunkOutput() const {
  Output output;
  output.input_cv = chunk_cv_;
  for (int w = 0; w < 16; ++w) {
    output.block_words[w] = LoadLe32(block_.data() + 4 * w);
  }
  output.counter = chunk_index_;
  output.block_len = static_cast<uint32_t>(block_len_);
  output.flags =
      (blocks_compressed_ == 0 ? kFlagChunkStart : 0) | kFlagChunkEnd;
  return output;
}

Blake3Hasher::Output Blake3Hasher::RootOutput() const {
  Output output = ChunkOutput();
  if (stack_size_ == 0) return output;
  uint32_t state[16];
  Compress(output.input_cv.data(), output.block_words.data(), output.counter,
           output.block_len, output.flags, state);
  Blake3ChainingValue right = FirstEight(state);
  // Fold the pending subtrees from the smallest (top of the stack) up; the
  // last fold is the root node.
  for (int i = stack_size_ - 1; i >= 1; --i) {
    right = ParentChainingValue(stack_[i], right);
  }
  std::copy(kIv, kIv + 8, output.input_cv.begin());
  ParentBlock(stack_[0], right, output.block_words.data());
  output.counter = 0;
  output.block_len = kBlake3BlockBytes;
  output.flags = kFlagParent;
  return output;
}

std::array<uint8_t, kBlake3DigestBytes> Blake3Hasher::Finalize() const {
  std::array<uint8_t, kBlake3DigestBytes> digest;
  FinalizeXof(absl::MakeSpan(digest));
  return digest;
}

void Blake3Hasher::FinalizeXof(absl::Span<uint8_t> out) const {
  const Output output = RootOutput();
  uint64_t block_counter = 0;
  size_t written = 0;
  while (written < out.size()) {
    uint32_t state[16];
    Compress(output.input_cv.data(), output.block_words.data(), block_counter,
             output.block_len, output.flags | kFlagRoot, state);
    uint8_t bytes[64];
    for (int w = 0; w < 16; ++w) StoreLe32(bytes + 4 * w, state[w]);
    const size_t take = std::min<size_t>(64, out.size() - written);
    std::memcpy(out.data() + written, bytes, take);
    written += take;
    ++block_counter;
  }
}

Blake3ChainingValue Blake3Hasher::FinalizeChainingValue() const {
  if (blocks_compressed_ == 0 && block_len_ == 0 && stack_size_ > 0) {
    // A subtree hasher whose input ended on a chunk boundary: every chunk
    // is on the stack already.
    Blake3ChainingValue right = stack_[stack_size_ - 1];
    for (int i = stack_size_ - 2; i >= 0; --i) {
      right = ParentChainingValue(stack_[i], right);
    }
    return right;
  }
  const Output output = RootOutput();
  uint32_t state[16];
  Compress(output.input_cv.data(), output.block_words.data(), output.counter,
           output.block_len, output.flags, state);
  return FirstEight(state);
}

Blake3ChainingValue Blake3Hasher::ParentChainingValue(
    const Blake3ChainingValue& left, const Blake3ChainingValue& right) {
  uint32_t block[16];
  ParentBlock(left, right, block);
  uint32_t state[16];
  Compress(kIv, block, 0, kBlake3BlockBytes, kFlagParent, state);
  return FirstEight(state);
}

std::array<uint8_t, kBlake3DigestBytes> Blake3Hasher::RootFromChildren(
    const Blake3ChainingValue& left, const Blake3ChainingValue& right) {
  uint32_t block[16];
  ParentBlock(left, right, block);
  uint32_t state[16];
  Compress(kIv, block, 0, kBlake3BlockBytes, kFlagParent | kFlagRoot, state);
  std::array<uint8_t, kBlake3DigestBytes> digest;
  for (int w = 0; w < 8; ++w) StoreLe32(digest.data() + 4 * w, state[w]);
  return digest;
}

std::string Blake3Hex(std::string_view data) {
  Blake3Hasher hasher;
  hasher.Update(data);
  const std::array<uint8_t, kBlake3DigestBytes> digest = hasher.Finalize();
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * digest.size());
  for (uint8_t byte : digest) {
    hex.push_back(kHex[byte >> 4]);
    hex.push_back(kHex[byte & 15]);
  }
  return hex;
}

uint64_t Blake3LeftSubtreeBytes(uint64_t total_bytes) {
  const uint64_t full_chunks = (total_bytes - 1) / kBlake3ChunkBytes;
  return std::bit_floor(full_chunks) * kBlake3ChunkBytes;
}

}  // namespace mm::model
