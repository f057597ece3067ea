// The local phase of an install run (install_run.h), the same for every
// source kind once the model is on disk: probe and hash it, refuse a model
// whose hash is already registered, place it in models/<key>/ (or leave
// it, inplace), register the record, and remove the temporary folder.
// Every step can run again after a crash: the probe and hash rerun,
// placement finds an earlier placement, and the record is created with the
// job's id as request_id (exactly once).
#include <algorithm>
#include <filesystem>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "common/strings.h"
#include "model/probe.h"
#include "services/installer/install_run.h"
#include "services/installer/job_cleanup.h"
#include "services/installer/placement.h"

namespace mm::installer {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::modelmanager::v1;

}  // namespace

InstallRun::Outcome InstallRun::MarkStarted() {
  if (job_.state == InstallState::kRunning) return Outcome::kContinue;
  const absl::Time now = clock_->Now();
  return Save([&](InstallJob& job) {
    RETURN_IF_ERROR(job.TransitionTo(InstallState::kRunning, now));
    if (job.started == absl::InfinitePast()) job.started = now;
    job.AddEvent("started", now);
    job.status_message = "probing and hashing";
    return absl::OkStatus();
  });
}

model::HashOptions InstallRun::HashOptionsFor() const {
  model::HashOptions options = options_.hash;
  // Only SHA-256 digests are known ahead (the hub's LFS ones, which the
  // downloader verified): the files need not be read a second time.
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

InstallRun::Outcome InstallRun::IdentifyStep() {
  // kContinue with the state unchanged: the move was not saved (the job
  // database was away); run the step again. Going on would register the
  // model and then fail the job, since the store still says
  // DOWNLOADS_DONE, which cannot become COMPLETED (seen in
  // tests/e2e/cluster_test.cc with PostgreSQL restarted mid-install).
  const Outcome started = MarkStarted();
  if (started == Outcome::kStop || job_.state != InstallState::kRunning) {
    return started;
  }
  model::ProbeOptions probe;
  probe.overrides = job_.config_in;
  probe.hash = HashOptionsFor();
  absl::StatusOr<nlohmann::json> config;
  Failpoint("hashing");
  {
    // Hashing a large model takes a while.
    LeaseKeeper keeper(deps_.store, job_.id, options_.lease);
    config = model::Probe(job_.model_path, probe);
  }
  if (!config.ok()) return Fail(config.status(), "InvalidModelConfig");
  const std::string hash = config->value("hash", "");
  absl::StatusOr<std::optional<v1::Model>> existing =
      deps_.records->FindByHash(hash);
  if (!existing.ok()) {
    return Retryable(existing.status(), "the records service", "RecordsError");
  }
  // The same key is this job's own record, made before a crash.
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

InstallRun::Outcome InstallRun::PlaceStep() {
  std::string record_path;
  const fs::path& models = options_.models_dir;
  if (job_.inplace && !job_.remote()) {
    record_path = RecordPathFor(job_.model_path, models);
  } else {
    absl::StatusOr<PlacedModel> placed;
    {
      // A copy across filesystems takes a while.
      LeaseKeeper keeper(deps_.store, job_.id, options_.lease);
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

nlohmann::json InstallRun::RecordConfig() const {
  nlohmann::json config = job_.config;
  config["key"] = job_.key;
  config["path"] = job_.record_path;
  config["source"] = job_.source;
  config["source_type"] = job_.source_type;
  if (job_.source_type == "hf_repo_id") {
    if (!job_.plan.api_response.empty()) {
      config["source_api_response"] = job_.plan.api_response;
    }
    // The probe's tags first, then the repo's that it lacks.
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

InstallRun::Outcome InstallRun::RegisterStep() {
  // The job's id as request_id: after a restart the records service
  // returns the record this job already made.
  Failpoint("before-register");
  absl::StatusOr<v1::Model> model =
      deps_.records->Create(RecordConfig(), DependencyRequestId(job_));
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

InstallRun::Outcome InstallRun::CleanupStep() {
  RemoveJobTemporary(job_);
  const absl::Time now = clock_->Now();
  Save([&](InstallJob& job) {
    RETURN_IF_ERROR(job.TransitionTo(InstallState::kCompleted, now));
    job.AddEvent("complete", now);
    job.status_message.clear();
    job.step = InstallStep::kDone;
    return absl::OkStatus();
  });
  if (job_.state == InstallState::kCompleted) {
    MM_LOG(INFO) << "install " << job_.id << " complete: " << job_.key << " at "
                 << job_.record_path;
    deps_.tokens->Forget(job_.id);
  }
  return Outcome::kStop;
}

}  // namespace mm::installer
