// The downloader's typed job store: download jobs (job.h) in a shared
// jobs::JobTable (common/jobs/job_table.h) with the tables download_jobs
// and download_replicas and the NOTIFY channel "mm_downloads". The table
// does rows, leases, revisions and change signals; this layer turns rows
// into Jobs and decides what a worker's progress save may change.
//
// Work is handed out with leases: ClaimNext picks the best runnable job
// (queued, or running under a lease that expired because its worker died);
// the worker renews the lease with each SaveProgress, and learns there
// that a pause or cancel arrived (from any replica).
//
// Thread-safety: all methods may be called concurrently.
#ifndef MM_SERVICES_DOWNLOADER_JOB_STORE_H_
#define MM_SERVICES_DOWNLOADER_JOB_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/jobs/change_signal.h"
#include "common/jobs/follow.h"
#include "common/jobs/job_table.h"
#include "common/jobs/typed_job_table.h"
#include "services/downloader/job.h"

namespace mm::downloader {

using ChangeSignal = jobs::ChangeSignal;

// What is a download job's own in its job table row (typed_job_table.h).
struct DownloadJobCodec {
  using Job = ::mm::downloader::Job;
  using State = JobState;
  static std::string StateName(JobState state);
  static std::optional<JobState> StateFromName(std::string_view name);
  // Watch ends on a finished job; Wait also returns a paused one.
  static bool IsTerminal(JobState state);
  static bool IsSettled(JobState state) { return state == JobState::kPaused; }
  static nlohmann::json BodyJson(const Job& job) { return JobBodyJson(job); }
  static absl::Status BodyFromJson(const nlohmann::json& body, Job& job) {
    return JobBodyFromJson(body, job);
  }
};

// One page of ListPage.
using JobPage = jobs::TypedJobPage<Job>;

class JobStore {
 public:
  // Opens (and migrates) the store at `url` (see sql::Database::Open).
  // `replica_id` names this process in leases; lease times and the start
  // stamp come from `clock`, which must outlive the store. `metrics`: see
  // jobs::JobTable::Open.
  static absl::StatusOr<std::unique_ptr<JobStore>> Open(
      const std::string& url, const std::string& replica_id,
      Clock* clock = RealClock(), metrics::Registry* metrics = nullptr);

  const std::string& replica_id() const { return table_.replica_id(); }
  sql::Dialect dialect() const { return table_.dialect(); }
  ChangeSignal& changes() { return table_.changes(); }
  Clock* clock() const { return table_.clock(); }
  // The table underneath (counts for the metrics).
  jobs::JobTable& job_table() { return table_.table(); }

  // Inserts `job` (assigning sequence and revision). With a request_id that
  // already exists, nothing is inserted and the existing job is returned.
  absl::StatusOr<Job> Create(const Job& job);
  // NOT_FOUND for an unknown id.
  absl::StatusOr<Job> Get(const std::string& id);
  // Jobs with sequence > after_sequence in submission order, at most
  // `limit`, only those in `states` when not empty.
  absl::StatusOr<std::vector<Job>> List(const std::vector<JobState>& states,
                                        int64_t after_sequence, int limit);
  // One page under common/paging.h's policy, the token bound to `states`.
  absl::StatusOr<JobPage> ListPage(const std::vector<JobState>& states,
                                   int page_size,
                                   const std::string& page_token);
  // Read-modify-write of one job under its row lock: `change` edits the
  // job (or fails, and nothing is written). Returns the job as written.
  absl::StatusOr<Job> Update(const std::string& id,
                             const std::function<absl::Status(Job&)>& change);

  // Claims the next job to work on for this replica, or nullopt. Jobs whose
  // token lives in another live replica's memory are left to that replica.
  absl::StatusOr<std::optional<Job>> ClaimNext(absl::Duration lease,
                                               absl::Duration replica_ttl);
  // Saves a worker's progress if this replica still holds the job's lease
  // and it is still RUNNING (renewing the lease); otherwise writes nothing,
  // except in the worker's `final` save after its transfers have stopped:
  // then a job paused meanwhile keeps the segment progress and the lease is
  // given up (only then can the job be claimed again, so two workers never
  // write one file). Either way returns the job as stored, so the worker
  // sees a pause or cancel, or that another replica took the job over.
  // FAILED_PRECONDITION when `progress.state` is not one a running job may
  // move to (CanTransition).
  absl::StatusOr<Job> SaveProgress(const Job& progress, absl::Duration lease,
                                   bool final = false);
  // Ends this replica's lease on the job (it stays in its current state).
  absl::Status ReleaseLease(const std::string& id);
  // Every job leased by this replica goes back to the queue (start-up of
  // an embedded SQLite service: the previous process is certainly gone).
  absl::Status ExpireAllLeases();

  // Deletes finished jobs that ended before `ended_before`; returns them.
  absl::StatusOr<std::vector<Job>> Prune(absl::Time ended_before);

  // Records that this replica is alive (token ownership, see ClaimNext).
  absl::Status Heartbeat();
  absl::Status Ping();

  // Wait and Watch (common/jobs/follow.h) on download jobs.
  absl::StatusOr<Job> Wait(const jobs::Follower& follower,
                           const std::string& id,
                           const jobs::FollowOptions& options);
  absl::Status Watch(const jobs::Follower& follower, const std::string& id,
                     int64_t since_revision,
                     const std::function<bool(const Job&)>& send,
                     const jobs::FollowOptions& options);

 private:
  explicit JobStore(std::unique_ptr<jobs::JobTable> table)
      : table_(std::move(table)) {}

  jobs::TypedJobTable<DownloadJobCodec> table_;
};

}  // namespace mm::downloader

#endif  // MM_SERVICES_DOWNLOADER_JOB_STORE_H_
