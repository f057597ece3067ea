// Durable download jobs in SQLite (one process) or PostgreSQL (replicas
// sharing one queue). A job is one row: the searched and contended fields in
// columns, everything else as JSON. Every write bumps the row's revision and
// signals watchers: in-process through a ChangeSignal, across replicas
// through NOTIFY on channel "mm_downloads".
//
// Work is handed out with leases: ClaimNext picks the best runnable job
// (queued, or running under a lease that expired because its worker died)
// with FOR UPDATE SKIP LOCKED on PostgreSQL, so replicas never take the same
// job; the worker renews the lease with each SaveProgress, and learns there
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
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "common/sql/database.h"
#include "services/downloader/job.h"

namespace mm::downloader {

// A counter that wakes waiters when it moves.
class ChangeSignal {
 public:
  void Notify() ABSL_LOCKS_EXCLUDED(mu_);
  int64_t version() const ABSL_LOCKS_EXCLUDED(mu_);
  // Returns when the version differs from `seen`, Interrupt was called, or
  // `deadline` passed.
  void WaitForChange(int64_t seen, absl::Time deadline) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // Wakes all waiters now and forever after (shutdown).
  void Interrupt() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable Mutex mu_;
  int64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  bool interrupted_ ABSL_GUARDED_BY(mu_) = false;
};

class JobStore {
 public:
  // Opens (and migrates) the store at `url` (see sql::Database::Open).
  // `replica_id` names this process in leases.
  static absl::StatusOr<std::unique_ptr<JobStore>> Open(
      const std::string& url, const std::string& replica_id);
  ~JobStore();

  const std::string& replica_id() const { return replica_id_; }
  sql::Dialect dialect() const { return db_->dialect(); }
  ChangeSignal& changes() { return changes_; }

  // Inserts `job` (assigning sequence and revision). With a request_id that
  // already exists, nothing is inserted and the existing job is returned.
  absl::StatusOr<Job> Create(Job job);
  // NOT_FOUND for an unknown id.
  absl::StatusOr<Job> Get(const std::string& id);
  // Jobs with sequence > after_sequence in submission order, at most
  // `limit`, only those in `states` when not empty.
  absl::StatusOr<std::vector<Job>> List(const std::vector<JobState>& states,
                                        int64_t after_sequence, int limit);
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

 private:
  JobStore(std::unique_ptr<sql::Database> db, std::string replica_id);
  absl::StatusOr<Job> Write(sql::Session& session, Job job, bool insert);
  void Signal();

  std::unique_ptr<sql::Database> db_;
  std::string replica_id_;
  ChangeSignal changes_;
  std::unique_ptr<sql::Subscription> subscription_;
};

}  // namespace mm::downloader

#endif  // MM_SERVICES_DOWNLOADER_JOB_STORE_H_
