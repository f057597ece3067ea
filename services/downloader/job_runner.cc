// JobRunner's job thread: starting parts (resuming saved segments), handing
// complete parts to the verifier, saving progress, and winding the job down.
// The transfer side is in job_transfers.cc.
#include "services/downloader/job_runner.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "services/downloader/paths.h"
#include "services/downloader/segment_plan.h"

namespace mm::downloader {
namespace fs = std::filesystem;

namespace {

// The job thread wakes at least this often, event or not: a retry's
// start_at is a time on the engine's clock (a fake one in tests), which
// signals nobody when it arrives, so the thread looks at the clock
// between real waits this short. Short enough that a due retry starts
// without a noticeable delay, long enough to cost nothing while idle.
constexpr absl::Duration kJobPollInterval = absl::Milliseconds(50);
// The shortest window for a rate sample: libcurl hands bytes over in
// bursts, and shorter windows measure the bursts rather than the rate.
constexpr absl::Duration kRateSampleWindow = absl::Milliseconds(200);
// Weight of the newest sample in the smoothed rate (an exponential moving
// average): the shown rate follows a real change within a second or so
// without jumping with every burst.
constexpr double kRateNewSampleWeight = 0.6;
// Saves are at least this far apart however much changes, so a job costs
// the store at most 20 writes a second.
constexpr absl::Duration kMinSaveGap = absl::Milliseconds(50);
// A save is due whenever this share of the file arrived since the last one
// (a percent), so fast downloads still show smooth progress.
constexpr int64_t kSaveEveryPercent = 1;
// A runner whose lease cannot be renewed stops this share of the lease
// before it ends (1/4: 3.75 s of the default 15 s), so its transfers have
// ended before another replica can claim the job and write the same files.
constexpr int kLeaseMarginDivisor = 4;
// Saves (lease renewals) are attempted at least this often in a lease
// (every 1/8 of it), bytes moving or not, so that a failing renewal is
// noticed at least once inside the margin above.
constexpr int kRenewalsPerLease = 8;

}  // namespace

JobRunner::JobRunner(Engine* engine, Job job, absl::Time lease_start)
    : engine_(engine),
      clock_(engine->clock()),
      id_(job.id),
      job_(std::move(job)),
      rate_sample_time_(clock_->Now()),
      lease_ends_(lease_start + engine->options().lease) {}

void JobRunner::Wake() {
  MutexLock lock(&wake_mu_);
  ++wake_events_;
}

void JobRunner::RequestShutdown() {
  MutexLock lock(&mu_);
  if (stop_ == StopReason::kNone) stop_ = StopReason::kShutdown;
  Wake();
}

bool JobRunner::finished() const {
  MutexLock lock(&mu_);
  return finished_;
}

void JobRunner::Fail(JobError error) {
  if (!failure_.has_value()) {
    MM_LOG(WARNING) << "download " << job_.id << " failed: " << error.type
                    << ": " << error.message;
    failure_ = std::move(error);
  }
  if (stop_ == StopReason::kNone) stop_ = StopReason::kFailed;
  Wake();
}

void JobRunner::StartPart(int part_index) {
  Part& part = job_.parts[part_index];
  PartState& part_state = parts_[part_index];
  part_state.phase = PartPhase::kActive;
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
        Fail({absl::StatusCode::kInvalidArgument, "UnsafePath",
              absl::StrCat(folder.string(), " is not a folder inside ",
                           job_.destination)});
        return;
      }
      if (!fs::exists(status) && !fs::create_directory(folder, ec) && ec) {
        Fail({absl::StatusCode::kInternal, "OSError",
              absl::StrCat("cannot create ", folder.string(), ": ",
                           ec.message())});
        return;
      }
    }
    part.path = (folder / relative.filename()).string();
  }
  if (!part.path.empty() && !part_state.checked_existing &&
      part.expected_size > 0) {
    std::error_code ec;
    auto size = fs::file_size(part.path, ec);
    if (!ec && static_cast<int64_t>(size) == part.expected_size &&
        !fs::is_symlink(fs::symlink_status(part.path, ec))) {
      part_state.verify_existing = true;
      part_state.phase = PartPhase::kVerify;
      Wake();
      return;
    }
  }
  bool resumable = false;
  if (!part.path.empty() && HasSavedProgress(part.segments)) {
    int fd =
        open(PartialPath(part.path).c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
      part_state.fd = fd;
      resumable = true;
    }
  }
  if (!resumable) {
    ResetToProbe(part_index, absl::InfinitePast());
    return;
  }
  part_state.accepts_ranges = true;
  part_state.segments.assign(part.segments.size(), SegmentState{});
  for (size_t index = 0; index < part.segments.size(); ++index) {
    if (!part.segments[index].Complete()) {
      part_state.segments[index].start_at = absl::InfinitePast();
    }
  }
  MM_LOG(INFO) << "download " << job_.id << ": resuming " << part.DisplayName()
               << " at " << part.Bytes() << " bytes";
  MaybeComplete(part_index);
}

