// OpenCudaDevice of a build without CUDA (MM_WITH_CUDA off, or no toolkit).
#include "absl/strings/str_cat.h"
#include "services/loader/device.h"

namespace mm::loader {

absl::StatusOr<std::unique_ptr<Device>> OpenCudaDevice(int ordinal) {
  return absl::FailedPreconditionError(absl::StrCat(
      "tier: this loader was built without CUDA, so it has no VRAM tier "
      "(device ",
      ordinal,
      "); load into TIER_RAM, or build with the CUDA "
      "toolkit (-DMM_WITH_CUDA=ON)"));
}

}  // namespace mm::loader
