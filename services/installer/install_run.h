// InstallRun: one install job worked on by one thread of the InstallWorker
// (install_worker.h), from the step the job reached (install_job.h) to the
// end of the job or of this replica's hold on it. Its code lies in three
// files, one a phase:
//
// - install_run.cc: the step machine (which step runs next), saving under
//   the lease, backoff while a dependency is down, failing a job, the
//   wind-down when a run stops, and the lease keeper for long steps.
// - install_run_download.cc: the remote phase: plan the source, create one
//   downloader job into the temporary folder, follow it (mirroring its
//   progress), resume it after a pause.
// - install_run_register.cc: the local phase: probe and hash, refuse a
//   model already installed, place the files, register the record, clean
//   up.
//
// Every step ends with a Save that records the next step, so a run that
// stops anywhere (a kill, a lost lease, a pause) is taken up again from its
// step by a later claim.
//
// Thread-safety: a run is used by its own thread only; LeaseKeeper renews
// the lease from a second thread, touching only the store.
#ifndef MM_SERVICES_INSTALLER_INSTALL_RUN_H_
#define MM_SERVICES_INSTALLER_INSTALL_RUN_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/mutex.h"
#include "model/hashing.h"
#include "modelmanager/v1/downloader.pb.h"
#include "nlohmann/json.hpp"
#include "services/installer/install_job.h"
#include "services/installer/install_store.h"
#include "services/installer/install_worker.h"

namespace mm::installer {

// A test hook: with MM_INSTALLER_FAILPOINT=<point> in its environment the
// process kills itself with SIGKILL (as `kill -9` would, nothing flushed or
// released) when a run reaches that point, so the end-to-end tests stop an
// install exactly between two of its steps and check that a restart
// finishes it. The points: "hashing", "after-place", "before-register",
// "after-register". Unset, it costs one comparison.
void Failpoint(std::string_view point);

// Renews a job's lease from a second thread, every third of the lease,
// while a long step (hashing, a copy across filesystems) blocks the run's
// thread; stops when destroyed.
class LeaseKeeper {
 public:
  LeaseKeeper(InstallStore* store, std::string job_id, absl::Duration lease);
  ~LeaseKeeper();

 private:
  void Renew() ABSL_LOCKS_EXCLUDED(mu_);

  InstallStore* const store_;
  const std::string job_id_;
  const absl::Duration lease_;
  Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

class InstallRun {
 public:
  // `superseded`: set by the worker when this replica claimed the job
  // again while this run was still going (see InstallWorker::ClaimOne).
  InstallRun(InstallWorker* worker, InstallJob job,
             std::shared_ptr<const std::atomic<bool>> superseded);

  // Runs steps until the job ends or is no longer this run's, then winds
  // down (Finish).
  void Run();

 private:
  // What a step asks of the loop: go on with the job's (saved) next step,
  // or stop, because the job moved on without this run (cancelled, paused,
  // finished, taken over) or the worker is stopping.
  enum class Outcome { kContinue, kStop };

  // ---- the step machine (install_run.cc) ----
  Outcome Step();
  // Whether this replica still works on the job: it holds the lease and
  // nobody paused, cancelled or finished it.
  bool Active() const;
  // Applies `change` to the stored job while it is ours, renewing the
  // lease; kStop when the job is no longer ours to work on.
  Outcome Save(const std::function<absl::Status(InstallJob&)>& change);
  // A dependency (`what`) is down: say so in the job, wait, try again.
  Outcome Backoff(const std::string& what, const absl::Status& status);
  // Ends the job in ERROR of `type`: nothing registered, nothing left in
  // the models folder by this job.
  Outcome Fail(const absl::Status& status, const std::string& type);
  // Backoff when `status` is UNAVAILABLE (the dependency may come back),
  // Fail otherwise.
  Outcome Retryable(const absl::Status& status, const std::string& what,
                    const std::string& type);
  // The job's token ("" for a job without one). A job whose token was held
  // by a replica that is gone pauses for it: nullopt, and `outcome` says
  // what the step returns.
  std::optional<std::string> Token(Outcome& outcome);
  // At the end of a run: a cancelled job loses its download and temporary
  // folder; a paused one pauses its download; a job still ours gives up
  // its lease so another claim (here or elsewhere) can take it.
  void Finish();

  // ---- the remote phase (install_run_download.cc) ----
  Outcome PlanStep();
  Outcome DownloadStep();
  Outcome StartDownload(const std::string& token);
  // A job resumed after a pause: its download goes on where it stopped.
  Outcome ResumeDownload(const std::string& token);
  // Follows the download for one watch slice, mirroring its progress.
  Outcome FollowDownload();
  // The download reached `download`'s state (an end, or paused).
  Outcome DownloadSettled(const modelmanager::v1::DownloadJob& download);
  Outcome DownloadsComplete(const modelmanager::v1::DownloadJob& download);

  // ---- the local phase (install_run_register.cc) ----
  Outcome IdentifyStep();
  // The job shows it is running (spec §8's `started`), once.
  Outcome MarkStarted();
  // The options of the hash, with the digests the downloader verified.
  model::HashOptions HashOptionsFor() const;
  Outcome PlaceStep();
  // The record to register: the identified config and where it came from.
  nlohmann::json RecordConfig() const;
  Outcome RegisterStep();
  Outcome CleanupStep();

  InstallWorker* const worker_;
  const WorkerDeps& deps_;
  const WorkerOptions& options_;
  Clock* const clock_;
  const std::shared_ptr<const std::atomic<bool>> superseded_;
  InstallJob job_;
  // Failed tries of the current step (the backoff grows with it).
  int attempts_ = 0;
};

}  // namespace mm::installer

#endif  // MM_SERVICES_INSTALLER_INSTALL_RUN_H_
