// JobTable: durable jobs of one kind (download jobs, install jobs) in SQLite
// (one process) or PostgreSQL (replicas sharing one queue). The table knows
// the columns every job kind shares (id, submission sequence, request_id,
// state, priority, revision, lease, token owner, end time) and keeps the
// rest as an opaque JSON body that the service's typed store owns. Every
// write bumps the row's revision and signals watchers: in-process through
// changes(), across replicas through NOTIFY on the spec's channel.
//
// Work is handed out with leases: ClaimNext picks the best claimable job
// (one in a waiting-for-work state, or in the claimed state under a lease
// that expired because its worker died) with FOR UPDATE SKIP LOCKED on
// PostgreSQL, so replicas never take the same job; the worker renews the
// lease with each UpdateLeased, and learns there that a request changed
// the job (from any replica).
//
//   JobTableSpec spec = {.prefix = "install", .component = "installer",
//                        .channel = "mm_installs", .noun = "install job",
//                        .claimable_states = {"queued", "running"},
//                        .claimed_state = "running",
//                        .terminal_states = {"completed", "error",
//                                            "cancelled"}};
//   ASSIGN_OR_RETURN(auto table, JobTable::Open(url, replica, spec, clock));
//
// All times (leases, heartbeats) come from the Clock given to Open.
//
// Thread-safety: all methods may be called concurrently.
#ifndef MM_COMMON_JOBS_JOB_TABLE_H_
#define MM_COMMON_JOBS_JOB_TABLE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/jobs/change_signal.h"
#include "common/sql/database.h"
#include "nlohmann/json.hpp"

namespace mm::jobs {

// One job as stored. States are the job kind's own names ("queued").
struct JobRow {
  std::string id;
  // Submission order; assigned by Create, never reused (not even after
  // the newest job was pruned), so pagers never miss a job.
  int64_t sequence = 0;
  std::string request_id;  // empty = none
  std::string state;
  int priority = 0;  // lower runs first
  int64_t revision = 0;
  std::string lease_owner;  // replica id; empty = not leased
  int64_t lease_expires_ms = 0;
  // The replica holding something of the job only in memory (a token):
  // ClaimNext leaves the job to that replica while it is alive.
  std::string token_owner;
  int64_t ended_ms = 0;  // 0 = not ended
  nlohmann::json body = nlohmann::json::object();
};

// What tells one job kind's table from another's.
struct JobTableSpec {
  // Table names: <prefix>_jobs, <prefix>_replicas, <prefix>_sequence.
  std::string prefix;
  // The schema_migrations component ("downloader").
  std::string component;
  // The NOTIFY channel on PostgreSQL ("mm_downloads").
  std::string channel;
  // Names the job in errors: "no <noun> ID".
  std::string noun;
  // States ClaimNext hands out (when unleased or the lease expired).
  std::vector<std::string> claimable_states;
  // The state a claimed job is in while a worker holds its lease; empty
  // keeps the state the job had (a kind whose jobs record their own step,
  // like install jobs).
  std::string claimed_state;
  // States Prune may delete.
  std::vector<std::string> terminal_states;
  // The kind's own schema changes after the shared table (version >= 2).
  std::vector<sql::Migration> extra_migrations;
};

// How many jobs a table holds (JobTable::Count).
struct JobCounts {
  // Jobs per state; states without jobs are absent.
  std::map<std::string, int64_t> by_state;
  // Jobs a worker could claim now: in a claimable state with no lease or
  // an expired one (the queue depth).
  int64_t unclaimed = 0;
};

// One List page: rows in submission order and the token for the next.
struct JobPage {
  std::vector<JobRow> rows;
  std::string next_page_token;
};

class JobTable {
 public:
  // Opens (and migrates) the table at `url` (see sql::Database::Open).
  // `replica_id` names this process in leases; `clock` must outlive the
  // table. `metrics`, when given, counts the database's errors and
  // reconnects (sql::Options::metrics) and must outlive the table.
  static absl::StatusOr<std::unique_ptr<JobTable>> Open(
      const std::string& url, std::string replica_id, JobTableSpec spec,
      Clock* clock, metrics::Registry* metrics = nullptr);
  ~JobTable();

