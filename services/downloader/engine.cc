#include "services/downloader/engine.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <future>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/http/headers.h"
#include "common/logging.h"
#include "model/hashing.h"
#include "services/downloader/paths.h"

namespace mm::downloader {
namespace fs = std::filesystem;
using http::TransferResult;

namespace {

// Body bytes are gathered per segment and written in blocks of this size:
// libcurl hands them over 16 KiB at a time, and a pwrite per piece costs
// more than copying it. At most one block per running segment is held.
constexpr size_t kWriteBlock = 256 * 1024;
constexpr absl::Duration kWriteInterval = absl::Milliseconds(100);

struct Failure {
  std::string code;
  std::string type;
  std::string message;
};

std::string HttpErrorCode(int status) {
  switch (status) {
    case 401:
      return "UNAUTHENTICATED";
    case 403:
      return "PERMISSION_DENIED";
    case 404:
    case 410:
      return "NOT_FOUND";
    default:
      return status >= 500 ? "UNAVAILABLE" : "FAILED_PRECONDITION";
  }
}

bool RetryableStatus(int status) {
  return status == 408 || status == 429 || status >= 500;
}

struct EvpDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
using Sha256 = std::unique_ptr<EVP_MD_CTX, EvpDeleter>;

Sha256 NewSha256() {
  Sha256 ctx(EVP_MD_CTX_new());
  if (ctx != nullptr &&
      EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    ctx.reset();
  }
  return ctx;
}

std::string FinishSha256(EVP_MD_CTX* ctx) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx, digest, &length);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<char*>(digest), length));
}

}  // namespace

// One claimed job: its parts, their segments and transfers. The transfer
// callbacks (loop thread) and the job thread share the state under mu_.
class JobRunner : public std::enable_shared_from_this<JobRunner> {
 public:
  JobRunner(Engine* engine, Job job)
      : engine_(engine), id_(job.id), job_(std::move(job)) {}

