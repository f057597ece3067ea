#include "model/hashing.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/blake3.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/unprivileged.h"

namespace mm::model {
namespace {

using ::mm::testing::IsOkAndHolds;
using ::mm::testing::RunUnprivileged;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::mm::testing::WriteFile;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

constexpr char kEmptyBlake3[] =
    "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

// The official BLAKE3 vector lengths.
constexpr size_t kOfficialLengths[] = {
    0,    1,    1023, 1024, 1025, 2048, 2049, 3072, 3073,  4096,  4097,
    5120, 5121, 6144, 6145, 7168, 7169, 8192, 8193, 16384, 31744, 102400};

std::string PatternBytes(size_t length) {
  std::string bytes(length, '\0');
  for (size_t i = 0; i < length; ++i) bytes[i] = static_cast<char>(i % 251);
  return bytes;
}

std::string RandomBytes(size_t length, uint64_t seed) {
  std::mt19937_64 random(seed);
  std::string bytes(length, '\0');
  for (char& c : bytes) c = static_cast<char>(random());
  return bytes;
}

// Runs `tool path` (md5sum, sha256sum, b3sum, ...) and returns the first
// word of its output: the hex digest.
std::string RunDigestTool(const std::string& tool,
                          const std::filesystem::path& path) {
  const std::string command = tool + " '" + path.string() + "'";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return "popen failed";
  std::string output;
  char buffer[4096];
  size_t got;
  while ((got = fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
    output.append(buffer, got);
  }
  ::pclose(pipe);
  return output.substr(0, output.find_first_of(" \n"));
}

bool HaveTool(const char* path) { return std::filesystem::exists(path); }

HashOptions Options(HashAlgorithm algorithm, int threads = 0) {
  HashOptions options;
  options.algorithm = algorithm;
  options.threads = threads;
  return options;
}

TEST(HashingTest, SpecVectorsForModelData) {
  TempDir dir;
  const std::filesystem::path file = dir.path() / "model.bin";
  WriteFile(file, "model data");
  const std::pair<HashAlgorithm, std::string> cases[] = {
      {HashAlgorithm::kMd5, "md5:a0cd925fc063f98dbf029eee315060c3"},
      {HashAlgorithm::kSha1, "sha1:9e362940e5603fdc60566ea100a288ba2fe48b8c"},
      {HashAlgorithm::kSha256,
       "sha256:"
       "6dbdb6a147ad4d808455652bf5a10120161678395f6bfbd21eb6fe4e731aceeb"},
      {HashAlgorithm::kBlake3Single,
       "blake3:"
       "ce3f0c5f3c05d119f4a5dcaf209b50d3149046a0d3a9adee9fed4c83cad6b4d0"},
      {HashAlgorithm::kBlake3Multi,
       "blake3:"
       "ce3f0c5f3c05d119f4a5dcaf209b50d3149046a0d3a9adee9fed4c83cad6b4d0"},
  };
  for (const auto& [algorithm, expected] : cases) {
    EXPECT_THAT(HashFile(file, Options(algorithm)), IsOkAndHolds(expected))
        << HashAlgorithmName(algorithm);
    // HashPath on a file is the file's hash.
    EXPECT_THAT(HashPath(file, Options(algorithm)), IsOkAndHolds(expected))
        << HashAlgorithmName(algorithm);
  }
}

TEST(HashingTest, ParsesTheSpecNames) {
  const std::pair<std::string, HashAlgorithm> cases[] = {
      {"blake3", HashAlgorithm::kBlake3Single},
      {"blake3_single", HashAlgorithm::kBlake3Single},
      {"blake3_multi", HashAlgorithm::kBlake3Multi},
      {"md5", HashAlgorithm::kMd5},
      {"sha1", HashAlgorithm::kSha1},
      {"sha256", HashAlgorithm::kSha256},
      {"sha512", HashAlgorithm::kSha512},
      {"imohash", HashAlgorithm::kImohash},
      {"random", HashAlgorithm::kRandom},
  };
  for (const auto& [name, algorithm] : cases) {
    EXPECT_THAT(ParseHashAlgorithm(name), IsOkAndHolds(algorithm)) << name;
  }
  for (const auto& [name, algorithm] : cases) {
    if (name == "blake3") continue;
    EXPECT_EQ(HashAlgorithmName(algorithm), name);
  }
  EXPECT_EQ(HashAlgorithmPrefix(HashAlgorithm::kBlake3Single), "blake3");
  EXPECT_EQ(HashAlgorithmPrefix(HashAlgorithm::kBlake3Multi), "blake3");
  EXPECT_EQ(HashAlgorithmPrefix(HashAlgorithm::kSha512), "sha512");
  EXPECT_EQ(HashAlgorithmPrefix(HashAlgorithm::kRandom), "random");
}

TEST(HashingTest, UnknownAlgorithmListsTheAllowedNames) {
  EXPECT_THAT(ParseHashAlgorithm("SHA256"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"SHA256\"; use one of blake3, "
                                 "blake3_single, blake3_multi, md5, sha1, "
                                 "sha256, sha512, imohash, random")));
}

TEST(HashingTest, Blake3ModesMatchB3sumOnOfficialLengths) {
  if (!HaveTool("/usr/bin/b3sum")) GTEST_SKIP() << "b3sum is not installed";
  TempDir dir;
  for (size_t length : kOfficialLengths) {
    const std::filesystem::path file =
        dir.path() / ("input-" + std::to_string(length));
    WriteFile(file, PatternBytes(length));
    const std::string expected =
        "blake3:" + RunDigestTool("/usr/bin/b3sum", file);
    EXPECT_THAT(HashFile(file, Options(HashAlgorithm::kBlake3Single)),
                IsOkAndHolds(expected))
        << length;
    EXPECT_THAT(HashFile(file, Options(HashAlgorithm::kBlake3Multi, 4)),
                IsOkAndHolds(expected))
        << length;
  }
}

// Sizes around the point (8 MiB) from which both BLAKE3 modes cut the file
// into subtree tasks of up to 8 MiB (one mapped window each), around the
// task boundaries, and ending on a chunk boundary (where the last task's
// hasher has no partial chunk) or not; read both ways.
TEST(HashingTest, Blake3MultiMatchesB3sumOnLargeFiles) {
  if (!HaveTool("/usr/bin/b3sum")) GTEST_SKIP() << "b3sum is not installed";
  TempDir dir;
  const std::string data = RandomBytes((33 << 20) + 1025, 7);
  for (size_t length :
       {(size_t{8} << 20) - 1, size_t{8} << 20, (size_t{8} << 20) + 1,
        (size_t{9} << 20) + 1025, size_t{16} << 20, (size_t{16} << 20) + 1024,
        (size_t{17} << 20) - 1, (size_t{24} << 20) + 3072,
        (size_t{33} << 20) + 1025}) {
    const std::filesystem::path file = dir.path() / "large.bin";
    WriteFile(file, std::string_view(data).substr(0, length));
    const std::string expected =
        "blake3:" + RunDigestTool("/usr/bin/b3sum", file);
    for (int threads : {0, 1, 2, 3, 5}) {
      for (bool use_mmap : {true, false}) {
        HashOptions options = Options(HashAlgorithm::kBlake3Multi, threads);
        options.use_mmap = use_mmap;
        EXPECT_THAT(HashFile(file, options), IsOkAndHolds(expected))
            << "length " << length << " threads " << threads << " mmap "
            << use_mmap;
      }
    }
    for (bool use_mmap : {true, false}) {
      HashOptions options = Options(HashAlgorithm::kBlake3Single);
      options.use_mmap = use_mmap;
      EXPECT_THAT(HashFile(file, options), IsOkAndHolds(expected))
          << "length " << length << " mmap " << use_mmap;
    }
  }
}

TEST(HashingTest, OpenSslDigestsMatchCoreutils) {
  TempDir dir;
  const std::pair<HashAlgorithm, const char*> tools[] = {
      {HashAlgorithm::kMd5, "/usr/bin/md5sum"},
      {HashAlgorithm::kSha1, "/usr/bin/sha1sum"},
      {HashAlgorithm::kSha256, "/usr/bin/sha256sum"},
      {HashAlgorithm::kSha512, "/usr/bin/sha512sum"},
  };
  for (size_t length :
       {size_t{0}, size_t{1}, size_t{1000003}, (size_t{3} << 20) + 7}) {
    const std::filesystem::path file = dir.path() / "odd.bin";
    WriteFile(file, RandomBytes(length, length));
    for (const auto& [algorithm, tool] : tools) {
      if (!HaveTool(tool)) continue;
      const std::string expected = std::string(HashAlgorithmPrefix(algorithm)) +
                                   ":" + RunDigestTool(tool, file);
      EXPECT_THAT(HashFile(file, Options(algorithm)), IsOkAndHolds(expected))
          << tool << " length " << length;
    }
  }
}

// Pieces of every awkward size give the digest of the whole, as HashFile
// computes it from the file.
TEST(HashingTest, Sha256StreamMatchesTheFileDigest) {
  TempDir dir;
  const std::string data = RandomBytes((size_t{1} << 20) + 13, 7);
  const std::filesystem::path file = dir.path() / "whole.bin";
  WriteFile(file, data);
  Sha256Stream stream;
  size_t offset = 0;
  for (size_t piece = 1; offset < data.size(); piece = piece * 3 + 1) {
    const size_t length = std::min(piece, data.size() - offset);
    stream.Update(std::string_view(data).substr(offset, length));
    offset += length;
  }
  ASSERT_OK_AND_ASSIGN(std::string hex, stream.Finish());
  EXPECT_THAT(HashFile(file, Options(HashAlgorithm::kSha256)),
              IsOkAndHolds("sha256:" + hex));
}

TEST(HashingTest, Sha256StreamOfNothingIsTheEmptyDigestAndFinishesOnce) {
  Sha256Stream stream;
  EXPECT_THAT(stream.Finish(),
              IsOkAndHolds("e3b0c44298fc1c149afbf4c8996fb924"
                           "27ae41e4649b934ca495991b7852b855"));
  EXPECT_THAT(stream.Finish(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                        HasSubstr("finished twice")));
}

// The folder rule, computed independently: hex of each weights file in
// component-wise path order, concatenated, BLAKE3 of that text.
TEST(HashingTest, FolderHashFollowsTheCompositeRule) {
  TempDir dir;
  const std::filesystem::path root = dir.path() / "model";
  const std::vector<std::pair<std::string, std::string>> files = {
      {"z.ckpt", "zzz"},
      {"notes.txt", "not a weights file"},
      {"a-b/x.pt", "x"},
      {"sub/deep/w.pth", "deep weights"},
      {"a/c.bin", "c"},
      {"config.json", "{}"},
      {"a/b/model.safetensors", "safetensors bytes"},
      {"UPPER.PT", "extension case differs"},
      {"a/b/readme.md", "docs"},
  };
  for (const auto& [name, contents] : files) WriteFile(root / name, contents);
  // "a/..." sorts before "a-b/..." component by component, though '/' is
  // after '-' as a byte.
  const std::vector<std::string> expected_order = {"a/b/model.safetensors",
                                                   "a/c.bin", "a-b/x.pt",
                                                   "sub/deep/w.pth", "z.ckpt"};
  for (HashAlgorithm algorithm :
       {HashAlgorithm::kBlake3Single, HashAlgorithm::kBlake3Multi,
        HashAlgorithm::kMd5, HashAlgorithm::kSha256}) {
    std::string concatenated;
    for (const std::string& name : expected_order) {
      ASSERT_OK_AND_ASSIGN(std::string file_hash,
                           HashFile(root / name, Options(algorithm)));
      concatenated += file_hash.substr(file_hash.find(':') + 1);
    }
    const std::string expected = std::string(HashAlgorithmPrefix(algorithm)) +
                                 ":" + Blake3Hex(concatenated);
    EXPECT_THAT(HashPath(root, Options(algorithm)), IsOkAndHolds(expected))
        << HashAlgorithmName(algorithm);
  }
  // md5 hex strings checked against md5sum, so the rule does not rest on
  // HashFile alone.
  if (HaveTool("/usr/bin/md5sum")) {
    std::string concatenated;
    for (const std::string& name : expected_order) {
      concatenated += RunDigestTool("/usr/bin/md5sum", root / name);
    }
    EXPECT_THAT(HashPath(root, Options(HashAlgorithm::kMd5)),
                IsOkAndHolds("md5:" + Blake3Hex(concatenated)));
  }
}

TEST(HashingTest, FolderHashDoesNotDependOnCreationOrder) {
  TempDir dir;
  std::vector<std::pair<std::string, std::string>> files = {
      {"unet/diffusion_pytorch_model.safetensors", "unet"},
      {"vae/diffusion_pytorch_model.bin", "vae"},
      {"text_encoder/model.safetensors", "text"},
      {"text_encoder/config.json", "{}"},
      {"model_index.json", "{}"},
      {"b.pt", "b"},
      {"a.pth", "a"},
  };
  std::mt19937 random(3);
  std::string first_hash;
  for (int trial = 0; trial < 4; ++trial) {
    std::shuffle(files.begin(), files.end(), random);
    const std::filesystem::path root =
        dir.path() / ("copy" + std::to_string(trial));
    for (const auto& [name, contents] : files) WriteFile(root / name, contents);
    ASSERT_OK_AND_ASSIGN(std::string hash, HashPath(root, HashOptions{}));
    if (trial == 0) first_hash = hash;
    EXPECT_EQ(hash, first_hash) << "trial " << trial;
  }
  EXPECT_THAT(first_hash, StartsWith("blake3:"));
}

TEST(HashingTest, EmptyFolderIsBlake3OfEmptyInput) {
  TempDir dir;
  EXPECT_THAT(HashPath(dir.path(), HashOptions{}),
              IsOkAndHolds(std::string("blake3:") + kEmptyBlake3));
  WriteFile(dir.path() / "README.md", "no weights here");
  EXPECT_THAT(HashPath(dir.path(), Options(HashAlgorithm::kSha256)),
              IsOkAndHolds(std::string("sha256:") + kEmptyBlake3));
}

TEST(HashingTest, MissingPathIsNotFound) {
  TempDir dir;
  const std::filesystem::path missing = dir.path() / "nope.safetensors";
  EXPECT_THAT(
      HashPath(missing, HashOptions{}),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr(missing.string())));
  EXPECT_THAT(
      HashFile(missing, HashOptions{}),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr(missing.string())));
}

