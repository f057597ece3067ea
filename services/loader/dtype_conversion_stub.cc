// dtype conversion in a build without libtorch (MM_WITH_TORCH=OFF, or AUTO
// where it was not found): nothing converts, and a Load with a dtype is
// UNIMPLEMENTED (ModelLoader asks DtypeConversionAvailable first).
#include "services/loader/dtype_conversion.h"

namespace mm::loader {

bool DtypeConversionAvailable() { return false; }

bool IsTargetDtype(absl::string_view dtype) {
  return dtype == "F16" || dtype == "BF16" || dtype == "F32";
}

bool IsConvertibleDtype(absl::string_view dtype) {
  return dtype == "F64" || dtype == "F32" || dtype == "F16" || dtype == "BF16";
}

absl::Status ConvertElements(absl::string_view from, absl::string_view to,
                             const void* source, void* destination,
                             uint64_t elements) {
  return absl::UnimplementedError(
      "dtype conversion: this mm-loader was built without libtorch "
      "(MM_WITH_TORCH)");
}

}  // namespace mm::loader
