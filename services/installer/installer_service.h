// The modelmanager.v1.Installer gRPC service: a thin edge over the
// InstallManager (one expression per rpc) and the common Wait/Watch
// follower. Any replica answers for every job: the state lives in the job
// table, and Watch/Wait follow its change signal (NOTIFY across replicas on
// PostgreSQL).
//
//   InstallerService service(&manager, &cache);
//   host->AddShutdownHook([&] { service.Shutdown(); });
//
// Thread-safety: rpc handlers run concurrently; the service is safe for it.
#ifndef MM_SERVICES_INSTALLER_INSTALLER_SERVICE_H_
#define MM_SERVICES_INSTALLER_INSTALLER_SERVICE_H_

#include "modelmanager/v1/installer.grpc.pb.h"
#include "services/installer/download_cache.h"
#include "services/installer/install_manager.h"
#include "services/installer/install_store.h"

namespace mm::installer {

inline constexpr char kInstallerServiceName[] = "modelmanager.v1.Installer";

class InstallerService final : public modelmanager::v1::Installer::Service {
 public:
  // Every pointer outlives the service.
  InstallerService(InstallManager* manager, DownloadCache* cache);

  // Ends every open Watch and Wait promptly (called before draining).
  void Shutdown();

  grpc::Status CreateInstall(
      grpc::ServerContext* context,
      const modelmanager::v1::CreateInstallRequest* request,
      modelmanager::v1::InstallJob* response) override;
  grpc::Status GetInstall(grpc::ServerContext* context,
                          const modelmanager::v1::GetInstallRequest* request,
                          modelmanager::v1::InstallJob* response) override;
  grpc::Status ListInstalls(
      grpc::ServerContext* context,
      const modelmanager::v1::ListInstallsRequest* request,
      modelmanager::v1::ListInstallsResponse* response) override;
  grpc::Status CancelInstall(grpc::ServerContext* context,
                             const modelmanager::v1::InstallJobRequest* request,
                             modelmanager::v1::InstallJob* response) override;
  grpc::Status PauseInstall(grpc::ServerContext* context,
                            const modelmanager::v1::InstallJobRequest* request,
                            modelmanager::v1::InstallJob* response) override;
  grpc::Status ResumeInstall(
      grpc::ServerContext* context,
      const modelmanager::v1::ResumeInstallRequest* request,
      modelmanager::v1::InstallJob* response) override;
  grpc::Status PruneInstalls(
      grpc::ServerContext* context,
      const modelmanager::v1::PruneInstallsRequest* request,
      modelmanager::v1::PruneInstallsResponse* response) override;
  grpc::Status WaitInstall(grpc::ServerContext* context,
                           const modelmanager::v1::InstallJobRequest* request,
                           modelmanager::v1::InstallJob* response) override;
  grpc::Status WatchInstall(
      grpc::ServerContext* context,
      const modelmanager::v1::WatchInstallRequest* request,
      grpc::ServerWriter<modelmanager::v1::InstallJob>* writer) override;
  grpc::Status PlanInstall(grpc::ServerContext* context,
                           const modelmanager::v1::PlanInstallRequest* request,
                           modelmanager::v1::InstallPlan* response) override;
  grpc::Status ProbeModel(grpc::ServerContext* context,
                          const modelmanager::v1::ProbeModelRequest* request,
                          modelmanager::v1::Model* response) override;
  grpc::Status RegisterModel(
      grpc::ServerContext* context,
      const modelmanager::v1::RegisterModelRequest* request,
      modelmanager::v1::Model* response) override;
  grpc::Status DeleteModel(
      grpc::ServerContext* context,
      const modelmanager::v1::DeleteInstalledModelRequest* request,
      modelmanager::v1::DeleteInstalledModelResponse* response) override;
  grpc::Status SyncModels(
      grpc::ServerContext* context,
      const modelmanager::v1::SyncModelsRequest* request,
      modelmanager::v1::SyncModelsResponse* response) override;
  grpc::Status DownloadAndCache(
      grpc::ServerContext* context,
      const modelmanager::v1::DownloadAndCacheRequest* request,
      modelmanager::v1::DownloadAndCacheResponse* response) override;

 private:
  InstallManager* const manager_;
  DownloadCache* const cache_;
};

}  // namespace mm::installer

#endif  // MM_SERVICES_INSTALLER_INSTALLER_SERVICE_H_
