// The worker side of the downloader: claims jobs from the JobStore (at most
// max_parallel at once per replica), runs each on its own thread, and drives
// its transfers on the shared TransferLoop.
//
// In parts: this Engine is the scheduler (claims work, runs and joins job
// threads, keeps the replica's heartbeat); JobRunner (job_runner.h) works one
// job; PlanSegments (segment_plan.h) decides how a file is split; VerifyFile
// (verifier.h) checks a finished file.
//
// Per file: the first request asks for "bytes=0-"; a 206 with a size of at
// least two minimum segments splits the file into segments fetched on
// separate connections, written in place with pwrite into a pre-allocated
// `<name>.downloading`; a 200 means one stream. Segment progress is saved
// with the job (at least every 1% or progress_interval), so a pause, a
// restart or another replica resumes each segment where it stopped, with
// If-Range against the saved ETag / Last-Modified; a 200 to such a request
// restarts the file from zero. Transient failures (connection errors,
// stalls, 5xx, 429 with Retry-After) are retried per segment with
// exponential backoff and jitter; permanent ones fail the job, whose other
// transfers are cancelled. Finished files are checked (size, SHA-256) and
// renamed into place.
//
//   Engine engine(store, loop, tokens, EngineOptions{});
//   engine.Start();
//   engine.Wake();  // after a job was created or resumed
//   engine.Stop();  // shutdown: progress saved, leases released
//
// Thread-safety: Start/Stop/Wake may be called from any thread.
#ifndef MM_SERVICES_DOWNLOADER_ENGINE_H_
#define MM_SERVICES_DOWNLOADER_ENGINE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include "absl/time/time.h"
#include "common/clock.h"
#include "common/http/address_policy.h"
#include "common/http/transfer_loop.h"
#include "common/metrics/registry.h"
#include "common/mutex.h"
#include "services/downloader/job_store.h"
#include "services/downloader/tokens.h"

namespace mm::downloader {

struct EngineOptions {
  // Jobs running at once on this replica.
  int max_parallel = 5;
  // Files of one multi-file job transferring at once.
  int max_parallel_files = 16;
  // Connections per large file, and the smallest segment worth one.
  int max_segments = 8;
  int64_t min_segment_size = int64_t{16} << 20;
  // No byte for this long: the connection is dropped and the segment
  // retried.
  absl::Duration stall_timeout = absl::Seconds(30);
  // Transient failures in a row (per segment) before the job fails.
  int max_attempts = 6;
  // Backoff: base * 2^(attempt-1), jittered to 50..100%, capped.
  absl::Duration retry_base_delay = absl::Seconds(1);
  absl::Duration retry_max_delay = absl::Seconds(60);
  // Lease on a claimed job; renewed with every progress save. A job whose
  // lease cannot be renewed (the database is unreachable) stops a quarter
  // lease before it ends, so another replica may take it over safely.
  absl::Duration lease = absl::Seconds(15);
  // fdatasync each finished file before it is renamed into place and the
  // job reported complete (off: faster, but a machine crash soon after can
  // leave a complete-looking file with missing data).
  bool sync_files = true;
  // Longest time between progress saves, bytes moving or not (each renews
  // the lease); at most an eighth of the lease whatever this says.
  absl::Duration progress_interval = absl::Milliseconds(250);
  std::shared_ptr<const http::AddressPolicy> address_policy;
  // Where retry backoff, Retry-After, progress throttling and the
  // heartbeat read the time (a FakeClock in tests). Not owned; must outlive
  // the engine. Null means RealClock(). (A connection's stall is measured
  // by the TransferLoop, on TransferLoop::Options::clock, which the
  // server assembly sets to the same clock.)
  Clock* clock = RealClock();
  // Counts the body bytes taken into download files (overshoot past a
  // segment's end is not counted); null: not counted. Must outlive the
  // engine.
  metrics::Counter* bytes_downloaded = nullptr;
};

class JobRunner;

class Engine {
 public:
  Engine(JobStore* store, http::TransferLoop* loop, TokenProvider* tokens,
         EngineOptions options);
  ~Engine();

  // Starts claiming work (once; not after Stop).
  void Start() ABSL_LOCKS_EXCLUDED(mu_);
  // Stops claiming; running jobs save their progress and release their
  // lease (they stay RUNNING and are taken up again by the next process or
  // another replica). Blocks until every job thread has ended.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);
  // Something may be runnable (a job was created, started or resumed).
  void Wake() ABSL_LOCKS_EXCLUDED(mu_);

  const EngineOptions& options() const { return options_; }
  Clock* clock() const { return options_.clock; }
  JobStore* store() const { return store_; }
  http::TransferLoop* loop() const { return loop_; }
  TokenProvider* tokens() const { return tokens_; }

 private:
  // The scheduler thread: claims work while there is room for it.
  void Schedule() ABSL_LOCKS_EXCLUDED(mu_);
  // Joins the threads of runners that finished; returns how many still run.
  int ReapFinished() ABSL_LOCKS_EXCLUDED(mu_);
  // Claims jobs until max_parallel run or none is left; returns how many
  // run now, or nullopt when the engine is stopping.
  std::optional<int> ClaimWork(int running) ABSL_LOCKS_EXCLUDED(mu_);
  // Sleeps until a local wake, a finished runner, a store change that may
  // have queued work, or kSchedulerRescanInterval.
  void AwaitWork(int64_t seen_wakes, int64_t seen_changes, int running)
      ABSL_LOCKS_EXCLUDED(mu_);

  JobStore* const store_;
  http::TransferLoop* const loop_;
  TokenProvider* const tokens_;
  const EngineOptions options_;

  mutable Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  int64_t wakes_ ABSL_GUARDED_BY(mu_) = 0;
  struct Running {
    std::shared_ptr<JobRunner> runner;
    std::thread thread;
  };
  // Keyed by claim number: a job paused and resumed at once can have a
  // winding-down runner and a new one for a moment.
  std::map<uint64_t, Running> running_ ABSL_GUARDED_BY(mu_);
  uint64_t claims_ ABSL_GUARDED_BY(mu_) = 0;
  // Started by Start; Stop moves it out under mu_ and joins it.
  std::thread scheduler_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mm::downloader

#endif  // MM_SERVICES_DOWNLOADER_ENGINE_H_
