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

}  // namespace

std::string DownloadJobCodec::StateName(JobState state) {
  return std::string(downloader::StateName(state));
}

std::optional<JobState> DownloadJobCodec::StateFromName(std::string_view name) {
  return downloader::StateFromName(name);
}

bool DownloadJobCodec::IsTerminal(JobState state) {
  return downloader::IsTerminal(state);
}

absl::StatusOr<std::unique_ptr<JobStore>> JobStore::Open(
    const std::string& url, const std::string& replica_id, Clock* clock,
    metrics::Registry* metrics) {
  ASSIGN_OR_RETURN(
      std::unique_ptr<jobs::JobTable> table,
      jobs::JobTable::Open(url, replica_id, Spec(), clock, metrics));
  return std::unique_ptr<JobStore>(new JobStore(std::move(table)));
}

absl::StatusOr<Job> JobStore::Create(const Job& job) {
  return table_.Create(job);
}

absl::StatusOr<Job> JobStore::Get(const std::string& id) {
  return table_.Get(id);
}

absl::StatusOr<std::vector<Job>> JobStore::List(
    const std::vector<JobState>& states, int64_t after_sequence, int limit) {
  return table_.List(states, after_sequence, limit);
}

absl::StatusOr<JobPage> JobStore::ListPage(const std::vector<JobState>& states,
                                           int page_size,
                                           const std::string& page_token) {
  return table_.ListPage(states, page_size, page_token);
}

absl::StatusOr<Job> JobStore::Update(
    const std::string& id, const std::function<absl::Status(Job&)>& change) {
  return table_.Update(id, change);
}

absl::StatusOr<std::optional<Job>> JobStore::ClaimNext(
    absl::Duration lease, absl::Duration replica_ttl) {
  absl::Time now = clock()->Now();
  return table_.ClaimNext(lease, replica_ttl, [now](Job& job) {
    // The first claim starts the job; a takeover keeps its start.
    if (job.started == absl::InfinitePast()) job.started = now;
  });
}

absl::StatusOr<Job> JobStore::SaveProgress(const Job& progress,
                                           absl::Duration lease, bool final) {
  // The job comes with its lease renewed; a worker that stops gives it up.
  return table_.UpdateLeased(
      progress.id, lease, [&](Job& current) -> absl::StatusOr<bool> {
        if (current.state != JobState::kRunning) {
          // Paused or cancelled by a request. Once the worker has stopped:
          // keep the segment progress of a paused job for its resume, and
          // give the lease up.
          if (!final) return false;
          if (current.state == JobState::kPaused) {
            current.parts = progress.parts;
          }
          current.lease_owner.clear();
          current.lease_expires_ms = 0;
          return true;
        }
        if (progress.state != current.state &&
            !CanTransition(current.state, progress.state)) {
          return absl::FailedPreconditionError(
              absl::StrCat("a running download cannot become ",
                           AsAbsl(downloader::StateName(progress.state))));
        }
        // Only what a worker owns changes; priority etc. stay as stored.
        current.parts = progress.parts;
        current.bytes_per_second = progress.bytes_per_second;
        current.retries = progress.retries;
        current.state = progress.state;
        current.error = progress.error;
        current.status_message = progress.status_message;
        current.ended = progress.ended;
        if (IsTerminal(progress.state) || progress.state == JobState::kPaused) {
          current.lease_owner.clear();
          current.lease_expires_ms = 0;
          current.token_owner.clear();
        }
        return true;
      });
}

absl::Status JobStore::ReleaseLease(const std::string& id) {
  return table_.ReleaseLease(id);
}

absl::Status JobStore::ExpireAllLeases() { return table_.ExpireAllLeases(); }

absl::StatusOr<std::vector<Job>> JobStore::Prune(absl::Time ended_before) {
  return table_.Prune(ended_before);
}

absl::Status JobStore::Heartbeat() { return table_.Heartbeat(); }

absl::Status JobStore::Ping() { return table_.Ping(); }

absl::StatusOr<Job> JobStore::Wait(const jobs::Follower& follower,
                                   const std::string& id,
                                   const jobs::FollowOptions& options) {
  return table_.Wait(follower, id, options);
}

absl::Status JobStore::Watch(const jobs::Follower& follower,
                             const std::string& id, int64_t since_revision,
                             const std::function<bool(const Job&)>& send,
                             const jobs::FollowOptions& options) {
  return table_.Watch(follower, id, since_revision, send, options);
}

}  // namespace mm::downloader
