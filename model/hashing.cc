#include "model/hashing.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "common/status.h"
#include "common/strings.h"
#include "model/blake3.h"

namespace mm::model {
namespace {

// Large sequential reads: big enough that syscalls cost nothing, small
// enough that a buffer just copied is still in L2 when it is hashed.
constexpr size_t kReadBufferBytes = size_t{1} << 20;
// Files below this are read, not mapped: mapping costs a few syscalls and
// page-table work that a small read does not.
constexpr uint64_t kMmapMinBytes = uint64_t{1} << 20;
// Below this, BLAKE3 goes through one plain hasher on the calling thread:
// cutting the file into subtree tasks (and, for blake3_multi, starting
// threads) costs more than it saves.
constexpr uint64_t kTasksMinBytes = uint64_t{8} << 20;
// Bounds of one subtree task: at least 1 MiB so the SIMD batches stay
// full, at most 8 MiB so that the threads finish within a few milliseconds
// of each other (a thread left alone with the last task is a core idle).
constexpr uint64_t kMinTaskBytes = uint64_t{1} << 20;
constexpr uint64_t kMaxTaskBytes = uint64_t{8} << 20;
// A mapped file is hashed this much at a time (by each thread), each
// window's pages mapped in one call before it is hashed (MappedFile::Window)
// and released from the resident set once hashed, so hashing
// keeps the process's resident memory near threads x 8 MiB whatever the
// file's size (the installer's target is under 64 MB); the madvise calls
// cost nothing measurable at this size, and the pages' unmapping costs
// the same in any size of window.
constexpr uint64_t kMapWindowBytes = uint64_t{8} << 20;

std::string ToHex(absl::Span<const uint8_t> bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * bytes.size());
  for (uint8_t byte : bytes) {
    hex.push_back(kHex[byte >> 4]);
    hex.push_back(kHex[byte & 15]);
  }
  return hex;
}

absl::Status ErrnoStatus(int error, std::string_view what,
                         const std::filesystem::path& path) {
  const std::string message = absl::StrCat(AsAbsl(what), " ", path.string(),
                                           ": ", std::strerror(error));
  switch (error) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(
          absl::StrCat(message, "; check that the model path exists"));
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(
          absl::StrCat(message, "; give the service's user read access to it"));
    default:
      return absl::InternalError(message);
  }
}

// An open file descriptor, closed on destruction.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

struct OpenedFile {
  std::unique_ptr<ScopedFd> fd;
  uint64_t size = 0;
};

absl::StatusOr<OpenedFile> OpenRegularFile(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "cannot open model file", path);
  OpenedFile file{std::make_unique<ScopedFd>(fd), 0};
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    return ErrnoStatus(errno, "cannot stat model file", path);
  }
  if (S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model path ", path.string(),
        " is a folder, not a file; hash it with HashPath instead"));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("model path ", path.string(),
                     " is not a regular file (a device, socket or pipe); "
                     "only files and folders can be hashed"));
  }
  file.size = static_cast<uint64_t>(st.st_size);
  // The kernel reads ahead more aggressively when told; failure is harmless.
  (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  return file;
}

