#include "services/installer/installer_service.h"

#include <vector>

#include "absl/time/time.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "proto/record_json.h"

namespace mm::installer {
namespace {

namespace v1 = ::modelmanager::v1;

// Runs `body` and converts its status, so each handler is one expression.
template <typename Body>
grpc::Status Handle(Body&& body) {
  return ToGrpcStatus(body());
}

absl::Status Respond(absl::StatusOr<InstallJob> job, v1::InstallJob* response) {
  if (!job.ok()) return job.status();
  *response = JobToProto(*job);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<InstallState>> States(
    const google::protobuf::RepeatedField<int>& states) {
  std::vector<InstallState> out;
  for (int state : states) {
    std::optional<InstallState> parsed =
        StateFromProto(static_cast<v1::InstallState>(state));
    if (!parsed) {
      return absl::InvalidArgumentError(
          absl::StrCat("states: unknown install state ", state));
    }
    out.push_back(*parsed);
  }
  return out;
}

// The call's deadline; none (the far future gRPC reports) is infinite.
absl::Time Deadline(const grpc::ServerContext& context) {
  const auto deadline = context.deadline();
  if (deadline >= std::chrono::system_clock::time_point::max() -
                      std::chrono::hours(24 * 365)) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(deadline);
}

}  // namespace

InstallerService::InstallerService(InstallManager* manager,
                                   DownloadCache* cache)
    : manager_(manager), cache_(cache) {}

void InstallerService::Shutdown() { manager_->Shutdown(); }

grpc::Status InstallerService::CreateInstall(
    grpc::ServerContext*, const v1::CreateInstallRequest* request,
    v1::InstallJob* response) {
  return Handle([&] {
    return Respond(manager_->Create({.source = request->source(),
                                     .config_json = request->config_json(),
                                     .inplace = request->inplace(),
                                     .token = request->access_token(),
                                     .request_id = request->request_id()}),
                   response);
  });
}

grpc::Status InstallerService::GetInstall(grpc::ServerContext*,
                                          const v1::GetInstallRequest* request,
                                          v1::InstallJob* response) {
  return Handle(
      [&] { return Respond(manager_->Get(request->id()), response); });
}

grpc::Status InstallerService::ListInstalls(
    grpc::ServerContext*, const v1::ListInstallsRequest* request,
    v1::ListInstallsResponse* response) {
  return Handle([&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::vector<InstallState> states,
                     States(request->states()));
    ASSIGN_OR_RETURN(
        InstallPage page,
        manager_->List(states, request->page_size(), request->page_token()));
    for (const InstallJob& job : page.jobs) {
      *response->add_jobs() = JobToProto(job);
    }
    response->set_next_page_token(page.next_page_token);
    return absl::OkStatus();
  });
}

grpc::Status InstallerService::CancelInstall(
    grpc::ServerContext*, const v1::InstallJobRequest* request,
    v1::InstallJob* response) {
  return Handle(
      [&] { return Respond(manager_->Cancel(request->id()), response); });
}

grpc::Status InstallerService::PauseInstall(
    grpc::ServerContext*, const v1::InstallJobRequest* request,
    v1::InstallJob* response) {
  return Handle(
      [&] { return Respond(manager_->Pause(request->id()), response); });
}

grpc::Status InstallerService::ResumeInstall(
    grpc::ServerContext*, const v1::ResumeInstallRequest* request,
    v1::InstallJob* response) {
  return Handle([&] {
    return Respond(manager_->Resume(request->id(), request->access_token()),
                   response);
  });
}

grpc::Status InstallerService::PruneInstalls(
    grpc::ServerContext*, const v1::PruneInstallsRequest*,
    v1::PruneInstallsResponse* response) {
  return Handle([&]() -> absl::Status {
    ASSIGN_OR_RETURN(int64_t pruned, manager_->Prune());
    response->set_pruned(pruned);
    return absl::OkStatus();
  });
}

grpc::Status InstallerService::WaitInstall(grpc::ServerContext* context,
                                           const v1::InstallJobRequest* request,
                                           v1::InstallJob* response) {
  return Handle([&] {
    return Respond(manager_->Wait(request->id(), Deadline(*context),
                                  [context] { return context->IsCancelled(); }),
                   response);
  });
}

grpc::Status InstallerService::WatchInstall(
    grpc::ServerContext* context, const v1::WatchInstallRequest* request,
    grpc::ServerWriter<v1::InstallJob>* writer) {
  return Handle([&] {
    return manager_->Watch(
        request->id(), request->since_revision(),
        [writer](const InstallJob& job) {
          return writer->Write(JobToProto(job));
        },
        [context] { return context->IsCancelled(); });
  });
}

grpc::Status InstallerService::PlanInstall(
    grpc::ServerContext*, const v1::PlanInstallRequest* request,
    v1::InstallPlan* response) {
  return Handle([&]() -> absl::Status {
    ASSIGN_OR_RETURN(InstallPlan plan,
                     manager_->Plan(request->source(), request->config_json(),
                                    request->access_token()));
    *response = PlanToProto(plan);
    return absl::OkStatus();
  });
}

grpc::Status InstallerService::ProbeModel(grpc::ServerContext*,
                                          const v1::ProbeModelRequest* request,
                                          v1::Model* response) {
  return Handle([&]() -> absl::Status {
    ASSIGN_OR_RETURN(nlohmann::json config,
                     manager_->Probe(request->path(), request->config_json(),
                                     request->hash_algorithm()));
    ASSIGN_OR_RETURN(*response, ConfigJsonToModel(config));
    return absl::OkStatus();
  });
}

grpc::Status InstallerService::RegisterModel(
    grpc::ServerContext*, const v1::RegisterModelRequest* request,
    v1::Model* response) {
  return Handle([&]() -> absl::Status {
    ASSIGN_OR_RETURN(
        *response, manager_->Register(request->path(), request->config_json()));
    return absl::OkStatus();
  });
}

grpc::Status InstallerService::DeleteModel(
    grpc::ServerContext*, const v1::DeleteInstalledModelRequest* request,
    v1::DeleteInstalledModelResponse* response) {
  return Handle([&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::vector<std::string> removed,
                     manager_->Delete(request->key(), request->delete_files(),
                                      request->unconditionally()));
    for (const std::string& path : removed) response->add_removed_paths(path);
    return absl::OkStatus();
  });
}

grpc::Status InstallerService::SyncModels(grpc::ServerContext*,
                                          const v1::SyncModelsRequest* request,
                                          v1::SyncModelsResponse* response) {
  return Handle([&]() -> absl::Status {
    ASSIGN_OR_RETURN(SyncResult result,
                     manager_->Sync(request->register_orphans()));
    for (const std::string& key : result.missing_keys) {
      response->add_missing_keys(key);
    }
    for (const std::string& path : result.orphan_paths) {
      response->add_orphan_paths(path);
    }
    for (const std::string& key : result.registered_keys) {
      response->add_registered_keys(key);
    }
    return absl::OkStatus();
  });
}

grpc::Status InstallerService::DownloadAndCache(
    grpc::ServerContext* context, const v1::DownloadAndCacheRequest* request,
    v1::DownloadAndCacheResponse* response) {
  return Handle([&]() -> absl::Status {
    ASSIGN_OR_RETURN(CachedPath cached,
                     cache_->Fetch(request->source(), request->access_token(),
                                   Deadline(*context)));
    response->set_path(cached.path.string());
    response->set_cached(cached.cached);
    return absl::OkStatus();
  });
}

}  // namespace mm::installer
