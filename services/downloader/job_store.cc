#include "services/downloader/job_store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/strings.h"

namespace mm::downloader {
namespace {

jobs::JobTableSpec Spec() {
  jobs::JobTableSpec spec;
  // The names the downloader's schema has always had (existing databases
  // keep working).
  spec.prefix = "download";
  spec.component = "downloader";
  spec.channel = "mm_downloads";
  spec.noun = "download job";
  spec.claimable_states = {std::string(StateName(JobState::kQueued)),
                           std::string(StateName(JobState::kRunning))};
  spec.claimed_state = std::string(StateName(JobState::kRunning));
  for (JobState state :
       {JobState::kSucceeded, JobState::kFailed, JobState::kCancelled}) {
    spec.terminal_states.push_back(std::string(StateName(state)));
  }
  return spec;
}

jobs::JobRow ToRow(const Job& job) {
  jobs::JobRow row;
  row.id = job.id;
  row.sequence = job.sequence;
  row.request_id = job.request_id;
  row.state = std::string(StateName(job.state));
  row.priority = job.priority;
  row.revision = job.revision;
  row.lease_owner = job.lease_owner;
  row.lease_expires_ms = job.lease_expires_ms;
  row.token_owner = job.token_owner;
  row.ended_ms =
      job.ended == absl::InfinitePast() ? 0 : absl::ToUnixMillis(job.ended);
  row.body = JobBodyJson(job);
  return row;
}

absl::StatusOr<Job> FromRow(const jobs::JobRow& row) {
  Job job;
  job.id = row.id;
  job.sequence = row.sequence;
  job.request_id = row.request_id;
  std::optional<JobState> state = StateFromName(row.state);
  if (!state.has_value()) {
    return absl::DataLossError(
        absl::StrCat("job ", job.id, " has an unknown state ", row.state));
  }
  job.state = *state;
  job.priority = row.priority;
  job.revision = row.revision;
  job.lease_owner = row.lease_owner;
  job.lease_expires_ms = row.lease_expires_ms;
  job.token_owner = row.token_owner;
  job.ended = row.ended_ms == 0 ? absl::InfinitePast()
                                : absl::FromUnixMillis(row.ended_ms);
  RETURN_IF_ERROR(JobBodyFromJson(row.body, job));
  return job;
}

absl::StatusOr<std::vector<Job>> FromRows(
    const std::vector<jobs::JobRow>& rows) {
  std::vector<Job> out;
  out.reserve(rows.size());
  for (const jobs::JobRow& row : rows) {
    ASSIGN_OR_RETURN(Job job, FromRow(row));
    out.push_back(std::move(job));
  }
  return out;
}

std::vector<std::string> StateNames(const std::vector<JobState>& states) {
  std::vector<std::string> names;
  for (JobState state : states) names.push_back(std::string(StateName(state)));
  return names;
}

}  // namespace

absl::StatusOr<std::unique_ptr<JobStore>> JobStore::Open(
    const std::string& url, const std::string& replica_id, Clock* clock) {
  ASSIGN_OR_RETURN(std::unique_ptr<jobs::JobTable> table,
                   jobs::JobTable::Open(url, replica_id, Spec(), clock));
  return std::unique_ptr<JobStore>(new JobStore(std::move(table)));
}

absl::StatusOr<Job> JobStore::Create(const Job& job) {
  ASSIGN_OR_RETURN(jobs::JobRow row, table_->Create(ToRow(job)));
  return FromRow(row);
}

absl::StatusOr<Job> JobStore::Get(const std::string& id) {
  ASSIGN_OR_RETURN(jobs::JobRow row, table_->Get(id));
  return FromRow(row);
}

absl::StatusOr<std::vector<Job>> JobStore::List(
    const std::vector<JobState>& states, int64_t after_sequence, int limit) {
  ASSIGN_OR_RETURN(std::vector<jobs::JobRow> rows,
                   table_->List(StateNames(states), after_sequence, limit));
  return FromRows(rows);
}

absl::StatusOr<JobPage> JobStore::ListPage(const std::vector<JobState>& states,
                                           int page_size,
                                           const std::string& page_token) {
  ASSIGN_OR_RETURN(jobs::JobPage rows,
                   table_->ListPage(StateNames(states), page_size, page_token));
  JobPage page;
  ASSIGN_OR_RETURN(page.jobs, FromRows(rows.rows));
  page.next_page_token = std::move(rows.next_page_token);
  return page;
}

absl::StatusOr<Job> JobStore::Update(
    const std::string& id, const std::function<absl::Status(Job&)>& change) {
  ASSIGN_OR_RETURN(jobs::JobRow row,
                   table_->Update(id, [&](jobs::JobRow& row) -> absl::Status {
                     ASSIGN_OR_RETURN(Job job, FromRow(row));
                     RETURN_IF_ERROR(change(job));
                     row = ToRow(job);
                     return absl::OkStatus();
                   }));
  return FromRow(row);
}

absl::StatusOr<std::optional<Job>> JobStore::ClaimNext(
    absl::Duration lease, absl::Duration replica_ttl) {
  int64_t now_ms = absl::ToUnixMillis(clock()->Now());
  ASSIGN_OR_RETURN(
      std::optional<jobs::JobRow> row,
      table_->ClaimNext(lease, replica_ttl, [now_ms](jobs::JobRow& row) {
        // The first claim starts the job; a takeover keeps its start.
        if (row.body.value("started_ms", int64_t{0}) == 0) {
          row.body["started_ms"] = now_ms;
        }
      }));
  if (!row.has_value()) return std::optional<Job>();
  ASSIGN_OR_RETURN(Job job, FromRow(*row));
  return std::optional<Job>(std::move(job));
}

absl::StatusOr<Job> JobStore::SaveProgress(const Job& progress,
                                           absl::Duration lease, bool final) {
  ASSIGN_OR_RETURN(
      jobs::JobRow stored,
      table_->UpdateLeased(
          progress.id, [&](jobs::JobRow& row) -> absl::StatusOr<bool> {
            ASSIGN_OR_RETURN(Job current, FromRow(row));
            if (current.state != JobState::kRunning) {
              // Paused or cancelled by a request. Once the worker has
              // stopped: keep the segment progress of a paused job for its
              // resume, and give the lease up.
              if (!final) return false;
              if (current.state == JobState::kPaused) {
                current.parts = progress.parts;
              }
              row = ToRow(current);
              jobs::JobTable::ClearLease(row);
              return true;
            }
            if (progress.state != current.state &&
                !CanTransition(current.state, progress.state)) {
              return absl::FailedPreconditionError(
                  absl::StrCat("a running download cannot become ",
                               AsAbsl(StateName(progress.state))));
            }
            // Only what a worker owns changes; priority etc. stay as stored.
            current.parts = progress.parts;
            current.bytes_per_second = progress.bytes_per_second;
            current.retries = progress.retries;
            current.state = progress.state;
            current.error = progress.error;
            current.status_message = progress.status_message;
            current.ended = progress.ended;
            row = ToRow(current);
            if (IsTerminal(progress.state) ||
                progress.state == JobState::kPaused) {
              jobs::JobTable::ClearLease(row);
              row.token_owner.clear();
            } else {
              table_->RenewLease(row, lease);
            }
            return true;
          }));
  return FromRow(stored);
}

absl::Status JobStore::ReleaseLease(const std::string& id) {
  return table_->ReleaseLease(id);
}

absl::Status JobStore::ExpireAllLeases() { return table_->ExpireAllLeases(); }

absl::StatusOr<std::vector<Job>> JobStore::Prune(absl::Time ended_before) {
  ASSIGN_OR_RETURN(std::vector<jobs::JobRow> rows, table_->Prune(ended_before));
  return FromRows(rows);
}

absl::Status JobStore::Heartbeat() { return table_->Heartbeat(); }

absl::Status JobStore::Ping() { return table_->Ping(); }

}  // namespace mm::downloader