// A read-only shared mapping of a whole file, unmapped on destruction.
class MappedFile {
 public:
  // Null when the file cannot be mapped (the caller then reads it).
  static std::unique_ptr<MappedFile> Map(int fd, uint64_t size) {
    void* data = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    if (data == MAP_FAILED) return nullptr;
    (void)::madvise(data, size, MADV_SEQUENTIAL);
    return std::unique_ptr<MappedFile>(new MappedFile(data, size));
  }
  ~MappedFile() { ::munmap(data_, size_); }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  // The bytes of [offset, offset + length), their pages mapped into the
  // process in one call (MADV_POPULATE_READ) rather than by one page fault
  // per 64 KiB as the hash reaches them. The kernel does the same mapping
  // work either way, but a fault taken inside the SIMD hash loop costs far
  // more than the kernel's walk: measured on the benchmark machine (a
  // virtual machine), 2 GiB hashed on one thread in 0.51 s instead of
  // 0.65 s (b3sum, which takes the faults: 0.60 s). A kernel without
  // MADV_POPULATE_READ (before Linux 5.14) refuses it and the pages fault
  // in as before.
  absl::Span<const uint8_t> Window(uint64_t offset, uint64_t length) const {
    const uint8_t* begin = static_cast<const uint8_t*>(data_) + offset;
    const uintptr_t page_mask = static_cast<uintptr_t>(page_bytes_) - 1;
    const uintptr_t first = reinterpret_cast<uintptr_t>(begin) & ~page_mask;
    const uintptr_t end = reinterpret_cast<uintptr_t>(begin) + length;
    if (end > first) {
      (void)::madvise(reinterpret_cast<void*>(first), end - first,
                      MADV_POPULATE_READ);
    }
    return absl::Span<const uint8_t>(begin, length);
  }

  // Drops the pages of [offset, offset + length) from this process (they
  // stay in the page cache), so hashing a file larger than memory, or many
  // large files, does not grow the resident set with each byte read.
  void Release(uint64_t offset, uint64_t length) const {
    const uint64_t page = page_bytes_;
    const uint64_t begin = offset / page * page;
    const uint64_t end = std::min(size_, offset + length);
    if (end <= begin) return;
    (void)::madvise(static_cast<uint8_t*>(data_) + begin, end - begin,
                    MADV_DONTNEED);
  }

 private:
  MappedFile(void* data, uint64_t size)
      : data_(data),
        size_(size),
        page_bytes_(static_cast<uint64_t>(::sysconf(_SC_PAGESIZE))) {}
  void* data_;
  uint64_t size_;
  uint64_t page_bytes_;
};

std::unique_ptr<MappedFile> MaybeMap(const OpenedFile& file, bool use_mmap) {
  if (!use_mmap || file.size < kMmapMinBytes) return nullptr;
  return MappedFile::Map(file.fd->get(), file.size);
}

// A buffer aligned for SIMD loads and page-sized reads.
struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};
using ReadBuffer = std::unique_ptr<uint8_t[], FreeDeleter>;

ReadBuffer NewReadBuffer() {
  return ReadBuffer(
      static_cast<uint8_t*>(std::aligned_alloc(4096, kReadBufferBytes)));
}

// Reads [offset, offset + length) of `fd` with large preads, handing each
// piece to `consume` in order.
absl::Status ReadRange(
    int fd, const std::filesystem::path& path, uint64_t offset, uint64_t length,
    uint8_t* buffer,
    absl::FunctionRef<void(absl::Span<const uint8_t>)> consume) {
  uint64_t done = 0;
  while (done < length) {
    const size_t want = static_cast<size_t>(
        std::min<uint64_t>(kReadBufferBytes, length - done));
    size_t filled = 0;
    while (filled < want) {
      const ssize_t got = ::pread(fd, buffer + filled, want - filled,
                                  static_cast<off_t>(offset + done + filled));
      if (got < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus(errno, "cannot read model file", path);
      }
      if (got == 0) {
        return absl::AbortedError(absl::StrCat(
            "model file ", path.string(), " shrank to ", offset + done + filled,
            " bytes while it was being hashed (expected at least ",
            offset + length, "); hash it again once nothing is writing to it"));
      }
      filled += static_cast<size_t>(got);
    }
    consume(absl::Span<const uint8_t>(buffer, filled));
    done += filled;
  }
  return absl::OkStatus();
}