TEST(HashingTest, UnreadableFileIsPermissionDenied) {
  TempDir dir;
  const std::filesystem::path file = dir.path() / "locked.safetensors";
  WriteFile(file, "secret");
  ASSERT_EQ(::chmod(file.c_str(), 0), 0);
  // As root (CI), in a child without the capabilities that ignore modes.
  EXPECT_THAT(
      RunUnprivileged([&] { return HashFile(file, HashOptions{}).status(); }),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr(file.string())));
  // Inside a folder, the same error surfaces.
  EXPECT_THAT(RunUnprivileged(
                  [&] { return HashPath(dir.path(), HashOptions{}).status(); }),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("Permission denied")));
}

TEST(HashingTest, HashFileRefusesAFolder) {
  TempDir dir;
  EXPECT_THAT(
      HashFile(dir.path(), HashOptions{}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("is a folder, not a file; hash it with HashPath")));
}

TEST(HashingTest, NegativeThreadsIsInvalid) {
  TempDir dir;
  WriteFile(dir.path() / "a.bin", "a");
  EXPECT_THAT(
      HashFile(dir.path() / "a.bin", Options(HashAlgorithm::kBlake3Multi, -2)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("threads is -2")));
}

std::string Le64(uint64_t value) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(value >> (8 * i));
  return bytes;
}

