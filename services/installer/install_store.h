// Durable install jobs: the installer's typed view of a common/jobs
// JobTable (tables install_jobs and install_replicas, NOTIFY channel
// "mm_installs"), in SQLite under the state directory for one process or
// PostgreSQL for replicas that share the work. The rows, leases, revisions,
// paging and Wait/Watch are common/jobs/typed_job_table.h's; this file says
// only what is the installer's own: its states and the job body.
//
// A worker claims a job with a lease and renews it with every UpdateLeased;
// a job whose worker died is claimed again (by another replica, or by this
// process after a restart) and resumes from its step.
//
// Thread-safety: all methods may be called concurrently.
#ifndef MM_SERVICES_INSTALLER_INSTALL_STORE_H_
#define MM_SERVICES_INSTALLER_INSTALL_STORE_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/jobs/job_table.h"
#include "common/jobs/typed_job_table.h"
#include "services/installer/install_job.h"

namespace mm::installer {

// What is an install job's own in its job table row.
struct InstallJobCodec {
  using Job = InstallJob;
  using State = InstallState;
  static std::string StateName(InstallState state) {
    return std::string(installer::StateName(state));
  }
  static std::optional<InstallState> StateFromName(std::string_view name) {
    return installer::StateFromName(name);
  }
  static bool IsTerminal(InstallState state) {
    return installer::IsTerminal(state);
  }
  // A paused job waits for a person: a Wait returns it.
  static bool IsSettled(InstallState state) {
    return state == InstallState::kPaused;
  }
  static nlohmann::json BodyJson(const InstallJob& job) {
    return JobBodyJson(job);
  }
  static absl::Status BodyFromJson(const nlohmann::json& body,
                                   InstallJob& job) {
    return JobBodyFromJson(body, job);
  }
};

using InstallStore = jobs::TypedJobTable<InstallJobCodec>;
using InstallPage = InstallStore::Page;

// Opens (and migrates) the install job table at `url` (see
// sql::Database::Open); `replica_id` names this process in leases, and
// `clock`, which must outlive the store, gives lease times; `metrics`: see
// jobs::JobTable::Open.
absl::StatusOr<std::unique_ptr<InstallStore>> OpenInstallStore(
    const std::string& url, const std::string& replica_id, Clock* clock,
    metrics::Registry* metrics = nullptr);

// The states of a job that is not finished (ListAll of them: every live
// job).
const std::vector<InstallState>& LiveStates();

// The table's description (names, states a claim may take).
jobs::JobTableSpec InstallTableSpec();

}  // namespace mm::installer

#endif  // MM_SERVICES_INSTALLER_INSTALL_STORE_H_
