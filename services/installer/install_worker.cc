#include "services/installer/install_worker.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "common/strings.h"
#include "model/probe.h"
#include "services/installer/placement.h"

namespace mm::installer {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::modelmanager::v1;

// How often the scheduler looks for work without a wake (a job another
// replica made claimable, a lease that expired).
constexpr absl::Duration kSchedulePoll = absl::Seconds(1);
// How long one Watch of a download runs before it is renewed: well under
// the lease, which each renewal also renews.
constexpr absl::Duration kWatchSlice = absl::Seconds(5);

// A test hook: with MM_INSTALLER_FAILPOINT=<point> in its environment the
// process kills itself with SIGKILL (as `kill -9` would, nothing flushed or
// released) when a run reaches that point, so the end-to-end tests stop an
// install exactly between two of its steps and check that a restart
// finishes it. The points: "hashing", "after-place", "before-register",
// "after-register". Unset, it costs one comparison.
void Failpoint(std::string_view point) {
  static const char* const configured = std::getenv("MM_INSTALLER_FAILPOINT");
  if (configured != nullptr && point == configured) {
    MM_LOG(WARNING) << "failpoint " << point << ": killing this process";
    ::kill(::getpid(), SIGKILL);
  }
}

// What stops a run: the job moved on without it (cancelled, paused, taken
// over), or the worker is stopping.
enum class Outcome { kContinue, kStop };

}  // namespace

// One job's run on its own thread.
class InstallRun {
 public:
  InstallRun(InstallWorker* worker, InstallJob job,
             std::shared_ptr<const std::atomic<bool>> superseded)
      : worker_(worker),
        deps_(worker->deps()),
        options_(worker->options()),
        clock_(deps_.store->clock()),
        superseded_(std::move(superseded)),
        job_(std::move(job)) {}

  void Run() {
    MM_LOG(INFO) << "install " << job_.id << ": working from step "
                 << StepName(job_.step) << " (" << job_.source << ")";
    while (Step() == Outcome::kContinue) {
    }
    Finish();
  }

 private:
  // ---- saving ----

  // Whether this replica still works on the job: it holds the lease and
  // nobody paused, cancelled or finished it.
  bool Active() const {
    return job_.lease_owner == deps_.store->replica_id() &&
           !IsTerminal(job_.state) && job_.state != InstallState::kPaused;
  }

  // Applies `change` to the stored job while it is ours, renewing the lease;
  // kStop when the job is no longer ours to work on.
  Outcome Save(const std::function<absl::Status(InstallJob&)>& change) {
    absl::Status change_status;
    absl::StatusOr<InstallJob> saved = deps_.store->SaveLeased(
        job_.id, options_.lease,
        [&](InstallJob& stored) -> absl::StatusOr<bool> {
          if (IsTerminal(stored.state) ||
              stored.state == InstallState::kPaused) {
            return false;
          }
          change_status = change(stored);
          return change_status.ok();
        });
    if (!saved.ok()) {
      // The job database is away: keep the in-memory job and try again
      // after a pause (the lease may lapse; then another worker resumes).
      MM_LOG(WARNING) << "install " << job_.id
                      << ": cannot save progress: " << saved.status();
      return Backoff("the job database", saved.status());
    }
    job_ = *std::move(saved);
    if (!change_status.ok()) {
      MM_LOG(ERROR) << "install " << job_.id << ": " << change_status;
      return Fail(change_status, "InvalidStateTransition");
    }
    return Active() ? Outcome::kContinue : Outcome::kStop;
  }

  Outcome Advance(InstallStep step) {
    return Save([&](InstallJob& job) {
      job.step = step;
      return absl::OkStatus();
    });
  }

