#include "services/loader/record_watcher.h"

#include <algorithm>

#include "common/grpc_status.h"
#include "common/logging.h"

namespace mm::loader {

namespace v1 = ::modelmanager::v1;

RecordWatcher::RecordWatcher(std::shared_ptr<grpc::Channel> channel,
                             ModelLoader* loader, absl::Duration max_backoff)
    : stub_(v1::ModelRecords::NewStub(channel)),
      loader_(loader),
      max_backoff_(max_backoff) {}

RecordWatcher::~RecordWatcher() { Stop(); }

void RecordWatcher::Start() {
  thread_ = std::thread([this] { Run(); });
}

void RecordWatcher::Stop() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
    if (context_ != nullptr) context_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

void RecordWatcher::Run() {
  absl::Duration backoff = absl::Milliseconds(250);
  for (;;) {
    bool progressed = WatchOnce();
    if (progressed) backoff = absl::Milliseconds(250);
    MutexLock lock(&mu_);
    // Wait before reconnecting; Stop ends the wait.
    mu_.AwaitWithTimeout(
        [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; },
        backoff);
    if (stopping_) return;
    backoff = std::min(backoff * 2, max_backoff_);
  }
}

bool RecordWatcher::WatchOnce() {
  grpc::ClientContext context;
  {
    MutexLock lock(&mu_);
    if (stopping_) return false;
    context_ = &context;
  }
  v1::WatchModelsRequest request;
  if (revision_.has_value()) request.set_since_revision(*revision_);
  auto reader = stub_->WatchModels(&context, request);
  v1::ModelEvent event;
  bool progressed = false;
  while (reader->Read(&event)) {
    progressed = true;
    revision_ = std::max(revision_.value_or(0), event.revision());
    switch (event.type()) {
      case v1::ModelEvent::MODIFIED:
        loader_->OnRecordChanged(event.model(), /*deleted=*/false);
        break;
      case v1::ModelEvent::DELETED:
        loader_->OnRecordChanged(event.model(), /*deleted=*/true);
        break;
      default:
        break;
    }
  }
  grpc::Status status = reader->Finish();
  {
    MutexLock lock(&mu_);
    context_ = nullptr;
    if (stopping_) return progressed;
  }
  if (status.error_code() == grpc::StatusCode::OUT_OF_RANGE ||
      status.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
    // The records service no longer has our resume point: start afresh.
    // Changes in the gap are still caught by each Load's own record check.
    revision_.reset();
  }
  MM_LOG(WARNING) << "records change feed ended (" << GrpcStatusLine(status)
                  << "); reconnecting";
  return progressed;
}

}  // namespace mm::loader
