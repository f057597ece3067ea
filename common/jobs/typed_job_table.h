// TypedJobTable: a JobTable (job_table.h) seen through one job kind's own
// struct, so each service writes only how its job maps to a row (a Codec)
// and never the reading, paging, updating and following around it again.
// The job struct carries every shared column (id, sequence, request_id,
// state, priority, revision, lease, token owner, end time): ToRow(FromRow(r))
// must give r back, or an update would drop a lease.
//
//   struct InstallCodec {
//     using Job = InstallJob;
//     using State = InstallState;
//     static jobs::JobRow ToRow(const InstallJob& job);
//     static absl::StatusOr<InstallJob> FromRow(const jobs::JobRow& row);
//     static std::string StateName(InstallState state);
//     // What Wait and Watch need to know of a job.
//     static jobs::Look Look(const InstallJob& job);
//   };
//   jobs::TypedJobTable<InstallCodec> table(std::move(raw_table));
//   ASSIGN_OR_RETURN(InstallJob job, table.Get(id));
//
// Thread-safety: as JobTable (every method may be called concurrently).
#ifndef MM_COMMON_JOBS_TYPED_JOB_TABLE_H_
#define MM_COMMON_JOBS_TYPED_JOB_TABLE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/jobs/follow.h"
#include "common/jobs/job_table.h"
#include "common/status.h"

namespace mm::jobs {

// One List page of typed jobs.
template <typename Job>
struct TypedJobPage {
  std::vector<Job> jobs;
  std::string next_page_token;
};

template <typename Codec>
class TypedJobTable {
 public:
  using Job = typename Codec::Job;
  using State = typename Codec::State;
  using Page = TypedJobPage<Job>;

  explicit TypedJobTable(std::unique_ptr<JobTable> table)
      : table_(std::move(table)) {}

  JobTable& table() { return *table_; }
  const JobTable& table() const { return *table_; }

  // See JobTable for each method; these add only the typing.
  absl::StatusOr<Job> Create(const Job& job) {
    ASSIGN_OR_RETURN(JobRow row, table_->Create(Codec::ToRow(job)));
    return Codec::FromRow(row);
  }
  absl::StatusOr<Job> Get(const std::string& id) {
    ASSIGN_OR_RETURN(JobRow row, table_->Get(id));
    return Codec::FromRow(row);
  }
  absl::StatusOr<std::vector<Job>> List(const std::vector<State>& states,
                                        int64_t after_sequence, int limit) {
    ASSIGN_OR_RETURN(std::vector<JobRow> rows,
                     table_->List(Names(states), after_sequence, limit));
    return FromRows(rows);
  }
  absl::StatusOr<Page> ListPage(const std::vector<State>& states, int page_size,
                                const std::string& page_token) {
    ASSIGN_OR_RETURN(JobPage rows,
                     table_->ListPage(Names(states), page_size, page_token));
    Page page;
    ASSIGN_OR_RETURN(page.jobs, FromRows(rows.rows));
    page.next_page_token = std::move(rows.next_page_token);
    return page;
  }
  absl::StatusOr<Job> Update(const std::string& id,
                             const std::function<absl::Status(Job&)>& change) {
    ASSIGN_OR_RETURN(JobRow row,
                     table_->Update(id, [&](JobRow& row) -> absl::Status {
                       ASSIGN_OR_RETURN(Job job, Codec::FromRow(row));
                       RETURN_IF_ERROR(change(job));
                       row = Codec::ToRow(job);
                       return absl::OkStatus();
                     }));
    return Codec::FromRow(row);
  }
  // A worker's write (JobTable::UpdateLeased): `change` edits the job as
  // stored (its lease with table().LeaseExpiryMs) and says whether to
  // write.
  absl::StatusOr<Job> UpdateLeased(
      const std::string& id,
      const std::function<absl::StatusOr<bool>(Job&)>& change) {
    ASSIGN_OR_RETURN(
        JobRow row,
        table_->UpdateLeased(id, [&](JobRow& row) -> absl::StatusOr<bool> {
          ASSIGN_OR_RETURN(Job job, Codec::FromRow(row));
          ASSIGN_OR_RETURN(bool write, change(job));
          if (write) row = Codec::ToRow(job);
          return write;
        }));
    return Codec::FromRow(row);
  }
  // `on_claim` edits the claimed job (e.g. its start time) before it is
  // written.
  absl::StatusOr<std::optional<Job>> ClaimNext(
      absl::Duration lease, absl::Duration replica_ttl,
      const std::function<void(Job&)>& on_claim = nullptr) {
    absl::Status decode_error;
    ASSIGN_OR_RETURN(
        std::optional<JobRow> row,
        table_->ClaimNext(lease, replica_ttl, [&](JobRow& claimed) {
          if (!on_claim) return;
          absl::StatusOr<Job> job = Codec::FromRow(claimed);
          if (!job.ok()) {
            decode_error = job.status();
            return;
          }
          on_claim(*job);
          claimed = Codec::ToRow(*job);
        }));
    RETURN_IF_ERROR(decode_error);
    if (!row.has_value()) return std::optional<Job>();
    ASSIGN_OR_RETURN(Job job, Codec::FromRow(*row));
    return std::optional<Job>(std::move(job));
  }
  absl::StatusOr<std::vector<Job>> Prune(absl::Time ended_before) {
    ASSIGN_OR_RETURN(std::vector<JobRow> rows, table_->Prune(ended_before));
    return FromRows(rows);
  }

  // Wait and Watch (follow.h) on this table's jobs; the Look of a job comes
  // from Codec::Look.
  absl::StatusOr<Job> Wait(const Follower& follower, const std::string& id,
                           const FollowOptions& options) {
    Job job;
    RETURN_IF_ERROR(follower.Wait(
        id, [&] { return LookAt(id, job); }, options));
    return job;
  }
  absl::Status Watch(const Follower& follower, const std::string& id,
                     int64_t since_revision,
                     const std::function<bool(const Job&)>& send,
                     const FollowOptions& options) {
    Job job;
    return follower.Watch(
        id, since_revision, [&] { return LookAt(id, job); },
        [&] { return send(job); }, options);
  }

 private:
  static std::vector<std::string> Names(const std::vector<State>& states) {
    std::vector<std::string> names;
    names.reserve(states.size());
    for (State state : states) names.push_back(Codec::StateName(state));
    return names;
  }
  static absl::StatusOr<std::vector<Job>> FromRows(
      const std::vector<JobRow>& rows) {
    std::vector<Job> jobs;
    jobs.reserve(rows.size());
    for (const JobRow& row : rows) {
      ASSIGN_OR_RETURN(Job job, Codec::FromRow(row));
      jobs.push_back(std::move(job));
    }
    return jobs;
  }
  absl::StatusOr<Look> LookAt(const std::string& id, Job& job) {
    ASSIGN_OR_RETURN(job, Get(id));
    return Codec::Look(job);
  }

  std::unique_ptr<JobTable> table_;
};

}  // namespace mm::jobs

#endif  // MM_COMMON_JOBS_TYPED_JOB_TABLE_H_
