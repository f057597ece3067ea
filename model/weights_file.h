// Entry point for reading the tensor table of any supported weights file,
// and the small read-only file handle the format readers share.
//
// Error codes used by every reader in model/ (safetensors, zip, pickle,
// torch checkpoint, GGUF), so callers can tell the cases apart:
//   NOT_FOUND          the file does not exist
//   DATA_LOSS          the file is truncated or contradicts itself (a
//                      header length past the end, overlapping tensors, ...)
//   INVALID_ARGUMENT   well-formed but refused: an unknown dtype, a limit
//                      exceeded, an archive path escaping its folder
//   UNIMPLEMENTED      a real format we do not read (legacy torch.save,
//                      deflated zip entries, GGUF v1, ONNX)
//
// Thread-safety: free functions are thread-safe; a RandomAccessFile may be
// read from several threads at once (it only uses pread).
//
//   ASSIGN_OR_RETURN(TensorIndex index, ReadTensorIndex(path));
//   const TensorInfo* t = index.Find("model.diffusion_model.out.2.weight");
#ifndef MM_MODEL_WEIGHTS_FILE_H_
#define MM_MODEL_WEIGHTS_FILE_H_

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/tensor_index.h"

namespace mm::model {

// What the first bytes of a weights file say it is.
enum class SniffedFormat {
  // An 8-byte little-endian header length of 2 bytes to
  // kMaxSafetensorsHeaderBytes that fits in the file, then '{'.
  kSafetensors,
  // "GGUF".
  kGguf,
  // A zip local file header "PK\3\4", or "PK\5\6" (an empty archive):
  // torch.save since 1.6.
  kZip,
  // The pickle PROTO opcode 0x80, a protocol of 2 to 5, then another opcode:
  // torch.save before 1.6 (or any bare pickle).
  kPickle,
  // "ustar" at byte 257: torch.save's oldest, tar-based format.
  kTar,
  kUnknown,
};

// Sniffs `head`, the first bytes of a file of `file_size` bytes (512 bytes
// or the whole file, when shorter, are enough). Safetensors has no magic, so
// its structure is checked first, and every other format by its whole
// signature, never by one byte: a safetensors header length whose low bytes
// spell 0x80, "PK\3\4" or "GG" is still safetensors. No real file of
// another format passes the safetensors check (as a length, a GGUF
// signature is over 1 GB, a zip's or torch.save pickle's over 100 MB or
// followed by no '{'); ReadTensorIndex still falls back to the other
// signatures when a file that passes it has no safetensors header.
SniffedFormat SniffWeightsFormat(absl::string_view head, uint64_t file_size);

// The formats with a signature only (never kSafetensors): what a reader
// that was already chosen for a file checks to refuse a variant it does not
// read.
SniffedFormat SniffWeightsSignature(absl::string_view head);

// Reads the tensor table of `path`, choosing the reader by SniffWeightsFormat
// and, when the content names no format, by the extension (.safetensors;
// .ckpt .pt .pth .bin; .gguf). Reads only headers: a multi-gigabyte file
// costs a few preads. Errors name the path.
absl::StatusOr<TensorIndex> ReadTensorIndex(const std::filesystem::path& path);

// A file opened read-only for positioned reads; closes on destruction.
class RandomAccessFile {
 public:
  struct Options {
    // The file to open. Required.
    std::filesystem::path path;
  };

  // NOT_FOUND when the file is missing; FAILED_PRECONDITION when it is not
  // a regular file or cannot be opened.
  static absl::StatusOr<std::unique_ptr<RandomAccessFile>> Open(
      const Options& options);

  ~RandomAccessFile();
  RandomAccessFile(const RandomAccessFile&) = delete;
  RandomAccessFile& operator=(const RandomAccessFile&) = delete;

  // Size of the file when it was opened.
  uint64_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

  // Exactly `length` bytes at `offset`; DATA_LOSS naming `what` when the file
  // ends first.
  absl::StatusOr<std::string> ReadAt(uint64_t offset, uint64_t length,
                                     absl::string_view what) const;

 private:
  RandomAccessFile(int fd, uint64_t size, std::filesystem::path path)
      : fd_(fd), size_(size), path_(std::move(path)) {}

  int fd_;
  uint64_t size_;
  std::filesystem::path path_;
};

}  // namespace mm::model

#endif  // MM_MODEL_WEIGHTS_FILE_H_