  // A dependency is down: say so in the job, wait, and try again.
  Outcome Backoff(const std::string& what, const absl::Status& status) {
    ++attempts_;
    absl::Duration delay = options_.retry_base_delay;
    for (int i = 1; i < attempts_ && delay < options_.retry_max_delay; ++i) {
      delay *= 2;
    }
    delay = std::min(delay, options_.retry_max_delay);
    const std::string message =
        absl::StrCat("waiting for ", what, " (", absl::FormatDuration(delay),
                     "): ", SafeForMessage(AsStd(status.message()), 300));
    if (status.code() != absl::StatusCode::kUnavailable ||
        what != "the job database") {
      absl::StatusOr<InstallJob> saved = deps_.store->SaveLeased(
          job_.id, options_.lease,
          [&](InstallJob& stored) -> absl::StatusOr<bool> {
            if (IsTerminal(stored.state) ||
                stored.state == InstallState::kPaused) {
              return false;
            }
            stored.status_message = message;
            return true;
          });
      if (saved.ok()) {
        job_ = *std::move(saved);
        if (!Active()) return Outcome::kStop;
      }
    }
    clock_->SleepFor(delay);
    return worker_->stopping() ? Outcome::kStop : Outcome::kContinue;
  }

  // Ends the job in ERROR: nothing registered, nothing left in the models
  // folder by this job.
  Outcome Fail(const absl::Status& status, const std::string& type) {
    RemoveTemporary();
    CancelDownload();
    Save([&](InstallJob& job) {
      RETURN_IF_ERROR(job.TransitionTo(InstallState::kError, clock_->Now()));
      job.error = InstallError{status.code(), type,
                               SafeForMessage(AsStd(status.message()), 2000)};
      job.status_message.clear();
      job.AddEvent("error", clock_->Now());
      return absl::OkStatus();
    });
    MM_LOG(WARNING) << "install " << job_.id << " failed: " << type << ": "
                    << status;
    return Outcome::kStop;
  }

  Outcome Retryable(const absl::Status& status, const std::string& what,
                    const std::string& type) {
    if (status.code() == absl::StatusCode::kUnavailable) {
      return Backoff(what, status);
    }
    return Fail(status, type);
  }

  void RemoveTemporary() {
    if (job_.temp_dir.empty()) return;
    std::error_code error;
    fs::remove_all(job_.temp_dir, error);
    if (error) {
      MM_LOG(WARNING) << "install " << job_.id << ": cannot remove "
                      << job_.temp_dir << ": " << error.message();
    }
  }

  void CancelDownload() {
    if (job_.download_id.empty()) return;
    absl::StatusOr<v1::DownloadJob> cancelled =
        deps_.downloader->Cancel(job_.download_id);
    if (!cancelled.ok() &&
        cancelled.status().code() != absl::StatusCode::kFailedPrecondition) {
      MM_LOG(WARNING) << "install " << job_.id << ": cannot cancel download "
                      << job_.download_id << ": " << cancelled.status();
    }
  }

  // ---- the steps ----

  Outcome Step() {
    if (worker_->stopping()) return Outcome::kStop;
    if (superseded_->load()) {
      MM_LOG(INFO) << "install " << job_.id
                   << ": claimed again by this replica; this run stops";
      return Outcome::kStop;
    }
    if (!Active()) return Outcome::kStop;
    switch (job_.step) {
      case InstallStep::kPlan:
        return PlanStep();
      case InstallStep::kDownload:
        return DownloadStep();
      case InstallStep::kIdentify:
        return IdentifyStep();
      case InstallStep::kPlace:
        return PlaceStep();
      case InstallStep::kRegister:
        return RegisterStep();
      case InstallStep::kCleanup:
        return CleanupStep();
      case InstallStep::kDone:
        return Outcome::kStop;
    }
    return Outcome::kStop;
  }

  // The job's token, when it has one and this replica holds it. A job that
  // had a token whose replica is gone pauses for it.
  std::optional<std::string> Token(Outcome& outcome) {
    outcome = Outcome::kContinue;
    if (!job_.has_token) return std::string();
    if (std::optional<std::string> token = deps_.tokens->Get(job_.id)) {
      return token;
    }
    outcome = Save([&](InstallJob& job) {
      RETURN_IF_ERROR(job.TransitionTo(InstallState::kPaused, clock_->Now()));
      job.status_message =
          "needs its access token again (the replica that held it "
          "restarted): resume it with the token";
      return absl::OkStatus();
    });
    outcome = Outcome::kStop;
    return std::nullopt;
  }

