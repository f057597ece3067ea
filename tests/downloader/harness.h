// An in-process downloader for tests: the Downloader that mm-downloader
// runs (downloader_server.h) behind an in-process gRPC channel,
// with the knobs set for fast tests (short backoff, stall timeout, small
// segments).
#ifndef MM_TESTS_DOWNLOADER_HARNESS_H_
#define MM_TESTS_DOWNLOADER_HARNESS_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/http/address_policy.h"
#include "common/http/transfer_loop.h"
#include "grpcpp/client_context.h"
#include "grpcpp/server.h"
#include "modelmanager/v1/downloader.grpc.pb.h"
#include "services/downloader/download_manager.h"
#include "services/downloader/downloader_server.h"
#include "services/downloader/engine.h"
#include "services/downloader/job_store.h"

namespace mm::downloader {

// Short backoff (50 ms), stall timeout (1 s) and lease (2 s); segments of
// 64 KiB and up, four at most.
EngineOptions FastEngineOptions();

// The deadline of every rpc a test makes, unless it says otherwise: long
// enough for a loaded machine, short enough that a hang fails the test.
inline constexpr absl::Duration kRpcTimeout = absl::Seconds(30);
// For engine tests on a FakeClock: the real time the engine gets to act once
// the fake clock allows it (generous for a loaded machine; a hang fails
// instead of blocking), and the real time in which it must NOT act (several
// of the job thread's 50 ms polls, so an engine that ignored the fake clock
// would have acted).
inline constexpr absl::Duration kActTimeout = absl::Seconds(20);
inline constexpr absl::Duration kQuietPeriod = absl::Milliseconds(400);

// Sets `context`'s deadline `timeout` from now.
void SetDeadline(grpc::ClientContext& context,
                 absl::Duration timeout = kRpcTimeout);

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
  Clock* clock = RealClock();
  metrics::Registry* metrics = nullptr;  // DownloaderOptions::metrics
};

class Harness {
 public:
  static absl::StatusOr<std::unique_ptr<Harness>> Start(HarnessOptions options);
  ~Harness();

  modelmanager::v1::Downloader::Stub& stub() { return *stub_; }
  JobStore& store() { return downloader_->store(); }
  Downloader& downloader() { return *downloader_; }
  // The logic behind the stub, for what no rpc does (e.g. one bulk action
  // on one job).
  DownloadManager& manager() { return downloader_->manager(); }

  // Every call below has a deadline (kRpcTimeout unless given); the rpc
  // status's error comes back as absl::Status.
  absl::StatusOr<modelmanager::v1::DownloadJob> Create(
      const modelmanager::v1::CreateDownloadRequest& request);
  absl::StatusOr<modelmanager::v1::DownloadJob> Get(const std::string& id);
  // WaitDownload: the job once done or paused.
  absl::StatusOr<modelmanager::v1::DownloadJob> Wait(
      const std::string& id, absl::Duration timeout = kRpcTimeout);
  // Follows the job with WatchDownload until a message satisfies `until`
  // and returns that message. FAILED_PRECONDITION when the job is done
  // without one (naming its last state), DEADLINE_EXCEEDED when the time
  // runs out, else the stream's own error.
  absl::StatusOr<modelmanager::v1::DownloadJob> WatchUntil(
      const std::string& id,
      const std::function<bool(const modelmanager::v1::DownloadJob&)>& until,
      absl::Duration timeout = kRpcTimeout);
  // WatchUntil the job is in `state`.
  absl::Status WaitForState(const std::string& id,
                            modelmanager::v1::DownloadState state,
                            absl::Duration timeout = kRpcTimeout);
  // WatchUntil the job has at least `bytes` saved.
  absl::Status WaitForBytes(const std::string& id, int64_t bytes,
                            absl::Duration timeout = kRpcTimeout);

  // Stops the worker as a shutdown would (progress saved, leases released);
  // the service keeps answering.
  void StopEngine();

 private:
  Harness() = default;
  HarnessOptions options_;
  std::unique_ptr<Downloader> downloader_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<modelmanager::v1::Downloader::Stub> stub_;
};

}  // namespace mm::downloader

#endif  // MM_TESTS_DOWNLOADER_HARNESS_H_