  const std::string& replica_id() const { return replica_id_; }
  const JobTableSpec& spec() const { return spec_; }
  sql::Dialect dialect() const { return db_->dialect(); }
  ChangeSignal& changes() { return changes_; }
  Clock* clock() const { return clock_; }

  // Inserts `row` (assigning sequence and revision 1). With a request_id
  // that already exists, nothing is inserted and the existing row is
  // returned.
  absl::StatusOr<JobRow> Create(JobRow row);
  // NOT_FOUND for an unknown id.
  absl::StatusOr<JobRow> Get(const std::string& id);
  // Rows with sequence > after_sequence in submission order, at most
  // `limit`, only those in `states` when not empty.
  absl::StatusOr<std::vector<JobRow>> List(
      const std::vector<std::string>& states, int64_t after_sequence,
      int limit);
  // One page under the paging policy of common/paging.h: `page_size` as
  // requested (0 = default, capped), `page_token` as issued by an earlier
  // page for the same `states` (INVALID_ARGUMENT otherwise).
  absl::StatusOr<JobPage> ListPage(const std::vector<std::string>& states,
                                   int page_size,
                                   const std::string& page_token);
  // Read-modify-write of one row under its row lock: `change` edits the
  // row (or fails, and nothing is written). Returns the row as written.
  absl::StatusOr<JobRow> Update(
      const std::string& id,
      const std::function<absl::Status(JobRow&)>& change);
  // A worker's write: like Update, but only while this replica holds the
  // row's lease; otherwise nothing is written. `change` returns whether to
  // write. Returns the row as stored either way, so the worker sees what
  // requests changed meanwhile, or that another replica took the job.
  absl::StatusOr<JobRow> UpdateLeased(
      const std::string& id,
      const std::function<absl::StatusOr<bool>(JobRow&)>& change);

  // Claims the next job for this replica (the claimed state, a lease of
  // `lease`), or nullopt. Jobs whose token_owner is another replica with a
  // heartbeat within `replica_ttl` are left to it. `on_claim`, when given,
  // edits the claimed row before it is written (e.g. a start time).
  absl::StatusOr<std::optional<JobRow>> ClaimNext(
      absl::Duration lease, absl::Duration replica_ttl,
      const std::function<void(JobRow&)>& on_claim = nullptr);
  // When a lease of `lease` taken now ends (unix milliseconds).
  int64_t LeaseExpiryMs(absl::Duration lease) const;
  // Sets the row's lease to this replica, ending `lease` from now (for
  // UpdateLeased).
  void RenewLease(JobRow& row, absl::Duration lease) const;
  // Clears the row's lease (a worker that stops working on it).
  static void ClearLease(JobRow& row);
  // Ends this replica's lease on the job (it stays in its current state).
  absl::Status ReleaseLease(const std::string& id);
  // Every job in the claimed state goes back to the queue and every other
  // replica is forgotten (start-up of an embedded SQLite service: the
  // previous process is certainly gone).
  absl::Status ExpireAllLeases();

  // Deletes rows in a terminal state that ended before `ended_before`;
  // returns them.
  absl::StatusOr<std::vector<JobRow>> Prune(absl::Time ended_before);

  // Counts every job by state, and those waiting for a worker: one
  // aggregate query (the metrics read it at scrape time).
  absl::StatusOr<JobCounts> Count();

  // Records that this replica is alive (token ownership, see ClaimNext).
  absl::Status Heartbeat();
  absl::Status Ping();

 private:
  JobTable(std::unique_ptr<sql::Database> db, std::string replica_id,
           JobTableSpec spec, Clock* clock);
  int64_t NowMs() const;
  std::string Select() const;
  absl::StatusOr<JobRow> Write(sql::Session& session, JobRow row, bool insert);
  absl::StatusOr<JobRow> LockRow(sql::Session& session, const std::string& id);

  std::unique_ptr<sql::Database> db_;
  const std::string replica_id_;
  const JobTableSpec spec_;
  Clock* const clock_;
  const std::string jobs_;  // the table names
  const std::string replicas_;
  ChangeSignal changes_;
  std::unique_ptr<sql::Subscription> subscription_;
};

}  // namespace mm::jobs

#endif  // MM_COMMON_JOBS_JOB_TABLE_H_
