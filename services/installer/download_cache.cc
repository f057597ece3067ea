#include "services/installer/download_cache.h"

#include <errno.h>
#include <openssl/sha.h>
#include <string.h>

#include <algorithm>
#include <fstream>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/status.h"
#include "common/strings.h"

namespace mm::installer {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::modelmanager::v1;

constexpr char kMarker[] = ".entry";
// Readable part of a slug: enough to recognise the source in a listing.
constexpr size_t kSlugTextBytes = 80;

int64_t TreeBytes(const fs::path& dir) {
  int64_t total = 0;
  std::error_code error;
  for (fs::recursive_directory_iterator it(dir, error), end;
       !error && it != end; it.increment(error)) {
    std::error_code size_error;
    if (it->is_regular_file(size_error)) {
      const auto size = it->file_size(size_error);
      if (!size_error) total += static_cast<int64_t>(size);
    }
  }
  return total;
}

std::optional<fs::path> ReadMarker(const fs::path& entry) {
  std::ifstream in(entry / kMarker);
  if (!in) return std::nullopt;
  std::string relative;
  std::getline(in, relative);
  return entry / relative;
}

}  // namespace

DownloadCache::DownloadCache(fs::path models_dir, int64_t max_bytes,
                             SourceResolver* resolver,
                             DownloaderClient* downloader)
    : root_(models_dir / ".download_cache"),
      max_bytes_(max_bytes),
      resolver_(resolver),
      downloader_(downloader) {}

std::string DownloadCache::Slug(const std::string& normalized_source) {
  std::string text;
  for (char c : normalized_source) {
    const bool safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (c >= '0' && c <= '9') || c == '-' || c == '.' ||
                      c == '_';
    text.push_back(safe ? c : '_');
    if (text.size() == kSlugTextBytes) break;
  }
  if (!text.empty() && text[0] == '.') text[0] = '_';
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(normalized_source.data()),
         normalized_source.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string suffix;
  for (int i = 0; i < 6; ++i) {
    suffix.push_back(kHex[digest[i] >> 4]);
    suffix.push_back(kHex[digest[i] & 15]);
  }
  return absl::StrCat(text, "-", suffix);
}

absl::StatusOr<CachedPath> DownloadCache::Fetch(const std::string& source,
                                                const std::string& token,
                                                absl::Time deadline) {
  ASSIGN_OR_RETURN(ResolvedSource resolved, resolver_->Parse(source));
  if (resolved.source_type == "path") {
    return CachedPath{fs::path(resolved.normalized), true};
  }
  const std::string slug = Slug(resolved.normalized);
  std::shared_ptr<Mutex> fetch;
  {
    MutexLock lock(&mu_);
    Slot& slot = slots_[slug];
    ++slot.users;
    if (!slot.fetch) slot.fetch = std::make_shared<Mutex>();
    fetch = slot.fetch;
  }
  absl::StatusOr<CachedPath> result;
  {
    MutexLock one_at_a_time(fetch.get());
    const fs::path entry = root_ / slug;
    if (std::optional<fs::path> path = ReadMarker(entry)) {
      std::error_code error;
      fs::last_write_time(entry / kMarker, fs::file_time_type::clock::now(),
                          error);
      result = CachedPath{*path, true};
    } else {
      result = Download(resolved, token, slug, deadline);
    }
  }
  MutexLock lock(&mu_);
  if (--slots_[slug].users == 0) slots_.erase(slug);
  return result;
}

