#include "services/loader/ram_tier.h"

#include "common/status.h"

namespace mm::loader {

absl::StatusOr<std::shared_ptr<const RamModel>> LoadIntoShm(
    LoadPlan plan, ShmRegion::Options shm_options,
    const ReadOptions& read_options) {
  shm_options.bytes = plan.total_bytes;
  ASSIGN_OR_RETURN(std::unique_ptr<ShmRegion> region,
                   ShmRegion::Create(shm_options));
  RETURN_IF_ERROR(
      ReadIntoRegion(plan, region->data(), read_options, region->fd()));
  return std::make_shared<const RamModel>(std::move(region), std::move(plan));
}

}  // namespace mm::loader
