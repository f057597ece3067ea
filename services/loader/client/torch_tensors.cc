// The only translation unit of the client that includes libtorch's
// functions (the header needs the Tensor class only). Not <ATen/ATen.h>:
// libtorch 1.13's full header set does not compile with clang in C++20.
#include "services/loader/client/torch_tensors.h"

#include <ATen/ops/from_blob.h>

#include <cstdint>
#include <optional>

#include "absl/strings/str_cat.h"

namespace mm::loader::client {
namespace {

std::optional<at::ScalarType> ScalarTypeOf(const std::string& dtype) {
  if (dtype == "F64") return at::kDouble;
  if (dtype == "F32") return at::kFloat;
  if (dtype == "F16") return at::kHalf;
  if (dtype == "BF16") return at::kBFloat16;
  if (dtype == "I64") return at::kLong;
  if (dtype == "I32") return at::kInt;
  if (dtype == "I16") return at::kShort;
  if (dtype == "I8") return at::kChar;
  if (dtype == "U8") return at::kByte;
  if (dtype == "BOOL") return at::kBool;
  return std::nullopt;
}

}  // namespace

absl::StatusOr<at::Tensor> AsTorchTensor(const TensorView& view) {
  std::optional<at::ScalarType> type = ScalarTypeOf(view.dtype);
  if (!type) {
    return absl::UnimplementedError(
        absl::StrCat("tensor '", view.name, "': dtype ", view.dtype,
                     " has no torch type; use its raw bytes"));
  }
  uint64_t elements = 1;
  bool overflow = false;
  for (int64_t d : view.shape) {
    overflow |= d < 0 || __builtin_mul_overflow(
                             elements, static_cast<uint64_t>(d), &elements);
  }
  const uint64_t element_size = c10::elementSize(*type);
  if (overflow || view.bytes.size() % element_size != 0 ||
      view.bytes.size() / element_size != elements) {
    return absl::DataLossError(
        absl::StrCat("tensor '", view.name, "': ", view.bytes.size(),
                     " bytes do not hold the shape's ", elements,
                     " elements of ", view.dtype));
  }
  // from_blob never owns: the LoadedModel's mapping does. The const_cast
  // is torch's API (no const tensors); the pages themselves are read-only.
  return at::from_blob(const_cast<std::byte*>(view.bytes.data()), view.shape,
                       at::TensorOptions().dtype(*type));
}

absl::StatusOr<std::vector<std::pair<std::string, at::Tensor>>> TorchTensors(
    const LoadedModel& model) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  out.reserve(model.tensors().size());
  for (const TensorView& view : model.tensors()) {
    absl::StatusOr<at::Tensor> tensor = AsTorchTensor(view);
    if (!tensor.ok()) return tensor.status();
    out.emplace_back(view.name, *std::move(tensor));
  }
  return out;
}

}  // namespace mm::loader::client
