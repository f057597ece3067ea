// The loader's logic without gRPC streaming: resolves a Load request to a
// record, a load plan and a cache entry, loads it into the RAM tier when it
// is not cached, and returns a lease with the handle a client maps.
//
// Lifecycle: built once by main (or a test), shared by every rpc; the
// leases it hands out must end before it is destroyed.
// Thread-safety: every method may be called from any thread.
//
//   ModelLoader loader({.models_dir = dir, .ram_budget_bytes = 8 << 30,
//                       .records = &source});
//   ASSIGN_OR_RETURN(ModelLoader::Loaded loaded, loader.Load(request, {}));
//   Send(loaded.handle);  // keep `loaded.lease` while the client maps it
#ifndef MM_SERVICES_LOADER_MODEL_LOADER_H_
#define MM_SERVICES_LOADER_MODEL_LOADER_H_

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "modelmanager/v1/loader.pb.h"
#include "services/loader/device.h"
#include "services/loader/loader_registry.h"
#include "services/loader/model_cache.h"
#include "services/loader/record_source.h"
#include "services/loader/shm_region.h"

namespace mm::loader {

class ModelLoader {
 public:
  struct Options {
    // Where relative record paths are resolved. Required.
    std::filesystem::path models_dir;
    // RAM tier budget in bytes. Required (> 0).
    uint64_t ram_budget_bytes = 0;
    // Group of the shm objects (mode 0640); unset: 0600.
    std::optional<gid_t> shm_group;
    // Where shm names are recorded for the next start's clean-up; may be
    // null.
    ShmNameLog* shm_name_log = nullptr;
    // Unleased entries idle this long are dropped (ExpireIdle); zero: never.
    absl::Duration keep_alive = absl::ZeroDuration();
    // Reading threads per load.
    int read_threads = 4;
    // Records. Required; must outlive the loader.
    RecordSource* records = nullptr;
    // Which families can be loaded; null: DefaultLoaderRegistry(). Must
    // outlive the loader.
    const LoaderRegistry* registry = nullptr;
    // The VRAM tier's device, or null (no VRAM tier: TIER_VRAM fails with
    // `vram_unavailable`, or a generic FAILED_PRECONDITION). Must outlive
    // the loader.
    Device* device = nullptr;
    absl::Status vram_unavailable;
    // VRAM tier budget in bytes (> 0 when `device` is set).
    uint64_t vram_budget_bytes = 0;
    // Defaults to RealClock().
    Clock* clock = nullptr;
  };

  struct Loaded {
    ModelCache::Lease lease;
    modelmanager::v1::ModelHandle handle;
  };

  using ProgressCallback =
      std::function<void(const modelmanager::v1::LoadProgress&)>;

  explicit ModelLoader(const Options& options);

  // Errors as loader.proto's Load lists them.
  absl::StatusOr<Loaded> Load(const modelmanager::v1::LoadRequest& request,
                              const ProgressCallback& progress);
  // Unload by key, submodel and dtype.
  absl::StatusOr<uint64_t> Unload(
      const modelmanager::v1::UnloadRequest& request);
  modelmanager::v1::CacheStats GetCacheStats() const;
  // Each tier's own statistics (the metrics); no VRAM ones without a
  // device.
  ModelCache::Stats RamStats() const { return cache_.GetStats(); }
  std::optional<ModelCache::Stats> VramStats() const {
    if (options_.device == nullptr) return std::nullopt;
    return vram_cache_.GetStats();
  }
  // A record changed (`deleted` false: `record` is its new state) or was
  // deleted: drops the cache entries it makes stale (all of them on
  // delete; those loaded from another path or hash on change). Leased
  // entries go when their last lease ends. Returns the entries affected.
  int OnRecordChanged(const modelmanager::v1::Model& record, bool deleted);

  // Keep-alive: drops idle unleased entries; the service calls it
  // periodically.
  int ExpireIdle() { return cache_.ExpireIdle() + vram_cache_.ExpireIdle(); }
  absl::Duration keep_alive() const { return options_.keep_alive; }

 private:
  const Options options_;
  Clock* const clock_;
  LoaderRegistry default_registry_;
  const LoaderRegistry* registry_;
  ModelCache cache_;
  // Entries copied to the device, filled from cache_'s; unleased ones are
  // moved out smallest first.
  ModelCache vram_cache_;
};

}  // namespace mm::loader

#endif  // MM_SERVICES_LOADER_MODEL_LOADER_H_
