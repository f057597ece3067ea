// The worker side of the installer: claims install jobs from the
// InstallStore (at most max_parallel at once per replica), runs each on its
// own thread step by step (an InstallRun, install_run.h), and keeps the
// job's lease while it works. A dependency that is down (records, downloader,
// hub) makes the job wait and retry with backoff, saying what it waits for; it
// does not fail the install. A cancel or pause, from any replica, is seen at
// the next save.
//
//   InstallWorker worker(&deps, options);
//   worker.Start();
//   ...
//   worker.Stop();   // running jobs keep their step; another claim resumes
//
// Thread-safety: Start/Stop/Wake may be called from any thread.
#ifndef MM_SERVICES_INSTALLER_INSTALL_WORKER_H_
#define MM_SERVICES_INSTALLER_INSTALL_WORKER_H_

#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/time/time.h"
#include "common/mutex.h"
#include "model/hashing.h"
#include "services/installer/install_store.h"
#include "services/installer/service_clients.h"
#include "services/installer/source_resolver.h"
#include "services/installer/tokens.h"

namespace mm::installer {

struct WorkerOptions {
  std::filesystem::path models_dir;
  // How installed models are hashed (--hash-algo).
  model::HashOptions hash;
  // Jobs worked on at once by this replica. Installs spend most of their
  // time in the downloader or reading disk, so a few are enough.
  int max_parallel = 4;
  // A claimed job's lease, renewed while the worker works on it; a replica
  // that dies loses its jobs to another replica after this long.
  absl::Duration lease = absl::Seconds(30);
  // A replica without a heartbeat for this long no longer keeps the jobs
  // whose token only it holds.
  absl::Duration replica_ttl = absl::Seconds(60);
  // Backoff while a dependency is down: base * 2^(n-1), capped well under
  // the lease so the lease is renewed between tries.
  absl::Duration retry_base_delay = absl::Seconds(1);
  absl::Duration retry_max_delay = absl::Seconds(8);
  // Longest between two saves of download progress.
  absl::Duration progress_interval = absl::Milliseconds(250);
};

// What a worker talks to; every pointer outlives the worker.
struct WorkerDeps {
  InstallStore* store = nullptr;
  SourceResolver* resolver = nullptr;
  RecordsClient* records = nullptr;
  DownloaderClient* downloader = nullptr;
  TokenCache* tokens = nullptr;
};

class InstallWorker {
 public:
  InstallWorker(WorkerDeps deps, WorkerOptions options);
  ~InstallWorker();

  // Starts claiming work.
  void Start() ABSL_LOCKS_EXCLUDED(mu_);
  // Stops claiming; running jobs stop at their next step boundary and
  // release their lease. Blocks until every job thread has ended.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);
  // Something may be claimable (a job was created or resumed).
  void Wake() ABSL_LOCKS_EXCLUDED(mu_);

  bool stopping() const ABSL_LOCKS_EXCLUDED(mu_);
  const WorkerDeps& deps() const { return deps_; }
  const WorkerOptions& options() const { return options_; }

 private:
  void Schedule() ABSL_LOCKS_EXCLUDED(mu_);
  // Claims a job and starts its run (install_run.h) when a slot is free;
  // whether it did.
  bool ClaimOne() ABSL_LOCKS_EXCLUDED(mu_);
  // For a job claimed again while an earlier run of it (claim `previous`)
  // was still going: waits for that run to end, then reads `job` again
  // from the store; false when it cannot be read (the job is left to a
  // later claim).
  bool AfterPreviousRun(uint64_t previous, InstallJob& job)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Joins the threads of runs that ended.
  void Reap() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const WorkerDeps deps_;
  const WorkerOptions options_;

  mutable Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int64_t wakes_ ABSL_GUARDED_BY(mu_) = 0;
  struct Running {
    std::thread thread;
    bool finished = false;
    std::string job_id;
    // Set when this replica claimed the job again while the run was still
    // going (its lease lapsed while it waited for the job database): the
    // run stops at its next step and leaves the job to the new run.
    std::shared_ptr<std::atomic<bool>> superseded =
        std::make_shared<std::atomic<bool>>(false);
  };
  // Keyed by claim number: a job paused and resumed at once can have a
  // winding-down run and a new one for a moment.
  std::map<uint64_t, Running> running_ ABSL_GUARDED_BY(mu_);
  uint64_t claims_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread scheduler_;
};

}  // namespace mm::installer

#endif  // MM_SERVICES_INSTALLER_INSTALL_WORKER_H_
