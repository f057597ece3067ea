// Durable install jobs: the installer's typed view of a common/jobs
// JobTable (tables install_jobs and install_replicas, NOTIFY channel
// "mm_installs"), in SQLite under the state directory for one process or
// PostgreSQL for replicas that share the work. A worker claims a job with a
// lease and renews it with every SaveLeased; a job whose worker died is
// claimed again (by another replica, or by this process after a restart)
// and resumes from its step.
//
// Thread-safety: all methods may be called concurrently.
#ifndef MM_SERVICES_INSTALLER_INSTALL_STORE_H_
#define MM_SERVICES_INSTALLER_INSTALL_STORE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/jobs/job_table.h"
#include "services/installer/install_job.h"

namespace mm::installer {

struct InstallPage {
  std::vector<InstallJob> jobs;
  std::string next_page_token;
};

class InstallStore {
 public:
  // `metrics`: see jobs::JobTable::Open.
  static absl::StatusOr<std::unique_ptr<InstallStore>> Open(
      const std::string& url, const std::string& replica_id, Clock* clock,
      metrics::Registry* metrics = nullptr);

  const std::string& replica_id() const { return table_->replica_id(); }
  jobs::ChangeSignal& changes() { return table_->changes(); }
  // The table underneath (counts for the metrics).
  jobs::JobTable& job_table() { return *table_; }
  Clock* clock() const { return table_->clock(); }
  sql::Dialect dialect() const { return table_->dialect(); }

  // Inserts `job`; with a request_id that exists, returns that job instead.
  absl::StatusOr<InstallJob> Create(const InstallJob& job);
  // NOT_FOUND for an unknown id.
  absl::StatusOr<InstallJob> Get(const std::string& id);
  absl::StatusOr<InstallPage> ListPage(const std::vector<InstallState>& states,
                                       int page_size,
                                       const std::string& page_token);
  // Every job not in a terminal state, in submission order.
  absl::StatusOr<std::vector<InstallJob>> Live();
  // Read-modify-write under the row lock (a request: cancel, pause, ...).
  absl::StatusOr<InstallJob> Update(
      const std::string& id,
      const std::function<absl::Status(InstallJob&)>& change);
  // A worker's write while it holds the lease (renewed to `lease` from
  // now); `change` returns whether to write. Returns the job as stored, so
  // the worker sees a cancel or pause, or that it lost the lease (then
  // lease_owner is not this replica).
  absl::StatusOr<InstallJob> SaveLeased(
      const std::string& id, absl::Duration lease,
      const std::function<absl::StatusOr<bool>(InstallJob&)>& change);
  // The next job to work on, leased to this replica, or nullopt.
  absl::StatusOr<std::optional<InstallJob>> ClaimNext(
      absl::Duration lease, absl::Duration replica_ttl);
  absl::Status ReleaseLease(const std::string& id);
  absl::Status ExpireAllLeases();
  absl::StatusOr<std::vector<InstallJob>> Prune(absl::Time ended_before);
  absl::Status Heartbeat();
  absl::Status Ping();

 private:
  explicit InstallStore(std::unique_ptr<jobs::JobTable> table)
      : table_(std::move(table)) {}

  std::unique_ptr<jobs::JobTable> table_;
};

// The table's description (names, states a claim may take).
jobs::JobTableSpec InstallTableSpec();

}  // namespace mm::installer

#endif  // MM_SERVICES_INSTALLER_INSTALL_STORE_H_
