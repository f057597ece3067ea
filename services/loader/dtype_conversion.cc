// The only translation unit of mm_loader that includes libtorch. Only the
// headers it needs: <ATen/ATen.h> (through ATen/Functions.h) does not
// compile with clang in C++20 mode in libtorch 1.13 (a std::vector of the
// incomplete c10::IValue in ATen/core/List.h), and is slower to compile.
#include "services/loader/dtype_conversion.h"

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/from_blob.h>

#include <exception>
#include <mutex>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"

namespace mm::loader {
namespace {

std::optional<at::ScalarType> ScalarTypeOf(absl::string_view dtype) {
  if (dtype == "F64") return at::kDouble;
  if (dtype == "F32") return at::kFloat;
  if (dtype == "F16") return at::kHalf;
  if (dtype == "BF16") return at::kBFloat16;
  return std::nullopt;
}

// libtorch splits a large copy_ across its intra-op pool (OpenMP in
// Debian's build). The loader already converts many chunks at once on its
// read threads, so a pool per call would only oversubscribe the cores; and
// libgomp is not built with ThreadSanitizer, whose reports about the pool's
// hand-offs would be noise. One thread per call: set once, before the first
// conversion (at::set_num_threads stores a process-wide count that each
// thread applies on its first parallel region).
void UseCallerThreadsOnly() {
  static std::once_flag once;
  std::call_once(once, [] { at::set_num_threads(1); });
}

}  // namespace

bool DtypeConversionAvailable() { return true; }

bool IsTargetDtype(absl::string_view dtype) {
  return dtype == "F16" || dtype == "BF16" || dtype == "F32";
}

bool IsConvertibleDtype(absl::string_view dtype) {
  return ScalarTypeOf(dtype).has_value();
}

absl::Status ConvertElements(absl::string_view from, absl::string_view to,
                             const void* source, void* destination,
                             uint64_t elements) {
  std::optional<at::ScalarType> from_type = ScalarTypeOf(from);
  std::optional<at::ScalarType> to_type = ScalarTypeOf(to);
  if (!from_type || !to_type) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot convert ", from, " to ", to));
  }
  if (elements == 0) return absl::OkStatus();
  UseCallerThreadsOnly();
  try {
    // Views over the caller's memory on both sides: from_blob never owns
    // or copies, so the result lands straight in `destination`. copy_ of
    // one dtype into another is the kernel Tensor.to runs.
    const int64_t n = static_cast<int64_t>(elements);
    at::Tensor in = at::from_blob(const_cast<void*>(source), {n},
                                  at::TensorOptions().dtype(*from_type));
    at::Tensor out =
        at::from_blob(destination, {n}, at::TensorOptions().dtype(*to_type));
    out.copy_(in);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("converting ", from, " to ", to,
                                            " with libtorch: ", e.what()));
  }
  return absl::OkStatus();
}

}  // namespace mm::loader
