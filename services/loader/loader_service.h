// The gRPC face of the loader: Load as a callback-API server stream (so a
// held lease costs no thread, and the client's cancellation or death is an
// event, OnCancel, that releases the lease at once), the other rpcs
// synchronous. The logic lives in ModelLoader.
//
// A Load stream's life: a worker thread runs ModelLoader::Load, sending
// progress (latest-wins: at most one write in flight, newer progress
// replaces unsent progress), then the handle; the stream then stays open,
// holding the lease, until the client cancels (or dies), or Shutdown ends
// it with UNAVAILABLE.
//
// Thread-safety: thread-safe. Shutdown before destroying; the destructor
// waits for every stream's worker to finish.
//
//   LoaderService service(&loader);
//   host->AddShutdownHook([&] { service.Shutdown(); });
#ifndef MM_SERVICES_LOADER_LOADER_SERVICE_H_
#define MM_SERVICES_LOADER_LOADER_SERVICE_H_

#include <set>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "common/mutex.h"
#include "modelmanager/v1/loader.grpc.pb.h"
#include "services/loader/model_loader.h"

namespace mm::loader {

inline constexpr char kLoaderServiceName[] = "modelmanager.v1.Loader";

class LoadReactor;

class LoaderService final
    : public modelmanager::v1::Loader::WithCallbackMethod_Load<
          modelmanager::v1::Loader::Service> {
 public:
  // `loader` must outlive the service.
  explicit LoaderService(ModelLoader* loader);
  ~LoaderService() override;

  // Ends every open Load stream with UNAVAILABLE (releasing its lease),
  // refuses new ones, and stops the keep-alive thread.
  void Shutdown();

  grpc::ServerWriteReactor<modelmanager::v1::LoadResponse>* Load(
      grpc::CallbackServerContext* context,
      const modelmanager::v1::LoadRequest* request) override;
  grpc::Status Preload(grpc::ServerContext* context,
                       const modelmanager::v1::LoadRequest* request,
                       modelmanager::v1::PreloadResponse* response) override;
  grpc::Status Unload(grpc::ServerContext* context,
                      const modelmanager::v1::UnloadRequest* request,
                      modelmanager::v1::UnloadResponse* response) override;
  grpc::Status GetCacheStats(
      grpc::ServerContext* context,
      const modelmanager::v1::GetCacheStatsRequest* request,
      modelmanager::v1::CacheStats* response) override;

 private:
  friend class LoadReactor;
  // Called by a reactor when it is deleted.
  void Forget(LoadReactor* reactor);
  void KeepAliveLoop();

  ModelLoader* const loader_;
  Mutex mu_;
  std::set<LoadReactor*> reactors_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  std::thread keep_alive_;
};

}  // namespace mm::loader

#endif  // MM_SERVICES_LOADER_LOADER_SERVICE_H_
