// A minimal read-only ZIP reader for PyTorch checkpoints (torch.save since
// 1.6 writes an uncompressed zip). It reads the end-of-central-directory
// record (ZIP64 included) and the central directory once at Open, validating
// every size and offset against the file; entry data is read only on request.
// Stored entries can be read; deflated or encrypted ones are listed but
// refused by ReadEntry with UNIMPLEMENTED. Entry paths that are absolute or
// contain ".." or "\" are refused at Open: nothing here writes files, but a
// caller that extracts by name must never be handed such a path.
//
// Thread-safety: immutable after Open; all methods are const and safe to
// call from several threads.
//
//   ASSIGN_OR_RETURN(auto zip, ZipArchive::Open(path));
//   const ZipEntry* pkl = zip->Find("archive/data.pkl");
//   ASSIGN_OR_RETURN(std::string bytes, zip->ReadEntry(*pkl, 64 << 20));
#ifndef MM_MODEL_ZIP_ARCHIVE_H_
#define MM_MODEL_ZIP_ARCHIVE_H_

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/weights_file.h"

namespace mm::model {

// One central-directory entry, sizes and offsets already resolved from any
// ZIP64 extra field.
struct ZipEntry {
  std::string name;
  // 0 = stored, 8 = deflate, others as in APPNOTE.TXT.
  uint16_t method = 0;
  // General-purpose flags; bit 0 means encrypted.
  uint16_t flags = 0;
  uint32_t crc32 = 0;
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
  // Offset of the local file header from the start of the archive.
  uint64_t local_header_offset = 0;
};

class ZipArchive {
 public:
  struct Options {
    // Most entries accepted; a torch checkpoint has one per storage plus a
    // handful. Default 1,000,000.
    uint64_t max_entries = 1'000'000;
    // Largest central directory read into memory. Default 256 MiB.
    uint64_t max_central_directory_bytes = 256ull << 20;
  };

  // Opens `path` and reads its central directory (two or three preads).
  static absl::StatusOr<std::unique_ptr<ZipArchive>> Open(
      const std::filesystem::path& path, const Options& options);
  static absl::StatusOr<std::unique_ptr<ZipArchive>> Open(
      const std::filesystem::path& path) {
    return Open(path, Options());
  }
  // The same over an archive held in memory (tests, fuzzers).
  static absl::StatusOr<std::unique_ptr<ZipArchive>> FromBytes(
      std::string bytes, const Options& options);
  static absl::StatusOr<std::unique_ptr<ZipArchive>> FromBytes(
      std::string bytes) {
    return FromBytes(std::move(bytes), Options());
  }

  ZipArchive(const ZipArchive&) = delete;
  ZipArchive& operator=(const ZipArchive&) = delete;

  // Entries in central-directory order. Names are unique.
  const std::vector<ZipEntry>& entries() const { return entries_; }
  // The entry called `name`, or nullptr.
  const ZipEntry* Find(absl::string_view name) const;
  // Size of the whole archive in bytes.
  uint64_t size() const { return size_; }

  // Absolute offset of the entry's first data byte (reads its local header).
  absl::StatusOr<uint64_t> DataOffset(const ZipEntry& entry) const;
  // The entry's bytes. UNIMPLEMENTED for compressed or encrypted entries,
  // INVALID_ARGUMENT when larger than `max_bytes`.
  absl::StatusOr<std::string> ReadEntry(const ZipEntry& entry,
                                        uint64_t max_bytes) const;

 private:
  ZipArchive(std::unique_ptr<RandomAccessFile> file, std::string memory,
             uint64_t size)
      : file_(std::move(file)), memory_(std::move(memory)), size_(size) {}

  absl::Status ReadCentralDirectory(const Options& options);
  absl::StatusOr<std::string> ReadAt(uint64_t offset, uint64_t length,
                                     absl::string_view what) const;

  // Exactly one of file_ and memory_ holds the archive.
  std::unique_ptr<RandomAccessFile> file_;
  std::string memory_;
  uint64_t size_;
  // Where the central directory starts: entry data must end before it.
  uint64_t central_directory_offset_ = 0;
  std::vector<ZipEntry> entries_;
  absl::flat_hash_map<std::string, size_t> entry_by_name_;
};

}  // namespace mm::model

#endif  // MM_MODEL_ZIP_ARCHIVE_H_