  // The job thread: works the job until it stops, then saves it.
  void Run() ABSL_LOCKS_EXCLUDED(mu_, wake_mu_);
  void RequestShutdown() ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    if (stop_ == Stop::kNone) stop_ = Stop::kShutdown;
    Wake();
  }
  bool finished() const ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    return finished_;
  }

  // Transfer callbacks (loop thread).
  bool OnResponse(int p, int s, uint64_t gen, const http::ResponseHead& head)
      ABSL_LOCKS_EXCLUDED(mu_);
  bool OnBody(int p, int s, uint64_t gen, const char* data, size_t size)
      ABSL_LOCKS_EXCLUDED(mu_);
  void OnDone(int p, int s, uint64_t gen, const TransferResult& result)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  enum class Stop {
    kNone,
    kSucceeded,
    kFailed,
    kPaused,
    kCancelled,
    kLost,
    kShutdown,
  };
  enum class Phase { kPending, kActive, kVerify, kVerifying, kDone };

  struct SegmentRuntime {
    bool active = false;
    http::TransferId id = 0;
    // When to (re)start; InfiniteFuture = not scheduled.
    absl::Time start_at = absl::InfiniteFuture();
    // The first byte asked for by the running transfer.
    int64_t requested_from = 0;
    // The running transfer is the first request of the file.
    bool probe = false;
    bool reached_end = false;
    bool retry = false;
    std::optional<absl::Duration> retry_after;
    std::string error_type;
    std::string error_message;
    // Body bytes received but not yet written (see kWriteBlock); they do
    // not count in the segment's `done` until written.
    std::string pending;
    absl::Time last_write = absl::InfinitePast();
  };

  struct PartRuntime {
    Phase phase = Phase::kPending;
    uint64_t gen = 1;
    int fd = -1;
    bool ranges = false;
    bool verify_existing = false;
    bool checked_existing = false;
    int restarts = 0;
    // Transient failures since the part last got further than before.
    int failures_in_row = 0;
    int64_t bytes_at_failure = -1;
    std::vector<SegmentRuntime> segments;
    Sha256 sha;
    int64_t hashed = 0;
    std::future<absl::StatusOr<std::string>> verification;
  };

  // Writes the segment's pending bytes; false when that failed the job.
  bool Flush(int p, int s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartPart(int p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartSegment(int p, int s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Fail(Failure failure) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forgets the part's segments and starts it over with a probe at
  // `start_at`.
  void ResetToProbe(int p, absl::Time start_at)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RestartPart(int p, const std::string& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HandleProbe(int p, int s, const http::ResponseHead& head)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ScheduleRetry(int p, int s, const std::string& type,
                     const std::string& message,
                     std::optional<absl::Duration> retry_after)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeComplete(int p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CancelTransfers() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CloseFiles() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartVerification(int p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishVerification(int p, absl::StatusOr<std::string> result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Duration Backoff(int attempt) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Job thread only; takes mu_ itself (the store write happens without
  // it). `final`: the last save, after every transfer has ended.
  void SaveProgress(bool force, bool final = false) ABSL_LOCKS_EXCLUDED(mu_);

  Engine* const engine_;
  // job_.id, which never changes: readable without mu_.
  const std::string id_;
  mutable Mutex mu_;
  Job job_ ABSL_GUARDED_BY(mu_);
  std::vector<PartRuntime> parts_ ABSL_GUARDED_BY(mu_);
  int active_transfers_ ABSL_GUARDED_BY(mu_) = 0;
  // Wakes the job thread. Its own mutex, so that the many short holds of
  // mu_ by body callbacks never wake the job thread for nothing. Lock
  // order: mu_, then wake_mu_.
  void Wake() ABSL_LOCKS_EXCLUDED(wake_mu_) {
    MutexLock lock(&wake_mu_);
    ++events_;
  }
  mutable Mutex wake_mu_ ABSL_ACQUIRED_AFTER(mu_);
  int64_t events_ ABSL_GUARDED_BY(wake_mu_) = 0;
  bool dirty_ ABSL_GUARDED_BY(mu_) = true;
  Stop stop_ ABSL_GUARDED_BY(mu_) = Stop::kNone;
  std::optional<Failure> failure_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::mt19937_64 random_ ABSL_GUARDED_BY(mu_){std::random_device{}()};

  // Job thread only.
  absl::Time last_save_ = absl::InfinitePast();
  int64_t last_saved_bytes_ = 0;
  int64_t rate_bytes_ = 0;
  absl::Time rate_time_ = absl::Now();
  double rate_ = 0;
};

namespace {

class SegmentHandler final : public http::TransferHandler {
 public:
  SegmentHandler(std::shared_ptr<JobRunner> runner, int part, int segment,
                 uint64_t gen)
      : runner_(std::move(runner)), part_(part), segment_(segment), gen_(gen) {}
  bool OnResponse(const http::ResponseHead& head) override {
    return runner_->OnResponse(part_, segment_, gen_, head);
  }
  bool OnBody(const char* data, size_t size) override {
    return runner_->OnBody(part_, segment_, gen_, data, size);
  }
  void OnDone(const TransferResult& result) override {
    runner_->OnDone(part_, segment_, gen_, result);
  }

 private:
  std::shared_ptr<JobRunner> runner_;
  int part_;
  int segment_;
  uint64_t gen_;
};

}  // namespace

absl::Duration JobRunner::Backoff(int attempt) {
  const EngineOptions& o = engine_->options();
  absl::Duration delay = o.retry_base_delay;
  for (int i = 1; i < attempt && delay < o.retry_max_delay; ++i) delay *= 2;
  delay = std::min(delay, o.retry_max_delay);
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  return delay * jitter(random_);
}

void JobRunner::Fail(Failure failure) {
  if (!failure_.has_value()) {
    MM_LOG(WARNING) << "download " << job_.id << " failed: " << failure.type
                    << ": " << failure.message;
    failure_ = std::move(failure);
  }
  if (stop_ == Stop::kNone) stop_ = Stop::kFailed;
  Wake();
}

void JobRunner::StartSegment(int p, int s) {
  Part& part = job_.parts[p];
  PartRuntime& rt = parts_[p];
  Segment& seg = part.segments[s];
  SegmentRuntime& srt = rt.segments[s];
  http::Request request;
  request.url = part.url;
  request.address_policy = engine_->options().address_policy;
  request.stall_timeout = engine_->options().stall_timeout;
  if (std::optional<std::string> token =
          engine_->tokens()->ForJob(job_.id, part.url)) {
    request.bearer_token = *token;
  }
  srt.probe = part.segments.size() == 1 && seg.begin == 0 && seg.done == 0 &&
              seg.end < 0;
  srt.requested_from = seg.begin + seg.done;
  request.range_begin = srt.requested_from;
  if (!srt.probe) {
    request.range_end = seg.end >= 0 ? seg.end - 1 : -1;
    request.if_range = part.validator;
  }
  srt.active = true;
  srt.pending.clear();
  srt.reached_end = false;
  srt.retry = false;
  srt.retry_after.reset();
  srt.start_at = absl::InfiniteFuture();
  ++active_transfers_;
  srt.id = engine_->loop()->Start(
      std::move(request),
      std::make_shared<SegmentHandler>(shared_from_this(), p, s, rt.gen));
}

void JobRunner::ResetToProbe(int p, absl::Time start_at) {
  PartRuntime& rt = parts_[p];
  Part& part = job_.parts[p];
  ++rt.gen;
  for (SegmentRuntime& srt : rt.segments) {
    if (srt.active) engine_->loop()->Cancel(srt.id);
  }
  part.segments = {Segment{0, -1, 0}};
  part.total_bytes = 0;
  part.validator.clear();
  rt.segments.clear();
  rt.segments.emplace_back();
  rt.segments[0].start_at = start_at;
  rt.sha.reset();
  rt.hashed = 0;
  rt.phase = Phase::kActive;
  dirty_ = true;
}

void JobRunner::RestartPart(int p, const std::string& why) {
  PartRuntime& rt = parts_[p];
  if (++rt.restarts > 3) {
    Fail({"ABORTED", "ContentChanged",
          absl::StrCat(job_.parts[p].url,
                       " keeps changing while it downloads: ", why)});
    return;
  }
  MM_LOG(INFO) << "download " << job_.id << ": restarting "
               << job_.parts[p].DisplayName() << " from zero: " << why;
  ResetToProbe(p, absl::InfinitePast());
}

void JobRunner::StartPart(int p) {
  Part& part = job_.parts[p];
  PartRuntime& rt = parts_[p];
  rt.phase = Phase::kActive;
  if (!part.relative_path.empty()) {
    // Folders are made one at a time, refusing any that is a symbolic
    // link, so nothing is created or written outside the destination.
    fs::path folder(job_.destination);
    fs::path relative(part.relative_path);
    for (const fs::path& component : relative.parent_path()) {
      folder /= component;
      std::error_code ec;
      fs::file_status status = fs::symlink_status(folder, ec);
      if (fs::is_symlink(status) ||
          (fs::exists(status) && !fs::is_directory(status))) {
        Fail({"INVALID_ARGUMENT", "UnsafePath",
              absl::StrCat(folder.string(), " is not a folder inside ",
                           job_.destination)});
        return;
      }
      if (!fs::exists(status) && !fs::create_directory(folder, ec) && ec) {
        Fail({"INTERNAL", "OSError",
              absl::StrCat("cannot create ", folder.string(), ": ",
                           ec.message())});
        return;
      }
    }
    part.path = (folder / relative.filename()).string();
  }
  if (!part.path.empty() && !rt.checked_existing && part.expected_size > 0) {
    std::error_code ec;
    auto size = fs::file_size(part.path, ec);
    if (!ec && static_cast<int64_t>(size) == part.expected_size &&
        !fs::is_symlink(fs::symlink_status(part.path, ec))) {
      rt.verify_existing = true;
      rt.phase = Phase::kVerify;
      Wake();
      return;
    }
  }
  bool resumable = false;
  if (!part.path.empty() && !part.segments.empty() &&
      !(part.segments.size() == 1 && part.segments[0].done == 0)) {
    int fd =
        open(PartialPath(part.path).c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
      rt.fd = fd;
      resumable = true;
    }
  }
  if (!resumable) {
    ResetToProbe(p, absl::InfinitePast());
    return;
  }
  rt.ranges = true;
  rt.segments.assign(part.segments.size(), SegmentRuntime{});
  for (size_t s = 0; s < part.segments.size(); ++s) {
    if (!part.segments[s].Complete()) {
      rt.segments[s].start_at = absl::InfinitePast();
    }
  }
  MM_LOG(INFO) << "download " << job_.id << ": resuming " << part.DisplayName()
               << " at " << part.Bytes() << " bytes";
  MaybeComplete(p);
}

bool JobRunner::HandleProbe(int p, int s, const http::ResponseHead& head) {
  Part& part = job_.parts[p];
  PartRuntime& rt = parts_[p];
  int64_t total = -1;
  if (head.status == 206) {
    std::optional<http::ContentRange> range =
        http::ParseContentRange(head.Header("content-range"));
    if (!range.has_value() || range->first != 0) {
      Fail({"FAILED_PRECONDITION", "InvalidResponse",
            absl::StrCat(part.url,
                         " answered a range request with a bad "
                         "Content-Range")});
      return false;
    }
    total = range->total;
    rt.ranges = true;
  } else {
    total = head.ContentLength();
    rt.ranges = false;
  }
  std::string validator = head.Header("etag");
  if (validator.empty()) validator = head.Header("last-modified");
  part.validator = validator;

  // The file name, when the request named only a folder.
  if (part.path.empty()) {
    std::string name = job_.file_name;
    if (name.empty()) {
      name =
          http::ContentDispositionFileName(head.Header("content-disposition"))
              .value_or("");
    }
    if (name.empty()) name = FileNameFromUrl(part.url);
    if (absl::Status safe = ValidateFileName(name, "the file name");
        !safe.ok()) {
      Fail({"INVALID_ARGUMENT", "UnsafeFileName", std::string(safe.message())});
      return false;
    }
    fs::path target = fs::path(job_.destination) / name;
    std::error_code ec;
    if (fs::is_symlink(fs::symlink_status(target, ec))) {
      Fail({"INVALID_ARGUMENT", "UnsafeFileName",
            absl::StrCat(target.string(), " is a symbolic link")});
      return false;
    }
    part.path = target.string();
    dirty_ = true;
    if (part.expected_size > 0 && !rt.checked_existing) {
      auto size = fs::file_size(target, ec);
      if (!ec && static_cast<int64_t>(size) == part.expected_size) {
        rt.verify_existing = true;
        rt.phase = Phase::kVerify;
        Wake();
        return false;
      }
    }
  }
  if (part.expected_size > 0 && total >= 0 && total != part.expected_size) {
    Fail({"DATA_LOSS", "SizeMismatch",
          absl::StrCat(part.url, " has ", total, " bytes, expected ",
                       part.expected_size)});
    return false;
  }
  fs::path dir = fs::path(part.path).parent_path();
  if (total > 0) {
    absl::StatusOr<int64_t> free_bytes = FreeBytes(dir);
    if (free_bytes.ok() && *free_bytes < total) {
      Fail({"RESOURCE_EXHAUSTED", "InsufficientStorage",
            absl::StrCat("not enough free space in ", dir.string(), ": ", total,
                         " bytes needed, ", *free_bytes, " available")});
      return false;
    }
  }
  if (rt.fd >= 0) close(rt.fd);
  std::string partial = PartialPath(part.path);
  // O_NOFOLLOW: a planted symlink must not redirect the write.
  rt.fd = open(partial.c_str(),
               O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (rt.fd < 0) {
    Fail(errno == ELOOP
             ? Failure{"INVALID_ARGUMENT", "UnsafePath",
                       absl::StrCat(partial,
                                    " is a symbolic link; remove it to "
                                    "download here")}
             : Failure{"INTERNAL", "OSError",
                       absl::StrCat("cannot create ", partial, ": ",
                                    std::strerror(errno))});
    return false;
  }
  if (total > 0) {
    int rc = posix_fallocate(rt.fd, 0, total);
    if (rc == ENOSPC) {
      Fail({"RESOURCE_EXHAUSTED", "DiskFull",
            absl::StrCat("no space left on device for ", total, " bytes in ",
                         dir.string())});
      return false;
    }
    if (rc != 0 && ftruncate(rt.fd, total) != 0) {
      Fail({"INTERNAL", "OSError",
            absl::StrCat("cannot size ", partial, ": ", std::strerror(errno))});
      return false;
    }
  }
  part.total_bytes = total > 0 ? total : 0;
  Segment& first = part.segments[s];
  const EngineOptions& o = engine_->options();
  int count = 1;
  if (rt.ranges && total >= 2 * o.min_segment_size && o.max_segments > 1) {
    count = static_cast<int>(
        std::min<int64_t>(o.max_segments, total / o.min_segment_size));
  }
  if (count > 1) {
    int64_t size = total / count;
    first.end = size;
    for (int i = 1; i < count; ++i) {
      int64_t begin = size * i;
      int64_t end = i == count - 1 ? total : size * (i + 1);
      part.segments.push_back(Segment{begin, end, 0});
      SegmentRuntime srt;
      srt.start_at = absl::InfinitePast();
      rt.segments.push_back(std::move(srt));
    }
  } else {
    first.end = total >= 0 ? total : -1;
    // One stream in order: hash as the bytes arrive.
    if (!part.expected_sha256.empty()) {
      rt.sha = NewSha256();
      rt.hashed = 0;
    }
  }
  dirty_ = true;
  Wake();
  return true;
}

bool JobRunner::OnResponse(int p, int s, uint64_t gen,
                           const http::ResponseHead& head) {
  MutexLock lock(&mu_);
  PartRuntime& rt = parts_[p];
  if (gen != rt.gen || stop_ != Stop::kNone) return false;
  Part& part = job_.parts[p];
  SegmentRuntime& srt = rt.segments[s];
  Segment& seg = part.segments[s];
  int status = head.status;
  if (status == 416) {
    std::optional<http::ContentRange> range =
        http::ParseContentRange(head.Header("content-range"));
    if (seg.end < 0 && range.has_value() &&
        range->total == srt.requested_from && srt.requested_from > 0) {
      // The partial file already holds every byte (spec §7).
      seg.end = range->total;
      part.total_bytes = range->total;
      srt.reached_end = true;
      dirty_ = true;
      return false;
    }
    RestartPart(p, "the server refused the saved range (416)");
    return false;
  }
  if (status == 200 || status == 206) {
    if (http::MediaType(head.Header("content-type")) == "text/html") {
      Fail({"FAILED_PRECONDITION", "UnexpectedContentType",
            absl::StrCat(part.url,
                         " returned an HTML page (text/html) instead "
                         "of a model file; the URL may need an access "
                         "token or a different address")});
      return false;
    }
    if (srt.probe) return HandleProbe(p, s, head);
    if (status == 200) {
      if (!rt.ranges) {
        // One stream without ranges: this is the whole file again.
        ResetToProbe(p, absl::InfinitePast());
        return false;
      }
      RestartPart(p,
                  "the server sent the whole file for a range request "
                  "(it changed, or no longer honours ranges)");
      return false;
    }
    std::optional<http::ContentRange> range =
        http::ParseContentRange(head.Header("content-range"));
    if (!range.has_value() || range->first != srt.requested_from ||
        (part.total_bytes > 0 && range->total >= 0 &&
         range->total != part.total_bytes)) {
      RestartPart(p, "the server answered a different range or size");
      return false;
    }
    return true;
  }
  if (RetryableStatus(status)) {
    srt.retry = true;
    srt.error_type = http::HttpErrorType(status);
    srt.error_message = absl::StrCat(part.url, " answered ", status, " ",
                                     http::ReasonPhrase(status));
    std::string retry_after = head.Header("retry-after");
    if (!retry_after.empty()) {
      srt.retry_after = http::ParseRetryAfter(retry_after, absl::Now());
    }
    return false;
  }
  std::string message = absl::StrCat(part.url, " answered ", status, " ",
                                     http::ReasonPhrase(status));
  if (status == 401 || status == 403) {
    absl::StrAppend(&message,
                    job_.has_token || engine_->tokens()->RuleMatches(part.url)
                        ? "; the access token was refused"
                        : "; the URL may need an access token");
  }
  Fail({HttpErrorCode(status), http::HttpErrorType(status), message});
  return false;
}

bool JobRunner::Flush(int p, int s) {
  PartRuntime& rt = parts_[p];
  Part& part = job_.parts[p];
  Segment& seg = part.segments[s];
  SegmentRuntime& srt = rt.segments[s];
  if (srt.pending.empty()) return true;
  int64_t offset = seg.begin + seg.done;
  const char* cursor = srt.pending.data();
  size_t left = srt.pending.size();
  int64_t at = offset;
  while (left > 0) {
    ssize_t written = pwrite(rt.fd, cursor, left, at);
    if (written < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      srt.pending.clear();
      if (err == ENOSPC || err == EDQUOT) {
        Fail({"RESOURCE_EXHAUSTED", "DiskFull",
              absl::StrCat("no space left on device writing ",
                           PartialPath(part.path))});
      } else {
        Fail({"INTERNAL", "OSError",
              absl::StrCat("cannot write ", PartialPath(part.path), ": ",
                           std::strerror(err))});
      }
      return false;
    }
    cursor += written;
    left -= static_cast<size_t>(written);
    at += written;
  }
  int64_t length = static_cast<int64_t>(srt.pending.size());
  if (rt.sha != nullptr && offset == rt.hashed) {
    EVP_DigestUpdate(rt.sha.get(), srt.pending.data(), srt.pending.size());
    rt.hashed += length;
  }
  seg.done += length;
  srt.pending.clear();
  if (rt.failures_in_row > 0 && part.Bytes() > rt.bytes_at_failure) {
    rt.failures_in_row = 0;
  }
  return true;
}

bool JobRunner::OnBody(int p, int s, uint64_t gen, const char* data,
                       size_t size) {
  MutexLock lock(&mu_);
  PartRuntime& rt = parts_[p];
  if (gen != rt.gen || stop_ != Stop::kNone || rt.fd < 0) return false;
  Part& part = job_.parts[p];
  Segment& seg = part.segments[s];
  SegmentRuntime& srt = rt.segments[s];
  int64_t offset =
      seg.begin + seg.done + static_cast<int64_t>(srt.pending.size());
  int64_t length = static_cast<int64_t>(size);
  bool at_end = false;
  if (seg.end >= 0 && offset + length >= seg.end) {
    length = seg.end - offset;
    at_end = true;
  }
  if (part.expected_size > 0 && offset + length > part.expected_size) {
    Fail({"DATA_LOSS", "SizeMismatch",
          absl::StrCat(part.url, " sent more than the expected ",
                       part.expected_size, " bytes")});
    return false;
  }
  if (srt.pending.capacity() < kWriteBlock) srt.pending.reserve(kWriteBlock);
  srt.pending.append(data, static_cast<size_t>(length));
  // Slow transfers write (and so show progress) at least every
  // kWriteInterval even when the block is not full.
  absl::Time now = absl::Now();
  if (srt.pending.size() >= kWriteBlock || at_end ||
      now - srt.last_write >= kWriteInterval) {
    srt.last_write = now;
    if (!Flush(p, s)) return false;
  }
  if (at_end) {
    srt.reached_end = true;
    return false;
  }
  return true;
}

void JobRunner::ScheduleRetry(int p, int s, const std::string& type,
                              const std::string& message,
                              std::optional<absl::Duration> retry_after) {
  PartRuntime& rt = parts_[p];
  ++job_.retries;
  ++rt.failures_in_row;
  rt.bytes_at_failure = std::max(rt.bytes_at_failure, job_.parts[p].Bytes());
  dirty_ = true;
  if (rt.failures_in_row >= engine_->options().max_attempts) {
    Fail({"UNAVAILABLE", type,
          absl::StrCat(message, " (gave up after ", rt.failures_in_row,
                       " attempts)")});
    return;
  }
  absl::Duration delay = Backoff(rt.failures_in_row);
  if (retry_after.has_value()) {
    delay = std::max(delay, std::min(*retry_after, absl::Minutes(10)));
  }
  MM_LOG(INFO) << "download " << job_.id << ": " << message << "; retry "
               << rt.failures_in_row << " in " << absl::FormatDuration(delay);
  if (!rt.ranges) {
    // Without ranges the stream can only start over.
    ResetToProbe(p, absl::Now() + delay);
    return;
  }
  rt.segments[s].start_at = absl::Now() + delay;
}

void JobRunner::OnDone(int p, int s, uint64_t gen,
                       const TransferResult& result) {
  MutexLock lock(&mu_);
  --active_transfers_;
  Wake();
  PartRuntime& rt = parts_[p];
  if (gen != rt.gen) return;
  SegmentRuntime& srt = rt.segments[s];
  srt.active = false;
  if (stop_ != Stop::kNone) return;
  // What arrived before the end is good data, whatever ended the transfer.
  bool flushed = Flush(p, s);
  std::string().swap(srt.pending);
  if (!flushed) return;
  Part& part = job_.parts[p];
  Segment& seg = part.segments[s];
  using Kind = TransferResult::Kind;
  if (rt.phase != Phase::kActive) return;
  if (srt.reached_end || seg.Complete()) {
    MaybeComplete(p);
    return;
  }
  if (srt.retry) {
    ScheduleRetry(p, s, srt.error_type, srt.error_message, srt.retry_after);
    return;
  }
  switch (result.kind) {
    case Kind::kComplete:
      if (result.http_status != 200 && result.http_status != 206) return;
      if (seg.end < 0) {
        // A stream of unknown length ended cleanly: that is the file.
        seg.end = seg.begin + seg.done;
        part.total_bytes = seg.end;
        dirty_ = true;
        MaybeComplete(p);
        return;
      }
      ScheduleRetry(
          p, s, "ConnectionError",
          absl::StrCat(part.url, ": the server closed the body after ",
                       seg.done, " of ", seg.end - seg.begin, " bytes"),
          std::nullopt);
      return;
    case Kind::kStopped:
    case Kind::kCancelled:
      return;  // we stopped it; whoever did has set the next step
    case Kind::kStalled:
      ScheduleRetry(p, s, "StallError",
                    absl::StrCat(part.url, ": ", result.message), std::nullopt);
      return;
    case Kind::kNetwork:
      ScheduleRetry(p, s, "ConnectionError",
                    absl::StrCat(part.url, ": ", result.message), std::nullopt);
      return;
    case Kind::kBlocked:
      Fail({"PERMISSION_DENIED", "UnsafeURL",
            absl::StrCat(part.url, ": ", result.message)});
      return;
    case Kind::kPermanent:
      Fail({"FAILED_PRECONDITION", "ConnectionError",
            absl::StrCat(part.url, ": ", result.message)});
      return;
  }
}

void JobRunner::MaybeComplete(int p) {
  Part& part = job_.parts[p];
  PartRuntime& rt = parts_[p];
  for (size_t s = 0; s < part.segments.size(); ++s) {
    if (!part.segments[s].Complete() || rt.segments[s].active) return;
  }
  rt.phase = Phase::kVerify;
  dirty_ = true;
  Wake();
}

void JobRunner::StartVerification(int p) {
  Part& part = job_.parts[p];
  PartRuntime& rt = parts_[p];
  rt.phase = Phase::kVerifying;
  std::string path = rt.verify_existing ? part.path : PartialPath(part.path);
  std::string incremental;
  if (!rt.verify_existing && rt.sha != nullptr &&
      rt.hashed == part.total_bytes) {
    incremental = FinishSha256(rt.sha.get());
  }
  rt.sha.reset();
  int64_t total = part.total_bytes;
  int fd = rt.fd;
  bool verify_existing = rt.verify_existing;
  std::string expected_sha = part.expected_sha256;
  int64_t expected_size = part.expected_size;
  bool sync = engine_->options().sync_files && !verify_existing && fd >= 0;
  auto verify = [=]() -> absl::StatusOr<std::string> {
    std::error_code ec;
    if (!verify_existing && fd >= 0) {
      struct stat info;
      if (fstat(fd, &info) == 0 && total > 0 && info.st_size != total &&
          ftruncate(fd, total) != 0) {
        return absl::InternalError(
            absl::StrCat("cannot size ", path, ": ", std::strerror(errno)));
      }
    }
    // On disk before it is renamed into place and reported complete: a
    // crash after that must not leave a complete-looking file of zeros.
    if (sync && fdatasync(fd) != 0) {
      return absl::InternalError(
          absl::StrCat("cannot sync ", path, ": ", std::strerror(errno)));
    }
    int64_t size = static_cast<int64_t>(fs::file_size(path, ec));
    if (ec) {
      return absl::InternalError(
          absl::StrCat("cannot stat ", path, ": ", ec.message()));
    }
    if (expected_size > 0 && size != expected_size) {
      return absl::DataLossError(absl::StrCat(
          "SizeMismatch: received ", size, " bytes, expected ", expected_size));
    }
    if (expected_sha.empty()) return std::string();
    std::string digest = incremental;
    if (digest.empty()) {
      model::HashOptions options;
      options.algorithm = model::HashAlgorithm::kSha256;
      absl::StatusOr<std::string> hash = model::HashFile(path, options);
      if (!hash.ok()) return hash.status();
      digest = hash->substr(hash->find(':') + 1);
    }
    if (digest != expected_sha) {
      return absl::DataLossError(
          absl::StrCat("ChecksumMismatch: sha256 of the download is ", digest,
                       ", expected ", expected_sha));
    }
    return digest;
  };
  if (!sync && (expected_sha.empty() || !incremental.empty())) {
    // Only a stat and a comparison: no reason to leave this thread.
    FinishVerification(p, verify());
    return;
  }
  // Syncing or reading the file back takes a while; the job thread keeps saving
  // progress (renewing the lease) meanwhile, and is woken at the end.
  // A weak reference: the future lives in the runner, so a strong one
  // would keep the runner alive forever if the result is never taken.
  std::weak_ptr<JobRunner> weak = weak_from_this();
  rt.verification = std::async(std::launch::async, [weak, verify]() {
    absl::StatusOr<std::string> result = verify();
    if (std::shared_ptr<JobRunner> self = weak.lock()) self->Wake();
    return result;
  });
}

void JobRunner::FinishVerification(int p, absl::StatusOr<std::string> result) {
  Part& part = job_.parts[p];
  PartRuntime& rt = parts_[p];
  if (rt.verify_existing) {
    rt.verify_existing = false;
    rt.checked_existing = true;
    if (result.ok()) {
      std::error_code ec;
      part.total_bytes = static_cast<int64_t>(fs::file_size(part.path, ec));
      part.segments.clear();
      part.done = true;
      rt.phase = Phase::kDone;
      dirty_ = true;
      MM_LOG(INFO) << "download " << job_.id << ": " << part.path
                   << " is already complete";
      Wake();
      return;
    }
    // Not the file we want: download it anew (it is replaced at the end).
    rt.phase = Phase::kPending;
    return;
  }
  if (!result.ok()) {
    std::string message(result.status().message());
    std::string type = "VerificationError";
    size_t colon = message.find(": ");
    if (result.status().code() == absl::StatusCode::kDataLoss &&
        colon != std::string::npos) {
      type = message.substr(0, colon);
      message = message.substr(colon + 2);
    }
    Fail({std::string(absl::StatusCodeToString(result.status().code())), type,
          absl::StrCat(part.path, ": ", message)});
    return;
  }
  if (rt.fd >= 0) {
    close(rt.fd);
    rt.fd = -1;
  }
  if (rename(PartialPath(part.path).c_str(), part.path.c_str()) != 0) {
    Fail({"INTERNAL", "OSError",
          absl::StrCat("cannot rename ", PartialPath(part.path), ": ",
                       std::strerror(errno))});
    return;
  }
  part.done = true;
  part.segments.clear();
  rt.phase = Phase::kDone;
  dirty_ = true;
  Wake();
}

void JobRunner::CancelTransfers() {
  for (PartRuntime& rt : parts_) {
    ++rt.gen;
    for (SegmentRuntime& srt : rt.segments) {
      if (srt.active) engine_->loop()->Cancel(srt.id);
    }
  }
}

void JobRunner::CloseFiles() {
  for (PartRuntime& rt : parts_) {
    if (rt.fd >= 0) {
      close(rt.fd);
      rt.fd = -1;
    }
  }
}

void JobRunner::SaveProgress(bool force, bool final) {
  Job snapshot;
  {
    MutexLock lock(&mu_);
    absl::Time now = absl::Now();
    int64_t bytes = job_.Bytes();
    absl::Duration since_rate = now - rate_time_;
    if (since_rate >= absl::Milliseconds(200)) {
      double instant = static_cast<double>(bytes - rate_bytes_) /
                       absl::ToDoubleSeconds(since_rate);
      rate_ = rate_ == 0 ? instant : 0.6 * instant + 0.4 * rate_;
      if (rate_ < 0) rate_ = 0;
      rate_bytes_ = bytes;
      rate_time_ = now;
    }
    int64_t total = job_.TotalBytes();
    bool percent = total > 0 && (bytes - last_saved_bytes_) * 100 >= total &&
                   now - last_save_ >= absl::Milliseconds(50);
    bool interval = now - last_save_ >= engine_->options().progress_interval;
    if (!force && !dirty_ && !percent && !interval) return;
    if (!force && !percent && !interval &&
        now - last_save_ < absl::Milliseconds(50)) {
      return;
    }
    job_.bytes_per_second = rate_;
    dirty_ = false;
    last_save_ = now;
    last_saved_bytes_ = bytes;
    snapshot = job_;
  }
  absl::StatusOr<Job> stored =
      engine_->store()->SaveProgress(snapshot, engine_->options().lease, final);
  if (!stored.ok()) {
    MM_LOG(WARNING) << "download " << snapshot.id
                    << ": cannot save progress: " << stored.status();
    return;
  }
  MutexLock lock(&mu_);
  job_.revision = stored->revision;
  Stop before = stop_;
  if (stored->state == JobState::kPaused) {
    if (stop_ == Stop::kNone) stop_ = Stop::kPaused;
  } else if (stored->state == JobState::kCancelled) {
    if (stop_ == Stop::kNone || stop_ == Stop::kFailed)
      stop_ = Stop::kCancelled;
  } else if (stored->lease_owner != engine_->store()->replica_id()) {
    if (!final) stop_ = Stop::kLost;
  } else if (stored->state != JobState::kRunning &&
             !IsTerminal(snapshot.state) && stop_ == Stop::kNone) {
    // Paused and resumed again between two saves: stop, hand the lease
    // back with the final save, and let the queue take it from there.
    stop_ = Stop::kPaused;
  }
  if (stop_ != before) Wake();
}

void JobRunner::Run() {
  {
    MutexLock lock(&mu_);
    parts_.resize(job_.parts.size());
    bool token_missing = false;
    if (job_.has_token && !engine_->tokens()->HasJobToken(job_.id)) {
      for (const Part& part : job_.parts) {
        if (!engine_->tokens()->RuleMatches(part.url)) token_missing = true;
      }
    }
    if (token_missing) {
      job_.state = JobState::kPaused;
      job_.status_message =
          "this download needs its access token again (the service "
          "restarted or another replica took it over): resume it with a "
          "token";
      stop_ = Stop::kPaused;
    }
    for (size_t p = 0; p < job_.parts.size(); ++p) {
      if (job_.parts[p].done) parts_[p].phase = Phase::kDone;
    }
  }
  const EngineOptions& options = engine_->options();
  while (true) {
    int64_t seen_events;
    {
      MutexLock lock(&wake_mu_);
      seen_events = events_;
    }
    {
      MutexLock lock(&mu_);
      if (stop_ != Stop::kNone) break;
      absl::Time now = absl::Now();
      int running_parts = 0;
      bool all_done = true;
      for (const PartRuntime& rt : parts_) {
        if (rt.phase == Phase::kActive || rt.phase == Phase::kVerify ||
            rt.phase == Phase::kVerifying) {
          ++running_parts;
        }
        if (rt.phase != Phase::kDone) all_done = false;
      }
      if (all_done) {
        stop_ = Stop::kSucceeded;
        break;
      }
      for (size_t p = 0; p < parts_.size() && stop_ == Stop::kNone; ++p) {
        PartRuntime& rt = parts_[p];
        if (rt.phase == Phase::kPending &&
            running_parts < options.max_parallel_files) {
          ++running_parts;
          StartPart(static_cast<int>(p));
        }
        if (rt.phase == Phase::kActive) {
          for (size_t s = 0; s < rt.segments.size(); ++s) {
            SegmentRuntime& srt = rt.segments[s];
            if (!srt.active && srt.start_at <= now &&
                !job_.parts[p].segments[s].Complete()) {
              StartSegment(static_cast<int>(p), static_cast<int>(s));
            }
          }
        }
        if (rt.phase == Phase::kVerify) StartVerification(static_cast<int>(p));
        if (rt.phase == Phase::kVerifying && rt.verification.valid() &&
            rt.verification.wait_for(std::chrono::seconds(0)) ==
                std::future_status::ready) {
          FinishVerification(static_cast<int>(p), rt.verification.get());
        }
      }
    }
    SaveProgress(/*force=*/false);
    MutexLock lock(&wake_mu_);
    wake_mu_.AwaitWithDeadline([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(
                                   wake_mu_) { return events_ != seen_events; },
                               absl::Now() + absl::Milliseconds(50));
  }

  // Wind down: no transfer may write after this point, and no
  // verification may still read (they take mu_ when they end, so they are
  // waited for without it; parts_ does not change size any more).
  std::vector<std::future<absl::StatusOr<std::string>>*> verifications;
  {
    MutexLock lock(&mu_);
    CancelTransfers();
    mu_.Await([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return active_transfers_ == 0;
    });
    for (PartRuntime& rt : parts_) {
      if (rt.verification.valid()) verifications.push_back(&rt.verification);
    }
  }
  for (auto* verification : verifications) {
    verification->wait();
    *verification = {};
  }
  Stop stop;
  {
    MutexLock lock(&mu_);
    CloseFiles();
    stop = stop_;
    absl::Time now = absl::Now();
    switch (stop) {
      case Stop::kSucceeded:
        job_.state = JobState::kSucceeded;
        job_.ended = now;
        job_.bytes_per_second = 0;
        job_.status_message.clear();
        break;
      case Stop::kFailed:
        if (!job_.keep_partial) RemovePartialFiles(job_);
        job_.state = JobState::kFailed;
        job_.ended = now;
        job_.bytes_per_second = 0;
        if (failure_.has_value()) {
          job_.error =
              JobError{failure_->code, failure_->type, failure_->message};
        }
        break;
      case Stop::kCancelled:
        RemovePartialFiles(job_);
        break;
      default:
        break;
    }
    job_.bytes_per_second = 0;
  }
  if (stop != Stop::kLost) SaveProgress(/*force=*/true, /*final=*/true);
  if (stop == Stop::kShutdown) {
    absl::Status released = engine_->store()->ReleaseLease(id_);
    if (!released.ok()) {
      MM_LOG(WARNING) << "download " << id_
                      << ": cannot release its lease: " << released;
    }
  }
  if (stop == Stop::kSucceeded || stop == Stop::kFailed ||
      stop == Stop::kCancelled) {
    engine_->tokens()->ForgetJob(id_);
  }
  {
    MutexLock lock(&mu_);
    MM_LOG(INFO) << "download " << job_.id << " "
                 << (stop == Stop::kSucceeded   ? "succeeded"
                     : stop == Stop::kFailed    ? "failed"
                     : stop == Stop::kPaused    ? "paused"
                     : stop == Stop::kCancelled ? "cancelled"
                     : stop == Stop::kLost      ? "was taken over elsewhere"
                                                : "stopped for shutdown");
    finished_ = true;
  }
}

Engine::Engine(JobStore* store, http::TransferLoop* loop, TokenProvider* tokens,
               EngineOptions options)
    : store_(store),
      loop_(loop),
      tokens_(tokens),
      options_(std::move(options)) {}

Engine::~Engine() { Stop(); }

void Engine::Start() {
  MutexLock lock(&mu_);
  if (started_) return;
  started_ = true;
  scheduler_ = std::thread([this] { Schedule(); });
}

void Engine::Wake() {
  MutexLock lock(&mu_);
  ++wakes_;
}

void Engine::Stop() {
  {
    MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (scheduler_.joinable()) scheduler_.join();
  std::map<uint64_t, Running> running;
  {
    MutexLock lock(&mu_);
    running.swap(running_);
  }
  for (auto& [id, r] : running) r.runner->RequestShutdown();
  for (auto& [id, r] : running) r.thread.join();
}

void Engine::Schedule() {
  absl::Time next_heartbeat = absl::InfinitePast();
  while (true) {
    int64_t seen_wakes;
    int64_t seen_changes = store_->changes().version();
    std::vector<std::thread> finished;
    int running;
    {
      MutexLock lock(&mu_);
      if (stopping_) return;
      seen_wakes = wakes_;
      for (auto it = running_.begin(); it != running_.end();) {
        if (it->second.runner->finished()) {
          finished.push_back(std::move(it->second.thread));
          it = running_.erase(it);
        } else {
          ++it;
        }
      }
      running = static_cast<int>(running_.size());
    }
    for (std::thread& t : finished) t.join();
    absl::Time now = absl::Now();
    if (now >= next_heartbeat) {
      absl::Status beat = store_->Heartbeat();
      if (!beat.ok()) {
        MM_LOG(WARNING) << "heartbeat: " << beat;
      }
      next_heartbeat = now + options_.lease / 3;
    }
    while (running < options_.max_parallel) {
      absl::StatusOr<std::optional<Job>> claimed =
          store_->ClaimNext(options_.lease, options_.lease * 2);
      if (!claimed.ok()) {
        MM_LOG(WARNING) << "cannot claim work: " << claimed.status();
        break;
      }
      if (!claimed->has_value()) break;
      Job job = std::move(**claimed);
      MM_LOG(INFO) << "download " << job.id << " starts: " << job.Source();
      auto runner = std::make_shared<JobRunner>(this, job);
      MutexLock lock(&mu_);
      if (stopping_) {
        // Hand it straight back.
        (void)store_->ReleaseLease(job.id);
        return;
      }
      running_[++claims_] =
          Running{runner, std::thread([runner] { runner->Run(); })};
      ++running;
    }
    // Sleep until something changes: a local wake, a store change (any
    // replica), or a periodic look for expired leases.
    absl::Time deadline = absl::Now() + absl::Milliseconds(500);
    while (absl::Now() < deadline) {
      store_->changes().WaitForChange(
          seen_changes,
          std::min(deadline, absl::Now() + absl::Milliseconds(50)));
      MutexLock lock(&mu_);
      if (stopping_ || wakes_ != seen_wakes) break;
      bool any_finished = false;
      for (const auto& [id, r] : running_) {
        if (r.runner->finished()) any_finished = true;
      }
      if (any_finished) break;
      if (store_->changes().version() != seen_changes) {
        // A change (here or on another replica) may have queued work.
        seen_changes = store_->changes().version();
        if (running < options_.max_parallel) break;
      }
    }
  }
}

}  // namespace mm::downloader
