// The installer's calls to the records service and the downloader, each
// with a deadline and its status converted to absl::Status (UNAVAILABLE
// when the service cannot be reached: the install job then waits and
// retries, it does not fail).
//
// Thread-safety: thread-safe (gRPC stubs are).
#ifndef MM_SERVICES_INSTALLER_SERVICE_CLIENTS_H_
#define MM_SERVICES_INSTALLER_SERVICE_CLIENTS_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "modelmanager/v1/downloader.grpc.pb.h"
#include "modelmanager/v1/records.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace mm::installer {

// Longest a single call may take before it counts as the service being
// unavailable (a record write or a download create is milliseconds).
inline constexpr absl::Duration kCallTimeout = absl::Seconds(30);

class RecordsClient {
 public:
  explicit RecordsClient(std::shared_ptr<grpc::Channel> channel);

  // CreateModel, idempotent on `request_id` (an install job registers under
  // its own id, so a restart cannot register twice).
  absl::StatusOr<modelmanager::v1::Model> Create(const nlohmann::json& config,
                                                 const std::string& request_id);
  absl::StatusOr<modelmanager::v1::Model> Get(const std::string& key);
  // The model registered with exactly this hash, if any.
  absl::StatusOr<std::optional<modelmanager::v1::Model>> FindByHash(
      const std::string& hash);
  // NOT_FOUND when there is no such record.
  absl::Status Delete(const std::string& key);
  // Every record, page by page.
  absl::StatusOr<std::vector<modelmanager::v1::Model>> ListAll();

 private:
  std::unique_ptr<modelmanager::v1::ModelRecords::Stub> stub_;
};

class DownloaderClient {
 public:
  explicit DownloaderClient(std::shared_ptr<grpc::Channel> channel);

  absl::StatusOr<modelmanager::v1::DownloadJob> Create(
      const modelmanager::v1::CreateDownloadRequest& request);
  absl::StatusOr<modelmanager::v1::DownloadJob> Get(const std::string& id);
  absl::StatusOr<modelmanager::v1::DownloadJob> Pause(const std::string& id);
  absl::StatusOr<modelmanager::v1::DownloadJob> Resume(
      const std::string& id, const std::string& token);
  absl::StatusOr<modelmanager::v1::DownloadJob> Cancel(const std::string& id);
  // Streams the job's changes to `on_change` until it is done (OK),
  // `on_change` returns false (CANCELLED), the stream fails, or `timeout`
  // passes (DEADLINE_EXCEEDED); the caller watches again from the last
  // revision it saw.
  absl::Status Watch(
      const std::string& id, int64_t since_revision, absl::Duration timeout,
      const std::function<bool(const modelmanager::v1::DownloadJob&)>&
          on_change);

 private:
  std::unique_ptr<modelmanager::v1::Downloader::Stub> stub_;
};

}  // namespace mm::installer

#endif  // MM_SERVICES_INSTALLER_SERVICE_CLIENTS_H_
