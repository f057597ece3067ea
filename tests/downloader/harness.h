// An in-process downloader for tests: job store (SQLite file or a given
// URL), transfer loop, engine and service behind an in-process gRPC channel,
// with the knobs set for fast tests (short backoff, stall timeout, small
// segments).
#ifndef MM_TESTS_DOWNLOADER_HARNESS_H_
#define MM_TESTS_DOWNLOADER_HARNESS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/http/address_policy.h"
#include "common/http/transfer_loop.h"
#include "grpcpp/server.h"
#include "modelmanager/v1/downloader.grpc.pb.h"
#include "services/downloader/downloader_service.h"
#include "services/downloader/engine.h"
#include "services/downloader/job_store.h"
#include "services/downloader/tokens.h"

namespace mm::downloader {

// Short backoff (50 ms), stall timeout (1 s) and lease (2 s); segments of
// 64 KiB and up, four at most.
EngineOptions FastEngineOptions();

struct HarnessOptions {
  std::string db_url;  // required
  std::string root;    // the download root; required
  EngineOptions engine = FastEngineOptions();
  bool allow_private = true;
  std::vector<std::string> allow_cidrs;
  std::vector<std::string> token_rules;
  int64_t max_bytes_per_second = 0;
  int max_host_connections = 0;
  std::string replica_id = "test-replica";
};

class Harness {
 public:
  static absl::StatusOr<std::unique_ptr<Harness>> Start(HarnessOptions options);
  ~Harness();

  modelmanager::v1::Downloader::Stub& stub() { return *stub_; }
  JobStore& store() { return *store_; }
  DownloaderService& service() { return *service_; }

  // Creates a download; the rpc status's error as absl::Status.
  absl::StatusOr<modelmanager::v1::DownloadJob> Create(
      const modelmanager::v1::CreateDownloadRequest& request);
  absl::StatusOr<modelmanager::v1::DownloadJob> Get(const std::string& id);
  // WaitDownload with a deadline.
  absl::StatusOr<modelmanager::v1::DownloadJob> Wait(
      const std::string& id, absl::Duration timeout = absl::Seconds(30));
  // Polls until the job is in `state` (or done); false on timeout.
  bool WaitForState(const std::string& id,
                    modelmanager::v1::DownloadState state,
                    absl::Duration timeout = absl::Seconds(30));
  // Polls until the job has at least `bytes`.
  bool WaitForBytes(const std::string& id, int64_t bytes,
                    absl::Duration timeout = absl::Seconds(30));

  // Stops the worker as a shutdown would (progress saved, leases released);
  // the service keeps answering.
  void StopEngine();

 private:
  Harness() = default;
  HarnessOptions options_;
  std::unique_ptr<JobStore> store_;
  std::unique_ptr<TokenProvider> tokens_;
  std::unique_ptr<http::TransferLoop> loop_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<DownloaderService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<modelmanager::v1::Downloader::Stub> stub_;
};

}  // namespace mm::downloader

#endif  // MM_TESTS_DOWNLOADER_HARNESS_H_