TEST(HashingTest, ImohashOfASmallFileCoversItAll) {
  TempDir dir;
  const std::filesystem::path file = dir.path() / "small.bin";
  const std::string data = RandomBytes(kImohashWholeFileMaxBytes, 11);
  WriteFile(file, data);
  EXPECT_THAT(HashFile(file, Options(HashAlgorithm::kImohash)),
              IsOkAndHolds("imohash:" + Blake3Hex(Le64(data.size()) + data)));
}

TEST(HashingTest, ImohashOfALargeFileSamplesStartMiddleAndEnd) {
  TempDir dir;
  const std::filesystem::path file = dir.path() / "large.bin";
  std::string data = RandomBytes((1 << 20) + 12345, 12);
  WriteFile(file, data);
  const uint64_t size = data.size();
  const uint64_t sample = kImohashSampleBytes;
  const uint64_t middle = (size - sample) / 2;
  const std::string expected =
      "imohash:" + Blake3Hex(Le64(size) + data.substr(0, sample) +
                             data.substr(middle, sample) +
                             data.substr(size - sample, sample));
  EXPECT_THAT(HashFile(file, Options(HashAlgorithm::kImohash)),
              IsOkAndHolds(expected));
  // Deterministic; blind to bytes outside the samples, not to those inside.
  EXPECT_THAT(HashFile(file, Options(HashAlgorithm::kImohash)),
              IsOkAndHolds(expected));
  data[sample + 10] ^= 1;
  WriteFile(file, data);
  EXPECT_THAT(HashFile(file, Options(HashAlgorithm::kImohash)),
              IsOkAndHolds(expected));
  data[middle + 10] ^= 1;
  WriteFile(file, data);
  EXPECT_THAT(HashFile(file, Options(HashAlgorithm::kImohash)),
              IsOkAndHolds(::testing::Ne(expected)));
}

