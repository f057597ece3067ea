#include "services/installer/install_manager.h"

#include <set>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/status.h"
#include "common/strings.h"
#include "model/probe.h"
#include "model/scan.h"
#include "proto/record_json.h"
#include "services/installer/job_cleanup.h"
#include "services/installer/placement.h"

namespace mm::installer {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::modelmanager::v1;
using nlohmann::json;

constexpr char kTempPrefix[] = "tmpinstall_";

// Cancel of a job that has ended.
absl::Status AlreadyFinished(const InstallJob& job) {
  return absl::FailedPreconditionError(absl::StrCat(
      "install job ", job.id, " is ", AsAbsl(StateName(job.state))));
}

}  // namespace

absl::StatusOr<json> ParseOverrides(const std::string& text) {
  if (text.empty()) return json::object();
  json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return absl::InvalidArgumentError(
        "config_json must be a JSON object, e.g. {\"name\": \"my model\"}");
  }
  return parsed;
}

InstallManager::InstallManager(WorkerDeps deps, InstallWorker* worker,
                               WorkerOptions options)
    : deps_(std::move(deps)),
      worker_(worker),
      options_(std::move(options)),
      follower_(&deps_.store->changes(), "install job") {}

absl::StatusOr<InstallJob> InstallManager::Wait(
    const std::string& id, absl::Time deadline,
    const std::function<bool()>& cancelled) {
  return deps_.store->Wait(follower_, id,
                           {.deadline = deadline, .cancelled = cancelled});
}

absl::Status InstallManager::Watch(
    const std::string& id, int64_t since_revision,
    const std::function<bool(const InstallJob&)>& send,
    const std::function<bool()>& cancelled) {
  return deps_.store->Watch(follower_, id, since_revision, send,
                            {.cancelled = cancelled});
}

absl::StatusOr<InstallJob> InstallManager::Create(
    const InstallRequest& request) {
  if (request.request_id.size() > kMaxInstallRequestIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request_id is longer than ", kMaxInstallRequestIdBytes, " bytes"));
  }
  ASSIGN_OR_RETURN(json overrides, ParseOverrides(request.config_json));
  ASSIGN_OR_RETURN(ResolvedSource source,
                   deps_.resolver->Parse(request.source));
  if (request.inplace && source.source_type != "path") {
    return absl::InvalidArgumentError(
        "inplace applies to a local path only; a downloaded model is always "
        "placed in the models folder");
  }
  // A source with a live job returns that job (spec §8).
  ASSIGN_OR_RETURN(std::vector<InstallJob> live,
                   deps_.store->ListAll(LiveStates()));
  for (const InstallJob& job : live) {
    if (job.source == source.normalized) return job;
  }

  InstallJob job;
  job.id = NewResourceId();
  job.request_id = request.request_id;
  job.source = source.normalized;
  job.source_type = source.source_type;
  job.config_in = std::move(overrides);
  job.inplace = request.inplace;
  job.key = NewResourceId();
  job.created = deps_.store->clock()->Now();
  if (source.source_type == "path") {
    ASSIGN_OR_RETURN(job.plan, deps_.resolver->Plan(source, ""));
    job.step = InstallStep::kPlan;
  } else {
    job.temp_dir =
        (options_.models_dir / absl::StrCat(kTempPrefix, job.id)).string();
  }
  if (!request.token.empty()) {
    job.has_token = true;
    job.token_owner = deps_.store->replica_id();
    deps_.tokens->Put(job.id, request.token);
  }
  absl::StatusOr<InstallJob> created = deps_.store->Create(job);
  if (!created.ok() || created->id != job.id) deps_.tokens->Forget(job.id);
  if (created.ok() && worker_ != nullptr) worker_->Wake();
  return created;
}

absl::StatusOr<InstallJob> InstallManager::Get(const std::string& id) {
  return deps_.store->Get(id);
}

absl::StatusOr<InstallPage> InstallManager::List(
    const std::vector<InstallState>& states, int page_size,
    const std::string& page_token) {
  return deps_.store->ListPage(states, page_size, page_token);
}

