// JobRunner's transfer side: starting segment transfers, the callbacks of
// the loop's thread (response head, body, end), writing the bytes, and
// retrying what failed for a reason that may pass.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/http/headers.h"
#include "common/logging.h"
#include "services/downloader/job_runner.h"
#include "services/downloader/paths.h"
#include "services/downloader/segment_plan.h"

namespace mm::downloader {
namespace fs = std::filesystem;
using http::TransferResult;

namespace {

// Body bytes are gathered per segment and written in blocks of this size:
// libcurl hands them over 16 KiB at a time, and a pwrite per piece costs
// more than copying it. At most one block per running segment is held.
constexpr size_t kWriteBlockBytes = 256 * 1024;
// A slow transfer still writes (and so shows progress, and keeps what it
// has if the connection drops) at least this often, block full or not.
constexpr absl::Duration kWriteInterval = absl::Milliseconds(100);
// A file that changes on the server more often than this during one run is
// being rewritten continuously; starting over again would loop forever.
constexpr int kMaxContentRestarts = 3;
// A Retry-After beyond this is taken as this: a job should not sit idle for
// hours on one answer; the attempt limit still ends a server that keeps
// refusing.
constexpr absl::Duration kMaxRetryAfter = absl::Minutes(10);
// Backoff delays are scaled by a random factor in [min, 1): segments and
// replicas that failed together do not all come back at the same instant.
constexpr double kBackoffJitterMin = 0.5;

absl::StatusCode HttpErrorCode(int status) {
  switch (status) {
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
    case 410:
      return absl::StatusCode::kNotFound;
    default:
      return status >= 500 ? absl::StatusCode::kUnavailable
                           : absl::StatusCode::kFailedPrecondition;
  }
}

// Statuses that say "not now" rather than "never": timeout, rate limit,
// server errors.
bool RetryableStatus(int status) {
  return status == 408 || status == 429 || status >= 500;
}

class SegmentHandler final : public http::TransferHandler {
 public:
  SegmentHandler(std::shared_ptr<JobRunner> runner, TransferKey key)
      : runner_(std::move(runner)), key_(key) {}
  bool OnResponse(const http::ResponseHead& head) override {
    return runner_->OnResponse(key_, head);
  }
  bool OnBody(const char* data, size_t size) override {
    return runner_->OnBody(key_, data, size);
  }
  void OnDone(const TransferResult& result) override {
    runner_->OnDone(key_, result);
  }

