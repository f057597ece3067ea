// The tensor table of a weights file, as every format reader produces it and
// as the probe and the loader consume it. Readers fill it from headers only;
// building one never reads tensor data.
//
// Thread-safety: a plain value type; const methods may be called from many
// threads at once, mutation needs external synchronisation.
//
//   TensorIndex index;
//   RETURN_IF_ERROR(index.AddTensor(std::move(info)));   // rejects duplicates
//   if (const TensorInfo* t = index.Find("decoder.conv_in.weight")) ...
#ifndef MM_MODEL_TENSOR_INDEX_H_
#define MM_MODEL_TENSOR_INDEX_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace mm::model {

// One tensor of a weights file.
struct TensorInfo {
  std::string name;
  // The safetensors dtype name: "F32", "F16", "BF16", "I64", "U8", ... For
  // GGUF, the ggml type name ("Q4_0", "F16", ...).
  std::string dtype;
  // Outermost dimension first (PyTorch order), for every format; GGUF files
  // store dimensions innermost first and are reversed on reading.
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

// "safetensors", "torch_zip" or "gguf", for messages.
absl::string_view WeightsFormatName(WeightsFormat format);

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

  // Appends `tensor`, keeping the name map used by Find current. A name that
  // is already present is refused with DATA_LOSS (a file whose tensor table
  // names a tensor twice cannot be loaded unambiguously).
  absl::Status AddTensor(TensorInfo tensor);

  // Returns the tensor named `name`, or nullptr. O(1) when every tensor was
  // added with AddTensor (renaming an added tensor in place is not
  // supported); scans when `tensors` was filled directly.
  const TensorInfo* Find(absl::string_view name) const;

  // Name → position in `tensors`; maintained by AddTensor.
  absl::flat_hash_map<std::string, size_t> index_by_name;
};

// True when `text` is well-formed UTF-8 (no overlongs, no surrogates, nothing
// above U+10FFFF). Readers check names with it so that the index can always
// be written as JSON.
bool IsValidUtf8(absl::string_view text);

// `text` with every ill-formed UTF-8 sequence replaced by U+FFFD, for values
// that are only informative (metadata strings).
std::string SanitizeUtf8(absl::string_view text);

}  // namespace mm::model

#endif  // MM_MODEL_TENSOR_INDEX_H_
