#include "model/zip_archive.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status.h"
#include "common/strings.h"

namespace mm::model {
namespace {

constexpr uint32_t kEndOfCentralDirectorySignature = 0x06054b50;
constexpr uint32_t kZip64EndOfCentralDirectorySignature = 0x06064b50;
constexpr uint32_t kZip64LocatorSignature = 0x07064b50;
constexpr uint32_t kCentralHeaderSignature = 0x02014b50;
constexpr uint32_t kLocalHeaderSignature = 0x04034b50;
constexpr uint64_t kEndOfCentralDirectorySize = 22;
constexpr uint64_t kZip64LocatorSize = 20;
constexpr uint64_t kZip64EndOfCentralDirectorySize = 56;
constexpr uint64_t kCentralHeaderSize = 46;
constexpr uint64_t kLocalHeaderSize = 30;
constexpr uint64_t kMaxCommentSize = 0xFFFF;
constexpr uint16_t kZip64ExtraId = 0x0001;

uint64_t Load(absl::string_view bytes, size_t at, int width) {
  uint64_t value = 0;
  for (int i = width - 1; i >= 0; --i) {
    value = (value << 8) | static_cast<unsigned char>(bytes[at + i]);
  }
  return value;
}
uint16_t Load16(absl::string_view bytes, size_t at) {
  return static_cast<uint16_t>(Load(bytes, at, 2));
}
uint32_t Load32(absl::string_view bytes, size_t at) {
  return static_cast<uint32_t>(Load(bytes, at, 4));
}
uint64_t Load64(absl::string_view bytes, size_t at) {
  return Load(bytes, at, 8);
}

absl::Status Corrupt(absl::string_view what) {
  return absl::DataLossError(absl::StrCat(
      "zip archive: ", what, "; the file is truncated or corrupt"));
}

// Refuses names that could escape a folder if someone extracted them.
absl::Status CheckEntryName(absl::string_view name) {
  const auto refuse = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("zip entry path ", QuotedForMessage(AsStd(name)), " ", why,
                     "; refusing the archive (it may be malicious)"));
  };
  if (name.empty()) return refuse("is empty");
  if (name.find('\0') != absl::string_view::npos) return refuse("contains NUL");
  if (name.find('\\') != absl::string_view::npos) {
    return refuse("contains a backslash");
  }
  if (name.front() == '/') return refuse("is absolute");
  for (absl::string_view part : absl::StrSplit(name, '/')) {
    if (part == "..") return refuse("escapes the archive with '..'");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ZipArchive>> ZipArchive::Open(
    const std::filesystem::path& path, const Options& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file,
                   RandomAccessFile::Open({.path = path}));
  const uint64_t size = file->size();
  std::unique_ptr<ZipArchive> archive(
      new ZipArchive(std::move(file), std::string(), size));
  RETURN_IF_ERROR(
      Annotate(archive->ReadCentralDirectory(options), path.string()));
  return archive;
}

absl::StatusOr<std::unique_ptr<ZipArchive>> ZipArchive::FromBytes(
    std::string bytes, const Options& options) {
  const uint64_t size = bytes.size();
  std::unique_ptr<ZipArchive> archive(
      new ZipArchive(nullptr, std::move(bytes), size));
  RETURN_IF_ERROR(archive->ReadCentralDirectory(options));
  return archive;
}

absl::StatusOr<std::string> ZipArchive::ReadAt(uint64_t offset, uint64_t length,
                                               absl::string_view what) const {
  if (offset > size_ || length > size_ - offset) {
    return Corrupt(absl::StrCat(what, " (", length, " bytes at offset ", offset,
                                ") lies past the end of the ", size_,
                                "-byte archive"));
  }
  if (file_ != nullptr) return file_->ReadAt(offset, length, what);
  return memory_.substr(offset, length);
}

absl::Status ZipArchive::ReadCentralDirectory(const Options& options) {
  if (size_ < kEndOfCentralDirectorySize) {
    return Corrupt(absl::StrCat("the archive is ", size_,
                                " bytes, too short for an end-of-central-"
                                "directory record"));
  }
  // The record sits at the end, followed by a comment of at most 64 KiB;
  // a ZIP64 locator, if any, sits just before it.
  const uint64_t tail_size = std::min<uint64_t>(
      size_, kEndOfCentralDirectorySize + kMaxCommentSize + kZip64LocatorSize);
  const uint64_t tail_offset = size_ - tail_size;
  ASSIGN_OR_RETURN(std::string tail,
                   ReadAt(tail_offset, tail_size, "archive tail"));
  int64_t eocd = -1;
  for (int64_t at =
           static_cast<int64_t>(tail_size - kEndOfCentralDirectorySize);
       at >= 0; --at) {
    if (Load32(tail, at) != kEndOfCentralDirectorySignature) continue;
    const uint64_t comment = Load16(tail, at + 20);
    if (at + kEndOfCentralDirectorySize + comment <= tail_size) {
      eocd = at;
      break;
    }
  }
  if (eocd < 0) {
    return Corrupt("no end-of-central-directory record (not a zip file?)");
  }
  uint64_t disk = Load16(tail, eocd + 4);
  uint64_t directory_disk = Load16(tail, eocd + 6);
  uint64_t entries_on_disk = Load16(tail, eocd + 8);
  uint64_t total_entries = Load16(tail, eocd + 10);
  uint64_t directory_size = Load32(tail, eocd + 12);
  uint64_t directory_offset = Load32(tail, eocd + 16);
  // The central directory must end where the EOCD (or ZIP64 records) start.
  uint64_t directory_limit = tail_offset + eocd;

  const bool zip64 = total_entries == 0xFFFF || entries_on_disk == 0xFFFF ||
                     directory_size == 0xFFFFFFFF ||
                     directory_offset == 0xFFFFFFFF;
  if (zip64) {
    if (eocd < static_cast<int64_t>(kZip64LocatorSize) ||
        Load32(tail, eocd - kZip64LocatorSize) != kZip64LocatorSignature) {
      return Corrupt("ZIP64 fields are set but the ZIP64 locator is missing");
    }
    const uint64_t record_offset = Load64(tail, eocd - kZip64LocatorSize + 8);
    if (record_offset > size_ ||
        kZip64EndOfCentralDirectorySize > size_ - record_offset ||
        record_offset + kZip64EndOfCentralDirectorySize >
            tail_offset + eocd - kZip64LocatorSize) {
      return Corrupt(absl::StrCat("ZIP64 end-of-central-directory offset ",
                                  record_offset, " is out of range"));
    }
    ASSIGN_OR_RETURN(std::string record,
                     ReadAt(record_offset, kZip64EndOfCentralDirectorySize,
                            "ZIP64 end-of-central-directory record"));
    if (Load32(record, 0) != kZip64EndOfCentralDirectorySignature) {
      return Corrupt("bad ZIP64 end-of-central-directory signature");
    }
    disk = Load32(record, 16);
    directory_disk = Load32(record, 20);
    entries_on_disk = Load64(record, 24);
    total_entries = Load64(record, 32);
    directory_size = Load64(record, 40);
    directory_offset = Load64(record, 48);
    directory_limit = record_offset;
  }
  if (disk != 0 || directory_disk != 0 || entries_on_disk != total_entries) {
    return absl::UnimplementedError(
        "zip archive spans several disks; multi-part archives are not "
        "supported, join the parts into one file");
  }
  if (directory_offset > directory_limit ||
      directory_size > directory_limit - directory_offset) {
    return Corrupt(absl::StrCat("central directory (", directory_size,
                                " bytes at offset ", directory_offset,
                                ") overlaps the end records or the file end"));
  }
  if (directory_size > options.max_central_directory_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "zip central directory is ", directory_size, " bytes, over the ",
        options.max_central_directory_bytes, "-byte limit"));
  }
  if (total_entries > options.max_entries) {
    return absl::InvalidArgumentError(
        absl::StrCat("zip archive lists ", total_entries, " entries, over the ",
                     options.max_entries, "-entry limit"));
  }
  if (total_entries > directory_size / kCentralHeaderSize) {
    return Corrupt(absl::StrCat(total_entries, " entries cannot fit in a ",
                                directory_size, "-byte central directory"));
  }
  central_directory_offset_ = directory_offset;
  ASSIGN_OR_RETURN(
      std::string directory,
      ReadAt(directory_offset, directory_size, "central directory"));

  entries_.reserve(total_entries);
  uint64_t at = 0;
  for (uint64_t i = 0; i < total_entries; ++i) {
    if (directory_size - at < kCentralHeaderSize ||
        Load32(directory, at) != kCentralHeaderSignature) {
      return Corrupt(absl::StrCat("central directory entry ", i,
                                  " has a bad signature or is cut short"));
    }
    ZipEntry entry;
    entry.flags = Load16(directory, at + 8);
    entry.method = Load16(directory, at + 10);
    entry.crc32 = Load32(directory, at + 16);
    entry.compressed_size = Load32(directory, at + 20);
    entry.uncompressed_size = Load32(directory, at + 24);
    const uint64_t name_size = Load16(directory, at + 28);
    const uint64_t extra_size = Load16(directory, at + 30);
    const uint64_t comment_size = Load16(directory, at + 32);
    uint64_t start_disk = Load16(directory, at + 34);
    entry.local_header_offset = Load32(directory, at + 42);
    const uint64_t record_size =
        kCentralHeaderSize + name_size + extra_size + comment_size;
    if (record_size > directory_size - at) {
      return Corrupt(absl::StrCat("central directory entry ", i,
                                  " runs past the directory end"));
    }
    entry.name = directory.substr(at + kCentralHeaderSize, name_size);
    absl::string_view extra = absl::string_view(directory).substr(
        at + kCentralHeaderSize + name_size, extra_size);
    // ZIP64 extra: the 64-bit values of the fields that were saturated, in
    // a fixed order.
    while (extra.size() >= 4) {
      const uint16_t id = Load16(extra, 0);
      const uint16_t length = Load16(extra, 2);
      if (length > extra.size() - 4) {
        return Corrupt(absl::StrCat("zip entry ", QuotedForMessage(entry.name),
                                    " has an extra field past its end"));
      }
      absl::string_view body = extra.substr(4, length);
      if (id == kZip64ExtraId) {
        size_t used = 0;
        const auto take = [&](uint64_t& field) -> absl::Status {
          if (body.size() - used < 8) {
            return Corrupt(absl::StrCat("zip entry ",
                                        QuotedForMessage(entry.name),
                                        " has a short ZIP64 extra field"));
          }
          field = Load64(body, used);
          used += 8;
          return absl::OkStatus();
        };
        if (entry.uncompressed_size == 0xFFFFFFFF) {
          RETURN_IF_ERROR(take(entry.uncompressed_size));
        }
        if (entry.compressed_size == 0xFFFFFFFF) {
          RETURN_IF_ERROR(take(entry.compressed_size));
        }
        if (entry.local_header_offset == 0xFFFFFFFF) {
          RETURN_IF_ERROR(take(entry.local_header_offset));
        }
        if (start_disk == 0xFFFF && body.size() - used >= 4) {
          start_disk = Load32(body, used);
        }
      }
      extra.remove_prefix(4 + length);
    }
    RETURN_IF_ERROR(CheckEntryName(entry.name));
    if (start_disk != 0) {
      return absl::UnimplementedError(absl::StrCat(
          "zip entry ", QuotedForMessage(entry.name),
          " lives on another disk; multi-part archives are not supported"));
    }
    if (entry.local_header_offset > directory_offset ||
        entry.compressed_size > directory_offset - entry.local_header_offset) {
      return Corrupt(absl::StrCat(
          "zip entry ", QuotedForMessage(entry.name), " (",
          entry.compressed_size, " bytes at offset ", entry.local_header_offset,
          ") runs into the central directory"));
    }
    if (!entry_by_name_.emplace(entry.name, entries_.size()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("zip entry ", QuotedForMessage(entry.name),
                       " appears twice; refusing an ambiguous archive"));
    }
    entries_.push_back(std::move(entry));
    at += record_size;
  }
  return absl::OkStatus();
}