  Outcome PlanStep() {
    if (!job_.remote()) {
      return Save([&](InstallJob& job) {
        job.model_path = job.plan.local_path;
        job.step = InstallStep::kIdentify;
        return absl::OkStatus();
      });
    }
    Outcome outcome;
    std::optional<std::string> token = Token(outcome);
    if (!token) return outcome;
    absl::StatusOr<ResolvedSource> source = deps_.resolver->Parse(job_.source);
    if (!source.ok()) return Fail(source.status(), "InvalidSource");
    absl::StatusOr<InstallPlan> plan = deps_.resolver->Plan(*source, *token);
    if (!plan.ok()) {
      return Retryable(
          plan.status(), "the Hugging Face hub",
          absl::StrCat("HubError(",
                       absl::StatusCodeToString(plan.status().code()), ")"));
    }
    attempts_ = 0;
    return Save([&](InstallJob& job) {
      job.plan = *plan;
      job.total_bytes = plan->TotalBytes();
      job.parts.clear();
      for (const PlannedFile& file : plan->files) {
        job.parts.push_back(
            {file.path.empty() ? file.url : file.path, 0, file.size, false});
      }
      job.status_message.clear();
      job.step = InstallStep::kDownload;
      return absl::OkStatus();
    });
  }

  v1::CreateDownloadRequest DownloadRequest(const std::string& token) const {
    v1::CreateDownloadRequest request =
        DownloadRequestFor(job_.plan, job_.temp_dir, token);
    // The same id after a restart: the downloader returns the job it made.
    request.set_request_id(absl::StrCat("install:", job_.id));
    return request;
  }

  // Mirrors the download's progress into the install job.
  void Mirror(const v1::DownloadJob& download, InstallJob& job) {
    job.bytes = download.bytes();
    job.total_bytes = download.total_bytes();
    job.download_revision = download.revision();
    job.parts.clear();
    for (const v1::PartProgress& part : download.parts()) {
      job.parts.push_back(
          {part.name(), part.bytes(), part.total_bytes(), part.done()});
    }
  }

  Outcome DownloadStep() {
    Outcome outcome;
    std::optional<std::string> token = Token(outcome);
    if (!token) return outcome;
    if (job_.download_id.empty()) {
      std::error_code error;
      fs::create_directories(job_.temp_dir, error);
      if (error) {
        return Fail(
            absl::InternalError(absl::StrCat("cannot create ", job_.temp_dir,
                                             ": ", error.message())),
            "OSError");
      }
      absl::StatusOr<v1::DownloadJob> download =
          deps_.downloader->Create(DownloadRequest(*token));
      if (!download.ok()) {
        return Retryable(download.status(), "the downloader",
                         "DownloadRefused");
      }
      attempts_ = 0;
      const absl::Time now = clock_->Now();
      return Save([&](InstallJob& job) {
        job.download_id = download->id();
        if (job.state == InstallState::kWaiting) {
          RETURN_IF_ERROR(job.TransitionTo(InstallState::kDownloading, now));
        }
        if (job.started == absl::InfinitePast()) job.started = now;
        job.AddEvent("download_started", now);
        Mirror(*download, job);
        return absl::OkStatus();
      });
    }
    if (job_.state == InstallState::kWaiting) {
      // Resumed after a pause: the download goes on where it stopped.
      absl::StatusOr<v1::DownloadJob> download =
          deps_.downloader->Get(job_.download_id);
      if (!download.ok()) {
        return Retryable(download.status(), "the downloader", "DownloadLost");
      }
      if (download->state() == v1::DOWNLOAD_STATE_PAUSED) {
        absl::StatusOr<v1::DownloadJob> resumed =
            deps_.downloader->Resume(job_.download_id, *token);
        if (!resumed.ok() &&
            resumed.status().code() != absl::StatusCode::kFailedPrecondition) {
          return Retryable(resumed.status(), "the downloader", "DownloadLost");
        }
      }
      Outcome moved = Save([&](InstallJob& job) {
        return job.TransitionTo(InstallState::kDownloading, clock_->Now());
      });
      // kContinue with the state unchanged: the job database was away and
      // the move is not saved; run the step again rather than go on from a
      // state the store does not have (as in IdentifyStep).
      if (moved == Outcome::kStop || job_.state != InstallState::kDownloading) {
        return moved;
      }
    }
    return FollowDownload();
  }

