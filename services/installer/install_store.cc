#include "services/installer/install_store.h"

#include <utility>

#include "common/status.h"

namespace mm::installer {

jobs::JobTableSpec InstallTableSpec() {
  jobs::JobTableSpec spec;
  spec.prefix = "install";
  spec.component = "installer";
  spec.channel = "mm_installs";
  spec.noun = "install job";
  // Every state a worker moves on from; paused and finished jobs wait for
  // a person or are done. A claim keeps the job's state: the step says
  // where to resume.
  spec.claimable_states = {"waiting", "downloading", "downloads_done",
                           "running"};
  spec.claimed_state = "";
  spec.terminal_states = {"completed", "error", "cancelled"};
  return spec;
}

const std::vector<InstallState>& LiveStates() {
  static const std::vector<InstallState>* const live =
      new std::vector<InstallState>{
          InstallState::kWaiting, InstallState::kDownloading,
          InstallState::kDownloadsDone, InstallState::kRunning,
          InstallState::kPaused};
  return *live;
}

absl::StatusOr<std::unique_ptr<InstallStore>> OpenInstallStore(
    const std::string& url, const std::string& replica_id, Clock* clock,
    metrics::Registry* metrics) {
  ASSIGN_OR_RETURN(std::unique_ptr<jobs::JobTable> table,
                   jobs::JobTable::Open(url, replica_id, InstallTableSpec(),
                                        clock, metrics));
  return std::make_unique<InstallStore>(std::move(table));
}

}  // namespace mm::installer
