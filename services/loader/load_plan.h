// What a Load will read, decided from the weights files' headers alone
// before any byte of tensor data is read or any memory is allocated: the
// files, every tensor's source range and its 64-byte aligned place in the
// destination region, the region's total size, and the small side files of
// a diffusers folder.
//
// Supported layouts (docs/loader.md):
//   - one safetensors file (a single-file checkpoint, LoRA, VAE, ...);
//   - one GGUF file: tensors as raw blocks, dtype the GGML type name;
//   - a folder (a diffusers model, or one submodel folder of a diffusers
//     main model) holding `*.safetensors`, or sharded weights through
//     `*.safetensors.index.json`; the repo variant picks
//     `*.<variant>.safetensors` over the unlabelled file.
//   - a PyTorch zip checkpoint (.ckpt .pt .pth .bin), read through model/'s
//     data-only unpickler.
//
// Thread-safety: free functions; a LoadPlan is a plain value.
//
//   ASSIGN_OR_RETURN(LoadPlan plan, PlanLoad({.path = dir, .submodel = "vae",
//                                             .repo_variant = "fp16"}));
#ifndef MM_SERVICES_LOADER_LOAD_PLAN_H_
#define MM_SERVICES_LOADER_LOAD_PLAN_H_

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace mm::loader {

// Alignment of every tensor inside a region.
inline constexpr uint64_t kTensorAlignment = 64;
// Side files bigger than this are not sent in the handle.
inline constexpr uint64_t kMaxSideFileBytes = 1 << 20;

struct PlannedTensor {
  std::string name;
  // safetensors dtype name, or the GGML type name for GGUF blocks; in the
  // region (after conversion, when the Load asked for a dtype).
  std::string dtype;
  std::vector<int64_t> shape;
  // Index into LoadPlan::files.
  size_t file = 0;
  // Absolute offset of the first byte in that file.
  uint64_t file_offset = 0;
  // Bytes in the region.
  uint64_t byte_size = 0;
  // Offset inside the destination region (a multiple of kTensorAlignment).
  uint64_t region_offset = 0;
  // Set when the tensor is converted while it is read (a Load's dtype):
  // its dtype and byte size in the file. Empty: copied as stored.
  std::string source_dtype;
  uint64_t source_byte_size = 0;

  bool converted() const { return !source_dtype.empty(); }
  // Bytes read from the file.
  uint64_t file_bytes() const {
    return converted() ? source_byte_size : byte_size;
  }
};

struct LoadPlan {
  std::vector<std::filesystem::path> files;
  // Each file's size when its header was read; a file that differs when
  // read is DATA_LOSS (it changed under us).
  std::vector<uint64_t> file_sizes;
  // In file order (shards in the index's order).
  std::vector<PlannedTensor> tensors;
  // Side files of the folder (config.json, ...) by name.
  std::map<std::string, std::string> side_files;
  // Bytes of the destination region (≥ 1).
  uint64_t total_bytes = 0;
  // Sum of the tensors' bytes in the files (what is read).
  uint64_t data_bytes = 0;
  // Tensors converted while read (PlanRequest::dtype).
  size_t converted_tensors = 0;
  // The weights are GGUF blocks.
  bool gguf = false;
};

struct PlanRequest {
  // The record's path made absolute (a file or a folder).
  std::filesystem::path path;
  // The record's type and format (wire values), for messages and for the
  // "main diffusers model needs a submodel" rule.
  std::string type;
  std::string format;
  // Submodel folder name, or empty.
  std::string submodel;
  // The record's repo_variant ("fp16", "fp32", "" = default).
  std::string repo_variant;
  // Load's dtype: "F16", "BF16", "F32", or empty (as stored). Floating
  // tensors (F64 F32 F16 BF16) of another dtype are planned converted:
  // dtype and byte_size in the region are the converted ones, so the
  // region's size (and the budget check) are right before any allocation.
  // Integer and bool tensors are copied as stored.
  std::string dtype;
};

// NOT_FOUND: the path or the submodel folder is missing, or a folder has no
// weights. INVALID_ARGUMENT: a submodel asked of a file, or a diffusers main
// model without one. DATA_LOSS: a header that contradicts itself or its
// file, a shard index naming a tensor its shard lacks, a tensor in two
// shards. UNIMPLEMENTED: a weights format not loaded yet.
// With a dtype: INVALID_ARGUMENT for a dtype not listed above, and for GGUF
// weights (their blocks are loaded as stored: quantized types have no torch
// counterpart, and converting only the F32/F16 tensors among them would
// hand out a model no GGUF reader expects); UNIMPLEMENTED for a floating
// type libtorch 1.13 cannot convert (F8_*).
absl::StatusOr<LoadPlan> PlanLoad(const PlanRequest& request);

}  // namespace mm::loader

#endif  // MM_SERVICES_LOADER_LOAD_PLAN_H_
