// Content hashes of model files and folders (spec §5), as the installer and
// the records store write them: "<algorithm>:<lower-case hex>".
//
// A file hashes its full contents. A folder hashes the weights files below
// it (names ending .ckpt .safetensors .bin .pt .pth): each to hex with the
// chosen algorithm, in path order compared component by component, the hex
// strings concatenated and hashed with BLAKE3, prefixed with the chosen
// algorithm's name. docs/hashing.md defines every algorithm, including our
// sampled `imohash`.
//
// Thread-safety: the functions are thread-safe; blake3_multi starts and
// joins its own threads within one call.
//
//   ASSIGN_OR_RETURN(std::string hash,
//                    HashPath("/models/sd15.safetensors", HashOptions{}));
//   // "blake3:ce3f0c5f..."
#ifndef MM_MODEL_HASHING_H_
#define MM_MODEL_HASHING_H_

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace mm::model {

enum class HashAlgorithm {
  // BLAKE3 on the calling thread, SIMD across chunks. The default.
  kBlake3Single,
  // BLAKE3 with parts of the file on several threads; the same digest.
  kBlake3Multi,
  kMd5,
  kSha1,
  kSha256,
  kSha512,
  // Sampled BLAKE3 for huge trees: the size plus 16 KiB from the start,
  // middle and end (docs/hashing.md). Not a content hash: files that differ
  // only outside the samples hash the same.
  kImohash,
  // BLAKE3 of 16 fresh random bytes: a unique id, not a content hash.
  kRandom,
};

// Accepts the spec's names: blake3_single, blake3_multi, md5, sha1, sha256,
// sha512, imohash, random; also "blake3" for blake3_single. INVALID_ARGUMENT
// listing the allowed names otherwise.
absl::StatusOr<HashAlgorithm> ParseHashAlgorithm(std::string_view name);
// The spec's name ("blake3_single", "sha256", ...).
std::string_view HashAlgorithmName(HashAlgorithm algorithm);
// What goes before the colon of a hash: "blake3" for both BLAKE3 modes,
// else the name ("md5", "imohash", "random").
std::string_view HashAlgorithmPrefix(HashAlgorithm algorithm);

struct HashOptions {
  // Default: blake3_single, the spec's default.
  HashAlgorithm algorithm = HashAlgorithm::kBlake3Single;
  // Threads for blake3_multi; 0 (the default) means one per hardware
  // thread. Other algorithms ignore it. Must not be negative.
  int threads = 0;
  // BLAKE3 modes read files of 1 MiB and more through a read-only memory
  // mapping, which saves copying every byte (about a third of the time on
  // data in the page cache); otherwise, and for the other algorithms, large
  // sequential reads. Default true, as b3sum does. A file truncated by
  // another process while mapped makes the kernel raise SIGBUS, which kills
  // the process: set false where files may be shrunk in place while they
  // are hashed (a truncation during reads is reported as ABORTED instead).
  bool use_mmap = true;
  // Digests already known (lowercase hex under `algorithm`, e.g. SHA-256s
  // the downloader verified against the hub's): given a file's path as
  // HashFile/HashPath see it, the hex, or nullopt to read the file. Unset
  // (the default) reads every file.
  std::function<std::optional<std::string>(const std::filesystem::path&)>
      known_hex;
};

// "<prefix>:<hex>" of the file's contents. NOT_FOUND when it does not exist,
// PERMISSION_DENIED when it cannot be read, INVALID_ARGUMENT for a folder
// (use HashPath) or another non-regular file, ABORTED when the file shrinks
// while being read.
absl::StatusOr<std::string> HashFile(const std::filesystem::path& path,
                                     const HashOptions& options);

// HashFile for a file; for a folder, the composite rule above (an empty
// folder, or one without weights files, gives BLAKE3 of empty input with
// the algorithm's prefix).
absl::StatusOr<std::string> HashPath(const std::filesystem::path& path,
                                     const HashOptions& options);

// SHA-256 of bytes that arrive in pieces (a download hashed as it is
// written), so they need not be read back from disk. Gives the same hex as
// HashFile with kSha256, without the "sha256:" prefix.
//
//   Sha256Stream stream;
//   stream.Update(piece1); stream.Update(piece2);
//   ASSIGN_OR_RETURN(std::string hex, stream.Finish());
//
// Thread-compatible: one thread at a time (callers lock around it).
class Sha256Stream {
 public:
  Sha256Stream();
  ~Sha256Stream();
  Sha256Stream(const Sha256Stream&) = delete;
  Sha256Stream& operator=(const Sha256Stream&) = delete;

  void Update(std::string_view bytes);
  // The lowercase hex digest of everything given to Update. INTERNAL when
  // OpenSSL failed at any step (the caller can hash the file instead).
  // Call once: the stream is spent afterwards (FAILED_PRECONDITION).
  absl::StatusOr<std::string> Finish();

 private:
  struct Context;
  std::unique_ptr<Context> context_;
  bool failed_ = false;
  bool finished_ = false;
};

// Whether a folder hash includes a file of this name (".ckpt",
// ".safetensors", ".bin", ".pt" or ".pth" extension, case-sensitive).
bool IsHashedWeightsFileName(const std::filesystem::path& name);

// imohash parameters (see docs/hashing.md).
inline constexpr uint64_t kImohashSampleBytes = 16 * 1024;
inline constexpr uint64_t kImohashWholeFileMaxBytes = 128 * 1024;

}  // namespace mm::model

#endif  // MM_MODEL_HASHING_H_