absl::StatusOr<CachedPath> DownloadCache::Download(const ResolvedSource& source,
                                                   const std::string& token,
                                                   const std::string& slug,
                                                   absl::Time deadline) {
  ASSIGN_OR_RETURN(InstallPlan plan, resolver_->Plan(source, token));
  const int64_t needed = plan.TotalBytes();
  if (max_bytes_ > 0 && needed > max_bytes_) {
    return absl::ResourceExhaustedError(
        absl::StrCat(QuotedForMessage(source.normalized), " needs ", needed,
                     " bytes, more than the whole download cache (", max_bytes_,
                     " bytes, --download-cache-size)"));
  }
  EvictFor(needed);
  std::error_code error;
  fs::create_directories(root_, error);
  const fs::path partial = root_ / absl::StrCat(".", slug, ".partial-",
                                                NewResourceId().substr(0, 8));
  fs::create_directories(partial, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot create the download cache folder ",
                     partial.string(), ": ", error.message()));
  }
  const v1::CreateDownloadRequest request =
      DownloadRequestFor(plan, partial.string(), token);
  auto fail = [&](absl::Status status) {
    fs::remove_all(partial, error);
    return status;
  };
  absl::StatusOr<v1::DownloadJob> job = downloader_->Create(request);
  if (!job.ok()) return fail(job.status());
  v1::DownloadJob last = *job;
  while (!last.done()) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      downloader_->Cancel(last.id()).IgnoreError();
      return fail(absl::DeadlineExceededError(
          absl::StrCat("download of ", QuotedForMessage(source.normalized),
                       " did not finish in time")));
    }
    absl::Status watched = downloader_->Watch(
        last.id(), last.revision(), std::min(left, absl::Seconds(5)),
        [&](const v1::DownloadJob& change) {
          last = change;
          return true;
        });
    if (!watched.ok() &&
        watched.code() != absl::StatusCode::kDeadlineExceeded) {
      downloader_->Cancel(last.id()).IgnoreError();
      return fail(watched);
    }
    if (last.state() == v1::DOWNLOAD_STATE_PAUSED) {
      downloader_->Cancel(last.id()).IgnoreError();
      return fail(absl::AbortedError(
          absl::StrCat("the download of ", QuotedForMessage(source.normalized),
                       " was paused: ", last.status_message())));
    }
  }
  if (last.state() != v1::DOWNLOAD_STATE_SUCCEEDED) {
    return fail(absl::AbortedError(absl::StrCat(
        "download of ", QuotedForMessage(source.normalized), " ",
        last.state() == v1::DOWNLOAD_STATE_CANCELLED ? "was cancelled"
                                                     : "failed",
        last.error().message().empty() ? "" : ": ", last.error().message())));
  }
  // The model inside the entry: the one file of a URL, the repo's entry.
  const fs::path model =
      DownloadedModelPath(plan, last, partial).lexically_relative(partial);
  {
    std::ofstream marker(partial / kMarker);
    marker << model.string() << "\n";
    if (!marker) {
      return fail(absl::InternalError(
          absl::StrCat("cannot write ", (partial / kMarker).string(),
                       " (is the models folder's disk full or read-only?)")));
    }
  }
  const fs::path entry = root_ / slug;
  fs::remove_all(entry, error);  // an incomplete entry (no marker)
  if (::rename(partial.c_str(), entry.c_str()) != 0) {
    return fail(absl::InternalError(
        absl::StrCat("cannot move ", partial.string(), " to ", entry.string(),
                     ": ", ::strerror(errno))));
  }
  // A URL's size is known only now: make room after the fact (the new
  // entry is in use, so it stays), or give up on an entry larger than the
  // whole cache.
  const int64_t bytes = TreeBytes(entry);
  if (max_bytes_ > 0 && bytes > max_bytes_) {
    fs::remove_all(entry, error);
    return absl::ResourceExhaustedError(
        absl::StrCat(QuotedForMessage(source.normalized), " is ", bytes,
                     " bytes, more than the whole download cache (", max_bytes_,
                     " bytes, --download-cache-size)"));
  }
  EvictFor(0);
  return CachedPath{entry / model, false};
}

void DownloadCache::EvictFor(int64_t needed) {
  if (max_bytes_ <= 0) return;
  struct Entry {
    fs::path path;
    fs::file_time_type used;
    int64_t bytes;
    std::string slug;
  };
  std::vector<Entry> entries;
  int64_t total = 0;
  std::error_code error;
  for (const fs::directory_entry& dir : fs::directory_iterator(root_, error)) {
    const std::string name = dir.path().filename().string();
    if (name.empty() || name[0] == '.') continue;  // downloads in progress
    const int64_t bytes = TreeBytes(dir.path());
    total += bytes;
    std::error_code time_error;
    fs::file_time_type used =
        fs::last_write_time(dir.path() / kMarker, time_error);
    entries.push_back({dir.path(), used, bytes, name});
  }
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.used < b.used; });
  for (const Entry& entry : entries) {
    if (total + needed <= max_bytes_) return;
    {
      MutexLock lock(&mu_);
      if (slots_.count(entry.slug)) continue;  // a call is using it
    }
    fs::remove_all(entry.path, error);
    if (error) {
      MM_LOG(WARNING) << "cannot evict " << entry.path.string() << ": "
                      << error.message();
      continue;
    }
    MM_LOG(INFO) << "download cache: evicted " << entry.path.string() << " ("
                 << entry.bytes << " bytes)";
    total -= entry.bytes;
  }
}

}  // namespace mm::installer