const ZipEntry* ZipArchive::Find(absl::string_view name) const {
  auto it = entry_by_name_.find(name);
  return it == entry_by_name_.end() ? nullptr : &entries_[it->second];
}

absl::StatusOr<uint64_t> ZipArchive::DataOffset(const ZipEntry& entry) const {
  const uint64_t header_size = kLocalHeaderSize + entry.name.size();
  if (entry.local_header_offset > central_directory_offset_ ||
      header_size > central_directory_offset_ - entry.local_header_offset) {
    return Corrupt(absl::StrCat("local header of ",
                                QuotedForMessage(entry.name),
                                " runs into the central directory"));
  }
  ASSIGN_OR_RETURN(
      std::string header,
      ReadAt(entry.local_header_offset, header_size,
             absl::StrCat("local header of ", QuotedForMessage(entry.name))));
  if (Load32(header, 0) != kLocalHeaderSignature) {
    return Corrupt(absl::StrCat("bad local header signature for ",
                                QuotedForMessage(entry.name)));
  }
  const uint64_t name_size = Load16(header, 26);
  const uint64_t extra_size = Load16(header, 28);
  if (name_size != entry.name.size() ||
      absl::string_view(header).substr(kLocalHeaderSize) != entry.name) {
    return Corrupt(
        absl::StrCat("local header name differs from the central "
                     "directory name ",
                     QuotedForMessage(entry.name)));
  }
  const uint64_t data_offset =
      entry.local_header_offset + kLocalHeaderSize + name_size + extra_size;
  if (data_offset > central_directory_offset_ ||
      entry.compressed_size > central_directory_offset_ - data_offset) {
    return Corrupt(absl::StrCat(
        "data of ", QuotedForMessage(entry.name), " (", entry.compressed_size,
        " bytes at offset ", data_offset, ") runs into the central directory"));
  }
  return data_offset;
}

