// Follows the records service's change feed (WatchModels) and tells the
// ModelLoader about changed and deleted records, so stale cache entries are
// dropped without waiting for the next Load. A broken stream (records
// service down or restarted) is reopened with backoff from the last
// revision seen, so no change is missed while it was away.
//
// Lifecycle: Start once; Stop (or the destructor) cancels the stream and
// joins the thread. Thread-safety: Start/Stop from one thread.
//
//   RecordWatcher watcher(channel, &loader);
//   watcher.Start();
#ifndef MM_SERVICES_LOADER_RECORD_WATCHER_H_
#define MM_SERVICES_LOADER_RECORD_WATCHER_H_

#include <memory>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "modelmanager/v1/records.grpc.pb.h"
#include "services/loader/model_loader.h"

namespace mm::loader {

class RecordWatcher {
 public:
  // `loader` must outlive the watcher.
  RecordWatcher(std::shared_ptr<grpc::Channel> channel, ModelLoader* loader,
                absl::Duration max_backoff = absl::Seconds(30));
  ~RecordWatcher();
  RecordWatcher(const RecordWatcher&) = delete;
  RecordWatcher& operator=(const RecordWatcher&) = delete;

  void Start();
  void Stop();

 private:
  void Run();
  // One stream, until it ends; returns whether any event arrived.
  bool WatchOnce();

  std::unique_ptr<modelmanager::v1::ModelRecords::Stub> stub_;
  ModelLoader* const loader_;
  const absl::Duration max_backoff_;
  Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // The open stream's context, to cancel it from Stop.
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  // Last revision seen (resume point); unset before the first bookmark.
  std::optional<int64_t> revision_;  // only the watch thread uses it
  std::thread thread_;
};

}  // namespace mm::loader

#endif  // MM_SERVICES_LOADER_RECORD_WATCHER_H_