  Outcome FollowDownload() {
    std::optional<v1::DownloadJob> last;
    absl::Time last_save = clock_->Now();
    Outcome outcome = Outcome::kContinue;
    absl::Status watched = deps_.downloader->Watch(
        job_.download_id, job_.download_revision, kWatchSlice,
        [&](const v1::DownloadJob& download) {
          last = download;
          const absl::Time now = clock_->Now();
          if (download.done() ||
              download.state() == v1::DOWNLOAD_STATE_PAUSED ||
              now - last_save >= options_.progress_interval) {
            last_save = now;
            outcome = Save([&](InstallJob& job) {
              Mirror(download, job);
              job.status_message.clear();
              if (!download.done()) job.AddEvent("download_progress", now);
              return absl::OkStatus();
            });
          }
          return outcome == Outcome::kContinue && !worker_->stopping() &&
                 !download.done() &&
                 download.state() != v1::DOWNLOAD_STATE_PAUSED;
        });
    if (outcome == Outcome::kStop) return Outcome::kStop;
    if (!last && watched.ok()) {
      // The stream ends OK without a message when the download finished at
      // the revision this job had already recorded (a replica saved it,
      // then went away before its next step): read the download instead.
      // Seen in tests/e2e/cluster_test.cc, where this was "DownloadLost: OK".
      absl::StatusOr<v1::DownloadJob> download =
          deps_.downloader->Get(job_.download_id);
      if (!download.ok()) {
        return Retryable(download.status(), "the downloader", "DownloadLost");
      }
      last = *std::move(download);
    }
    if (!last) {
      if (watched.code() == absl::StatusCode::kDeadlineExceeded) {
        return Save([](InstallJob&) { return absl::OkStatus(); });
      }
      if (watched.code() == absl::StatusCode::kNotFound) {
        // The downloader forgot the job (pruned, or another database):
        // make it again; the files already there are kept.
        return Save([](InstallJob& job) {
          job.download_id.clear();
          job.download_revision = 0;
          return absl::OkStatus();
        });
      }
      return Retryable(watched, "the downloader", "DownloadLost");
    }
    attempts_ = 0;
    switch (last->state()) {
      case v1::DOWNLOAD_STATE_SUCCEEDED:
        return DownloadsComplete(*last);
      case v1::DOWNLOAD_STATE_FAILED: {
        const v1::JobError& error = last->error();
        return Fail(
            absl::Status(StatusCodeFromName(error.code()), error.message()),
            error.type().empty() ? "DownloadError" : error.type());
      }
      case v1::DOWNLOAD_STATE_CANCELLED:
        return Fail(absl::AbortedError(
                        absl::StrCat("its download ", job_.download_id,
                                     " was cancelled in the downloader")),
                    "DownloadCancelled");
      case v1::DOWNLOAD_STATE_PAUSED:
        // Paused in the downloader (by a person, or for a token): the
        // install shows it and waits for ResumeInstall.
        return Save([&](InstallJob& job) {
          RETURN_IF_ERROR(
              job.TransitionTo(InstallState::kPaused, clock_->Now()));
          job.status_message =
              last->status_message().empty()
                  ? std::string("its download was paused")
                  : absl::StrCat("its download: ", last->status_message());
          return absl::OkStatus();
        });
      default:
        return Outcome::kContinue;  // the slice ended; watch again
    }
  }

  Outcome DownloadsComplete(const v1::DownloadJob& download) {
    std::string model_path = download.final_path();
    if (job_.source_type == "hf_repo_id") {
      model_path = (fs::path(job_.temp_dir) / job_.plan.model_entry).string();
    }
    return Save([&](InstallJob& job) {
      Mirror(download, job);
      job.model_path = model_path;
      RETURN_IF_ERROR(
          job.TransitionTo(InstallState::kDownloadsDone, clock_->Now()));
      job.AddEvent("downloads_complete", clock_->Now());
      job.step = InstallStep::kIdentify;
      return absl::OkStatus();
    });
  }

