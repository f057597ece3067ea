// The RAM tier's loader: a LoadPlan read into a fresh shared-memory object,
// kept by the cache as one entry.
//
// Thread-safety: LoadIntoShm may run on many threads at once; a RamModel is
// immutable once built.
//
//   ASSIGN_OR_RETURN(auto model, LoadIntoShm(plan, {.name_log = log}, {}));
//   handle.set_shm_name(model->region().name());
#ifndef MM_SERVICES_LOADER_RAM_TIER_H_
#define MM_SERVICES_LOADER_RAM_TIER_H_

#include <memory>

#include "absl/status/statusor.h"
#include "services/loader/load_plan.h"
#include "services/loader/model_cache.h"
#include "services/loader/region_reader.h"
#include "services/loader/shm_region.h"

namespace mm::loader {

// A model resident in shared memory: the region and the plan it was read
// by (tensor names, dtypes, shapes and offsets for the handle).
class RamModel : public CachedValue {
 public:
  RamModel(std::unique_ptr<ShmRegion> region, LoadPlan plan)
      : region_(std::move(region)), plan_(std::move(plan)) {}
  const ShmRegion& region() const { return *region_; }
  const LoadPlan& plan() const { return plan_; }

 private:
  std::unique_ptr<ShmRegion> region_;
  LoadPlan plan_;
};

// Creates a region of plan.total_bytes (options.bytes is ignored) and reads
// the plan into it. Errors are those of ShmRegion::Create and
// ReadIntoRegion; the region is unlinked on failure.
absl::StatusOr<std::shared_ptr<const RamModel>> LoadIntoShm(
    LoadPlan plan, ShmRegion::Options shm_options,
    const ReadOptions& read_options);

}  // namespace mm::loader

#endif  // MM_SERVICES_LOADER_RAM_TIER_H_