void JobRunner::MaybeComplete(int part_index) {
  Part& part = job_.parts[part_index];
  PartState& part_state = parts_[part_index];
  for (size_t index = 0; index < part.segments.size(); ++index) {
    if (!part.segments[index].Complete() || part_state.segments[index].active) {
      return;
    }
  }
  part_state.phase = PartPhase::kVerify;
  dirty_ = true;
  Wake();
}

void JobRunner::StartVerification(int part_index) {
  Part& part = job_.parts[part_index];
  PartState& part_state = parts_[part_index];
  part_state.phase = PartPhase::kVerifying;
  FileCheck check;
  check.display_path = part.path;
  check.total_bytes = part.total_bytes;
  check.expected_size = part.expected_size;
  check.expected_sha256 = part.expected_sha256;
  if (part_state.verify_existing) {
    check.path = part.path;
  } else {
    check.path = PartialPath(part.path);
    check.fd = part_state.fd;
    check.sync = engine_->options().sync_files && part_state.fd >= 0;
    if (part_state.streamed_sha256 != nullptr &&
        part_state.hashed_bytes == part.total_bytes) {
      // A failed stream leaves it empty: the verifier reads the file back.
      check.streamed_sha256 =
          part_state.streamed_sha256->Finish().value_or(std::string());
    }
  }
  part_state.streamed_sha256.reset();
  if (!VerifyIsSlow(check)) {
    // Only a stat and a comparison: no reason to leave this thread.
    FinishVerification(part_index, VerifyFile(check));
    return;
  }
  // Syncing or reading the file back takes a while; the job thread keeps
  // saving progress (renewing the lease) meanwhile, and is woken at the
  // end. A weak reference: the future lives in the runner, so a strong one
  // would keep the runner alive forever if the result is never taken.
  std::weak_ptr<JobRunner> weak = weak_from_this();
  part_state.verification =
      std::async(std::launch::async, [weak, check = std::move(check)]() {
        std::optional<JobError> error = VerifyFile(check);
        if (std::shared_ptr<JobRunner> self = weak.lock()) self->Wake();
        return error;
      });
}

void JobRunner::FinishVerification(int part_index,
                                   std::optional<JobError> error) {
  Part& part = job_.parts[part_index];
  PartState& part_state = parts_[part_index];
  if (part_state.verify_existing) {
    part_state.verify_existing = false;
    part_state.checked_existing = true;
    if (!error.has_value()) {
      std::error_code ec;
      part.total_bytes = static_cast<int64_t>(fs::file_size(part.path, ec));
      part.segments.clear();
      part.done = true;
      part_state.phase = PartPhase::kDone;
      dirty_ = true;
      MM_LOG(INFO) << "download " << job_.id << ": " << part.path
                   << " is already complete";
      Wake();
      return;
    }
    // Not the file we want: download it anew (it is replaced at the end).
    part_state.phase = PartPhase::kPending;
    return;
  }
  if (error.has_value()) {
    Fail(*std::move(error));
    return;
  }
  if (part_state.fd >= 0) {
    close(part_state.fd);
    part_state.fd = -1;
  }
  if (rename(PartialPath(part.path).c_str(), part.path.c_str()) != 0) {
    Fail({absl::StatusCode::kInternal, "OSError",
          absl::StrCat("cannot rename ", PartialPath(part.path), ": ",
                       std::strerror(errno))});
    return;
  }
  part.done = true;
  part.segments.clear();
  part_state.phase = PartPhase::kDone;
  dirty_ = true;
  Wake();
}

void JobRunner::CloseFiles() {
  for (PartState& part_state : parts_) {
    if (part_state.fd >= 0) {
      close(part_state.fd);
      part_state.fd = -1;
    }
  }
}

void JobRunner::UpdateRate(absl::Time now, int64_t bytes) {
  const absl::Duration window = now - rate_sample_time_;
  if (window < kRateSampleWindow) return;
  const double sample = static_cast<double>(bytes - rate_sample_bytes_) /
                        absl::ToDoubleSeconds(window);
  bytes_per_second_ = bytes_per_second_ == 0
                          ? sample
                          : kRateNewSampleWeight * sample +
                                (1 - kRateNewSampleWeight) * bytes_per_second_;
  // A part started over counts fewer bytes than before.
  if (bytes_per_second_ < 0) bytes_per_second_ = 0;
  rate_sample_bytes_ = bytes;
  rate_sample_time_ = now;
}