  // Digests the downloader verified: the plan's SHA-256 of each file.
  model::HashOptions HashOptionsFor() const {
    model::HashOptions options = options_.hash;
    if (options.algorithm != model::HashAlgorithm::kSha256) return options;
    std::map<std::string, std::string> known;
    for (const PlannedFile& file : job_.plan.files) {
      if (file.sha256.empty() || file.path.empty()) continue;
      known[(fs::path(job_.temp_dir) / file.path).lexically_normal().string()] =
          file.sha256;
    }
    if (known.empty()) return options;
    options.known_hex =
        [known](const fs::path& path) -> std::optional<std::string> {
      auto it = known.find(path.lexically_normal().string());
      if (it == known.end()) return std::nullopt;
      return it->second;
    };
    return options;
  }

  Outcome IdentifyStep() {
    const absl::Time now = clock_->Now();
    if (job_.state != InstallState::kRunning) {
      Outcome moved = Save([&](InstallJob& job) {
        RETURN_IF_ERROR(job.TransitionTo(InstallState::kRunning, now));
        if (job.started == absl::InfinitePast()) job.started = now;
        job.AddEvent("started", now);
        job.status_message = "probing and hashing";
        return absl::OkStatus();
      });
      // Not saved (the job database was away): try the move again. Going
      // on would register the model and then fail the job, since the store
      // still says DOWNLOADS_DONE, which cannot become COMPLETED (seen in
      // tests/e2e/cluster_test.cc with PostgreSQL restarted mid-install).
      if (moved == Outcome::kStop || job_.state != InstallState::kRunning) {
        return moved;
      }
    }
    model::ProbeOptions probe;
    probe.overrides = job_.config_in;
    probe.hash = HashOptionsFor();
    absl::StatusOr<nlohmann::json> config;
    Failpoint("hashing");
    {
      LeaseKeeper keeper(this);  // hashing a large model takes a while
      config = model::Probe(job_.model_path, probe);
    }
    if (!config.ok()) {
      return Fail(config.status(), "InvalidModelConfig");
    }
    const std::string hash = config->value("hash", "");
    absl::StatusOr<std::optional<v1::Model>> existing =
        deps_.records->FindByHash(hash);
    if (!existing.ok()) {
      return Retryable(existing.status(), "the records service",
                       "RecordsError");
    }
    if (*existing && (*existing)->key() != job_.key) {
      return Fail(absl::AlreadyExistsError(absl::StrCat(
                      "a model with hash ", hash, " is already installed as ",
                      (*existing)->key(), " (",
                      QuotedForMessage((*existing)->name()), ")")),
                  "DuplicateModelException");
    }
    attempts_ = 0;
    return Save([&](InstallJob& job) {
      job.config = *config;
      job.status_message = "placing";
      job.step = InstallStep::kPlace;
      return absl::OkStatus();
    });
  }

  Outcome PlaceStep() {
    std::string record_path;
    const fs::path& models = options_.models_dir;
    if (job_.inplace && !job_.remote()) {
      record_path = job_.model_path;
      if (IsInsideModelsDir(job_.model_path, models)) {
        record_path =
            fs::path(job_.model_path).lexically_relative(models).string();
      }
    } else {
      absl::StatusOr<PlacedModel> placed;
      {
        LeaseKeeper keeper(this);  // a copy across filesystems takes a while
        placed = PlaceModel(job_.model_path, models, job_.key);
      }
      if (!placed.ok()) return Fail(placed.status(), "OSError");
      record_path = placed->record_path;
    }
    Failpoint("after-place");
    return Save([&](InstallJob& job) {
      job.record_path = record_path;
      job.status_message = "registering";
      job.step = InstallStep::kRegister;
      return absl::OkStatus();
    });
  }

  nlohmann::json RecordConfig() const {
    nlohmann::json config = job_.config;
    config["key"] = job_.key;
    config["path"] = job_.record_path;
    config["source"] = job_.source;
    config["source_type"] = job_.source_type;
    if (job_.source_type == "hf_repo_id") {
      if (!job_.plan.api_response.empty()) {
        config["source_api_response"] = job_.plan.api_response;
      }
      std::vector<std::string> tags =
          config.value("tags", std::vector<std::string>{});
      for (const std::string& tag : job_.plan.tags) {
        if (std::find(tags.begin(), tags.end(), tag) == tags.end()) {
          tags.push_back(tag);
        }
      }
      config["tags"] = tags;
    } else if (job_.source_type == "url") {
      config["source_url"] = job_.source;
    }
    return config;
  }

