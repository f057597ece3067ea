// torch::Tensor views of a LoadedModel's tensors: each is `from_blob` over
// the read-only shared-memory mapping, so nothing is copied, and it is
// valid only while the LoadedModel lives (destroying it unmaps). The
// mapping is PROT_READ: writing into a view (an in-place op) kills the
// process with SIGSEGV; clone() a tensor to get a writable copy.
//
// Only in builds with libtorch: link `mm_loader_client_torch` (made when
// CMake finds libtorch, MM_WITH_TORCH); `mm_loader_client` alone gives the
// raw spans without libtorch. at::Tensor is torch::Tensor.
//
// Thread-safety: free functions; the views may be read from any thread.
//
//   ASSIGN_OR_RETURN(auto model, LoadedModel::Load(channel, {.key = k}));
//   ASSIGN_OR_RETURN(auto tensors, TorchTensors(*model));
//   for (const auto& [name, tensor] : tensors) Use(name, tensor);
#ifndef MM_SERVICES_LOADER_CLIENT_TORCH_TENSORS_H_
#define MM_SERVICES_LOADER_CLIENT_TORCH_TENSORS_H_

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "services/loader/client/loaded_model.h"

namespace mm::loader::client {

// A view of one tensor with its dtype and shape (CPU, contiguous).
// UNIMPLEMENTED for a dtype torch has no type for (GGUF blocks such as
// Q4_0, F8, unsigned integers wider than 8 bits: use the raw span);
// DATA_LOSS when its byte size does not match dtype and shape.
absl::StatusOr<at::Tensor> AsTorchTensor(const TensorView& view);

// Every tensor of `model` in file order, named; the first error of
// AsTorchTensor, naming the tensor.
absl::StatusOr<std::vector<std::pair<std::string, at::Tensor>>> TorchTensors(
    const LoadedModel& model);

}  // namespace mm::loader::client

#endif  // MM_SERVICES_LOADER_CLIENT_TORCH_TENSORS_H_