// One plain hasher over the whole file, for files below kTasksMinBytes.
absl::StatusOr<std::string> Blake3SmallFileHex(
    const OpenedFile& file, const std::filesystem::path& path, bool use_mmap) {
  Blake3Hasher hasher;
  if (std::unique_ptr<MappedFile> mapped = MaybeMap(file, use_mmap)) {
    hasher.Update(mapped->Window(0, file.size));
    return ToHex(hasher.Finalize());
  }
  ReadBuffer buffer = NewReadBuffer();
  RETURN_IF_ERROR(ReadRange(
      file.fd->get(), path, 0, file.size, buffer.get(),
      [&](absl::Span<const uint8_t> piece) { hasher.Update(piece); }));
  return ToHex(hasher.Finalize());
}

// One whole subtree of the file's BLAKE3 tree, hashed by one thread.
struct SubtreeTask {
  uint64_t offset = 0;
  uint64_t length = 0;
  Blake3ChainingValue cv{};
  absl::Status status;
};

// Splits the node [offset, offset + length) the way BLAKE3's tree does until
// the pieces are at most `task_bytes`; the pieces come out in file order.
void CollectTasks(uint64_t offset, uint64_t length, uint64_t task_bytes,
                  std::vector<SubtreeTask>& tasks) {
  if (length <= task_bytes) {
    tasks.push_back(SubtreeTask{offset, length, {}, absl::OkStatus()});
    return;
  }
  const uint64_t left = Blake3LeftSubtreeBytes(length);
  CollectTasks(offset, left, task_bytes, tasks);
  CollectTasks(offset + left, length - left, task_bytes, tasks);
}

// The chaining value of a node above the tasks, consuming task results in
// the same order CollectTasks produced them.
Blake3ChainingValue CombineTasks(uint64_t length, uint64_t task_bytes,
                                 const std::vector<SubtreeTask>& tasks,
                                 size_t& next) {
  if (length <= task_bytes) return tasks[next++].cv;
  const uint64_t left = Blake3LeftSubtreeBytes(length);
  const Blake3ChainingValue left_cv =
      CombineTasks(left, task_bytes, tasks, next);
  const Blake3ChainingValue right_cv =
      CombineTasks(length - left, task_bytes, tasks, next);
  return Blake3Hasher::ParentChainingValue(left_cv, right_cv);
}

// BLAKE3 of a file of at least kTasksMinBytes, cut along its tree into
// subtree tasks that `threads` threads (the caller among them) take from a
// shared queue; the caller joins the tasks' chaining values up to the root.
// With one thread this is blake3_single: the same work in file order,
// where each task's subtree hasher compresses every chunk it is given at
// once (a plain hasher keeps each piece's last chunk back for the root).
absl::StatusOr<std::string> Blake3TasksHex(const OpenedFile& file,
                                           const std::filesystem::path& path,
                                           int threads, bool use_mmap) {
  const std::unique_ptr<MappedFile> mapped = MaybeMap(file, use_mmap);
  // About eight tasks per thread, so a thread that lags (page faults, a
  // busy core) is covered by the others.
  const uint64_t wanted = file.size / (static_cast<uint64_t>(threads) * 8);
  const uint64_t task_bytes =
      std::clamp<uint64_t>(std::bit_ceil(wanted), kMinTaskBytes, kMaxTaskBytes);
  std::vector<SubtreeTask> tasks;
  CollectTasks(0, file.size, task_bytes, tasks);

  std::atomic<size_t> next_task{0};
  auto worker = [&]() {
    ReadBuffer buffer = mapped ? nullptr : NewReadBuffer();
    for (size_t i = next_task.fetch_add(1); i < tasks.size();
         i = next_task.fetch_add(1)) {
      SubtreeTask& task = tasks[i];
      Blake3Hasher hasher =
          Blake3Hasher::ForSubtree(task.offset / kBlake3ChunkBytes);
      if (mapped) {
        for (uint64_t done = 0; done < task.length; done += kMapWindowBytes) {
          const uint64_t length = std::min(kMapWindowBytes, task.length - done);
          hasher.Update(mapped->Window(task.offset + done, length));
          mapped->Release(task.offset + done, length);
        }
        task.cv = hasher.FinalizeChainingValue();
        continue;
      }
      task.status = ReadRange(
          file.fd->get(), path, task.offset, task.length, buffer.get(),
          [&](absl::Span<const uint8_t> piece) { hasher.Update(piece); });
      if (task.status.ok()) task.cv = hasher.FinalizeChainingValue();
    }
  };
  const size_t thread_count =
      std::min(tasks.size(), static_cast<size_t>(threads));
  std::vector<std::thread> pool;
  pool.reserve(thread_count - 1);
  for (size_t i = 1; i < thread_count; ++i) pool.emplace_back(worker);
  worker();
  for (std::thread& thread : pool) thread.join();
  for (const SubtreeTask& task : tasks) RETURN_IF_ERROR(task.status);

  // file.size > task_bytes, so the root has two children.
  size_t next = 0;
  const uint64_t left = Blake3LeftSubtreeBytes(file.size);
  const Blake3ChainingValue left_cv =
      CombineTasks(left, task_bytes, tasks, next);
  const Blake3ChainingValue right_cv =
      CombineTasks(file.size - left, task_bytes, tasks, next);
  return ToHex(Blake3Hasher::RootFromChildren(left_cv, right_cv));
}

