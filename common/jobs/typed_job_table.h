// TypedJobTable: a JobTable (job_table.h) seen through one job kind's own
// struct, so each service writes only what is its own (state names, the
// JSON body, which states end a Wait) and never the row mapping, reading,
// paging, leasing and following around it again.
//
// The job struct carries every shared column under JobRow's names (id,
// sequence, request_id, state, priority, revision, lease_owner,
// lease_expires_ms, token_owner) and its end time as `absl::Time ended`
// (InfinitePast = not ended); the table maps them, so ToRow(FromRow(r))
// gives r back and an update never drops a lease. The Codec says the rest:
//
//   struct InstallCodec {
//     using Job = InstallJob;
//     using State = InstallState;
//     static std::string StateName(InstallState state);
//     static std::optional<InstallState> StateFromName(std::string_view name);
//     // A Watch ends at a terminal state; a Wait returns at a terminal
//     // one and at one IsSettled names besides (paused: it waits for a
//     // person).
//     static bool IsTerminal(InstallState state);
//     static bool IsSettled(InstallState state);
//     // Everything but the shared columns; BodyFromJson fills `job` (its
//     // columns already read) and answers DATA_LOSS for a malformed body.
//     static nlohmann::json BodyJson(const InstallJob& job);
//     static absl::Status BodyFromJson(const nlohmann::json& body,
//                                      InstallJob& job);
//   };
//   jobs::TypedJobTable<InstallCodec> table(std::move(raw_table));
//   ASSIGN_OR_RETURN(InstallJob job, table.Get(id));
//
// Thread-safety: as JobTable (every method may be called concurrently).
#ifndef MM_COMMON_JOBS_TYPED_JOB_TABLE_H_
#define MM_COMMON_JOBS_TYPED_JOB_TABLE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
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
  const std::string& replica_id() const { return table_->replica_id(); }
  sql::Dialect dialect() const { return table_->dialect(); }
  ChangeSignal& changes() { return table_->changes(); }
  Clock* clock() const { return table_->clock(); }

  // The row of `job`: its shared columns, its state's name, its body.
  static JobRow ToRow(const Job& job) {
    JobRow row;
    row.id = job.id;
    row.sequence = job.sequence;
    row.request_id = job.request_id;
    row.state = Codec::StateName(job.state);
    row.priority = job.priority;
    row.revision = job.revision;
    row.lease_owner = job.lease_owner;
    row.lease_expires_ms = job.lease_expires_ms;
    row.token_owner = job.token_owner;
    row.ended_ms =
        job.ended == absl::InfinitePast() ? 0 : absl::ToUnixMillis(job.ended);
    row.body = Codec::BodyJson(job);
    return row;
  }
  // The job of `row`; DATA_LOSS for a state this build does not know or a
  // malformed body (a database written by a newer build, or damaged).
  absl::StatusOr<Job> FromRow(const JobRow& row) const {
    Job job;
    job.id = row.id;
    job.sequence = row.sequence;
    job.request_id = row.request_id;
    std::optional<State> state = Codec::StateFromName(row.state);
    if (!state.has_value()) {
      return absl::DataLossError(absl::StrCat(table_->spec().noun, " ", row.id,
                                              " has an unknown state ",
                                              row.state));
    }
    job.state = *state;
    job.priority = row.priority;
    job.revision = row.revision;
    job.lease_owner = row.lease_owner;
    job.lease_expires_ms = row.lease_expires_ms;
    job.token_owner = row.token_owner;
    job.ended = row.ended_ms == 0 ? absl::InfinitePast()
                                  : absl::FromUnixMillis(row.ended_ms);
    RETURN_IF_ERROR(Codec::BodyFromJson(row.body, job));
    return job;
  }

  // See JobTable for each method; these add only the typing.
  absl::StatusOr<Job> Create(const Job& job) {
    ASSIGN_OR_RETURN(JobRow row, table_->Create(ToRow(job)));
    return FromRow(row);
  }
  absl::StatusOr<Job> Get(const std::string& id) {
    ASSIGN_OR_RETURN(JobRow row, table_->Get(id));
    return FromRow(row);
  }
  absl::StatusOr<std::vector<Job>> List(const std::vector<State>& states,
                                        int64_t after_sequence, int limit) {
    ASSIGN_OR_RETURN(std::vector<JobRow> rows,
                     table_->List(Names(states), after_sequence, limit));
    return FromRows(rows);
  }
  // Every job in `states`, in submission order, read `batch` at a time
  // (so no one query holds a large table's rows).
  absl::StatusOr<std::vector<Job>> ListAll(const std::vector<State>& states,
                                           int batch = 1000) {
    std::vector<Job> all;
    int64_t after = 0;
    while (true) {
      ASSIGN_OR_RETURN(std::vector<Job> read, List(states, after, batch));
      if (!read.empty()) after = read.back().sequence;
      for (Job& job : read) all.push_back(std::move(job));
      if (static_cast<int>(read.size()) < batch) return all;
    }
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
                       ASSIGN_OR_RETURN(Job job, FromRow(row));
                       RETURN_IF_ERROR(change(job));
                       row = ToRow(job);
                       return absl::OkStatus();
                     }));
    return FromRow(row);
  }
  // A worker's write (JobTable::UpdateLeased): `change` gets the job as
  // stored with its lease already renewed to `lease` from now (it may clear
  // the lease, e.g. at the end) and says whether to write. Returns the job
  // as stored either way: a worker sees a request's change (pause, cancel),
  // or, by a lease_owner that is not this replica, that it lost the job.
  absl::StatusOr<Job> UpdateLeased(
      const std::string& id, absl::Duration lease,
      const std::function<absl::StatusOr<bool>(Job&)>& change) {
    ASSIGN_OR_RETURN(
        JobRow row,
        table_->UpdateLeased(id, [&](JobRow& row) -> absl::StatusOr<bool> {
          table_->RenewLease(row, lease);
          ASSIGN_OR_RETURN(Job job, FromRow(row));
          ASSIGN_OR_RETURN(bool write, change(job));
          if (write) row = ToRow(job);
          return write;
        }));
    return FromRow(row);
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
          absl::StatusOr<Job> job = FromRow(claimed);
          if (!job.ok()) {
            decode_error = job.status();
            return;
          }
          on_claim(*job);
          claimed = ToRow(*job);
        }));
    RETURN_IF_ERROR(decode_error);
    if (!row.has_value()) return std::optional<Job>();
    ASSIGN_OR_RETURN(Job job, FromRow(*row));
    return std::optional<Job>(std::move(job));
  }
  absl::Status ReleaseLease(const std::string& id) {
    return table_->ReleaseLease(id);
  }
  absl::Status ExpireAllLeases() { return table_->ExpireAllLeases(); }
  absl::StatusOr<std::vector<Job>> Prune(absl::Time ended_before) {
    ASSIGN_OR_RETURN(std::vector<JobRow> rows, table_->Prune(ended_before));
    return FromRows(rows);
  }
  absl::Status Heartbeat() { return table_->Heartbeat(); }
  absl::Status Ping() { return table_->Ping(); }

  // Wait and Watch (follow.h) on this table's jobs.
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
  absl::StatusOr<std::vector<Job>> FromRows(
      const std::vector<JobRow>& rows) const {
    std::vector<Job> jobs;
    jobs.reserve(rows.size());
    for (const JobRow& row : rows) {
      ASSIGN_OR_RETURN(Job job, FromRow(row));
      jobs.push_back(std::move(job));
    }
    return jobs;
  }
  absl::StatusOr<Look> LookAt(const std::string& id, Job& job) {
    ASSIGN_OR_RETURN(job, Get(id));
    Look look;
    look.revision = job.revision;
    look.state = Codec::StateName(job.state);
    look.done = Codec::IsTerminal(job.state);
    look.settled = look.done || Codec::IsSettled(job.state);
    return look;
  }

  std::unique_ptr<JobTable> table_;
};

}  // namespace mm::jobs

#endif  // MM_COMMON_JOBS_TYPED_JOB_TABLE_H_
