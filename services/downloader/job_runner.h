// One claimed job at work: its parts (files), their segments (byte ranges
// on their own connections) and the transfers on the shared TransferLoop.
// The Engine makes one per claim and runs Run() on a thread of its own; the
// transfer callbacks arrive on the loop's thread. Run() returns once the
// job has succeeded, failed, been paused or cancelled, been taken over by
// another replica, or been asked to shut down; by then every transfer and
// verification has ended and the job's last state is saved.
//
//   auto runner = std::make_shared<JobRunner>(engine, std::move(job),
//                                             claim_started);
//   std::thread thread([runner] { runner->Run(); });
//   ...
//   runner->RequestShutdown();  // at Engine::Stop
//   thread.join();
//
// The work is in two files: job_runner.cc (the job thread: starting parts,
// verifying them, saving progress, winding down) and job_transfers.cc (the
// transfer callbacks, writing bytes, retries).
//
// Thread-safety: the public methods may be called from any thread. State
// shared by the job thread and the callbacks lives under mu_; the job
// thread sleeps on wake_mu_ (lock order: mu_, then wake_mu_).
#ifndef MM_SERVICES_DOWNLOADER_JOB_RUNNER_H_
#define MM_SERVICES_DOWNLOADER_JOB_RUNNER_H_

#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/http/transfer_loop.h"
#include "common/mutex.h"
#include "model/hashing.h"
#include "services/downloader/engine.h"
#include "services/downloader/job.h"
#include "services/downloader/verifier.h"

namespace mm::downloader {

// Which transfer a callback is about. `generation` is the part's generation
// when the transfer started: a part restarted since (or a job winding down)
// has a newer one, and callbacks of older transfers are ignored.
struct TransferKey {
  int part = 0;
  int segment = 0;
  uint64_t generation = 0;
};

class JobRunner : public std::enable_shared_from_this<JobRunner> {
 public:
  // `lease_start`: when the claim that leased `job` was sent, on the
  // engine's clock; the lease is counted from there.
  JobRunner(Engine* engine, Job job, absl::Time lease_start);

  // The job thread: works the job until it stops, then saves it.
  void Run() ABSL_LOCKS_EXCLUDED(mu_, wake_mu_);
  // Stop for a process shutdown: progress is saved and the lease released
  // (the job stays RUNNING for the next process or another replica).
  void RequestShutdown() ABSL_LOCKS_EXCLUDED(mu_, wake_mu_);
  // Run() has returned (or is about to: only the thread is left to join).
  bool finished() const ABSL_LOCKS_EXCLUDED(mu_);

  // Transfer callbacks (the loop's thread), as http::TransferHandler.
  bool OnResponse(const TransferKey& key, const http::ResponseHead& head)
      ABSL_LOCKS_EXCLUDED(mu_, wake_mu_);
  bool OnBody(const TransferKey& key, const char* data, size_t size)
      ABSL_LOCKS_EXCLUDED(mu_, wake_mu_);
  void OnDone(const TransferKey& key, const http::TransferResult& result)
      ABSL_LOCKS_EXCLUDED(mu_, wake_mu_);

 private:
  // Why the job thread left its loop.
  enum class StopReason {
    kNone,
    kSucceeded,
    kFailed,
    kPaused,
    kCancelled,
    // Another replica holds the lease now, or it ends soon and cannot be
    // renewed (see LeaseLapsing): no final save, partial files kept.
    kLost,
    kShutdown,
  };
  // Where one part is: waiting for a slot, transferring, complete and due
  // for verification, being verified on another thread, done.
  enum class PartPhase { kPending, kActive, kVerify, kVerifying, kDone };

  // A segment's transfer, beside its persisted Segment.
  struct SegmentState {
    bool active = false;
    http::TransferId transfer = 0;
    // When to (re)start; InfiniteFuture = not scheduled. On the engine's
    // clock.
    absl::Time start_at = absl::InfiniteFuture();
    // The first byte asked for by the running transfer.
    int64_t requested_from = 0;
    // The running transfer is the first request of the file ("bytes=0-"),
    // whose answer decides the segments.
    bool probe = false;
    bool reached_end = false;
    // The answer was a retryable HTTP status: retry once the transfer is
    // done, after at least retry_after when the server said so.
    bool retry = false;
    std::optional<absl::Duration> retry_after;
    std::string retry_error_type;
    std::string retry_error_message;
    // Body bytes received but not yet written (see kWriteBlockBytes); they
    // do not count in the segment's `done` until written.
    std::string pending;
    absl::Time last_write = absl::InfinitePast();
  };

  // A part's transfers, file and verification, beside its persisted Part.
  struct PartState {
    PartPhase phase = PartPhase::kPending;
    // Bumped whenever the part's transfers are abandoned (see TransferKey).
    uint64_t generation = 1;
    int fd = -1;  // the open `<name>.downloading`
    bool accepts_ranges = false;
    // The final file already exists with the expected size: verify it
    // instead of downloading (checked once per run).
    bool verify_existing = false;
    bool checked_existing = false;
    // Times the file was started over because it changed on the server.
    int content_restarts = 0;
    // Transient failures since the part last got further than before.
    int failures_in_row = 0;
    int64_t bytes_at_failure = -1;
    std::vector<SegmentState> segments;
    // One stream in order: hashed as written, so verification need not
    // read the file back. Null otherwise.
    std::unique_ptr<model::Sha256Stream> streamed_sha256;
    int64_t hashed_bytes = 0;
    std::future<std::optional<JobError>> verification;
  };