TEST(HashingTest, RandomIsFreshEachTime) {
  TempDir dir;
  WriteFile(dir.path() / "a.bin", "same contents");
  ASSERT_OK_AND_ASSIGN(
      std::string first,
      HashFile(dir.path() / "a.bin", Options(HashAlgorithm::kRandom)));
  ASSERT_OK_AND_ASSIGN(std::string second,
                       HashPath(dir.path(), Options(HashAlgorithm::kRandom)));
  EXPECT_THAT(first, MatchesRegex("random:[0-9a-f]{64}"));
  EXPECT_THAT(second, MatchesRegex("random:[0-9a-f]{64}"));
  EXPECT_NE(first, second);
}

// A sparse file over 2 GiB (offsets past 2^31, a deep tree), hashed on
// several threads, against b3sum. Reading holes is cheap: a few seconds on
// an idle 2-core machine, most of it b3sum's.
TEST(HashingTest, Blake3MultiOnAMultiGigabyteSparseFileMatchesB3sum) {
  if (!HaveTool("/usr/bin/b3sum")) GTEST_SKIP() << "b3sum is not installed";
  TempDir dir;
  const std::filesystem::path file = dir.path() / "sparse.safetensors";
  const int fd = ::open(file.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  const off_t hole = (off_t{2} << 30) + 777;
  ASSERT_EQ(::ftruncate(fd, hole), 0);
  const std::string tail = RandomBytes(12345, 99);
  ASSERT_EQ(::pwrite(fd, tail.data(), tail.size(), hole),
            static_cast<ssize_t>(tail.size()));
  ASSERT_EQ(::close(fd), 0);
  const std::string expected =
      "blake3:" + RunDigestTool("/usr/bin/b3sum", file);
  EXPECT_THAT(HashFile(file, Options(HashAlgorithm::kBlake3Multi)),
              IsOkAndHolds(expected));
}

TEST(HashingTest, KnownDigestsAreUsedInsteadOfReadingTheFiles) {
  TempDir dir;
  const std::filesystem::path folder = dir.path() / "repo";
  WriteFile(folder / "unet" / "model.safetensors", "unet bytes");
  WriteFile(folder / "vae" / "model.safetensors", "vae bytes");
  HashOptions plain{.algorithm = HashAlgorithm::kSha256};
  ASSERT_OK_AND_ASSIGN(std::string expected, HashPath(folder, plain));

  // The downloader verified the unet's SHA-256: its bytes are not read, so
  // replacing them on disk does not change the result.
  ASSERT_OK_AND_ASSIGN(std::string unet_hash,
                       HashFile(folder / "unet" / "model.safetensors", plain));
  const std::string unet_hex = unet_hash.substr(std::string("sha256:").size());
  WriteFile(folder / "unet" / "model.safetensors", "other bytes");
  int asked = 0;
  HashOptions known = plain;
  known.known_hex =
      [&](const std::filesystem::path& file) -> std::optional<std::string> {
    ++asked;
    if (file == folder / "unet" / "model.safetensors") return unet_hex;
    return std::nullopt;
  };
  EXPECT_THAT(HashPath(folder, known), IsOkAndHolds(expected));
  EXPECT_EQ(asked, 2);

  // A single file with a known digest.
  EXPECT_THAT(HashPath(folder / "unet" / "model.safetensors", known),
              IsOkAndHolds(unet_hash));
  // A known digest never stands in for a file that is gone.
  std::filesystem::remove(folder / "unet" / "model.safetensors");
  EXPECT_THAT(HashPath(folder / "unet" / "model.safetensors", known),
              StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace mm::model
