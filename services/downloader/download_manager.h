// DownloadManager: the downloader's logic over the JobStore, free of gRPC
// (the rpc layer, downloader_service.h, only converts messages): validates
// requests (URLs against the address policy, names, destinations inside
// the download roots, free space), makes job ids, applies requests to jobs
// through the state machine (CanTransition in job.h), lists, prunes, and
// follows jobs for Wait and Watch (common/jobs/follow.h). Any replica
// answers for every job: the state lives in the store.
//
//   DownloadManager manager(store, tokens, roots, policy,
//                           [&engine] { engine.Wake(); });
//   ASSIGN_OR_RETURN(Job job, manager.Create(request));
//   ASSIGN_OR_RETURN(job, manager.Apply(job.id, Action::kPause));
//
// Thread-safety: every method may be called concurrently.
#ifndef MM_SERVICES_DOWNLOADER_DOWNLOAD_MANAGER_H_
#define MM_SERVICES_DOWNLOADER_DOWNLOAD_MANAGER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/http/address_policy.h"
#include "common/jobs/follow.h"
#include "modelmanager/v1/downloader.pb.h"
#include "services/downloader/job.h"
#include "services/downloader/job_store.h"
#include "services/downloader/paths.h"
#include "services/downloader/tokens.h"

namespace mm::downloader {

// Most files one multi-file download may have.
inline constexpr int kMaxFilesPerDownload = 100000;

class DownloadManager {
 public:
  // What a request does to a job.
  enum class Action { kStart, kPause, kResume, kCancel };

  // `store` and `tokens` must outlive the manager. `wake_worker` is called
  // after every change a worker should act on (a new job, a pause, ...).
  DownloadManager(JobStore* store, TokenProvider* tokens, DownloadRoots roots,
                  std::shared_ptr<const http::AddressPolicy> policy,
                  std::function<void()> wake_worker);

  // Ends every Wait and Watch promptly (UNAVAILABLE; before draining).
  void Shutdown() { follower_.Shutdown(); }

  // Validates `request` and adds its job (or returns the job an earlier
  // request with the same request_id made).
  absl::StatusOr<Job> Create(
      const modelmanager::v1::CreateDownloadRequest& request);
  absl::StatusOr<Job> Get(const std::string& id);
  // One page of jobs in submission order (common/paging.h's policy).
  absl::StatusOr<JobPage> List(const std::vector<JobState>& states,
                               int page_size, const std::string& page_token);
  // Applies `action` to one job: FAILED_PRECONDITION when the job's state
  // does not allow it (naming the state). Resume with a `token` gives the
  // job a new access token. Pausing a paused job changes nothing.
  absl::StatusOr<Job> Apply(const std::string& id, Action action,
                            const std::string& token = "");
  // Applies `action` to every job it can apply to now; returns those it
  // changed (jobs that moved on meanwhile are skipped).
  absl::StatusOr<std::vector<Job>> ApplyToAll(Action action);
  // Deletes finished jobs that ended before `ended_before`; returns how
  // many.
  absl::StatusOr<int64_t> Prune(absl::Time ended_before);

  // Waits until the job is done or paused, or `deadline`
  // (DEADLINE_EXCEEDED naming its state). `cancelled` says whether the
  // client went away.
  absl::StatusOr<Job> Wait(const std::string& id, absl::Time deadline,
                           std::function<bool()> cancelled);
  // Sends the job (`send` returns false once the client is gone) as it
  // changes: a snapshot (or nothing until its revision passes
  // `since_revision`), then the latest state after each change, until it is
  // done (DESIGN §2).
  absl::Status Watch(const std::string& id, int64_t since_revision,
                     const std::function<bool(const Job&)>& send,
                     std::function<bool()> cancelled);

 private:
  absl::StatusOr<Job> BuildJob(
      const modelmanager::v1::CreateDownloadRequest& request);

  JobStore* const store_;
  TokenProvider* const tokens_;
  const DownloadRoots roots_;
  const std::shared_ptr<const http::AddressPolicy> policy_;
  const std::function<void()> wake_worker_;
  jobs::Follower follower_;
};

}  // namespace mm::downloader

#endif  // MM_SERVICES_DOWNLOADER_DOWNLOAD_MANAGER_H_
