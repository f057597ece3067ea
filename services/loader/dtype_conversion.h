// Floating-point dtype conversion of tensor bytes while loading (Load's
// `dtype`), done by libtorch so that the bytes are exactly what
// `torch.Tensor.to(dtype)` gives. This header is free of libtorch: only
// dtype_conversion.cc includes it (its headers cost seconds per
// translation unit); dtype_conversion_stub.cc stands in when the build has
// no libtorch (MM_WITH_TORCH).
//
// Thread-safety: ConvertElements may run on many threads at once. It keeps
// libtorch's own intra-op thread pool at one thread (see the .cc): callers
// parallelise across chunks on their own threads.
//
//   if (IsConvertibleDtype(t.dtype)) RETURN_IF_ERROR(ConvertElements(
//       "F32", "F16", staging, region + offset, elements));
#ifndef MM_SERVICES_LOADER_DTYPE_CONVERSION_H_
#define MM_SERVICES_LOADER_DTYPE_CONVERSION_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace mm::loader {

// Whether this build converts (it was built with libtorch).
bool DtypeConversionAvailable();

// The dtypes a Load may ask for: "F16", "BF16", "F32".
bool IsTargetDtype(absl::string_view dtype);

// Source dtypes that are converted (safetensors names): F64, F32, F16, BF16.
// Other floating types (F8_*) have no libtorch 1.13 counterpart; integer
// and GGUF block types are never converted.
bool IsConvertibleDtype(absl::string_view dtype);

// Converts `elements` elements of dtype `from` at `source` into dtype `to`
// at `destination` (the ranges must not overlap), as torch.Tensor.to does:
// round to nearest even, NaN and infinities kept, subnormals kept.
// INVALID_ARGUMENT for a dtype outside the lists above; UNIMPLEMENTED
// without libtorch; INTERNAL if libtorch throws.
absl::Status ConvertElements(absl::string_view from, absl::string_view to,
                             const void* source, void* destination,
                             uint64_t elements);

}  // namespace mm::loader

#endif  // MM_SERVICES_LOADER_DTYPE_CONVERSION_H_
