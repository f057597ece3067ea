// DownloadAndCache (spec §8 download_and_cache): a source fetched once into
// models/.download_cache/<slug>/ and reused. The cache is bounded: before a
// new entry is fetched, least recently used entries that no call is using
// are evicted until it fits. Concurrent calls for one source share one
// download (the second waits for the first).
//
// An entry is complete when its marker file `.entry` exists (written last,
// after the files were renamed into place); it holds the path of the model
// inside the entry, and its modification time is the entry's last use.
//
// Thread-safety: thread-safe.
#ifndef MM_SERVICES_INSTALLER_DOWNLOAD_CACHE_H_
#define MM_SERVICES_INSTALLER_DOWNLOAD_CACHE_H_

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/mutex.h"
#include "services/installer/service_clients.h"
#include "services/installer/source_resolver.h"

namespace mm::installer {

struct CachedPath {
  std::filesystem::path path;
  bool cached = false;  // no transfer was needed
};

class DownloadCache {
 public:
  // Every pointer outlives the cache. `max_bytes` 0 = unbounded.
  DownloadCache(std::filesystem::path models_dir, int64_t max_bytes,
                SourceResolver* resolver, DownloaderClient* downloader);

  // Errors: the resolver's (bad source, unknown repo, ...),
  // RESOURCE_EXHAUSTED when the source alone exceeds the cache, the
  // download's own error, DEADLINE_EXCEEDED at `deadline`.
  absl::StatusOr<CachedPath> Fetch(const std::string& source,
                                   const std::string& token,
                                   absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_);

  // The folder name of a source: its characters made safe, plus a digest
  // so two sources never share a folder.
  static std::string Slug(const std::string& normalized_source);

  const std::filesystem::path& root() const { return root_; }

 private:
  // Removes least recently used complete entries (not in use) until
  // `needed` more bytes fit.
  void EvictFor(int64_t needed) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<CachedPath> Download(const ResolvedSource& source,
                                      const std::string& token,
                                      const std::string& slug,
                                      absl::Time deadline);

  const std::filesystem::path root_;
  const int64_t max_bytes_;
  SourceResolver* const resolver_;
  DownloaderClient* const downloader_;

  Mutex mu_;
  struct Slot {
    int users = 0;
    std::shared_ptr<Mutex> fetch;  // one download per slug at a time
  };
  std::map<std::string, Slot> slots_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mm::installer

#endif  // MM_SERVICES_INSTALLER_DOWNLOAD_CACHE_H_
