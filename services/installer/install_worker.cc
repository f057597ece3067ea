// The scheduler of the install worker (install_worker.h): claims jobs up
// to max_parallel, starts one InstallRun thread for each (install_run.h),
// joins the threads of runs that ended, and keeps this replica's heartbeat.
#include "services/installer/install_worker.h"

#include <utility>

#include "common/logging.h"
#include "services/installer/install_run.h"

namespace mm::installer {
namespace {

// How often the scheduler looks for work without a wake (a job another
// replica made claimable, a lease that expired).
constexpr absl::Duration kSchedulePoll = absl::Seconds(1);

}  // namespace

InstallWorker::InstallWorker(WorkerDeps deps, WorkerOptions options)
    : deps_(std::move(deps)), options_(std::move(options)) {}

InstallWorker::~InstallWorker() { Stop(); }

void InstallWorker::Start() {
  MutexLock lock(&mu_);
  if (started_) return;
  started_ = true;
  scheduler_ = std::thread([this] { Schedule(); });
}

void InstallWorker::Stop() {
  std::map<uint64_t, Running> running;
  {
    MutexLock lock(&mu_);
    if (!started_ || stopping_) return;
    stopping_ = true;
  }
  if (scheduler_.joinable()) scheduler_.join();
  {
    MutexLock lock(&mu_);
    running.swap(running_);
  }
  for (auto& [id, run] : running) {
    if (run.thread.joinable()) run.thread.join();
  }
}

void InstallWorker::Wake() {
  MutexLock lock(&mu_);
  ++wakes_;
}

bool InstallWorker::stopping() const {
  MutexLock lock(&mu_);
  return stopping_;
}

void InstallWorker::Reap() {
  for (auto it = running_.begin(); it != running_.end();) {
    if (it->second.finished) {
      it->second.thread.join();
      it = running_.erase(it);
    } else {
      ++it;
    }
  }
}

void InstallWorker::Schedule() {
  absl::Time next_heartbeat = absl::InfinitePast();
  while (true) {
    int64_t seen_wakes;
    {
      MutexLock lock(&mu_);
      if (stopping_) return;
      Reap();
      seen_wakes = wakes_;
    }
    if (deps_.store->clock()->Now() >= next_heartbeat) {
      absl::Status beat = deps_.store->Heartbeat();
      if (!beat.ok()) {
        MM_LOG(WARNING) << "install heartbeat: " << beat;
      }
      next_heartbeat = deps_.store->clock()->Now() + options_.replica_ttl / 4;
    }
    // After a claim, look for more at once; else wait for a change.
    if (ClaimOne()) continue;
    const int64_t seen_changes = deps_.store->changes().version();
    MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(
        [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
          return stopping_ || wakes_ != seen_wakes ||
                 deps_.store->changes().version() != seen_changes;
        },
        kSchedulePoll);
  }
}

bool InstallWorker::AfterPreviousRun(uint64_t previous, InstallJob& job) {
  {
    MutexLock lock(&mu_);
    mu_.Await([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      auto it = running_.find(previous);
      return it == running_.end() || it->second.finished;
    });
  }
  // The old run may have saved a step after this claim read the job: start
  // from what the store holds now. When it cannot be read, leave the job;
  // its lease lapses and it is claimed again.
  absl::StatusOr<InstallJob> current = deps_.store->Get(job.id);
  if (!current.ok()) {
    MM_LOG(WARNING) << "install " << job.id
                    << ": cannot read it again: " << current.status();
    return false;
  }
  job = *std::move(current);
  return true;
}

bool InstallWorker::ClaimOne() {
  {
    MutexLock lock(&mu_);
    if (static_cast<int>(running_.size()) >= options_.max_parallel) {
      return false;
    }
  }
  absl::StatusOr<std::optional<InstallJob>> job =
      deps_.store->ClaimNext(options_.lease, options_.replica_ttl);
  if (!job.ok()) {
    MM_LOG(WARNING) << "cannot claim install jobs: " << job.status();
    return false;
  }
  if (!job->has_value()) return false;
  MutexLock lock(&mu_);
  // A run of this job may still be going here: its lease lapsed while it
  // waited (the job database away) and this claim took the job again for
  // the same replica, whose saves it would share. Two runs of one job would
  // both act on it (one places the model, the other then misses its files;
  // seen in tests/e2e/cluster_test.cc), so the old run stops at its next
  // step and the new one starts after it has ended.
  uint64_t previous = 0;
  for (auto& [number, run] : running_) {
    if (run.job_id == (*job)->id && !run.finished) {
      run.superseded->store(true);
      previous = number;
    }
  }
  const uint64_t claim = ++claims_;
  Running& slot = running_[claim];
  slot.job_id = (*job)->id;
  slot.thread =
      std::thread([this, claim, previous, superseded = slot.superseded,
                   job = std::move(**job)]() mutable {
        if (previous == 0 || AfterPreviousRun(previous, job)) {
          InstallRun(this, std::move(job), std::move(superseded)).Run();
        }
        MutexLock lock(&mu_);
        running_[claim].finished = true;
      });
  return true;
}

}  // namespace mm::installer
