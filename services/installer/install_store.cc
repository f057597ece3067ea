#include "services/installer/install_store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace mm::installer {
namespace {

absl::StatusOr<InstallJob> FromRow(const jobs::JobRow& row) {
  InstallJob job;
  job.id = row.id;
  job.sequence = row.sequence;
  job.request_id = row.request_id;
  std::optional<InstallState> state = StateFromName(row.state);
  if (!state) {
    return absl::DataLossError(
        absl::StrCat("install job ", row.id, ": unknown state ", row.state));
  }
  job.state = *state;
  job.revision = row.revision;
  job.lease_owner = row.lease_owner;
  job.lease_expires_ms = row.lease_expires_ms;
  job.token_owner = row.token_owner;
  RETURN_IF_ERROR(JobBodyFromJson(row.body, job));
  return job;
}

// Writes the job's fields into `row` (the columns a job may change).
void ToRow(const InstallJob& job, jobs::JobRow& row) {
  row.state = std::string(StateName(job.state));
  row.token_owner = job.token_owner;
  row.ended_ms =
      job.ended == absl::InfinitePast() ? 0 : absl::ToUnixMillis(job.ended);
  row.body = JobBodyJson(job);
}

}  // namespace

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

absl::StatusOr<std::unique_ptr<InstallStore>> InstallStore::Open(
    const std::string& url, const std::string& replica_id, Clock* clock,
    metrics::Registry* metrics) {
  ASSIGN_OR_RETURN(std::unique_ptr<jobs::JobTable> table,
                   jobs::JobTable::Open(url, replica_id, InstallTableSpec(),
                                        clock, metrics));
  return std::unique_ptr<InstallStore>(new InstallStore(std::move(table)));
}

absl::StatusOr<InstallJob> InstallStore::Create(const InstallJob& job) {
  jobs::JobRow row;
  row.id = job.id;
  row.request_id = job.request_id;
  ToRow(job, row);
  ASSIGN_OR_RETURN(jobs::JobRow stored, table_->Create(std::move(row)));
  return FromRow(stored);
}

absl::StatusOr<InstallJob> InstallStore::Get(const std::string& id) {
  ASSIGN_OR_RETURN(jobs::JobRow row, table_->Get(id));
  return FromRow(row);
}

absl::StatusOr<InstallPage> InstallStore::ListPage(
    const std::vector<InstallState>& states, int page_size,
    const std::string& page_token) {
  std::vector<std::string> names;
  for (InstallState state : states) names.emplace_back(StateName(state));
  ASSIGN_OR_RETURN(jobs::JobPage page,
                   table_->ListPage(names, page_size, page_token));
  InstallPage out;
  out.next_page_token = page.next_page_token;
  for (const jobs::JobRow& row : page.rows) {
    ASSIGN_OR_RETURN(InstallJob job, FromRow(row));
    out.jobs.push_back(std::move(job));
  }
  return out;
}

absl::StatusOr<std::vector<InstallJob>> InstallStore::Live() {
  const std::vector<std::string> live = {"waiting", "downloading",
                                         "downloads_done", "running", "paused"};
  std::vector<InstallJob> jobs;
  int64_t after = 0;
  while (true) {
    ASSIGN_OR_RETURN(std::vector<jobs::JobRow> rows,
                     table_->List(live, after, 1000));
    for (const jobs::JobRow& row : rows) {
      ASSIGN_OR_RETURN(InstallJob job, FromRow(row));
      after = row.sequence;
      jobs.push_back(std::move(job));
    }
    if (rows.size() < 1000) return jobs;
  }
}

absl::StatusOr<InstallJob> InstallStore::Update(
    const std::string& id,
    const std::function<absl::Status(InstallJob&)>& change) {
  ASSIGN_OR_RETURN(jobs::JobRow row,
                   table_->Update(id, [&](jobs::JobRow& row) -> absl::Status {
                     ASSIGN_OR_RETURN(InstallJob job, FromRow(row));
                     RETURN_IF_ERROR(change(job));
                     ToRow(job, row);
                     return absl::OkStatus();
                   }));
  return FromRow(row);
}

absl::StatusOr<InstallJob> InstallStore::SaveLeased(
    const std::string& id, absl::Duration lease,
    const std::function<absl::StatusOr<bool>(InstallJob&)>& change) {
  ASSIGN_OR_RETURN(
      jobs::JobRow row,
      table_->UpdateLeased(id, [&](jobs::JobRow& row) -> absl::StatusOr<bool> {
        ASSIGN_OR_RETURN(InstallJob job, FromRow(row));
        ASSIGN_OR_RETURN(bool write, change(job));
        if (!write) return false;
        ToRow(job, row);
        table_->RenewLease(row, lease);
        return true;
      }));
  return FromRow(row);
}

absl::StatusOr<std::optional<InstallJob>> InstallStore::ClaimNext(
    absl::Duration lease, absl::Duration replica_ttl) {
  ASSIGN_OR_RETURN(std::optional<jobs::JobRow> row,
                   table_->ClaimNext(lease, replica_ttl));
  if (!row) return std::nullopt;
  ASSIGN_OR_RETURN(InstallJob job, FromRow(*row));
  return job;
}

absl::Status InstallStore::ReleaseLease(const std::string& id) {
  return table_->ReleaseLease(id);
}

absl::Status InstallStore::ExpireAllLeases() {
  return table_->ExpireAllLeases();
}

absl::StatusOr<std::vector<InstallJob>> InstallStore::Prune(
    absl::Time ended_before) {
  ASSIGN_OR_RETURN(std::vector<jobs::JobRow> rows, table_->Prune(ended_before));
  std::vector<InstallJob> jobs;
  for (const jobs::JobRow& row : rows) {
    ASSIGN_OR_RETURN(InstallJob job, FromRow(row));
    jobs.push_back(std::move(job));
  }
  return jobs;
}

absl::Status InstallStore::Heartbeat() { return table_->Heartbeat(); }
absl::Status InstallStore::Ping() { return table_->Ping(); }

}  // namespace mm::installer
