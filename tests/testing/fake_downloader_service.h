// An in-memory Downloader service for tests of its clients (the `mm`
// commands, and the installer, which drives downloads through it): canned
// jobs, scripted watch streams, and a record of every request so a test can
// check what its client sent. It implements just enough of the contract
// (downloader.proto) to drive a client: Create answers a new job "new1",
// Start/Pause/Resume/Cancel move a known unfinished job, List pages by
// `max_page_size`, Watch plays the script queued for the job.
//
//   FakeDownloaderService fake;
//   fake.AddJob(FakeDownloadJob("j1", v1::DOWNLOAD_STATE_RUNNING));
//   fake.ScriptWatch("j1", {{FakeDownloadJob("j1", SUCCEEDED, 2)}});
//   grpc::ServerBuilder builder;
//   builder.RegisterService(&fake);
//
// Thread-safety: every method may be called concurrently (the rpc handlers
// run on gRPC's threads while the test reads the recorded requests).
#ifndef MM_TESTS_TESTING_FAKE_DOWNLOADER_SERVICE_H_
#define MM_TESTS_TESTING_FAKE_DOWNLOADER_SERVICE_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/mutex.h"
#include "modelmanager/v1/downloader.grpc.pb.h"

namespace mm::testing {

// A job as the fake (and tests) describe one: source
// https://example.com/ID.safetensors, priority 10, `done` for a final state;
// a SUCCEEDED job has final_path /models/ID.safetensors, a FAILED one the
// error NOT_FOUND / "HTTPError(NOT FOUND)" / "404 from example.com".
modelmanager::v1::DownloadJob FakeDownloadJob(
    const std::string& id, modelmanager::v1::DownloadState state,
    int64_t revision = 1, int64_t bytes = 0, int64_t total = 0);

// One WatchDownload call's worth of script: the messages to send, then how
// the stream ends.
struct FakeWatchSession {
  std::vector<modelmanager::v1::DownloadJob> messages;
  grpc::Status end = grpc::Status::OK;
};

class FakeDownloaderService final
    : public modelmanager::v1::Downloader::Service {
 public:
  // Adds a job that Get, List, Wait and the actions find.
  void AddJob(const modelmanager::v1::DownloadJob& job)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Queues the script of the next WatchDownload of `id`; a watch with no
  // script left fails NOT_FOUND.
  void ScriptWatch(const std::string& id, FakeWatchSession session)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Makes the watch of `id` wait (up to 10 s) until a watch of `other` has
  // begun before it sends anything; WatchesOverlapped says whether it did.
  void WatchWaitsFor(const std::string& id, const std::string& other)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The most jobs one ListDownloads page carries (the real server's cap is
  // 1000; a small one makes clients page).
  void set_max_page_size(int size) ABSL_LOCKS_EXCLUDED(mu_);

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

  // What the clients sent, in order.
  std::vector<modelmanager::v1::CreateDownloadRequest> create_requests()
      ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<modelmanager::v1::ListDownloadsRequest> list_requests()
      ABSL_LOCKS_EXCLUDED(mu_);
  // "pause ID", "cancel ID", ... for each single-job action.
  std::vector<std::string> actions() ABSL_LOCKS_EXCLUDED(mu_);
  // The access token of each ResumeDownload.
  std::vector<std::string> resume_tokens() ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<modelmanager::v1::BulkDownloadActionRequest::Action>
  bulk_actions() ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<modelmanager::v1::PruneDownloadsRequest> prune_requests()
      ABSL_LOCKS_EXCLUDED(mu_);
  // The deadline of each WaitDownload (time_point::max() when none).
  std::vector<std::chrono::system_clock::time_point> wait_deadlines()
      ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<modelmanager::v1::WatchDownloadRequest> watch_requests()
      ABSL_LOCKS_EXCLUDED(mu_);
  // How many WatchWaitsFor waits saw the other watch begin.
  int WatchesOverlapped() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  grpc::Status Find(const std::string& id,
                    modelmanager::v1::DownloadJob* response)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A single-job action: FAILED_PRECONDITION on a finished job, else the
  // job in state `next` (the stored job itself is left as it was).
  grpc::Status Act(const std::string& verb, const std::string& id,
                   modelmanager::v1::DownloadState next,
                   modelmanager::v1::DownloadJob* response)
      ABSL_LOCKS_EXCLUDED(mu_);

  Mutex mu_;
  int max_page_size_ ABSL_GUARDED_BY(mu_) = 1000;
  std::vector<modelmanager::v1::DownloadJob> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::deque<FakeWatchSession>> watch_scripts_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> watch_waits_for_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> watch_started_ ABSL_GUARDED_BY(mu_);
  int overlapped_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<modelmanager::v1::CreateDownloadRequest> create_requests_
      ABSL_GUARDED_BY(mu_);
  std::vector<modelmanager::v1::ListDownloadsRequest> list_requests_
      ABSL_GUARDED_BY(mu_);
  std::vector<std::string> actions_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> resume_tokens_ ABSL_GUARDED_BY(mu_);
  std::vector<modelmanager::v1::BulkDownloadActionRequest::Action> bulk_actions_
      ABSL_GUARDED_BY(mu_);
  std::vector<modelmanager::v1::PruneDownloadsRequest> prune_requests_
      ABSL_GUARDED_BY(mu_);
  std::vector<std::chrono::system_clock::time_point> wait_deadlines_
      ABSL_GUARDED_BY(mu_);
  std::vector<modelmanager::v1::WatchDownloadRequest> watch_requests_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace mm::testing

#endif  // MM_TESTS_TESTING_FAKE_DOWNLOADER_SERVICE_H_
