#include "services/loader/region_reader.h"

#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "model/safetensors.h"
#include "services/loader/dtype_conversion.h"

namespace mm::loader {
namespace {

struct Chunk {
  size_t file;
  uint64_t file_offset;
  uint64_t region_offset;
  // Bytes in the file.
  uint64_t bytes;
  // Set for a chunk of a converted tensor: read into staging, then
  // converted to region_offset.
  const PlannedTensor* converted = nullptr;
  uint64_t source_element_size = 0;
  uint64_t target_element_size = 0;
};

class OpenFiles {
 public:
  ~OpenFiles() {
    for (int fd : fds_) ::close(fd);
  }
  absl::Status Open(const LoadPlan& plan) {
    for (size_t i = 0; i < plan.files.size(); ++i) {
      int fd = ::open(plan.files[i].c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        int error = errno;
        if (error == ENOENT) {
          return absl::NotFoundError(
              absl::StrCat("model not found on disk: ", plan.files[i].string(),
                           " vanished before it was read"));
        }
        return absl::InternalError(absl::StrCat("open ", plan.files[i].string(),
                                                ": ", std::strerror(error)));
      }
      fds_.push_back(fd);
      struct stat st;
      if (::fstat(fd, &st) != 0 ||
          static_cast<uint64_t>(st.st_size) != plan.file_sizes[i]) {
        return absl::DataLossError(absl::StrCat(
            plan.files[i].string(), " changed size since its header was read (",
            plan.file_sizes[i], " bytes then); load it again"));
      }
      // Large sequential reads: ask for aggressive read-ahead.
      ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    }
    return absl::OkStatus();
  }
  int fd(size_t file) const { return fds_[file]; }