  Outcome RegisterStep() {
    // The job's id as request_id: after a restart the records service
    // returns the record this job already made.
    Failpoint("before-register");
    absl::StatusOr<v1::Model> model = deps_.records->Create(
        RecordConfig(), absl::StrCat("install:", job_.id));
    Failpoint("after-register");
    if (!model.ok()) {
      return Retryable(model.status(), "the records service",
                       "InvalidModelConfig");
    }
    attempts_ = 0;
    return Save([&](InstallJob& job) {
      job.config_out = *model;
      job.step = InstallStep::kCleanup;
      return absl::OkStatus();
    });
  }

  Outcome CleanupStep() {
    RemoveTemporary();
    const absl::Time now = clock_->Now();
    Save([&](InstallJob& job) {
      RETURN_IF_ERROR(job.TransitionTo(InstallState::kCompleted, now));
      job.AddEvent("complete", now);
      job.status_message.clear();
      job.step = InstallStep::kDone;
      return absl::OkStatus();
    });
    if (job_.state == InstallState::kCompleted) {
      MM_LOG(INFO) << "install " << job_.id << " complete: " << job_.key
                   << " at " << job_.record_path;
      deps_.tokens->Forget(job_.id);
    }
    return Outcome::kStop;
  }

  // At the end of a run: a cancelled job loses its download and temporary
  // folder; a paused one pauses its download; a job still ours gives up its
  // lease so another claim (here or elsewhere) can take it.
  void Finish() {
    // The new run owns the job and its lease now.
    if (superseded_->load()) return;
    absl::StatusOr<InstallJob> current = deps_.store->Get(job_.id);
    if (current.ok()) job_ = *std::move(current);
    if (job_.state == InstallState::kCancelled) {
      CancelDownload();
      RemoveTemporary();
      deps_.tokens->Forget(job_.id);
    } else if (job_.state == InstallState::kPaused &&
               !job_.download_id.empty()) {
      absl::StatusOr<v1::DownloadJob> paused =
          deps_.downloader->Pause(job_.download_id);
      if (!paused.ok() &&
          paused.status().code() != absl::StatusCode::kFailedPrecondition) {
        MM_LOG(WARNING) << "install " << job_.id
                        << ": cannot pause download: " << paused.status();
      }
    }
    if (job_.lease_owner == deps_.store->replica_id()) {
      absl::Status released = deps_.store->ReleaseLease(job_.id);
      if (!released.ok()) {
        MM_LOG(WARNING) << "install " << job_.id
                        << ": cannot release its lease: " << released;
      }
    }
  }

  // Renews the job's lease from a second thread while a long step (hashing,
  // copying) blocks the run's thread.
  class LeaseKeeper {
   public:
    explicit LeaseKeeper(InstallRun* run) : run_(run) {
      thread_ = std::thread([this] {
        const absl::Duration every = run_->options_.lease / 3;
        MutexLock lock(&mu_);
        while (!mu_.AwaitWithTimeout(
            [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return done_; }, every)) {
          mu_.Unlock();
          absl::StatusOr<InstallJob> saved = run_->deps_.store->SaveLeased(
              run_->job_id_copy_, run_->options_.lease,
              [](InstallJob& job) -> absl::StatusOr<bool> {
                return !IsTerminal(job.state);
              });
          if (!saved.ok()) {
            MM_LOG(WARNING) << "install " << run_->job_id_copy_
                            << ": cannot renew its lease: " << saved.status();
          }
          mu_.Lock();
        }
      });
    }
    ~LeaseKeeper() {
      {
        MutexLock lock(&mu_);
        done_ = true;
      }
      thread_.join();
    }

   private:
    InstallRun* const run_;
    Mutex mu_;
    bool done_ ABSL_GUARDED_BY(mu_) = false;
    std::thread thread_;
  };

  InstallWorker* const worker_;
  const WorkerDeps& deps_;
  const WorkerOptions& options_;
  Clock* const clock_;
  // Set by the worker when it claimed this job again (see Schedule).
  const std::shared_ptr<const std::atomic<bool>> superseded_;
  InstallJob job_;
  const std::string job_id_copy_ = job_.id;
  int attempts_ = 0;
};

InstallWorker::InstallWorker(WorkerDeps deps, WorkerOptions options)
    : deps_(std::move(deps)), options_(std::move(options)) {}

