// The scheduler: claims jobs while there is room, runs each JobRunner on a
// thread of its own, joins the threads of finished ones, and keeps this
// replica's heartbeat.
#include "services/downloader/engine.h"

#include <optional>
#include <utility>
#include <vector>

#include "common/logging.h"
#include "services/downloader/job_runner.h"

namespace mm::downloader {
namespace {

// Heartbeats per lease period: a replica is taken for dead (and the jobs
// whose token it holds are given to others) after two lease periods
// without one, so three per period survive a couple of slow store writes.
constexpr int kHeartbeatsPerLease = 3;
// A replica whose heartbeat is older than this many lease periods is dead
// for ClaimNext: its per-job tokens are gone with it.
constexpr int kReplicaTtlLeases = 2;
// The scheduler looks for work at least this often even when nothing
// signals: a lease that expires (its worker died) signals nobody.
constexpr absl::Duration kSchedulerRescanInterval = absl::Milliseconds(500);
// Within that, it waits on the store's change signal in slices this short,
// to notice a local wake or a finished runner, which signal nothing the
// store sees.
constexpr absl::Duration kSchedulerPollSlice = absl::Milliseconds(50);

Clock* ClockOrReal(Clock* clock) {
  return clock != nullptr ? clock : RealClock();
}

EngineOptions WithClock(EngineOptions options) {
  options.clock = ClockOrReal(options.clock);
  return options;
}

}  // namespace

Engine::Engine(JobStore* store, http::TransferLoop* loop, TokenProvider* tokens,
               EngineOptions options)
    : store_(store),
      loop_(loop),
      tokens_(tokens),
      options_(WithClock(std::move(options))) {}

Engine::~Engine() { Stop(); }

void Engine::Start() {
  MutexLock lock(&mu_);
  // Once stopped, never again: nobody would join the thread.
  if (started_ || stopping_) return;
  started_ = true;
  scheduler_ = std::thread([this] { Schedule(); });
}

void Engine::Wake() {
  MutexLock lock(&mu_);
  ++wakes_;
}

void Engine::Stop() {
  std::thread scheduler;
  {
    MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    scheduler = std::move(scheduler_);
  }
  if (scheduler.joinable()) scheduler.join();
  std::map<uint64_t, Running> running;
  {
    MutexLock lock(&mu_);
    running.swap(running_);
  }
  for (auto& [claim, job] : running) job.runner->RequestShutdown();
  for (auto& [claim, job] : running) job.thread.join();
}

int Engine::ReapFinished() {
  std::vector<std::thread> finished;
  int running = 0;
  {
    MutexLock lock(&mu_);
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
  for (std::thread& thread : finished) thread.join();
  return running;
}

std::optional<int> Engine::ClaimWork(int running) {
  while (running < options_.max_parallel) {
    // The lease is counted from before the claim: never later than the
    // store counts it.
    const absl::Time claim_started = options_.clock->Now();
    absl::StatusOr<std::optional<Job>> claimed =
        store_->ClaimNext(options_.lease, options_.lease * kReplicaTtlLeases);
    if (!claimed.ok()) {
      MM_LOG(WARNING) << "cannot claim work: " << claimed.status();
      return running;
    }
    if (!claimed->has_value()) return running;
    Job job = std::move(**claimed);
    MM_LOG(INFO) << "download " << job.id << " starts: " << job.Source();
    auto runner = std::make_shared<JobRunner>(this, job, claim_started);
    MutexLock lock(&mu_);
    if (stopping_) {
      // Hand it straight back.
      (void)store_->ReleaseLease(job.id);
      return std::nullopt;
    }
    running_[++claims_] =
        Running{runner, std::thread([runner] { runner->Run(); })};
    ++running;
  }
  return running;
}

void Engine::AwaitWork(int64_t seen_wakes, int64_t seen_changes, int running) {
  // Real-time waits: the store's signal knows nothing of a fake clock, and
  // nothing here waits for a time on it.
  const absl::Time deadline = absl::Now() + kSchedulerRescanInterval;
  while (absl::Now() < deadline) {
    store_->changes().WaitForChange(
        seen_changes, std::min(deadline, absl::Now() + kSchedulerPollSlice));
    MutexLock lock(&mu_);
    if (stopping_ || wakes_ != seen_wakes) return;
    for (const auto& [claim, job] : running_) {
      if (job.runner->finished()) return;
    }
    if (store_->changes().version() != seen_changes) {
      // A change (here or on another replica) may have queued work.
      seen_changes = store_->changes().version();
      if (running < options_.max_parallel) return;
    }
  }
}

void Engine::Schedule() {
  absl::Time next_heartbeat = absl::InfinitePast();
  while (true) {
    int64_t seen_wakes;
    const int64_t seen_changes = store_->changes().version();
    {
      MutexLock lock(&mu_);
      if (stopping_) return;
      seen_wakes = wakes_;
    }
    const int running = ReapFinished();
    const absl::Time now = options_.clock->Now();
    if (now >= next_heartbeat) {
      absl::Status beat = store_->Heartbeat();
      if (!beat.ok()) {
        MM_LOG(WARNING) << "heartbeat: " << beat;
      }
      next_heartbeat = now + options_.lease / kHeartbeatsPerLease;
    }
    std::optional<int> now_running = ClaimWork(running);
    if (!now_running.has_value()) return;  // stopping
    AwaitWork(seen_wakes, seen_changes, *now_running);
  }
}

}  // namespace mm::downloader