absl::StatusOr<std::string> Blake3SingleHex(const OpenedFile& file,
                                            const std::filesystem::path& path,
                                            bool use_mmap) {
  if (file.size < kTasksMinBytes) {
    return Blake3SmallFileHex(file, path, use_mmap);
  }
  return Blake3TasksHex(file, path, /*threads=*/1, use_mmap);
}

absl::StatusOr<std::string> Blake3MultiHex(const OpenedFile& file,
                                           const std::filesystem::path& path,
                                           int threads, bool use_mmap) {
  if (threads == 0) {
    threads =
        static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  if (file.size < kTasksMinBytes) {
    return Blake3SmallFileHex(file, path, use_mmap);
  }
  return Blake3TasksHex(file, path, threads, use_mmap);
}

absl::Status OpenSslError(std::string_view what) {
  char text[256] = "unknown OpenSSL error";
  const unsigned long code = ERR_get_error();
  if (code != 0) ERR_error_string_n(code, text, sizeof(text));
  return absl::InternalError(absl::StrCat(AsAbsl(what), ": ", text));
}

absl::StatusOr<std::string> EvpHex(const OpenedFile& file,
                                   const std::filesystem::path& path,
                                   const EVP_MD* md) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                              EVP_MD_CTX_free);
  if (ctx == nullptr || EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1) {
    return OpenSslError("cannot start an OpenSSL digest");
  }
  ReadBuffer buffer = NewReadBuffer();
  bool update_failed = false;
  RETURN_IF_ERROR(ReadRange(file.fd->get(), path, 0, file.size, buffer.get(),
                            [&](absl::Span<const uint8_t> piece) {
                              if (EVP_DigestUpdate(ctx.get(), piece.data(),
                                                   piece.size()) != 1) {
                                update_failed = true;
                              }
                            }));
  uint8_t digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (update_failed ||
      EVP_DigestFinal_ex(ctx.get(), digest, &digest_len) != 1) {
    return OpenSslError(absl::StrCat("OpenSSL digest of ", path.string()));
  }
  return ToHex(absl::MakeConstSpan(digest, digest_len));
}

void AppendLe64(uint64_t value, Blake3Hasher& hasher) {
  uint8_t bytes[8];
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<uint8_t>(value >> (8 * i));
  hasher.Update(absl::MakeConstSpan(bytes, 8));
}