InstallWorker::~InstallWorker() { Stop(); }

void InstallWorker::Start() {
  MutexLock lock(&mu_);
  if (started_) return;
  started_ = true;
  scheduler_ = std::thread([this] { Schedule(); });
}

void InstallWorker::Stop() {
  std::map<uint64_t, Running> running;
  {
    MutexLock lock(&mu_);
    if (!started_ || stopping_) return;
    stopping_ = true;
  }
  if (scheduler_.joinable()) scheduler_.join();
  {
    MutexLock lock(&mu_);
    running.swap(running_);
  }
  for (auto& [id, run] : running) {
    if (run.thread.joinable()) run.thread.join();
  }
}

void InstallWorker::Wake() {
  MutexLock lock(&mu_);
  ++wakes_;
}

bool InstallWorker::stopping() const {
  MutexLock lock(&mu_);
  return stopping_;
}

void InstallWorker::Reap() {
  for (auto it = running_.begin(); it != running_.end();) {
    if (it->second.finished) {
      it->second.thread.join();
      it = running_.erase(it);
    } else {
      ++it;
    }
  }
}

void InstallWorker::Schedule() {
  absl::Time next_heartbeat = absl::InfinitePast();
  while (true) {
    int64_t seen_wakes;
    {
      MutexLock lock(&mu_);
      if (stopping_) return;
      Reap();
      seen_wakes = wakes_;
    }
    if (deps_.store->clock()->Now() >= next_heartbeat) {
      absl::Status beat = deps_.store->Heartbeat();
      if (!beat.ok()) MM_LOG(WARNING) << "install heartbeat: " << beat;
      next_heartbeat = deps_.store->clock()->Now() + options_.replica_ttl / 4;
    }
    bool claimed = false;
    int running_count;
    {
      MutexLock lock(&mu_);
      running_count = static_cast<int>(running_.size());
    }
    if (running_count < options_.max_parallel) {
      absl::StatusOr<std::optional<InstallJob>> job =
          deps_.store->ClaimNext(options_.lease, options_.replica_ttl);
      if (!job.ok()) {
        MM_LOG(WARNING) << "cannot claim install jobs: " << job.status();
      } else if (job->has_value()) {
        claimed = true;
        MutexLock lock(&mu_);
        // A run of this job may still be going here: its lease lapsed while
        // it waited (the job database away) and this claim took the job
        // again for the same replica, whose saves it would share. Two runs
        // of one job would both act on it (one places the model, the other
        // then misses its files; seen in tests/e2e/cluster_test.cc), so the
        // old run stops at its next step and the new one starts after it.
        uint64_t previous = 0;
        for (auto& [claim, run] : running_) {
          if (run.job_id == (*job)->id && !run.finished) {
            run.superseded->store(true);
            previous = claim;
          }
        }
        const uint64_t claim = ++claims_;
        Running& slot = running_[claim];
        slot.job_id = (*job)->id;
        slot.thread =
            std::thread([this, claim, previous, superseded = slot.superseded,
                         job = std::move(**job)]() mutable {
              bool run = true;
              if (previous != 0) {
                {
                  MutexLock lock(&mu_);
                  mu_.Await([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
                    auto it = running_.find(previous);
                    return it == running_.end() || it->second.finished;
                  });
                }
                // The old run may have saved a step after this claim read the
                // job: start from what the store holds now. When it cannot be
                // read, leave the job; its lease lapses and it is claimed
                // again.
                absl::StatusOr<InstallJob> current = deps_.store->Get(job.id);
                if (current.ok()) {
                  job = *std::move(current);
                } else {
                  MM_LOG(WARNING)
                      << "install " << job.id
                      << ": cannot read it again: " << current.status();
                  run = false;
                }
              }
              if (run) {
                InstallRun(this, std::move(job), std::move(superseded)).Run();
              }
              MutexLock lock(&mu_);
              running_[claim].finished = true;
            });
      }
    }
    if (claimed) continue;
    const int64_t seen_changes = deps_.store->changes().version();
    MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(
        [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
          return stopping_ || wakes_ != seen_wakes ||
                 deps_.store->changes().version() != seen_changes;
        },
        kSchedulePoll);
  }
}

}  // namespace mm::installer
