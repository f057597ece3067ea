// A job table's counts as metrics, read with one query at scrape time (so
// they are right across replicas: every replica reports the whole table):
//   mm_jobs{state}        gauge: jobs in each state (0 for known states
//                         without jobs)
//   mm_job_queue_depth    gauge: jobs waiting for a worker (JobCounts)
// When the query fails (the database is down) the gauges keep their last
// values; mm_db_errors_total says why.
//
//   jobs::JobMetrics job_metrics(&table, registry, {"queued", "running"});
//
// Lifecycle: registers a collector on construction and removes it on
// destruction (waiting for a scrape that is reading the table), so the
// table must outlive this object, not the registry.
#ifndef MM_COMMON_JOBS_JOB_METRICS_H_
#define MM_COMMON_JOBS_JOB_METRICS_H_

#include <string>
#include <vector>

#include "common/jobs/job_table.h"
#include "common/metrics/registry.h"

namespace mm::jobs {

class JobMetrics {
 public:
  // `states`: every state the kind has, so each renders (as 0) from the
  // first scrape.
  JobMetrics(JobTable* table, metrics::Registry* registry,
             const std::vector<std::string>& states);
  ~JobMetrics();
  JobMetrics(const JobMetrics&) = delete;
  JobMetrics& operator=(const JobMetrics&) = delete;

 private:
  void Collect();

  JobTable* const table_;
  metrics::Registry* const registry_;
  metrics::Family<metrics::Gauge>* const jobs_;
  metrics::Gauge* const queue_depth_;
  const std::vector<std::string> states_;
  int collector_id_ = -1;
};

}  // namespace mm::jobs

#endif  // MM_COMMON_JOBS_JOB_METRICS_H_