bool JobRunner::LeaseLapsing(absl::Time now) const {
  return renewal_pending_ &&
         now >= lease_ends_ - engine_->options().lease / kLeaseMarginDivisor;
}

void JobRunner::StopForLapsedLease(const std::string& why) {
  MM_LOG(WARNING) << "download " << job_.id << ": lease ends at "
                  << absl::FormatTime(lease_ends_) << " and cannot be renewed ("
                  << why << "); stopping so another replica can take it";
  // No final save and nothing deleted: whoever claims the job next resumes
  // from the saved segments and the partial files.
  if (stop_ == StopReason::kNone || stop_ == StopReason::kFailed) {
    stop_ = StopReason::kLost;
    lease_lapsed_ = true;
  }
  Wake();
}

void JobRunner::SaveProgress(bool force, bool final) {
  Job snapshot;
  absl::Time sent;
  {
    MutexLock lock(&mu_);
    const absl::Time now = clock_->Now();
    const int64_t bytes = job_.Bytes();
    UpdateRate(now, bytes);
    const int64_t total = job_.TotalBytes();
    const bool since_gap = now - last_save_ >= kMinSaveGap;
    const bool percent_due =
        total > 0 &&
        (bytes - last_saved_bytes_) * 100 >= total * kSaveEveryPercent &&
        since_gap;
    const bool interval_due =
        now - last_save_ >=
        std::min(engine_->options().progress_interval,
                 engine_->options().lease / kRenewalsPerLease);
    if (!force && !percent_due && !interval_due && (!dirty_ || !since_gap)) {
      return;
    }
    job_.bytes_per_second = bytes_per_second_;
    dirty_ = false;
    last_save_ = now;
    last_saved_bytes_ = bytes;
    snapshot = job_;
    sent = now;
    renewal_pending_ = true;
  }
  absl::StatusOr<Job> stored =
      engine_->store()->SaveProgress(snapshot, engine_->options().lease, final);
  if (!stored.ok()) {
    MM_LOG(WARNING) << "download " << snapshot.id
                    << ": cannot save progress: " << stored.status();
    MutexLock lock(&mu_);
    // The lease is not renewed. Going on is safe while it lasts (the
    // database may be back for the next save); close to its end, another
    // replica that reaches the database would take the job over and write
    // the same files.
    if (!final && stop_ != StopReason::kLost && LeaseLapsing(clock_->Now())) {
      StopForLapsedLease(absl::StrCat("database: ", stored.status().message()));
    }
    return;
  }
  MutexLock lock(&mu_);
  job_.revision = stored->revision;
  if (stored->lease_owner == engine_->store()->replica_id()) {
    // Renewed by this save, which the store counted from after `sent`.
    lease_ends_ = std::max(lease_ends_, sent + engine_->options().lease);
    renewal_pending_ = false;
  }
  const StopReason before = stop_;
  if (stored->state == JobState::kPaused) {
    if (stop_ == StopReason::kNone) stop_ = StopReason::kPaused;
  } else if (stored->state == JobState::kCancelled) {
    if (stop_ == StopReason::kNone || stop_ == StopReason::kFailed) {
      stop_ = StopReason::kCancelled;
    }
  } else if (stored->lease_owner != engine_->store()->replica_id()) {
    if (!final) stop_ = StopReason::kLost;
  } else if (stored->state != JobState::kRunning &&
             !IsTerminal(snapshot.state) && stop_ == StopReason::kNone) {
    // Paused and resumed again between two saves: stop, hand the lease
    // back with the final save, and let the queue take it from there.
    stop_ = StopReason::kPaused;
  }
  if (stop_ != before) Wake();
}