absl::StatusOr<InstallJob> InstallManager::Cancel(const std::string& id) {
  Clock* clock = deps_.store->clock();
  ASSIGN_OR_RETURN(
      InstallJob job,
      deps_.store->Update(id, [&](InstallJob& job) -> absl::Status {
        if (IsTerminal(job.state)) return AlreadyFinished(job);
        if (job.step >= InstallStep::kPlace) {
          return absl::FailedPreconditionError(
              absl::StrCat("install job ", job.id,
                           " is placing its files and can no longer be "
                           "cancelled; it finishes in a moment"));
        }
        RETURN_IF_ERROR(
            job.TransitionTo(InstallState::kCancelled, clock->Now()));
        job.AddEvent("cancelled", clock->Now());
        job.status_message.clear();
        return absl::OkStatus();
      }));
  // A job no worker holds is cleaned up here; a running one also cleans up
  // when it sees the cancel (both are harmless twice).
  CancelJobDownload(*deps_.downloader, job);
  RemoveJobTemporary(job);
  deps_.tokens->Forget(id);
  return job;
}

absl::StatusOr<InstallJob> InstallManager::Pause(const std::string& id) {
  Clock* clock = deps_.store->clock();
  ASSIGN_OR_RETURN(
      InstallJob job,
      deps_.store->Update(id, [&](InstallJob& job) -> absl::Status {
        if (job.state != InstallState::kWaiting &&
            job.state != InstallState::kDownloading) {
          return absl::FailedPreconditionError(absl::StrCat(
              "install job ", job.id, " is ", AsAbsl(StateName(job.state)),
              "; only the download phase can be paused"));
        }
        if (job.step > InstallStep::kDownload) {
          return absl::FailedPreconditionError(absl::StrCat(
              "install job ", job.id, " has finished downloading"));
        }
        return job.TransitionTo(InstallState::kPaused, clock->Now());
      }));
  PauseJobDownload(*deps_.downloader, job);
  return job;
}

absl::StatusOr<InstallJob> InstallManager::Resume(const std::string& id,
                                                  const std::string& token) {
  Clock* clock = deps_.store->clock();
  ASSIGN_OR_RETURN(
      InstallJob job,
      deps_.store->Update(id, [&](InstallJob& job) -> absl::Status {
        if (job.state != InstallState::kPaused) {
          return absl::FailedPreconditionError(
              absl::StrCat("install job ", job.id, " is ",
                           AsAbsl(StateName(job.state)), ", not paused"));
        }
        RETURN_IF_ERROR(job.TransitionTo(InstallState::kWaiting, clock->Now()));
        job.status_message.clear();
        if (!token.empty()) {
          job.has_token = true;
          job.token_owner = deps_.store->replica_id();
        }
        return absl::OkStatus();
      }));
  if (!token.empty()) deps_.tokens->Put(id, token);
  if (worker_ != nullptr) worker_->Wake();
  return job;
}

absl::StatusOr<int64_t> InstallManager::Prune() {
  ASSIGN_OR_RETURN(std::vector<InstallJob> pruned,
                   deps_.store->Prune(absl::InfiniteFuture()));
  return static_cast<int64_t>(pruned.size());
}

absl::StatusOr<InstallPlan> InstallManager::Plan(const std::string& source,
                                                 const std::string& config_json,
                                                 const std::string& token) {
  RETURN_IF_ERROR(ParseOverrides(config_json).status());
  ASSIGN_OR_RETURN(ResolvedSource resolved, deps_.resolver->Parse(source));
  return deps_.resolver->Plan(resolved, token);
}

absl::StatusOr<fs::path> InstallManager::ExistingPath(
    const std::string& path) const {
  if (path.empty()) {
    return absl::InvalidArgumentError(
        "path is required: a model file or folder, absolute or relative to "
        "the models folder");
  }
  fs::path resolved = ResolveModelPath(options_.models_dir, path);
  std::error_code error;
  if (!fs::exists(resolved, error)) {
    return absl::NotFoundError(absl::StrCat(
        "model path ", QuotedForMessage(resolved.string()), " does not exist"));
  }
  return fs::absolute(resolved, error).lexically_normal();
}

absl::StatusOr<json> InstallManager::Probe(const std::string& path,
                                           const std::string& config_json,
                                           const std::string& hash_algorithm) {
  ASSIGN_OR_RETURN(json overrides, ParseOverrides(config_json));
  ASSIGN_OR_RETURN(fs::path resolved, ExistingPath(path));
  model::ProbeOptions probe;
  probe.overrides = std::move(overrides);
  if (!hash_algorithm.empty()) {
    model::HashOptions hash = options_.hash;
    ASSIGN_OR_RETURN(hash.algorithm, model::ParseHashAlgorithm(hash_algorithm));
    probe.hash = hash;
  }
  return model::Probe(resolved, probe);
}