absl::StatusOr<std::string> ImohashHex(const OpenedFile& file,
                                       const std::filesystem::path& path) {
  Blake3Hasher hasher;
  AppendLe64(file.size, hasher);
  ReadBuffer buffer = NewReadBuffer();
  auto add = [&](absl::Span<const uint8_t> piece) { hasher.Update(piece); };
  if (file.size <= kImohashWholeFileMaxBytes) {
    RETURN_IF_ERROR(
        ReadRange(file.fd->get(), path, 0, file.size, buffer.get(), add));
  } else {
    const uint64_t middle = (file.size - kImohashSampleBytes) / 2;
    for (uint64_t offset :
         {uint64_t{0}, middle, file.size - kImohashSampleBytes}) {
      RETURN_IF_ERROR(ReadRange(file.fd->get(), path, offset,
                                kImohashSampleBytes, buffer.get(), add));
    }
  }
  return ToHex(hasher.Finalize());
}

absl::StatusOr<std::string> RandomHex() {
  uint8_t id[16];
  if (RAND_bytes(id, sizeof(id)) != 1) {
    return OpenSslError("cannot draw random bytes for a random hash");
  }
  return Blake3Hex(
      std::string_view(reinterpret_cast<const char*>(id), sizeof(id)));
}

absl::Status CheckOptions(const HashOptions& options) {
  if (options.threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("hash option threads is ", options.threads,
                     "; use 0 (one per hardware thread) or a positive count"));
  }
  return absl::OkStatus();
}

// The file's hash as hex, without a prefix.
absl::StatusOr<std::string> HashFileHex(const std::filesystem::path& path,
                                        const HashOptions& options) {
  ASSIGN_OR_RETURN(OpenedFile file, OpenRegularFile(path));
  switch (options.algorithm) {
    case HashAlgorithm::kBlake3Single:
      return Blake3SingleHex(file, path, options.use_mmap);
    case HashAlgorithm::kBlake3Multi:
      return Blake3MultiHex(file, path, options.threads, options.use_mmap);
    case HashAlgorithm::kMd5:
      return EvpHex(file, path, EVP_md5());
    case HashAlgorithm::kSha1:
      return EvpHex(file, path, EVP_sha1());
    case HashAlgorithm::kSha256:
      return EvpHex(file, path, EVP_sha256());
    case HashAlgorithm::kSha512:
      return EvpHex(file, path, EVP_sha512());
    case HashAlgorithm::kImohash:
      return ImohashHex(file, path);
    case HashAlgorithm::kRandom:
      return RandomHex();
  }
  return absl::InvalidArgumentError("unknown hash algorithm");
}

// options.known_hex's answer for `path` when it has one (a regular file
// must still be there: a known digest does not stand in for a missing file),
// else HashFileHex.
absl::StatusOr<std::string> KnownOrHashFileHex(
    const std::filesystem::path& path, const HashOptions& options) {
  if (options.known_hex) {
    if (std::optional<std::string> known = options.known_hex(path)) {
      struct stat st;
      if (::stat(path.c_str(), &st) != 0) {
        return ErrnoStatus(errno, "cannot hash model file", path);
      }
      return *std::move(known);
    }
  }
  return HashFileHex(path, options);
}

struct AlgorithmName {
  HashAlgorithm algorithm;
  std::string_view name;
};
constexpr AlgorithmName kAlgorithmNames[] = {
    {HashAlgorithm::kBlake3Single, "blake3_single"},
    {HashAlgorithm::kBlake3Multi, "blake3_multi"},
    {HashAlgorithm::kMd5, "md5"},
    {HashAlgorithm::kSha1, "sha1"},
    {HashAlgorithm::kSha256, "sha256"},
    {HashAlgorithm::kSha512, "sha512"},
    {HashAlgorithm::kImohash, "imohash"},
    {HashAlgorithm::kRandom, "random"},
};

}  // namespace

struct Sha256Stream::Context {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> digest{
      EVP_MD_CTX_new(), EVP_MD_CTX_free};
};

Sha256Stream::Sha256Stream() : context_(std::make_unique<Context>()) {
  failed_ =
      context_->digest == nullptr ||
      EVP_DigestInit_ex(context_->digest.get(), EVP_sha256(), nullptr) != 1;
}

Sha256Stream::~Sha256Stream() = default;

