// The tensor table of a weights file, as every format reader produces it and
// as the probe and the loader consume it. Readers fill it from headers only;
// building one never reads tensor data.
#ifndef MM_MODEL_TENSOR_INDEX_H_
#define MM_MODEL_TENSOR_INDEX_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace mm::model {

// One tensor of a weights file.
struct TensorInfo {
  std::string name;
  // The safetensors dtype name: "F32", "F16", "BF16", "I64", "U8", ... For
  // GGUF, the ggml type name ("Q4_0", "F16", ...).
  std::string dtype;
  std::vector<int64_t> shape;
  // Where the bytes are. For safetensors and GGUF: the absolute byte offset
  // of the first element in the file. For a PyTorch zip checkpoint: the
  // offset of the first element inside the storage entry `storage`.
  uint64_t offset = 0;
  // Bytes the tensor's elements occupy (product of shape × element size;
  // for quantized GGUF types, the block-rounded size).
  uint64_t byte_size = 0;
  // PyTorch checkpoints only: the archive entry holding the storage
  // ("archive/data/0"), and the element strides.
  std::string storage;
  std::vector<int64_t> strides;
};

enum class WeightsFormat { kSafetensors, kTorchZip, kGguf };

// Everything a reader learned about a weights file.
struct TensorIndex {
  WeightsFormat format = WeightsFormat::kSafetensors;
  // Tensors in file order. Names are unique.
  std::vector<TensorInfo> tensors;
  // Non-tensor values at the top level of the state dict (after unwrapping
  // a {"state_dict": ...} wrapper), such as "global_step": 220000, and the
  // safetensors "__metadata__" strings or GGUF metadata under "metadata".
  nlohmann::json scalars = nlohmann::json::object();
  // Things a user should know that did not stop the read, e.g.
  // "refused global os.system (not called)".
  std::vector<std::string> findings;

  // Returns the tensor named `name`, or nullptr.
  const TensorInfo* Find(const std::string& name) const;
};

}  // namespace mm::model

#endif  // MM_MODEL_TENSOR_INDEX_H_
