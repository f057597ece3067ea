#include "model/weights_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "model/gguf.h"
#include "model/safetensors.h"
#include "model/torch_checkpoint.h"

namespace mm::model {

absl::StatusOr<std::unique_ptr<RandomAccessFile>> RandomAccessFile::Open(
    const Options& options) {
  const int fd = ::open(options.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    if (error == ENOENT) {
      return absl::NotFoundError(
          absl::StrCat(options.path.string(), ": no such file"));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        options.path.string(), ": cannot open: ", std::strerror(error)));
  }
  struct stat info;
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    return absl::FailedPreconditionError(absl::StrCat(
        options.path.string(), ": not a regular file; give a weights file"));
  }
  return std::unique_ptr<RandomAccessFile>(new RandomAccessFile(
      fd, static_cast<uint64_t>(info.st_size), options.path));
}

RandomAccessFile::~RandomAccessFile() { ::close(fd_); }

absl::StatusOr<std::string> RandomAccessFile::ReadAt(
    uint64_t offset, uint64_t length, absl::string_view what) const {
  if (offset > size_ || length > size_ - offset) {
    return absl::DataLossError(
        absl::StrCat(path_.string(), ": ", what, " (", length,
                     " bytes at offset ", offset, ") lies past the end of the ",
                     size_, "-byte file; the file is truncated"));
  }
  std::string out(length, '\0');
  uint64_t done = 0;
  while (done < length) {
    const ssize_t got = ::pread(fd_, out.data() + done, length - done,
                                static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      return absl::UnavailableError(absl::StrCat(
          path_.string(), ": reading ", what, " failed: ", std::strerror(errno),
          "; check the disk or volume"));
    }
    if (got == 0) {
      return absl::DataLossError(
          absl::StrCat(path_.string(), ": file shrank while reading ", what,
                       "; is another process writing it?"));
    }
    done += static_cast<uint64_t>(got);
  }
  return out;
}

namespace {

uint64_t LoadLittleEndian64(absl::string_view bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) {
    value = (value << 8) | static_cast<unsigned char>(bytes[i]);
  }
  return value;
}

bool IsPickleOpcode(unsigned char byte) {
  // Most opcodes are printable characters; protocols 2 to 5 added
  // 0x80..0x98.
  static constexpr absl::string_view kTextOpcodes =
      "().012BCFGIJKLMNPQRSTUVX]abcdeghijloprqstu}";
  return (byte >= 0x80 && byte <= 0x98) ||
         kTextOpcodes.find(static_cast<char>(byte)) != absl::string_view::npos;
}

absl::StatusOr<TensorIndex> ReadSniffed(const std::filesystem::path& path,
                                        SniffedFormat format) {
  switch (format) {
    case SniffedFormat::kSafetensors:
      return ReadSafetensorsIndex(path);
    case SniffedFormat::kGguf:
      return ReadGgufIndex(path);
    case SniffedFormat::kZip:
    case SniffedFormat::kPickle:
    case SniffedFormat::kTar:
      // The torch reader words the refusal of the legacy formats.
      return ReadTorchCheckpoint(path);
    case SniffedFormat::kUnknown:
      break;
  }
  return absl::InternalError("no reader for an unknown format");
}

}  // namespace

SniffedFormat SniffWeightsSignature(absl::string_view head) {
  if (absl::StartsWith(head, "GGUF")) return SniffedFormat::kGguf;
  if (absl::StartsWith(head, absl::string_view("PK\3\4", 4)) ||
      absl::StartsWith(head, absl::string_view("PK\5\6", 4))) {
    return SniffedFormat::kZip;
  }
  if (head.size() >= 3 && static_cast<unsigned char>(head[0]) == 0x80 &&
      head[1] >= 2 && head[1] <= 5 &&
      IsPickleOpcode(static_cast<unsigned char>(head[2]))) {
    return SniffedFormat::kPickle;
  }
  // POSIX ("ustar\0") and GNU ("ustar  \0") tar headers.
  if (head.size() >= 263 && head.substr(257, 5) == "ustar" &&
      (head[262] == '\0' || head[262] == ' ')) {
    return SniffedFormat::kTar;
  }
  return SniffedFormat::kUnknown;
}

SniffedFormat SniffWeightsFormat(absl::string_view head, uint64_t file_size) {
  if (head.size() >= 9 && file_size >= 9 && head[8] == '{') {
    const uint64_t header_size = LoadLittleEndian64(head);
    if (header_size >= 2 && header_size <= kMaxSafetensorsHeaderBytes &&
        header_size <= file_size - 8) {
      return SniffedFormat::kSafetensors;
    }
  }
  return SniffWeightsSignature(head);
}

absl::StatusOr<TensorIndex> ReadTensorIndex(const std::filesystem::path& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file,
                   RandomAccessFile::Open({.path = path}));
  const uint64_t file_size = file->size();
  ASSIGN_OR_RETURN(
      std::string head,
      file->ReadAt(0, std::min<uint64_t>(file_size, 512), "file head"));
  file.reset();

  const SniffedFormat sniffed = SniffWeightsFormat(head, file_size);
  if (sniffed == SniffedFormat::kSafetensors) {
    absl::StatusOr<TensorIndex> index = ReadSafetensorsIndex(path);
    if (index.ok()) return index;
    // The start looked like safetensors but the header is not one: a
    // crafted file of another format can begin the same way.
    const SniffedFormat other = SniffWeightsSignature(head);
    if (other == SniffedFormat::kUnknown) return index.status();
    return ReadSniffed(path, other);
  }
  if (sniffed != SniffedFormat::kUnknown) return ReadSniffed(path, sniffed);

  const std::string extension =
      absl::AsciiStrToLower(path.extension().string());
  if (extension == ".safetensors") return ReadSafetensorsIndex(path);
  if (extension == ".gguf") return ReadGgufIndex(path);
  if (extension == ".ckpt" || extension == ".pt" || extension == ".pth" ||
      extension == ".bin") {
    return ReadTorchCheckpoint(path);
  }
  if (extension == ".onnx") {
    return absl::UnimplementedError(absl::StrCat(
        path.string(), ": ONNX files have no tensor index reader"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      path.string(),
      ": not a recognised weights file (expected .safetensors, .ckpt, .pt, "
      ".pth, .bin or .gguf content)"));
}

}  // namespace mm::model
