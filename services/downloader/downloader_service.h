// The modelmanager.v1.Downloader gRPC service: the rpc edge of the
// DownloadManager (download_manager.h), which holds the logic. Each rpc
// converts its request, calls the manager once, and converts the answer
// (jobs to DownloadJob, absl::Status to grpc::Status).
//
//   DownloaderService service(&manager);
//   host->AddShutdownHook([&] { manager.Shutdown(); });
//
// Thread-safety: rpc handlers run concurrently; the service is safe for it.
#ifndef MM_SERVICES_DOWNLOADER_DOWNLOADER_SERVICE_H_
#define MM_SERVICES_DOWNLOADER_DOWNLOADER_SERVICE_H_

#include "modelmanager/v1/downloader.grpc.pb.h"
#include "services/downloader/download_manager.h"
#include "services/downloader/job.h"

namespace mm::downloader {

inline constexpr char kDownloaderServiceName[] = "modelmanager.v1.Downloader";

// The wire form of a job (never the token).
modelmanager::v1::DownloadJob JobToProto(const Job& job);

class DownloaderService final : public modelmanager::v1::Downloader::Service {
 public:
  // `manager` must outlive the service.
  explicit DownloaderService(DownloadManager* manager) : manager_(manager) {}

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

 private:
  DownloadManager* const manager_;
};

}  // namespace mm::downloader

#endif  // MM_SERVICES_DOWNLOADER_DOWNLOADER_SERVICE_H_
