// The RAM tier's storage: one POSIX shared-memory object per cached entry,
// named "/mm-<128-bit random hex>" (unguessable, so only a client given the
// handle finds it), created with an exact mode (0600, or 0640 with a group
// so inference processes of another user in that group can map it
// read-only), its pages reserved up front (a full /dev/shm is an error at
// creation, never a SIGBUS while filling), and mapped read-write in the
// loader. Destroying the region unmaps and unlinks it: clients that mapped it
// keep their pages (POSIX semantics), new clients cannot open it.
//
// ShmNameLog remembers the names a loader created in a file, so that the
// next start of the loader unlinks what a killed run left behind without
// touching objects of other loaders on the same machine.
//
// Thread-safety: a ShmRegion's bytes may be written from many threads at
// once (disjoint ranges); ShmNameLog is thread-safe.
//
//   ASSIGN_OR_RETURN(auto region, ShmRegion::Create({.bytes = n}));
//   memcpy(region->data() + offset, src, len);
//   handle.set_shm_name(region->name());
#ifndef MM_SERVICES_LOADER_SHM_REGION_H_
#define MM_SERVICES_LOADER_SHM_REGION_H_

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/mutex.h"

namespace mm::loader {

// Records created shm names in a file (one per line, appended as created).
// Open() first unlinks every valid name the file lists (a previous run's
// objects: after a kill -9 nothing else removes them) and empties it.
class ShmNameLog {
 public:
  // Opens (creating) `path` and cleans up after the previous run.
  // `removed`, when given, receives the number of objects unlinked.
  static absl::StatusOr<std::unique_ptr<ShmNameLog>> Open(
      const std::filesystem::path& path, int* removed = nullptr);
  ~ShmNameLog();
  ShmNameLog(const ShmNameLog&) = delete;
  ShmNameLog& operator=(const ShmNameLog&) = delete;

  // Appends `name`. Called before the object is created, so a crash between
  // the two leaves only a name whose unlink fails harmlessly.
  absl::Status Record(absl::string_view name);

 private:
  explicit ShmNameLog(int fd) : fd_(fd) {}
  Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_);
};

// True for "/mm-" followed by exactly 32 lowercase hex digits.
bool IsLoaderShmName(absl::string_view name);

class ShmRegion {
 public:
  struct Options {
    // Size of the object; must be > 0.
    uint64_t bytes = 0;
    // Group allowed to read (mode 0640 with this group); unset: mode 0600.
    std::optional<gid_t> group;
    // Where created names are recorded; may be null (tests).
    ShmNameLog* name_log = nullptr;
  };

  // RESOURCE_EXHAUSTED when /dev/shm has no room for `bytes`;
  // INVALID_ARGUMENT for 0 bytes; INTERNAL for other system errors.
  static absl::StatusOr<std::unique_ptr<ShmRegion>> Create(
      const Options& options);

  ~ShmRegion();
  ShmRegion(const ShmRegion&) = delete;
  ShmRegion& operator=(const ShmRegion&) = delete;

  // "/mm-<32 hex>", for shm_open.
  const std::string& name() const { return name_; }
  char* data() const { return data_; }
  // The object's descriptor (read-write), for filling it with write-side
  // system calls (region_reader.h).
  int fd() const { return fd_; }
  uint64_t size() const { return size_; }

 private:
  ShmRegion(std::string name, int fd, char* data, uint64_t size)
      : name_(std::move(name)), fd_(fd), data_(data), size_(size) {}

  std::string name_;
  int fd_;
  char* data_;
  uint64_t size_;
};

}  // namespace mm::loader

#endif  // MM_SERVICES_LOADER_SHM_REGION_H_
