#include "model/blake3.h"

#include <stdio.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::model {
namespace {

using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::mm::testing::WriteFile;
using ::testing::HasSubstr;

constexpr char kEmptyDigest[] =
    "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

// The input lengths of BLAKE3's published test vectors.
constexpr size_t kOfficialLengths[] = {
    0,    1,    1023, 1024, 1025, 2048, 2049, 3072, 3073,  4096,  4097,
    5120, 5121, 6144, 6145, 7168, 7169, 8192, 8193, 16384, 31744, 102400};

// The official vectors' input: byte i is i % 251.
std::string OfficialInput(size_t length) {
  std::string input(length, '\0');
  for (size_t i = 0; i < length; ++i) input[i] = static_cast<char>(i % 251);
  return input;
}

std::string Hex(absl::Span<const uint8_t> bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (uint8_t byte : bytes) {
    hex.push_back(kHex[byte >> 4]);
    hex.push_back(kHex[byte & 15]);
  }
  return hex;
}

bool HaveB3sum() { return std::filesystem::exists("/usr/bin/b3sum"); }

// `b3sum --no-names [--length N] path`, without the newline.
std::string B3sum(const std::filesystem::path& path, size_t length = 32) {
  const std::string command = "/usr/bin/b3sum --no-names --length " +
                              std::to_string(length) + " '" + path.string() +
                              "'";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return "popen failed";
  std::string output;
  char buffer[4096];
  size_t got;
  while ((got = fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
    output.append(buffer, got);
  }
  ::pclose(pipe);
  while (!output.empty() && output.back() == '\n') output.pop_back();
  return output;
}

std::string HashWith(Blake3Backend backend, std::string_view input) {
  absl::StatusOr<Blake3Hasher> hasher = Blake3Hasher::WithBackend(backend);
  if (!hasher.ok()) return std::string(hasher.status().message());
  hasher->Update(input);
  return Hex(hasher->Finalize());
}

TEST(Blake3Test, EmptyInputHasTheWellKnownDigest) {
  EXPECT_EQ(Blake3Hex(""), kEmptyDigest);
  for (Blake3Backend backend : SupportedBlake3Backends()) {
    EXPECT_EQ(HashWith(backend, ""), kEmptyDigest)
        << Blake3BackendName(backend);
  }
}

TEST(Blake3Test, SpecVectorForModelData) {
  EXPECT_EQ(Blake3Hex("model data"),
            "ce3f0c5f3c05d119f4a5dcaf209b50d3149046a0d3a9adee9fed4c83cad6b4d0");
}

TEST(Blake3Test, PortableBackendIsAlwaysSupported) {
  const std::vector<Blake3Backend> backends = SupportedBlake3Backends();
  ASSERT_FALSE(backends.empty());
  EXPECT_EQ(backends.front(), Blake3Backend::kPortable);
  EXPECT_EQ(backends.back(), BestBlake3Backend());
}

constexpr Blake3Backend kEveryBackend[] = {
    Blake3Backend::kPortable, Blake3Backend::kSse41, Blake3Backend::kAvx2,
    Blake3Backend::kAvx512};

// A backend the CPU lacks is refused, never run (it would die of SIGILL).
// The decision is a function of the CPU's features, so every CPU, however
// capable, checks it for all eight feature sets.
TEST(Blake3Test, BackendsTheCpuLacksAreRefused) {
  using blake3_internal::CheckBackendRuns;
  using blake3_internal::CpuFeatures;
  for (int mask = 0; mask < 8; ++mask) {
    const CpuFeatures cpu = {.sse41 = (mask & 1) != 0,
                             .avx2 = (mask & 2) != 0,
                             .avx512 = (mask & 4) != 0};
    const std::pair<Blake3Backend, bool> cases[] = {
        {Blake3Backend::kPortable, true},
        {Blake3Backend::kSse41, cpu.sse41},
        {Blake3Backend::kAvx2, cpu.avx2},
        // The AVX-512 code hands its last inputs to the AVX2 code.
        {Blake3Backend::kAvx512, cpu.avx512 && cpu.avx2}};
    for (const auto& [backend, runs] : cases) {
      const std::string name(Blake3BackendName(backend));
      if (runs) {
        EXPECT_OK(CheckBackendRuns(backend, cpu)) << name << " mask " << mask;
      } else {
        EXPECT_THAT(CheckBackendRuns(backend, cpu),
                    StatusIs(absl::StatusCode::kFailedPrecondition,
                             "BLAKE3 backend " + name +
                                 " is not supported by this CPU; use one of "
                                 "SupportedBlake3Backends()"))
            << "mask " << mask;
      }
    }
  }
}

// WithBackend and SupportedBlake3Backends follow that decision for this
// CPU, and every backend it allows hashes like the portable code.
TEST(Blake3Test, WithBackendFollowsThisCpu) {
  const blake3_internal::CpuFeatures cpu = blake3_internal::DetectCpuFeatures();
  const std::vector<Blake3Backend> supported = SupportedBlake3Backends();
  const std::string input = OfficialInput(70000);
  const std::string expected = HashWith(Blake3Backend::kPortable, input);
  for (Blake3Backend backend : kEveryBackend) {
    const absl::Status check = blake3_internal::CheckBackendRuns(backend, cpu);
    EXPECT_EQ(std::count(supported.begin(), supported.end(), backend),
              check.ok() ? 1 : 0)
        << Blake3BackendName(backend);
    absl::StatusOr<Blake3Hasher> hasher = Blake3Hasher::WithBackend(backend);
    EXPECT_EQ(hasher.status(), check) << Blake3BackendName(backend);
    if (hasher.ok()) {
      hasher->Update(input);
      EXPECT_EQ(Hex(hasher->Finalize()), expected)
          << Blake3BackendName(backend);
    }
  }
}

TEST(Blake3Test, OfficialLengthsMatchB3sumOnEveryBackend) {
  if (!HaveB3sum())
    GTEST_SKIP() << "b3sum is not installed (apt install b3sum)";
  TempDir dir;
  for (size_t length : kOfficialLengths) {
    const std::string input = OfficialInput(length);
    const std::filesystem::path file =
        dir.path() / ("input-" + std::to_string(length));
    WriteFile(file, input);
    const std::string expected = B3sum(file);
    ASSERT_EQ(expected.size(), 64u) << expected;
    for (Blake3Backend backend : SupportedBlake3Backends()) {
      EXPECT_EQ(HashWith(backend, input), expected)
          << "length " << length << " backend " << Blake3BackendName(backend);
    }
  }
}

TEST(Blake3Test, ExtendedOutputMatchesB3sum) {
  if (!HaveB3sum())
    GTEST_SKIP() << "b3sum is not installed (apt install b3sum)";
  TempDir dir;
  for (size_t length : {size_t{0}, size_t{1025}, size_t{102400}}) {
    const std::string input = OfficialInput(length);
    const std::filesystem::path file = dir.path() / "input";
    WriteFile(file, input);
    Blake3Hasher hasher;
    hasher.Update(input);
    std::vector<uint8_t> out(131);
    hasher.FinalizeXof(absl::MakeSpan(out));
    EXPECT_EQ(Hex(out), B3sum(file, out.size())) << "length " << length;
    const std::array<uint8_t, 32> digest = hasher.Finalize();
    EXPECT_TRUE(std::equal(digest.begin(), digest.end(), out.begin()));
  }
}

// Lengths around the SIMD group widths and the 256-chunk batch: every
// backend must agree with the portable code.
TEST(Blake3Test, BackendsAgreeAroundBatchBoundaries) {
  std::vector<size_t> lengths;
  for (size_t chunks : {15,  16,  17,  31,  32,  33,  63,  64,  65,  127,
                        128, 129, 200, 255, 256, 257, 511, 512, 513, 1000}) {
    for (long delta : {-1L, 0L, 1L, 513L}) {
      lengths.push_back(chunks * 1024 + delta);
    }
  }
  for (size_t length : lengths) {
    const std::string input = OfficialInput(length);
    const std::string expected = HashWith(Blake3Backend::kPortable, input);
    for (Blake3Backend backend : SupportedBlake3Backends()) {
      EXPECT_EQ(HashWith(backend, input), expected)
          << "length " << length << " backend " << Blake3BackendName(backend);
    }
  }
}

// The contiguous-chunk kernels (HashChunksAvx512's 16-chunk groups,
// HashChunksAvx2's 8-chunk groups, and their narrower tails) give the
// chaining values the portable code gives, for every count around the
// group widths and for counters whose low word wraps inside a group (chunk
// 2^32 starts 4 TiB into an input).
TEST(Blake3Test, ContiguousChunkKernelsMatchPortable) {
  const blake3_internal::CpuFeatures cpu = blake3_internal::DetectCpuFeatures();
  const std::pair<Blake3Backend, blake3_internal::HashChunksFn> kernels[] = {
      {Blake3Backend::kAvx2, blake3_internal::HashChunksAvx2},
      {Blake3Backend::kAvx512, blake3_internal::HashChunksAvx512}};
  constexpr size_t kMaxChunks = 50;
  std::string input = OfficialInput(kMaxChunks * 1024);
  const auto* bytes = reinterpret_cast<const uint8_t*>(input.data());
  for (const auto& [backend, hash_chunks] : kernels) {
    const absl::Status runs = blake3_internal::CheckBackendRuns(backend, cpu);
    if (!runs.ok()) {
      // This CPU lacks the kernel's instructions: it must be refused (and
      // is then never chosen), not run.
      EXPECT_EQ(runs.code(), absl::StatusCode::kFailedPrecondition) << runs;
      continue;
    }
    for (uint64_t counter : {uint64_t{0}, uint64_t{7}, (uint64_t{1} << 32) - 5,
                             (uint64_t{3} << 32) - 16}) {
      for (size_t chunks = 1; chunks <= kMaxChunks; ++chunks) {
        std::vector<uint8_t> expected(chunks * 32);
        std::vector<uint8_t> actual(chunks * 32);
        blake3_internal::HashChunksWith(blake3_internal::HashManyPortable,
                                        bytes, chunks, counter,
                                        expected.data());
        hash_chunks(bytes, chunks, counter, actual.data());
        EXPECT_EQ(Hex(actual), Hex(expected))
            << Blake3BackendName(backend) << ": " << chunks
            << " chunks from counter " << counter;
      }
    }
  }
}

// A 16-chunk group that is not the first of its input starts at the right
// counter, and each of its chunks lands at its own output slot: a hasher
// for a subtree far into a file matches the portable code there.
TEST(Blake3Test, SubtreeFarIntoTheInputMatchesPortable) {
  const std::string input = OfficialInput(64 * 1024);
  for (uint64_t first_chunk : {uint64_t{64}, uint64_t{1} << 26,
                               (uint64_t{1} << 32) - 64, uint64_t{1} << 32}) {
    Blake3Hasher portable =
        Blake3Hasher::ForSubtree(first_chunk, Blake3Backend::kPortable);
    portable.Update(input);
    for (Blake3Backend backend : SupportedBlake3Backends()) {
      Blake3Hasher hasher = Blake3Hasher::ForSubtree(first_chunk, backend);
      hasher.Update(input);
      EXPECT_EQ(hasher.FinalizeChainingValue(),
                portable.FinalizeChainingValue())
          << "first chunk " << first_chunk << " backend "
          << Blake3BackendName(backend);
    }
  }
}

TEST(Blake3Test, AnySplitOfTheInputGivesTheSameDigest) {
  std::mt19937_64 random(20240611);
  for (size_t length :
       {size_t{1}, size_t{1025}, size_t{70000}, size_t{300 * 1024 + 17}}) {
    const std::string input = OfficialInput(length);
    for (Blake3Backend backend : SupportedBlake3Backends()) {
      const std::string expected = HashWith(backend, input);
      for (int trial = 0; trial < 20; ++trial) {
        absl::StatusOr<Blake3Hasher> hasher =
            Blake3Hasher::WithBackend(backend);
        ASSERT_TRUE(hasher.ok());
        size_t offset = 0;
        while (offset < length) {
          // Mostly small pieces, sometimes large ones, sometimes empty.
          const size_t limit = (random() % 4 == 0) ? 100000 : 3000;
          const size_t piece =
              std::min<size_t>(random() % limit, length - offset);
          hasher->Update(std::string_view(input).substr(offset, piece));
          offset += piece;
        }
        EXPECT_EQ(Hex(hasher->Finalize()), expected)
            << "length " << length << " trial " << trial;
      }
    }
  }
}

TEST(Blake3Test, FinalizeLeavesTheHasherUsable) {
  Blake3Hasher hasher;
  hasher.Update("model ");
  EXPECT_EQ(Hex(hasher.Finalize()), Blake3Hex("model "));
  hasher.Update("data");
  EXPECT_EQ(Hex(hasher.Finalize()), Blake3Hex("model data"));
}

TEST(Blake3Test, SubtreesCombineToTheWholeDigest) {
  for (size_t length : {size_t{1025}, size_t{2048}, size_t{5 * 1024 + 3},
                        size_t{1 << 20}, size_t{(3 << 20) + 7}}) {
    const std::string input = OfficialInput(length);
    const uint64_t left_bytes = Blake3LeftSubtreeBytes(length);
    Blake3Hasher left = Blake3Hasher::ForSubtree(0);
    left.Update(std::string_view(input).substr(0, left_bytes));
    Blake3Hasher right = Blake3Hasher::ForSubtree(left_bytes / 1024);
    right.Update(std::string_view(input).substr(left_bytes));
    EXPECT_EQ(Hex(Blake3Hasher::RootFromChildren(
                  left.FinalizeChainingValue(), right.FinalizeChainingValue())),
              Blake3Hex(input))
        << "length " << length;
  }
}

// A subtree hasher compresses each whole chunk as soon as it has it (it is
// never the root); however its input is cut into pieces, ending on a chunk
// boundary or not, its chaining value joins the other subtree's into the
// digest a plain hasher gives.
TEST(Blake3Test, SubtreeHashersTakeAnySplit) {
  std::mt19937_64 random(20261207);
  for (size_t length :
       {size_t{2048}, size_t{3 * 1024}, size_t{2 * 1024 + 1}, size_t{17 * 1024},
        size_t{33 * 1024 - 1}, size_t{600 * 1024}, size_t{600 * 1024 + 5},
        size_t{(1 << 20) + 1024}}) {
    const std::string input = OfficialInput(length);
    const std::string expected = Blake3Hex(input);
    const size_t left_bytes = Blake3LeftSubtreeBytes(length);
    for (Blake3Backend backend : SupportedBlake3Backends()) {
      for (int trial = 0; trial < 8; ++trial) {
        auto feed = [&](Blake3Hasher& hasher, std::string_view part) {
          size_t offset = 0;
          while (offset < part.size()) {
            // Whole chunks, odd sizes and empty pieces, small and large.
            const size_t limit = (random() % 3 == 0) ? 300000 : 2500;
            size_t piece = random() % limit;
            if (random() % 4 == 0) piece = piece / 1024 * 1024;
            piece = std::min(piece, part.size() - offset);
            hasher.Update(part.substr(offset, piece));
            offset += piece;
          }
        };
        Blake3Hasher left = Blake3Hasher::ForSubtree(0, backend);
        feed(left, std::string_view(input).substr(0, left_bytes));
        Blake3Hasher right =
            Blake3Hasher::ForSubtree(left_bytes / 1024, backend);
        feed(right, std::string_view(input).substr(left_bytes));
        EXPECT_EQ(
            Hex(Blake3Hasher::RootFromChildren(left.FinalizeChainingValue(),
                                               right.FinalizeChainingValue())),
            expected)
            << "length " << length << " backend " << Blake3BackendName(backend)
            << " trial " << trial;
      }
    }
  }
}

TEST(Blake3Test, LeftSubtreeIsTheLargestPowerOfTwoOfChunks) {
  EXPECT_EQ(Blake3LeftSubtreeBytes(1025), 1024u);
  EXPECT_EQ(Blake3LeftSubtreeBytes(2048), 1024u);
  EXPECT_EQ(Blake3LeftSubtreeBytes(2049), 2048u);
  EXPECT_EQ(Blake3LeftSubtreeBytes(4096), 2048u);
  EXPECT_EQ(Blake3LeftSubtreeBytes(4097), 4096u);
  EXPECT_EQ(Blake3LeftSubtreeBytes(uint64_t{3} << 30), uint64_t{2} << 30);
}

}  // namespace
}  // namespace mm::model
