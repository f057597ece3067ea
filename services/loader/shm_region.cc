#include "services/loader/shm_region.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"

namespace mm::loader {
namespace {

absl::Status Errno(absl::string_view what, int error) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(error)));
}

absl::StatusOr<std::string> RandomShmName() {
  unsigned char bytes[16];
  size_t filled = 0;
  while (filled < sizeof(bytes)) {
    ssize_t n = ::getrandom(bytes + filled, sizeof(bytes) - filled, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("getrandom", errno);
    }
    filled += static_cast<size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string name = "/mm-";
  for (unsigned char b : bytes) {
    name.push_back(kHex[b >> 4]);
    name.push_back(kHex[b & 15]);
  }
  return name;
}

}  // namespace

bool IsLoaderShmName(absl::string_view name) {
  if (name.size() != 4 + 32 || !absl::StartsWith(name, "/mm-")) return false;
  for (char c : name.substr(4)) {
    if (!absl::ascii_isdigit(c) && !(c >= 'a' && c <= 'f')) return false;
  }
  return true;
}

absl::StatusOr<std::unique_ptr<ShmNameLog>> ShmNameLog::Open(
    const std::filesystem::path& path, int* removed) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Errno(absl::StrCat("shm name log ", path.string()), errno);
  }
  std::string contents;
  char buffer[4096];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    contents.append(buffer, static_cast<size_t>(n));
  }
  int count = 0;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    // Only names of our exact shape: the file is ours, but a name it should
    // not hold must never make us unlink someone else's object.
    if (!IsLoaderShmName(line)) continue;
    std::string name(line);
    if (::shm_unlink(name.c_str()) == 0) {
      ++count;
      MM_LOG(INFO) << "removed shared-memory object " << name
                   << " left by a previous run";
    }
  }
  if (::ftruncate(fd, 0) != 0 || ::lseek(fd, 0, SEEK_SET) != 0) {
    int error = errno;
    ::close(fd);
    return Errno(absl::StrCat("shm name log ", path.string()), error);
  }
  if (removed != nullptr) *removed = count;
  return std::unique_ptr<ShmNameLog>(new ShmNameLog(fd));
}

ShmNameLog::~ShmNameLog() {
  MutexLock lock(&mu_);
  ::close(fd_);
}

absl::Status ShmNameLog::Record(absl::string_view name) {
  std::string line = absl::StrCat(name, "\n");
  MutexLock lock(&mu_);
  // One write per line on an O_RDWR descriptor at the end: lines never
  // interleave because every writer holds mu_.
  if (::lseek(fd_, 0, SEEK_END) < 0) return Errno("shm name log", errno);
  size_t written = 0;
  while (written < line.size()) {
    ssize_t n = ::write(fd_, line.data() + written, line.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("shm name log", errno);
    }
    written += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ShmRegion>> ShmRegion::Create(
    const Options& options) {
  if (options.bytes == 0) {
    return absl::InvalidArgumentError("a shared-memory region of 0 bytes");
  }
  std::string name;
  int fd = -1;
  // A collision of 128 random bits does not happen; the loop only guards
  // against an EEXIST we would otherwise report as a failure.
  for (int attempt = 0; attempt < 3 && fd < 0; ++attempt) {
    auto random_name = RandomShmName();
    if (!random_name.ok()) return random_name.status();
    name = *std::move(random_name);
    if (options.name_log != nullptr) {
      if (absl::Status s = options.name_log->Record(name); !s.ok()) return s;
    }
    fd = ::shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST) return Errno("shm_open " + name, errno);
  }
  if (fd < 0) return absl::InternalError("shm_open: no unused name found");
  auto fail = [&](absl::Status status) {
    ::close(fd);
    ::shm_unlink(name.c_str());
    return status;
  };
  // The umask may have narrowed the mode given to shm_open; set it exactly.
  mode_t mode = 0600;
  if (options.group.has_value()) {
    if (::fchown(fd, static_cast<uid_t>(-1), *options.group) != 0) {
      return fail(
          Errno(absl::StrCat("chown of ", name, " to group ", *options.group),
                errno));
    }
    mode = 0640;
  }
  if (::fchmod(fd, mode) != 0) return fail(Errno("fchmod " + name, errno));
  if (::ftruncate(fd, static_cast<off_t>(options.bytes)) != 0) {
    return fail(Errno("ftruncate " + name, errno));
  }
  // Reserve every page now: tmpfs hands out pages lazily, and a write into a
  // page it cannot supply kills the writer with SIGBUS.
  if (int error = ::posix_fallocate(fd, 0, static_cast<off_t>(options.bytes));
      error != 0) {
    if (error == ENOSPC) {
      return fail(absl::ResourceExhaustedError(absl::StrCat(
          "/dev/shm has no room for ", options.bytes,
          " bytes; enlarge it (a container's --shm-size, or an emptyDir "
          "with medium Memory) or lower --ram-cache")));
    }
    return fail(Errno("posix_fallocate " + name, error));
  }
  void* data =
      ::mmap(nullptr, options.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) return fail(Errno("mmap " + name, errno));
  return std::unique_ptr<ShmRegion>(new ShmRegion(
      std::move(name), fd, static_cast<char*>(data), options.bytes));
}

ShmRegion::~ShmRegion() {
  ::munmap(data_, size_);
  ::close(fd_);
  ::shm_unlink(name_.c_str());
}

}  // namespace mm::loader