void Sha256Stream::Update(std::string_view bytes) {
  if (failed_ || finished_) return;
  if (EVP_DigestUpdate(context_->digest.get(), bytes.data(), bytes.size()) !=
      1) {
    failed_ = true;
  }
}

absl::StatusOr<std::string> Sha256Stream::Finish() {
  if (finished_) {
    return absl::FailedPreconditionError("a SHA-256 stream was finished twice");
  }
  finished_ = true;
  uint8_t digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (failed_ ||
      EVP_DigestFinal_ex(context_->digest.get(), digest, &digest_len) != 1) {
    return OpenSslError("OpenSSL SHA-256 of a stream");
  }
  return ToHex(absl::MakeConstSpan(digest, digest_len));
}

absl::StatusOr<HashAlgorithm> ParseHashAlgorithm(std::string_view name) {
  if (name == "blake3") return HashAlgorithm::kBlake3Single;
  for (const AlgorithmName& entry : kAlgorithmNames) {
    if (entry.name == name) return entry.algorithm;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown hash algorithm \"", AsAbsl(name),
      "\"; use one of blake3, blake3_single, blake3_multi, md5, sha1, sha256, "
      "sha512, imohash, random"));
}

std::string_view HashAlgorithmName(HashAlgorithm algorithm) {
  for (const AlgorithmName& entry : kAlgorithmNames) {
    if (entry.algorithm == algorithm) return entry.name;
  }
  return "unknown";
}

std::string_view HashAlgorithmPrefix(HashAlgorithm algorithm) {
  if (algorithm == HashAlgorithm::kBlake3Single ||
      algorithm == HashAlgorithm::kBlake3Multi) {
    return "blake3";
  }
  return HashAlgorithmName(algorithm);
}

bool IsHashedWeightsFileName(const std::filesystem::path& name) {
  const std::string extension = name.extension().string();
  return extension == ".ckpt" || extension == ".safetensors" ||
         extension == ".bin" || extension == ".pt" || extension == ".pth";
}

absl::StatusOr<std::string> HashFile(const std::filesystem::path& path,
                                     const HashOptions& options) {
  RETURN_IF_ERROR(CheckOptions(options));
  ASSIGN_OR_RETURN(std::string hex, KnownOrHashFileHex(path, options));
  return absl::StrCat(AsAbsl(HashAlgorithmPrefix(options.algorithm)), ":", hex);
}

absl::StatusOr<std::string> HashPath(const std::filesystem::path& path,
                                     const HashOptions& options) {
  RETURN_IF_ERROR(CheckOptions(options));
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return ErrnoStatus(errno, "cannot hash model path", path);
  }
  if (!S_ISDIR(st.st_mode)) return HashFile(path, options);

  std::vector<std::filesystem::path> files;
  std::error_code error;
  std::filesystem::recursive_directory_iterator it(path, error);
  const std::filesystem::recursive_directory_iterator end;
  for (; !error && it != end; it.increment(error)) {
    if (!IsHashedWeightsFileName(it->path().filename())) continue;
    std::error_code type_error;
    // Follows symbolic links: a linked weights file counts like a copy.
    if (!it->is_regular_file(type_error)) continue;
    files.push_back(it->path().lexically_relative(path));
  }
  if (error) {
    return ErrnoStatus(error.value(), "cannot list model folder", path);
  }
  // path's operator< compares component by component, so "a/b" sorts
  // before "a-b" although '/' > '-' as a byte.
  std::sort(files.begin(), files.end());

  Blake3Hasher composite;
  for (const std::filesystem::path& relative : files) {
    ASSIGN_OR_RETURN(std::string hex,
                     KnownOrHashFileHex(path / relative, options));
    composite.Update(hex);
  }
  return absl::StrCat(AsAbsl(HashAlgorithmPrefix(options.algorithm)), ":",
                      ToHex(composite.Finalize()));
}

}  // namespace mm::model