 private:
  std::vector<int> fds_;
};

// Reads `bytes` at `offset` of `fd` (the file `path`) into `into`.
absl::Status ReadFully(int fd, char* into, uint64_t bytes, uint64_t offset,
                       const std::filesystem::path& path) {
  uint64_t done = 0;
  while (done < bytes) {
    ssize_t n = ::pread(fd, into + done, bytes - done,
                        static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return absl::InternalError(
          absl::StrCat("read ", path.string(), ": ", std::strerror(errno)));
    }
    if (n == 0) {
      return absl::DataLossError(
          absl::StrCat(path.string(), " ends at byte ", offset + done,
                       ", before the tensor data its header describes; the "
                       "file is truncated"));
    }
    done += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

// Writes `bytes` from `from` at `offset` of `fd` (the destination object).
absl::Status WriteFully(int fd, const char* from, uint64_t bytes,
                        uint64_t offset) {
  uint64_t done = 0;
  while (done < bytes) {
    ssize_t n = ::pwrite(fd, from + done, bytes - done,
                         static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == ENOSPC || errno == EFBIG)) {
      return absl::ResourceExhaustedError(
          "/dev/shm is full; enlarge it or lower --ram-cache");
    }
    if (n <= 0) {
      return absl::InternalError(absl::StrCat(
          "write to the shared-memory object: ", std::strerror(errno)));
    }
    done += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ReadIntoRegion(const LoadPlan& plan, char* destination,
                            const ReadOptions& options, int destination_fd) {
  OpenFiles files;
  if (absl::Status s = files.Open(plan); !s.ok()) return s;
  std::vector<Chunk> chunks;
  const uint64_t chunk_bytes = std::max<uint64_t>(options.chunk_bytes, 4096);
  // A multiple of 8: whole elements of every convertible dtype.
  const uint64_t convert_bytes =
      std::max<uint64_t>(options.convert_chunk_bytes / 8 * 8, 8);
  for (const PlannedTensor& t : plan.tensors) {
    if (!t.converted()) {
      for (uint64_t done = 0; done < t.byte_size; done += chunk_bytes) {
        chunks.push_back({t.file, t.file_offset + done, t.region_offset + done,
                          std::min(chunk_bytes, t.byte_size - done)});
      }
      continue;
    }
    absl::StatusOr<uint64_t> from_size =
        model::SafetensorsDtypeSize(t.source_dtype);
    absl::StatusOr<uint64_t> to_size = model::SafetensorsDtypeSize(t.dtype);
    if (!from_size.ok()) return from_size.status();
    if (!to_size.ok()) return to_size.status();
    for (uint64_t done = 0; done < t.source_byte_size; done += convert_bytes) {
      chunks.push_back({t.file, t.file_offset + done,
                        t.region_offset + done / *from_size * *to_size,
                        std::min(convert_bytes, t.source_byte_size - done), &t,
                        *from_size, *to_size});
    }
  }
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;  // guards first_error, read_total and progress calls
  absl::Status first_error;
  uint64_t read_total = 0;
  auto work = [&] {
    // A descriptor of our own on the destination: sendfile writes at the
    // descriptor's offset, which threads must not share.
    int out = -1;
    if (destination_fd >= 0) {
      out = ::open(absl::StrCat("/proc/self/fd/", destination_fd).c_str(),
                   O_WRONLY | O_CLOEXEC);
    }
    // This thread's staging buffers for converted chunks, made on first
    // use: the source bytes, and the converted ones (a target element is
    // at most twice a source one, F16 -> F32).
    std::unique_ptr<char[]> staging;
    std::unique_ptr<char[]> staging_out;
    for (;;) {
      if (failed.load(std::memory_order_relaxed)) break;
      size_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= chunks.size()) break;
      const Chunk& c = chunks[i];
      uint64_t done = 0;
      absl::Status error;
      if (c.converted != nullptr) {
        if (staging == nullptr) {
          staging.reset(new char[convert_bytes]);
          staging_out.reset(new char[2 * convert_bytes]);
        }
        error = ReadFully(files.fd(c.file), staging.get(), c.bytes,
                          c.file_offset, plan.files[c.file]);
        const uint64_t elements = c.bytes / c.source_element_size;
        const std::string& from = c.converted->source_dtype;
        const std::string& to = c.converted->dtype;
        if (error.ok() && destination_fd >= 0) {
          // Converted into the second buffer, then written to the object:
          // storing into fresh tmpfs pages through the mapping faults and
          // zero-fills each page first, which made the conversion several
          // times slower (bench/load); a write skips both, as sendfile does
          // for the plain copy.
          error = ConvertElements(from, to, staging.get(), staging_out.get(),
                                  elements);
          if (error.ok()) {
            error =
                WriteFully(destination_fd, staging_out.get(),
                           elements * c.target_element_size, c.region_offset);
          }
        } else if (error.ok()) {
          error = ConvertElements(from, to, staging.get(),
                                  destination + c.region_offset, elements);
        }
        done = c.bytes;
      }
      if (c.converted == nullptr && out >= 0 &&
          ::lseek(out, static_cast<off_t>(c.region_offset), SEEK_SET) < 0) {
        ::close(out);
        out = -1;
      }
      while (error.ok() && done < c.bytes) {
        ssize_t n;
        if (out >= 0) {
          off_t in_offset = static_cast<off_t>(c.file_offset + done);
          n = ::sendfile(out, files.fd(c.file), &in_offset, c.bytes - done);
          if (n < 0 && (errno == EINVAL || errno == ENOSYS) && done == 0) {
            // This pair of files does not do sendfile: pread from now on.
            ::close(out);
            out = -1;
            continue;
          }
        } else {
          n = ::pread(files.fd(c.file), destination + c.region_offset + done,
                      c.bytes - done, static_cast<off_t>(c.file_offset + done));
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == ENOSPC || errno == EFBIG)) {
          error = absl::ResourceExhaustedError(
              "/dev/shm is full; enlarge it or lower --ram-cache");
          break;
        }
        if (n < 0) {
          error = absl::InternalError(absl::StrCat("read ",
                                                   plan.files[c.file].string(),
                                                   ": ", std::strerror(errno)));
          break;
        }
        if (n == 0) {
          error = absl::DataLossError(absl::StrCat(
              plan.files[c.file].string(), " ends at byte ",
              c.file_offset + done,
              ", before the tensor data its header describes; the file is "
              "truncated"));
          break;
        }
        done += static_cast<uint64_t>(n);
      }
      std::lock_guard<std::mutex> lock(mu);
      if (!error.ok()) {
        if (first_error.ok()) first_error = error;
        failed.store(true, std::memory_order_relaxed);
        break;
      }
      read_total += c.bytes;
      if (options.progress) options.progress(read_total, plan.data_bytes);
    }
    if (out >= 0) ::close(out);
  };
  int threads = std::max(
      1, std::min<int>(options.threads, static_cast<int>(chunks.size())));
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  return first_error;
}

}  // namespace mm::loader
