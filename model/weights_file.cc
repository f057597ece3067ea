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

absl::StatusOr<TensorIndex> ReadTensorIndex(const std::filesystem::path& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file,
                   RandomAccessFile::Open({.path = path}));
  ASSIGN_OR_RETURN(
      std::string head,
      file->ReadAt(0, std::min<uint64_t>(file->size(), 512), "file head"));
  file.reset();
  const std::string extension =
      absl::AsciiStrToLower(path.extension().string());

  if (head.size() >= 4 && head.substr(0, 4) == "GGUF") {
    return ReadGgufIndex(path);
  }
  if (head.size() >= 4 &&
      (head.substr(0, 4) == absl::string_view("PK\3\4", 4) ||
       head.substr(0, 4) == absl::string_view("PK\5\6", 4))) {
    return ReadTorchCheckpoint(path);
  }
  if (LooksLikeLegacyTorchCheckpoint(head)) {
    return absl::UnimplementedError(absl::StrCat(
        path.string(),
        ": legacy checkpoint format not supported (torch.save before 1.6 or "
        "_use_new_zipfile_serialization=False); re-save it with a current "
        "PyTorch or convert it to safetensors"));
  }
  // safetensors has no magic; its header is JSON right after the length.
  if (extension == ".safetensors" || (head.size() > 8 && head[8] == '{')) {
    return ReadSafetensorsIndex(path);
  }
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
