// The modelmanager.v1.Downloader gRPC service: validates requests (URLs,
// names, destinations inside the download roots, free space), keeps jobs in
// the JobStore and wakes the Engine. Any replica answers for every job: the
// state lives in the store, and Watch/Wait follow its change signal (NOTIFY
// across replicas on PostgreSQL).
//
//   DownloaderService service(store, engine, tokens, roots, policy);
//   host->AddShutdownHook([&] { service.Shutdown(); });
//
// Thread-safety: rpc handlers run concurrently; the service is safe for it.
#ifndef MM_SERVICES_DOWNLOADER_DOWNLOADER_SERVICE_H_
#define MM_SERVICES_DOWNLOADER_DOWNLOADER_SERVICE_H_

#include <atomic>
#include <memory>
#include <string>

#include "common/http/address_policy.h"
#include "modelmanager/v1/downloader.grpc.pb.h"
#include "services/downloader/engine.h"
#include "services/downloader/job_store.h"
#include "services/downloader/paths.h"
#include "services/downloader/tokens.h"

namespace mm::downloader {

inline constexpr char kDownloaderServiceName[] = "modelmanager.v1.Downloader";

// The wire form of a job (never the token).
modelmanager::v1::DownloadJob JobToProto(const Job& job);

class DownloaderService final : public modelmanager::v1::Downloader::Service {
 public:
  DownloaderService(JobStore* store, Engine* engine, TokenProvider* tokens,
                    DownloadRoots roots,
                    std::shared_ptr<const http::AddressPolicy> policy);

  // Ends every open Watch and Wait promptly (called before draining).
  void Shutdown();

  grpc::Status CreateDownload(
      grpc::ServerContext* context,
      const modelmanager::v1::CreateDownloadRequest* request,
      modelmanager::v1::DownloadJob* response) override;
  grpc::Status GetDownload(grpc::ServerContext* context,
                           const modelmanager::v1::GetDownloadRequest* request,
                           modelmanager::v1::DownloadJob* response) override;
  grpc::Status ListDownloads(
      grpc::ServerContext* context,
      const modelmanager::v1::ListDownloadsRequest* request,
      modelmanager::v1::ListDownloadsResponse* response) override;
  grpc::Status StartDownload(
      grpc::ServerContext* context,
      const modelmanager::v1::DownloadJobRequest* request,
      modelmanager::v1::DownloadJob* response) override;
  grpc::Status PauseDownload(
      grpc::ServerContext* context,
      const modelmanager::v1::DownloadJobRequest* request,
      modelmanager::v1::DownloadJob* response) override;
  grpc::Status ResumeDownload(
      grpc::ServerContext* context,
      const modelmanager::v1::ResumeDownloadRequest* request,
      modelmanager::v1::DownloadJob* response) override;
  grpc::Status CancelDownload(
      grpc::ServerContext* context,
      const modelmanager::v1::DownloadJobRequest* request,
      modelmanager::v1::DownloadJob* response) override;
  grpc::Status BulkDownloadAction(
      grpc::ServerContext* context,
      const modelmanager::v1::BulkDownloadActionRequest* request,
      modelmanager::v1::BulkDownloadActionResponse* response) override;
  grpc::Status PruneDownloads(
      grpc::ServerContext* context,
      const modelmanager::v1::PruneDownloadsRequest* request,
      modelmanager::v1::PruneDownloadsResponse* response) override;
  grpc::Status WaitDownload(grpc::ServerContext* context,
                            const modelmanager::v1::DownloadJobRequest* request,
                            modelmanager::v1::DownloadJob* response) override;
  grpc::Status WatchDownload(
      grpc::ServerContext* context,
      const modelmanager::v1::WatchDownloadRequest* request,
      grpc::ServerWriter<modelmanager::v1::DownloadJob>* writer) override;

  // The rpc bodies without gRPC types, for in-process use and tests.
  absl::StatusOr<Job> Create(
      const modelmanager::v1::CreateDownloadRequest& request);
  enum class Action { kStart, kPause, kResume, kCancel };
  absl::StatusOr<Job> Apply(const std::string& id, Action action,
                            const std::string& token = "");

 private:
  absl::StatusOr<Job> BuildJob(
      const modelmanager::v1::CreateDownloadRequest& request);

  JobStore* const store_;
  Engine* const engine_;
  TokenProvider* const tokens_;
  const DownloadRoots roots_;
  const std::shared_ptr<const http::AddressPolicy> policy_;
  std::atomic<bool> shutting_down_{false};
};

}  // namespace mm::downloader

#endif  // MM_SERVICES_DOWNLOADER_DOWNLOADER_SERVICE_H_