  // --- job_transfers.cc: transfers and their callbacks ---
  void StartSegment(int part_index, int segment_index)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The answer to a part's first request: names the file if needed,
  // checks size and space, creates the partial file and plans segments.
  // Returns whether to go on receiving the body.
  bool HandleProbe(const TransferKey& key, const http::ResponseHead& head)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes the segment's pending bytes; false when that failed the job.
  bool Flush(int part_index, int segment_index)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ScheduleRetry(int part_index, int segment_index,
                     const std::string& error_type, const std::string& message,
                     std::optional<absl::Duration> retry_after)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Duration Backoff(int attempt) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forgets the part's segments and starts it over with a probe at
  // `start_at`.
  void ResetToProbe(int part_index, absl::Time start_at)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The file changed on the server (or stopped honouring ranges): start
  // over, up to kMaxContentRestarts times.
  void RestartPart(int part_index, const std::string& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CancelTransfers() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // --- job_runner.cc: the job thread ---
  void Fail(JobError error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_)
      ABSL_LOCKS_EXCLUDED(wake_mu_);
  void StartPart(int part_index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_)
      ABSL_LOCKS_EXCLUDED(wake_mu_);
  // All segments complete and none transferring: due for verification.
  void MaybeComplete(int part_index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_)
      ABSL_LOCKS_EXCLUDED(wake_mu_);
  void StartVerification(int part_index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_)
      ABSL_LOCKS_EXCLUDED(wake_mu_);
  void FinishVerification(int part_index, std::optional<JobError> error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) ABSL_LOCKS_EXCLUDED(wake_mu_);
  void CloseFiles() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One pass of the job thread: starts what is due. Returns false when the
  // job is to stop (it was told to, or every part is done).
  bool Step() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) ABSL_LOCKS_EXCLUDED(wake_mu_);
  // Ends every transfer and verification, closes files and records the
  // outcome in job_. Returns why the job stopped.
  StopReason WindDown() ABSL_LOCKS_EXCLUDED(mu_);
  // Saves progress when due (see kMinSaveGap); takes mu_ itself, the store
  // write happens without it. `final`: the last save, after every transfer
  // has ended. Learns of a pause, cancel or lost lease from the answer.
  void SaveProgress(bool force, bool final = false)
      ABSL_LOCKS_EXCLUDED(mu_, wake_mu_);
  // No save has renewed the lease since one was sent (it is still running
  // or failed), and the clock has reached the lease's end less a margin:
  // another replica may take the job soon, so this one must stop writing.
  bool LeaseLapsing(absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stops the job as lost because its lease cannot be renewed; `why` says
  // what keeps it from being renewed.
  void StopForLapsedLease(const std::string& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) ABSL_LOCKS_EXCLUDED(wake_mu_);
  // Folds the bytes since the last sample into the smoothed rate.
  void UpdateRate(absl::Time now, int64_t bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Wakes the job thread. Its own mutex, so that the many short holds of
  // mu_ by body callbacks never wake the job thread for nothing.
  void Wake() ABSL_LOCKS_EXCLUDED(wake_mu_);

  Engine* const engine_;
  Clock* const clock_;
  // job_.id, which never changes: readable without mu_.
  const std::string id_;

  mutable Mutex mu_;
  Job job_ ABSL_GUARDED_BY(mu_);
  std::vector<PartState> parts_ ABSL_GUARDED_BY(mu_);
  int active_transfers_ ABSL_GUARDED_BY(mu_) = 0;
  // Something worth saving changed (beyond byte counts).
  bool dirty_ ABSL_GUARDED_BY(mu_) = true;
  StopReason stop_ ABSL_GUARDED_BY(mu_) = StopReason::kNone;
  std::optional<JobError> failure_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::mt19937_64 random_ ABSL_GUARDED_BY(mu_){std::random_device{}()};
  // Progress saving and the rate shown (SaveProgress).
  absl::Time last_save_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int64_t last_saved_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t rate_sample_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time rate_sample_time_ ABSL_GUARDED_BY(mu_);
  double bytes_per_second_ ABSL_GUARDED_BY(mu_) = 0;
  // The lease, on clock_: counted from when the claim or the last
  // successful save was sent (the store renews it a little later, so this
  // end is never later than the stored one).
  absl::Time lease_ends_ ABSL_GUARDED_BY(mu_);
  // A save was sent and none has succeeded since (in flight or failed).
  bool renewal_pending_ ABSL_GUARDED_BY(mu_) = false;
  // The job stopped as kLost because its lease could not be renewed.
  bool lease_lapsed_ ABSL_GUARDED_BY(mu_) = false;

  mutable Mutex wake_mu_ ABSL_ACQUIRED_AFTER(mu_);
  int64_t wake_events_ ABSL_GUARDED_BY(wake_mu_) = 0;
};

}  // namespace mm::downloader

#endif  // MM_SERVICES_DOWNLOADER_JOB_RUNNER_H_
