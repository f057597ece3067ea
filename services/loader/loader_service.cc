#include "services/loader/loader_service.h"

#include <optional>
#include <utility>

#include "common/grpc_status.h"
#include "common/logging.h"

namespace mm::loader {

namespace v1 = ::modelmanager::v1;

// One Load stream. Deleted when gRPC is done with it (OnDone) and its worker
// thread has finished, whichever comes last.
class LoadReactor : public grpc::ServerWriteReactor<v1::LoadResponse> {
 public:
  LoadReactor(LoaderService* service, v1::LoadRequest request)
      : service_(service), request_(std::move(request)) {}

  // Starts the worker, or finishes at once when the service is shutting
  // down. Called once, right after the service registered the reactor.
  void Start(bool shutting_down) {
    if (shutting_down) {
      MutexLock lock(&mu_);
      worker_done_ = true;
      FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                "the loader is shutting down; load again once "
                                "it is back"));
      return;
    }
    std::thread([this] { Work(); }).detach();
  }

  // Ends the stream with `status` (e.g. UNAVAILABLE at shutdown), releasing
  // the lease.
  void Abort(const grpc::Status& status) {
    ModelCache::Lease lease;
    {
      MutexLock lock(&mu_);
      lease = std::move(lease_);
      pending_handle_.reset();
      pending_progress_.reset();
      if (!finish_status_.has_value()) finish_status_ = status;
      MaybeWriteLocked();
    }
  }

  void OnWriteDone(bool ok) override {
    ModelCache::Lease lease;
    {
      MutexLock lock(&mu_);
      write_in_flight_ = false;
      if (!ok) {
        // The client is gone; OnCancel follows, but release now.
        lease = std::move(lease_);
        pending_handle_.reset();
        pending_progress_.reset();
        if (!finish_status_.has_value()) {
          finish_status_ =
              grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
        }
      }
      MaybeWriteLocked();
    }
  }

  void OnCancel() override {
    ModelCache::Lease lease;
    {
      MutexLock lock(&mu_);
      cancelled_ = true;
      if (lease_.valid()) {
        MM_LOG(INFO) << "lease " << lease_id_ << " on " << lease_.cache_key()
                     << " released: the client ended the stream";
      }
      lease = std::move(lease_);
      pending_handle_.reset();
      pending_progress_.reset();
      if (!finish_status_.has_value()) {
        finish_status_ = grpc::Status(grpc::StatusCode::CANCELLED,
                                      "cancelled by the client");
      }
      MaybeWriteLocked();
    }
    // `lease` ends here, outside our lock (releasing may unmap a region).
  }

  void OnDone() override {
    bool last;
    {
      MutexLock lock(&mu_);
      done_ = true;
      last = worker_done_;
    }
    if (last) Destroy();
  }

 private:
  void Work() {
    absl::StatusOr<ModelLoader::Loaded> loaded = service_->loader_->Load(
        request_, [this](const v1::LoadProgress& progress) {
          MutexLock lock(&mu_);
          if (finish_status_.has_value()) return;
          v1::LoadResponse response;
          *response.mutable_progress() = progress;
          pending_progress_ = std::move(response);
          MaybeWriteLocked();
        });
    ModelCache::Lease unused;  // released outside the lock
    bool last;
    {
      MutexLock lock(&mu_);
      if (!loaded.ok()) {
        if (!finish_status_.has_value()) {
          finish_status_ = ToGrpcStatus(loaded.status());
        }
      } else if (finish_status_.has_value()) {
        // Cancelled (or shut down) while loading: the entry stays cached,
        // the lease ends now.
        unused = std::move(loaded->lease);
      } else {
        lease_ = std::move(loaded->lease);
        lease_id_ = loaded->handle.lease_id();
        v1::LoadResponse response;
        *response.mutable_handle() = std::move(loaded->handle);
        pending_handle_ = std::move(response);
        pending_progress_.reset();
      }
      MaybeWriteLocked();
      worker_done_ = true;
      last = done_;
    }
    unused.Release();
    if (last) Destroy();
  }

  // Starts the next write, or the finish once nothing is left to write.
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (write_in_flight_ || finished_) return;
    if (pending_handle_.has_value() && !finish_status_.has_value()) {
      current_ = *std::move(pending_handle_);
      pending_handle_.reset();
      write_in_flight_ = true;
      StartWrite(&current_);
      return;
    }
    if (pending_progress_.has_value() && !finish_status_.has_value()) {
      current_ = *std::move(pending_progress_);
      pending_progress_.reset();
      write_in_flight_ = true;
      StartWrite(&current_);
      return;
    }
    if (finish_status_.has_value()) FinishLocked(*finish_status_);
  }

  void FinishLocked(const grpc::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  void Destroy() {
    service_->Forget(this);
    delete this;
  }

  LoaderService* const service_;
  const v1::LoadRequest request_;
  Mutex mu_;
  ModelCache::Lease lease_ ABSL_GUARDED_BY(mu_);
  std::string lease_id_ ABSL_GUARDED_BY(mu_);
  // The message being written (must live until OnWriteDone).
  v1::LoadResponse current_ ABSL_GUARDED_BY(mu_);
  std::optional<v1::LoadResponse> pending_handle_ ABSL_GUARDED_BY(mu_);
  std::optional<v1::LoadResponse> pending_progress_ ABSL_GUARDED_BY(mu_);
  // Set once the stream is to end; Finish is called when no write is in
  // flight.
  std::optional<grpc::Status> finish_status_ ABSL_GUARDED_BY(mu_);
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool worker_done_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

LoaderService::LoaderService(ModelLoader* loader) : loader_(loader) {
  if (loader_->keep_alive() > absl::ZeroDuration()) {
    keep_alive_ = std::thread([this] { KeepAliveLoop(); });
  }
}

LoaderService::~LoaderService() {
  Shutdown();
  // Workers still loading (a client that cancelled mid-read) finish on
  // their own; wait for them so none outlives the loader.
  MutexLock lock(&mu_);
  mu_.Await([this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return reactors_.empty();
  });
}

void LoaderService::Shutdown() {
  std::set<LoadReactor*> open;
  {
    MutexLock lock(&mu_);
    if (shutting_down_) return;
    shutting_down_ = true;
    open = reactors_;
    // Abort under our lock: a reactor deletes itself only after Forget,
    // which needs this lock, so every pointer in `open` stays valid.
    for (LoadReactor* reactor : open) {
      reactor->Abort(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                  "the loader is shutting down; load again "
                                  "once it is back"));
    }
  }
  if (keep_alive_.joinable()) keep_alive_.join();
}