bool JobRunner::Step() {
  if (stop_ != StopReason::kNone) return false;
  const absl::Time now = clock_->Now();
  int running_parts = 0;
  bool all_done = true;
  for (const PartState& part_state : parts_) {
    if (part_state.phase == PartPhase::kActive ||
        part_state.phase == PartPhase::kVerify ||
        part_state.phase == PartPhase::kVerifying) {
      ++running_parts;
    }
    if (part_state.phase != PartPhase::kDone) all_done = false;
  }
  if (all_done) {
    stop_ = StopReason::kSucceeded;
    return false;
  }
  const int max_parallel_files = engine_->options().max_parallel_files;
  for (size_t index = 0; index < parts_.size() && stop_ == StopReason::kNone;
       ++index) {
    const int part_index = static_cast<int>(index);
    PartState& part_state = parts_[index];
    if (part_state.phase == PartPhase::kPending &&
        running_parts < max_parallel_files) {
      ++running_parts;
      StartPart(part_index);
    }
    if (part_state.phase == PartPhase::kActive) {
      for (size_t segment = 0; segment < part_state.segments.size();
           ++segment) {
        const SegmentState& segment_state = part_state.segments[segment];
        if (!segment_state.active && segment_state.start_at <= now &&
            !job_.parts[index].segments[segment].Complete()) {
          StartSegment(part_index, static_cast<int>(segment));
        }
      }
    }
    if (part_state.phase == PartPhase::kVerify) StartVerification(part_index);
    if (part_state.phase == PartPhase::kVerifying &&
        part_state.verification.valid() &&
        part_state.verification.wait_for(std::chrono::seconds(0)) ==
            std::future_status::ready) {
      FinishVerification(part_index, part_state.verification.get());
    }
  }
  // A stop decided during this pass is acted on at the next one, after a
  // save that may still turn a failure into a cancellation.
  return true;
}

JobRunner::StopReason JobRunner::WindDown() {
  // No transfer may write after this point, and no verification may still
  // read (they take mu_ when they end, so they are waited for without it;
  // parts_ does not change size any more).
  std::vector<std::future<std::optional<JobError>>*> verifications;
  {
    MutexLock lock(&mu_);
    CancelTransfers();
    mu_.Await([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return active_transfers_ == 0;
    });
    for (PartState& part_state : parts_) {
      if (part_state.verification.valid()) {
        verifications.push_back(&part_state.verification);
      }
    }
  }
  for (auto* verification : verifications) {
    verification->wait();
    *verification = {};
  }
  MutexLock lock(&mu_);
  CloseFiles();
  const absl::Time now = clock_->Now();
  // The state machine (job.h) decides: a job that a request moved on
  // meanwhile (paused, cancelled) keeps that state, and the final save
  // (JobStore::SaveProgress) checks the same table against the stored job.
  switch (stop_) {
    case StopReason::kSucceeded:
      if (!CanTransition(job_.state, JobState::kSucceeded)) break;
      job_.state = JobState::kSucceeded;
      job_.ended = now;
      job_.status_message.clear();
      break;
    case StopReason::kFailed:
      if (!job_.keep_partial) RemovePartialFiles(job_);
      if (!CanTransition(job_.state, JobState::kFailed)) break;
      job_.state = JobState::kFailed;
      job_.ended = now;
      if (failure_.has_value()) job_.error = failure_;
      break;
    case StopReason::kCancelled:
      RemovePartialFiles(job_);
      break;
    default:
      break;
  }
  job_.bytes_per_second = 0;
  return stop_;
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
      stop_ = StopReason::kPaused;
    }
    for (size_t index = 0; index < job_.parts.size(); ++index) {
      if (job_.parts[index].done) parts_[index].phase = PartPhase::kDone;
    }
  }
  while (true) {
    int64_t seen_events;
    {
      MutexLock lock(&wake_mu_);
      seen_events = wake_events_;
    }
    {
      MutexLock lock(&mu_);
      if (!Step()) break;
    }
    SaveProgress(/*force=*/false);
    MutexLock lock(&wake_mu_);
    // A real-time wait (see kJobPollInterval).
    wake_mu_.AwaitWithDeadline(
        [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(wake_mu_) {
          return wake_events_ != seen_events;
        },
        absl::Now() + kJobPollInterval);
  }

  const StopReason stop = WindDown();
  if (stop != StopReason::kLost) SaveProgress(/*force=*/true, /*final=*/true);
  if (stop == StopReason::kShutdown) {
    absl::Status released = engine_->store()->ReleaseLease(id_);
    if (!released.ok()) {
      MM_LOG(WARNING) << "download " << id_
                      << ": cannot release its lease: " << released;
    }
  }
  if (stop == StopReason::kSucceeded || stop == StopReason::kFailed ||
      stop == StopReason::kCancelled) {
    engine_->tokens()->ForgetJob(id_);
  }
  bool lapsed;
  {
    MutexLock lock(&mu_);
    lapsed = lease_lapsed_;
  }
  MM_LOG(INFO) << "download " << id_ << " "
               << (stop == StopReason::kSucceeded   ? "succeeded"
                   : stop == StopReason::kFailed    ? "failed"
                   : stop == StopReason::kPaused    ? "paused"
                   : stop == StopReason::kCancelled ? "cancelled"
                   : stop == StopReason::kLost
                       ? (lapsed ? "stopped: its lease could not be renewed"
                                 : "was taken over elsewhere")
                       : "stopped for shutdown");
  MutexLock lock(&mu_);
  finished_ = true;
}

}  // namespace mm::downloader
