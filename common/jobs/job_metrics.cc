#include "common/jobs/job_metrics.h"

#include "common/logging.h"

namespace mm::jobs {

JobMetrics::JobMetrics(JobTable* table, metrics::Registry* registry,
                       const std::vector<std::string>& states)
    : table_(table),
      registry_(registry),
      jobs_(registry->AddGauge("mm_jobs", "Jobs in the job table, by state",
                               {"state"})),
      queue_depth_(registry
                       ->AddGauge("mm_job_queue_depth",
                                  "Jobs waiting for a worker: in a claimable "
                                  "state, with no live lease")
                       ->WithLabels({})),
      states_(states) {
  for (const std::string& state : states_) jobs_->WithLabels({state});
  collector_id_ = registry_->AddCollector([this] { Collect(); });
}

JobMetrics::~JobMetrics() { registry_->RemoveCollector(collector_id_); }

void JobMetrics::Collect() {
  absl::StatusOr<JobCounts> counts = table_->Count();
  if (!counts.ok()) {
    MM_LOG(DEBUG) << "job metrics: " << counts.status();
    return;
  }
  for (const std::string& state : states_) {
    auto it = counts->by_state.find(state);
    jobs_->WithLabels({state})->Set(it == counts->by_state.end() ? 0
                                                                 : it->second);
  }
  for (const auto& [state, count] : counts->by_state) {
    jobs_->WithLabels({state})->Set(count);  // a state we were not told of
  }
  queue_depth_->Set(counts->unclaimed);
}

}  // namespace mm::jobs