 private:
  std::shared_ptr<JobRunner> runner_;
  TransferKey key_;
};

}  // namespace

absl::Duration JobRunner::Backoff(int attempt) {
  const EngineOptions& options = engine_->options();
  absl::Duration delay = options.retry_base_delay;
  for (int i = 1; i < attempt && delay < options.retry_max_delay; ++i) {
    delay *= 2;
  }
  delay = std::min(delay, options.retry_max_delay);
  std::uniform_real_distribution<double> jitter(kBackoffJitterMin, 1.0);
  return delay * jitter(random_);
}

void JobRunner::StartSegment(int part_index, int segment_index) {
  Part& part = job_.parts[part_index];
  PartState& part_state = parts_[part_index];
  Segment& segment = part.segments[segment_index];
  SegmentState& segment_state = part_state.segments[segment_index];
  http::Request request;
  request.url = part.url;
  request.address_policy = engine_->options().address_policy;
  request.stall_timeout = engine_->options().stall_timeout;
  if (std::optional<std::string> token =
          engine_->tokens()->ForJob(job_.id, part.url)) {
    request.bearer_token = *token;
  }
  segment_state.probe = part.segments.size() == 1 && segment.begin == 0 &&
                        segment.done == 0 && segment.end < 0;
  segment_state.requested_from = segment.begin + segment.done;
  request.range_begin = segment_state.requested_from;
  if (!segment_state.probe) {
    request.range_end = segment.end >= 0 ? segment.end - 1 : -1;
    request.if_range = part.validator;
  }
  segment_state.active = true;
  segment_state.pending.clear();
  segment_state.reached_end = false;
  segment_state.retry = false;
  segment_state.retry_after.reset();
  segment_state.start_at = absl::InfiniteFuture();
  ++active_transfers_;
  segment_state.transfer = engine_->loop()->Start(
      std::move(request),
      std::make_shared<SegmentHandler>(
          shared_from_this(),
          TransferKey{part_index, segment_index, part_state.generation}));
}

void JobRunner::ResetToProbe(int part_index, absl::Time start_at) {
  PartState& part_state = parts_[part_index];
  Part& part = job_.parts[part_index];
  ++part_state.generation;
  for (SegmentState& segment_state : part_state.segments) {
    if (segment_state.active) engine_->loop()->Cancel(segment_state.transfer);
  }
  part.segments = {Segment{0, -1, 0}};
  part.total_bytes = 0;
  part.validator.clear();
  part_state.segments.clear();
  part_state.segments.emplace_back();
  part_state.segments[0].start_at = start_at;
  part_state.streamed_sha256.reset();
  part_state.hashed_bytes = 0;
  part_state.phase = PartPhase::kActive;
  dirty_ = true;
}

void JobRunner::RestartPart(int part_index, const std::string& why) {
  PartState& part_state = parts_[part_index];
  if (++part_state.content_restarts > kMaxContentRestarts) {
    Fail({absl::StatusCode::kAborted, "ContentChanged",
          absl::StrCat(job_.parts[part_index].url,
                       " keeps changing while it downloads: ", why)});
    return;
  }
  MM_LOG(INFO) << "download " << job_.id << ": restarting "
               << job_.parts[part_index].DisplayName() << " from zero: " << why;
  ResetToProbe(part_index, absl::InfinitePast());
}

bool JobRunner::HandleProbe(const TransferKey& key,
                            const http::ResponseHead& head) {
  Part& part = job_.parts[key.part];
  PartState& part_state = parts_[key.part];
  int64_t total = -1;
  if (head.status == 206) {
    std::optional<http::ContentRange> range =
        http::ParseContentRange(head.Header("content-range"));
    if (!range.has_value() || range->first != 0) {
      Fail({absl::StatusCode::kFailedPrecondition, "InvalidResponse",
            absl::StrCat(part.url,
                         " answered a range request with a bad "
                         "Content-Range")});
      return false;
    }
    total = range->total;
    part_state.accepts_ranges = true;
  } else {
    total = head.ContentLength();
    part_state.accepts_ranges = false;
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
      Fail({absl::StatusCode::kInvalidArgument, "UnsafeFileName",
            std::string(safe.message())});
      return false;
    }
    fs::path target = fs::path(job_.destination) / name;
    std::error_code ec;
    if (fs::is_symlink(fs::symlink_status(target, ec))) {
      Fail({absl::StatusCode::kInvalidArgument, "UnsafeFileName",
            absl::StrCat(target.string(), " is a symbolic link")});
      return false;
    }
    part.path = target.string();
    dirty_ = true;
    if (part.expected_size > 0 && !part_state.checked_existing) {
      auto size = fs::file_size(target, ec);
      if (!ec && static_cast<int64_t>(size) == part.expected_size) {
        part_state.verify_existing = true;
        part_state.phase = PartPhase::kVerify;
        Wake();
        return false;
      }
    }
  }
  if (part.expected_size > 0 && total >= 0 && total != part.expected_size) {
    Fail({absl::StatusCode::kDataLoss, "SizeMismatch",
          absl::StrCat(part.url, " has ", total, " bytes, expected ",
                       part.expected_size)});
    return false;
  }
  fs::path dir = fs::path(part.path).parent_path();
  if (total > 0) {
    absl::StatusOr<int64_t> free_bytes = FreeBytes(dir);
    if (free_bytes.ok() && *free_bytes < total) {
      Fail({absl::StatusCode::kResourceExhausted, "InsufficientStorage",
            absl::StrCat("not enough free space in ", dir.string(), ": ", total,
                         " bytes needed, ", *free_bytes, " available")});
      return false;
    }
  }
  if (part_state.fd >= 0) close(part_state.fd);
  std::string partial = PartialPath(part.path);
  // O_NOFOLLOW: a planted symlink must not redirect the write.
  part_state.fd =
      open(partial.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
           0644);
  if (part_state.fd < 0) {
    Fail(errno == ELOOP
             ? JobError{absl::StatusCode::kInvalidArgument, "UnsafePath",
                        absl::StrCat(partial,
                                     " is a symbolic link; remove it to "
                                     "download here")}
             : JobError{absl::StatusCode::kInternal, "OSError",
                        absl::StrCat("cannot create ", partial, ": ",
                                     std::strerror(errno))});
    return false;
  }
  if (total > 0) {
    int rc = posix_fallocate(part_state.fd, 0, total);
    if (rc == ENOSPC) {
      Fail({absl::StatusCode::kResourceExhausted, "DiskFull",
            absl::StrCat("no space left on device for ", total, " bytes in ",
                         dir.string())});
      return false;
    }
    if (rc != 0 && ftruncate(part_state.fd, total) != 0) {
      Fail({absl::StatusCode::kInternal, "OSError",
            absl::StrCat("cannot size ", partial, ": ", std::strerror(errno))});
      return false;
    }
  }
  part.total_bytes = total > 0 ? total : 0;
  const EngineOptions& options = engine_->options();
  // The probe's transfer goes on as the first segment; the others start at
  // once on their own connections.
  part.segments =
      PlanSegments(FileShape{.total_bytes = total,
                             .accepts_ranges = part_state.accepts_ranges},
                   SegmentLimits{.max_segments = options.max_segments,
                                 .min_segment_size = options.min_segment_size});
  part_state.segments.resize(part.segments.size());
  for (size_t index = 1; index < part_state.segments.size(); ++index) {
    part_state.segments[index].start_at = absl::InfinitePast();
  }
  if (part.segments.size() == 1 && !part.expected_sha256.empty()) {
    // One stream in order: hash as the bytes arrive.
    part_state.streamed_sha256 = std::make_unique<model::Sha256Stream>();
    part_state.hashed_bytes = 0;
  }
  dirty_ = true;
  Wake();
  return true;
}