absl::StatusOr<v1::Model> InstallManager::Register(
    const std::string& path, const std::string& config_json) {
  ASSIGN_OR_RETURN(json overrides, ParseOverrides(config_json));
  ASSIGN_OR_RETURN(fs::path resolved, ExistingPath(path));
  model::ProbeOptions probe;
  probe.overrides = std::move(overrides);
  probe.hash = options_.hash;
  ASSIGN_OR_RETURN(json config, model::Probe(resolved, probe));
  const std::string hash = config.value("hash", "");
  ASSIGN_OR_RETURN(std::optional<v1::Model> existing,
                   deps_.records->FindByHash(hash));
  if (existing) {
    return absl::AlreadyExistsError(absl::StrCat(
        "a model with hash ", hash, " is already registered as ",
        existing->key(), " (", QuotedForMessage(existing->name()), ")"));
  }
  config["path"] = RecordPathFor(resolved, options_.models_dir);
  config["source"] = resolved.string();
  config["source_type"] = "path";
  // Concurrent registrations of the same content give one record.
  return deps_.records->Create(config, absl::StrCat("register:", hash));
}

absl::StatusOr<std::vector<std::string>> InstallManager::Delete(
    const std::string& key, bool delete_files, bool unconditionally) {
  ASSIGN_OR_RETURN(v1::Model model, deps_.records->Get(key));
  // The record goes first: files left by a failed removal are found by
  // SyncModels as orphans, while a record without files would mislead.
  RETURN_IF_ERROR(deps_.records->Delete(key));
  if (!delete_files && !unconditionally) return std::vector<std::string>{};
  return RemoveModelFiles(options_.models_dir, key, model.path(),
                          unconditionally);
}

absl::StatusOr<SyncResult> InstallManager::Sync(bool register_orphans) {
  SyncResult result;
  ASSIGN_OR_RETURN(std::vector<v1::Model> models, deps_.records->ListAll());
  std::set<std::string> registered;
  for (const v1::Model& model : models) {
    const fs::path path = ResolveModelPath(options_.models_dir, model.path());
    std::error_code error;
    if (!fs::exists(path, error)) {
      result.missing_keys.push_back(model.key());
      MM_LOG(WARNING) << "model " << model.key() << " ("
                      << SafeForMessage(model.name()) << "): its files at "
                      << path.string() << " are missing";
    }
    registered.insert(fs::weakly_canonical(path, error).string());
  }
  std::error_code error;
  if (!fs::exists(options_.models_dir, error)) return result;
  ASSIGN_OR_RETURN(std::vector<fs::path> found,
                   model::ScanForModels(options_.models_dir));
  for (const fs::path& candidate : found) {
    const fs::path relative = candidate.lexically_relative(options_.models_dir);
    if (!relative.empty() &&
        absl::StartsWith(relative.begin()->string(), kTempPrefix)) {
      continue;  // an install in progress
    }
    if (registered.count(fs::weakly_canonical(candidate, error).string())) {
      continue;
    }
    result.orphan_paths.push_back(candidate.string());
    if (!register_orphans) continue;
    absl::StatusOr<v1::Model> model = Register(candidate.string(), "");
    if (model.ok()) {
      result.registered_keys.push_back(model->key());
    } else {
      MM_LOG(WARNING) << "cannot register " << candidate.string() << ": "
                      << model.status();
    }
  }
  return result;
}

absl::StatusOr<std::vector<std::string>>
InstallManager::RemoveAbandonedTemporaries() {
  std::vector<std::string> removed;
  std::error_code error;
  if (!fs::exists(options_.models_dir, error)) return removed;
  ASSIGN_OR_RETURN(std::vector<InstallJob> live,
                   deps_.store->ListAll(LiveStates()));
  std::set<std::string> in_use;
  for (const InstallJob& job : live) in_use.insert(job.temp_dir);
  for (const fs::directory_entry& entry :
       fs::directory_iterator(options_.models_dir, error)) {
    const std::string name = entry.path().filename().string();
    if (!absl::StartsWith(name, kTempPrefix)) continue;
    if (in_use.count(entry.path().string())) continue;
    std::error_code remove_error;
    fs::remove_all(entry.path(), remove_error);
    if (remove_error) {
      MM_LOG(WARNING) << "cannot remove " << entry.path().string() << ": "
                      << remove_error.message();
      continue;
    }
    removed.push_back(entry.path().string());
  }
  return removed;
}

}  // namespace mm::installer
