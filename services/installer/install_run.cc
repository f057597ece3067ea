// The step machine of an install run (install_run.h): which step runs
// next, saving under the lease, backoff, failure, the wind-down, and the
// lease keeper. The steps themselves are in install_run_download.cc and
// install_run_register.cc.
#include "services/installer/install_run.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "common/strings.h"
#include "services/installer/job_cleanup.h"

namespace mm::installer {
namespace {

// What Backoff waits for when a save failed: the job database itself, so
// the waiting message cannot be saved in it either.
constexpr char kJobDatabase[] = "the job database";

// Whether a worker may still write to the stored job: a request paused,
// cancelled or finished it otherwise.
bool Workable(const InstallJob& stored) {
  return !IsTerminal(stored.state) && stored.state != InstallState::kPaused;
}

}  // namespace

void Failpoint(std::string_view point) {
  static const char* const configured = std::getenv("MM_INSTALLER_FAILPOINT");
  if (configured != nullptr && point == configured) {
    MM_LOG(WARNING) << "failpoint " << point << ": killing this process";
    ::kill(::getpid(), SIGKILL);
  }
}

LeaseKeeper::LeaseKeeper(InstallStore* store, std::string job_id,
                         absl::Duration lease)
    : store_(store),
      job_id_(std::move(job_id)),
      lease_(lease),
      thread_([this] { Renew(); }) {}

LeaseKeeper::~LeaseKeeper() {
  {
    MutexLock lock(&mu_);
    done_ = true;
  }
  thread_.join();
}

void LeaseKeeper::Renew() {
  const absl::Duration every = lease_ / 3;
  MutexLock lock(&mu_);
  while (!mu_.AwaitWithTimeout(
      [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return done_; }, every)) {
    mu_.Unlock();
    absl::StatusOr<InstallJob> saved = store_->UpdateLeased(
        job_id_, lease_, [](InstallJob& job) -> absl::StatusOr<bool> {
          return !IsTerminal(job.state);
        });
    if (!saved.ok()) {
      MM_LOG(WARNING) << "install " << job_id_
                      << ": cannot renew its lease: " << saved.status();
    }
    mu_.Lock();
  }
}

InstallRun::InstallRun(InstallWorker* worker, InstallJob job,
                       std::shared_ptr<const std::atomic<bool>> superseded)
    : worker_(worker),
      deps_(worker->deps()),
      options_(worker->options()),
      clock_(deps_.store->clock()),
      superseded_(std::move(superseded)),
      job_(std::move(job)) {}

void InstallRun::Run() {
  MM_LOG(INFO) << "install " << job_.id << ": working from step "
               << StepName(job_.step) << " (" << job_.source << ")";
  while (Step() == Outcome::kContinue) {
  }
  Finish();
}

InstallRun::Outcome InstallRun::Step() {
  if (worker_->stopping()) return Outcome::kStop;
  if (superseded_->load()) {
    MM_LOG(INFO) << "install " << job_.id
                 << ": claimed again by this replica; this run stops";
    return Outcome::kStop;
  }
  if (!Active()) return Outcome::kStop;
  switch (job_.step) {
    case InstallStep::kPlan:
      return PlanStep();
    case InstallStep::kDownload:
      return DownloadStep();
    case InstallStep::kIdentify:
      return IdentifyStep();
    case InstallStep::kPlace:
      return PlaceStep();
    case InstallStep::kRegister:
      return RegisterStep();
    case InstallStep::kCleanup:
      return CleanupStep();
    case InstallStep::kDone:
      return Outcome::kStop;
  }
  return Outcome::kStop;
}

bool InstallRun::Active() const {
  return job_.lease_owner == deps_.store->replica_id() && Workable(job_);
}

InstallRun::Outcome InstallRun::Save(
    const std::function<absl::Status(InstallJob&)>& change) {
  absl::Status change_status;
  absl::StatusOr<InstallJob> saved = deps_.store->UpdateLeased(
      job_.id, options_.lease, [&](InstallJob& stored) -> absl::StatusOr<bool> {
        if (!Workable(stored)) return false;
        change_status = change(stored);
        return change_status.ok();
      });
  if (!saved.ok()) {
    // The job database is away: keep the in-memory job and try again after
    // a pause (the lease may lapse; then another worker resumes).
    MM_LOG(WARNING) << "install " << job_.id
                    << ": cannot save progress: " << saved.status();
    return Backoff(kJobDatabase, saved.status());
  }
  job_ = *std::move(saved);
  if (!change_status.ok()) {
    // A step asked for a transition the job's state does not allow: a bug,
    // not something a retry mends.
    MM_LOG(ERROR) << "install " << job_.id << ": " << change_status;
    return Fail(change_status, "InvalidStateTransition");
  }
  return Active() ? Outcome::kContinue : Outcome::kStop;
}

InstallRun::Outcome InstallRun::Backoff(const std::string& what,
                                        const absl::Status& status) {
  ++attempts_;
  absl::Duration delay = options_.retry_base_delay;
  for (int i = 1; i < attempts_ && delay < options_.retry_max_delay; ++i) {
    delay *= 2;
  }
  delay = std::min(delay, options_.retry_max_delay);
  const std::string message =
      absl::StrCat("waiting for ", what, " (", absl::FormatDuration(delay),
                   "): ", SafeForMessage(AsStd(status.message()), 300));
  if (status.code() != absl::StatusCode::kUnavailable || what != kJobDatabase) {
    absl::StatusOr<InstallJob> saved = deps_.store->UpdateLeased(
        job_.id, options_.lease,
        [&](InstallJob& stored) -> absl::StatusOr<bool> {
          if (!Workable(stored)) return false;
          stored.status_message = message;
          return true;
        });
    if (saved.ok()) {
      job_ = *std::move(saved);
      if (!Active()) return Outcome::kStop;
    }
  }
  clock_->SleepFor(delay);
  return worker_->stopping() ? Outcome::kStop : Outcome::kContinue;
}

InstallRun::Outcome InstallRun::Fail(const absl::Status& status,
                                     const std::string& type) {
  RemoveJobTemporary(job_);
  CancelJobDownload(*deps_.downloader, job_);
  Save([&](InstallJob& job) {
    RETURN_IF_ERROR(job.TransitionTo(InstallState::kError, clock_->Now()));
    job.error = InstallError{status.code(), type,
                             SafeForMessage(AsStd(status.message()), 2000)};
    job.status_message.clear();
    job.AddEvent("error", clock_->Now());
    return absl::OkStatus();
  });
  MM_LOG(WARNING) << "install " << job_.id << " failed: " << type << ": "
                  << status;
  return Outcome::kStop;
}

InstallRun::Outcome InstallRun::Retryable(const absl::Status& status,
                                          const std::string& what,
                                          const std::string& type) {
  if (status.code() == absl::StatusCode::kUnavailable) {
    return Backoff(what, status);
  }
  return Fail(status, type);
}

std::optional<std::string> InstallRun::Token(Outcome& outcome) {
  outcome = Outcome::kContinue;
  if (!job_.has_token) return std::string();
  if (std::optional<std::string> token = deps_.tokens->Get(job_.id)) {
    return token;
  }
  Save([&](InstallJob& job) {
    RETURN_IF_ERROR(job.TransitionTo(InstallState::kPaused, clock_->Now()));
    job.status_message =
        "needs its access token again (the replica that held it "
        "restarted): resume it with the token";
    return absl::OkStatus();
  });
  outcome = Outcome::kStop;
  return std::nullopt;
}

void InstallRun::Finish() {
  // The new run owns the job and its lease now.
  if (superseded_->load()) return;
  absl::StatusOr<InstallJob> current = deps_.store->Get(job_.id);
  if (current.ok()) job_ = *std::move(current);
  if (job_.state == InstallState::kCancelled) {
    CancelJobDownload(*deps_.downloader, job_);
    RemoveJobTemporary(job_);
    deps_.tokens->Forget(job_.id);
  } else if (job_.state == InstallState::kPaused) {
    PauseJobDownload(*deps_.downloader, job_);
  }
  if (job_.lease_owner == deps_.store->replica_id()) {
    absl::Status released = deps_.store->ReleaseLease(job_.id);
    if (!released.ok()) {
      MM_LOG(WARNING) << "install " << job_.id
                      << ": cannot release its lease: " << released;
    }
  }
}

}  // namespace mm::installer