bool JobRunner::OnResponse(const TransferKey& key,
                           const http::ResponseHead& head) {
  MutexLock lock(&mu_);
  PartState& part_state = parts_[key.part];
  if (key.generation != part_state.generation || stop_ != StopReason::kNone) {
    return false;
  }
  Part& part = job_.parts[key.part];
  SegmentState& segment_state = part_state.segments[key.segment];
  Segment& segment = part.segments[key.segment];
  int status = head.status;
  if (status == 416) {
    std::optional<http::ContentRange> range =
        http::ParseContentRange(head.Header("content-range"));
    if (segment.end < 0 && range.has_value() &&
        range->total == segment_state.requested_from &&
        segment_state.requested_from > 0) {
      // The partial file already holds every byte (spec §7).
      segment.end = range->total;
      part.total_bytes = range->total;
      segment_state.reached_end = true;
      dirty_ = true;
      return false;
    }
    RestartPart(key.part, "the server refused the saved range (416)");
    return false;
  }
  if (status == 200 || status == 206) {
    if (http::MediaType(head.Header("content-type")) == "text/html") {
      Fail({absl::StatusCode::kFailedPrecondition, "UnexpectedContentType",
            absl::StrCat(part.url,
                         " returned an HTML page (text/html) instead "
                         "of a model file; the URL may need an access "
                         "token or a different address")});
      return false;
    }
    if (segment_state.probe) return HandleProbe(key, head);
    if (status == 200) {
      if (!part_state.accepts_ranges) {
        // One stream without ranges: this is the whole file again.
        ResetToProbe(key.part, absl::InfinitePast());
        return false;
      }
      RestartPart(key.part,
                  "the server sent the whole file for a range request "
                  "(it changed, or no longer honours ranges)");
      return false;
    }
    std::optional<http::ContentRange> range =
        http::ParseContentRange(head.Header("content-range"));
    if (!range.has_value() || range->first != segment_state.requested_from ||
        (part.total_bytes > 0 && range->total >= 0 &&
         range->total != part.total_bytes)) {
      RestartPart(key.part, "the server answered a different range or size");
      return false;
    }
    return true;
  }
  if (RetryableStatus(status)) {
    segment_state.retry = true;
    segment_state.retry_error_type = http::HttpErrorType(status);
    segment_state.retry_error_message = absl::StrCat(
        part.url, " answered ", status, " ", http::ReasonPhrase(status));
    std::string retry_after = head.Header("retry-after");
    if (!retry_after.empty()) {
      segment_state.retry_after =
          http::ParseRetryAfter(retry_after, clock_->Now());
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

bool JobRunner::Flush(int part_index, int segment_index) {
  PartState& part_state = parts_[part_index];
  Part& part = job_.parts[part_index];
  Segment& segment = part.segments[segment_index];
  SegmentState& segment_state = part_state.segments[segment_index];
  if (segment_state.pending.empty()) return true;
  const int64_t offset = segment.begin + segment.done;
  const char* cursor = segment_state.pending.data();
  size_t left = segment_state.pending.size();
  int64_t at = offset;
  while (left > 0) {
    ssize_t written = pwrite(part_state.fd, cursor, left, at);
    if (written < 0) {
      if (errno == EINTR) continue;
      int error = errno;
      segment_state.pending.clear();
      if (error == ENOSPC || error == EDQUOT) {
        Fail({absl::StatusCode::kResourceExhausted, "DiskFull",
              absl::StrCat("no space left on device writing ",
                           PartialPath(part.path))});
      } else {
        Fail({absl::StatusCode::kInternal, "OSError",
              absl::StrCat("cannot write ", PartialPath(part.path), ": ",
                           std::strerror(error))});
      }
      return false;
    }
    cursor += written;
    left -= static_cast<size_t>(written);
    at += written;
  }
  const auto length = static_cast<int64_t>(segment_state.pending.size());
  if (part_state.streamed_sha256 != nullptr &&
      offset == part_state.hashed_bytes) {
    part_state.streamed_sha256->Update(segment_state.pending);
    part_state.hashed_bytes += length;
  }
  segment.done += length;
  segment_state.pending.clear();
  if (part_state.failures_in_row > 0 &&
      part.Bytes() > part_state.bytes_at_failure) {
    part_state.failures_in_row = 0;
  }
  return true;
}

bool JobRunner::OnBody(const TransferKey& key, const char* data, size_t size) {
  MutexLock lock(&mu_);
  PartState& part_state = parts_[key.part];
  if (key.generation != part_state.generation || stop_ != StopReason::kNone ||
      part_state.fd < 0) {
    return false;
  }
  const absl::Time now = clock_->Now();
  if (LeaseLapsing(now)) {
    // A save stuck on an unreachable database (it may take longer than the
    // lease) must not keep this thread writing past the lease's end.
    StopForLapsedLease("no save has renewed it since one was sent");
    return false;
  }
  Part& part = job_.parts[key.part];
  Segment& segment = part.segments[key.segment];
  SegmentState& segment_state = part_state.segments[key.segment];
  const int64_t offset = segment.begin + segment.done +
                         static_cast<int64_t>(segment_state.pending.size());
  auto length = static_cast<int64_t>(size);
  bool at_end = false;
  if (segment.end >= 0 && offset + length >= segment.end) {
    length = segment.end - offset;
    at_end = true;
  }
  if (part.expected_size > 0 && offset + length > part.expected_size) {
    Fail({absl::StatusCode::kDataLoss, "SizeMismatch",
          absl::StrCat(part.url, " sent more than the expected ",
                       part.expected_size, " bytes")});
    return false;
  }
  if (segment_state.pending.capacity() < kWriteBlockBytes) {
    segment_state.pending.reserve(kWriteBlockBytes);
  }
  segment_state.pending.append(data, static_cast<size_t>(length));
  if (engine_->options().bytes_downloaded != nullptr) {
    engine_->options().bytes_downloaded->Increment(static_cast<double>(length));
  }
  if (segment_state.pending.size() >= kWriteBlockBytes || at_end ||
      now - segment_state.last_write >= kWriteInterval) {
    segment_state.last_write = now;
    if (!Flush(key.part, key.segment)) return false;
  }
  if (at_end) {
    segment_state.reached_end = true;
    return false;
  }
  return true;
}

void JobRunner::ScheduleRetry(int part_index, int segment_index,
                              const std::string& error_type,
                              const std::string& message,
                              std::optional<absl::Duration> retry_after) {
  PartState& part_state = parts_[part_index];
  ++job_.retries;
  ++part_state.failures_in_row;
  part_state.bytes_at_failure =
      std::max(part_state.bytes_at_failure, job_.parts[part_index].Bytes());
  dirty_ = true;
  if (part_state.failures_in_row >= engine_->options().max_attempts) {
    Fail({absl::StatusCode::kUnavailable, error_type,
          absl::StrCat(message, " (gave up after ", part_state.failures_in_row,
                       " attempts)")});
    return;
  }
  absl::Duration delay = Backoff(part_state.failures_in_row);
  if (retry_after.has_value()) {
    delay = std::max(delay, std::min(*retry_after, kMaxRetryAfter));
  }
  MM_LOG(INFO) << "download " << job_.id << ": " << message << "; retry "
               << part_state.failures_in_row << " in "
               << absl::FormatDuration(delay);
  const absl::Time start_at = clock_->Now() + delay;
  if (!part_state.accepts_ranges) {
    // Without ranges the stream can only start over.
    ResetToProbe(part_index, start_at);
    return;
  }
  part_state.segments[segment_index].start_at = start_at;
}

void JobRunner::OnDone(const TransferKey& key, const TransferResult& result) {
  MutexLock lock(&mu_);
  --active_transfers_;
  Wake();
  PartState& part_state = parts_[key.part];
  if (key.generation != part_state.generation) return;
  SegmentState& segment_state = part_state.segments[key.segment];
  segment_state.active = false;
  if (stop_ != StopReason::kNone) return;
  // What arrived before the end is good data, whatever ended the transfer.
  bool flushed = Flush(key.part, key.segment);
  std::string().swap(segment_state.pending);
  if (!flushed) return;
  Part& part = job_.parts[key.part];
  Segment& segment = part.segments[key.segment];
  using Kind = TransferResult::Kind;
  if (part_state.phase != PartPhase::kActive) return;
  if (segment_state.reached_end || segment.Complete()) {
    MaybeComplete(key.part);
    return;
  }
  if (segment_state.retry) {
    ScheduleRetry(key.part, key.segment, segment_state.retry_error_type,
                  segment_state.retry_error_message, segment_state.retry_after);
    return;
  }
  switch (result.kind) {
    case Kind::kComplete:
      if (result.http_status != 200 && result.http_status != 206) return;
      if (segment.end < 0) {
        // A stream of unknown length ended cleanly: that is the file.
        segment.end = segment.begin + segment.done;
        part.total_bytes = segment.end;
        dirty_ = true;
        MaybeComplete(key.part);
        return;
      }
      ScheduleRetry(
          key.part, key.segment, "ConnectionError",
          absl::StrCat(part.url, ": the server closed the body after ",
                       segment.done, " of ", segment.end - segment.begin,
                       " bytes"),
          std::nullopt);
      return;
    case Kind::kStopped:
    case Kind::kCancelled:
      return;  // we stopped it; whoever did has set the next step
    case Kind::kStalled:
      ScheduleRetry(key.part, key.segment, "StallError",
                    absl::StrCat(part.url, ": ", result.message), std::nullopt);
      return;
    case Kind::kNetwork:
      ScheduleRetry(key.part, key.segment, "ConnectionError",
                    absl::StrCat(part.url, ": ", result.message), std::nullopt);
      return;
    case Kind::kBlocked:
      Fail({absl::StatusCode::kPermissionDenied, "UnsafeURL",
            absl::StrCat(part.url, ": ", result.message)});
      return;
    case Kind::kPermanent:
      Fail({absl::StatusCode::kFailedPrecondition, "ConnectionError",
            absl::StrCat(part.url, ": ", result.message)});
      return;
  }
}

void JobRunner::CancelTransfers() {
  for (PartState& part_state : parts_) {
    ++part_state.generation;
    for (SegmentState& segment_state : part_state.segments) {
      if (segment_state.active) engine_->loop()->Cancel(segment_state.transfer);
    }
  }
}

}  // namespace mm::downloader