void LoaderService::Forget(LoadReactor* reactor) {
  MutexLock lock(&mu_);
  reactors_.erase(reactor);
}

void LoaderService::KeepAliveLoop() {
  absl::Duration interval =
      std::min(absl::Seconds(30), loader_->keep_alive() / 4);
  for (;;) {
    {
      MutexLock lock(&mu_);
      // Real time between checks; the expiry reads the loader's clock.
      mu_.AwaitWithTimeout([this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(
                               mu_) { return shutting_down_; },
                           interval);
      if (shutting_down_) return;
    }
    int dropped = loader_->ExpireIdle();
    if (dropped > 0) {
      MM_LOG(INFO) << "keep-alive: dropped " << dropped << " idle model(s)";
    }
  }
}

grpc::ServerWriteReactor<v1::LoadResponse>* LoaderService::Load(
    grpc::CallbackServerContext* context, const v1::LoadRequest* request) {
  auto* reactor = new LoadReactor(this, *request);
  bool shutting_down;
  {
    MutexLock lock(&mu_);
    shutting_down = shutting_down_;
    reactors_.insert(reactor);
  }
  reactor->Start(shutting_down);
  return reactor;
}

grpc::Status LoaderService::Preload(grpc::ServerContext* context,
                                    const v1::LoadRequest* request,
                                    v1::PreloadResponse* response) {
  absl::StatusOr<ModelLoader::Loaded> loaded = loader_->Load(*request, {});
  if (!loaded.ok()) return ToGrpcStatus(loaded.status());
  response->set_cache_key(loaded->handle.cache_key());
  response->set_bytes(loaded->handle.total_bytes());
  response->set_hit(loaded->lease.hit());
  return grpc::Status::OK;
}

grpc::Status LoaderService::Unload(grpc::ServerContext* context,
                                   const v1::UnloadRequest* request,
                                   v1::UnloadResponse* response) {
  absl::StatusOr<uint64_t> freed = loader_->Unload(*request);
  if (!freed.ok()) return ToGrpcStatus(freed.status());
  response->set_freed_bytes(static_cast<int64_t>(*freed));
  return grpc::Status::OK;
}

grpc::Status LoaderService::GetCacheStats(grpc::ServerContext* context,
                                          const v1::GetCacheStatsRequest*,
                                          v1::CacheStats* response) {
  *response = loader_->GetCacheStats();
  return grpc::Status::OK;
}

}  // namespace mm::loader