absl::StatusOr<std::string> ZipArchive::ReadEntry(const ZipEntry& entry,
                                                  uint64_t max_bytes) const {
  if (entry.flags & 1) {
    return absl::UnimplementedError(
        absl::StrCat("zip entry ", QuotedForMessage(entry.name),
                     " is encrypted; encrypted archives are "
                     "not supported"));
  }
  if (entry.method != 0) {
    return absl::UnimplementedError(absl::StrCat(
        "zip entry ", QuotedForMessage(entry.name), " is compressed (method ",
        entry.method,
        "); only stored entries are read. torch.save writes stored entries: "
        "re-save the checkpoint with torch.save or convert it to "
        "safetensors"));
  }
  if (entry.compressed_size != entry.uncompressed_size) {
    return Corrupt(absl::StrCat("stored entry ", QuotedForMessage(entry.name),
                                " has size ", entry.compressed_size,
                                " but claims ", entry.uncompressed_size,
                                " uncompressed"));
  }
  if (entry.uncompressed_size > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("zip entry ", QuotedForMessage(entry.name), " is ",
                     entry.uncompressed_size, " bytes, over the ", max_bytes,
                     "-byte limit for reading it into memory"));
  }
  ASSIGN_OR_RETURN(uint64_t data_offset, DataOffset(entry));
  return ReadAt(data_offset, entry.uncompressed_size,
                absl::StrCat("data of ", QuotedForMessage(entry.name)));
}

}  // namespace mm::model
