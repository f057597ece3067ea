// What a Load will read, decided from the weights files' headers alone
// before any byte of tensor data is read or any memory is allocated: the
// files, every tensor's source range and its 64-byte aligned place in the
// destination region, the region's total size, and the small side files of
// a diffusers folder.
//
// Supported layouts (docs/loader.md):
//   - one safetensors file (a single-file checkpoint, LoRA, VAE, ...);
//   - one GGUF file: tensors as raw blocks, dtype the GGML type name;
//   - one PyTorch zip checkpoint (torch.save >= 1.6, stored entries,
//     contiguous tensors; several tensors may view one storage);
//   - one submodel of a single-file main checkpoint: the tensors whose
//     names start with that submodel's prefix (kCheckpointLayouts);
//   - a folder (a diffusers model, or one submodel folder of a diffusers
//     main model) holding `*.safetensors`, or sharded weights through
//     `*.safetensors.index.json`; the repo variant picks
//     `*.<variant>.safetensors` over the unlabelled file; without any
//     safetensors, `diffusion_pytorch_model*.bin` or `pytorch_model*.bin`
//     (or their `*.bin.index.json`) by the same rules;
//   - a files-only submodel folder (tokenizer, scheduler, ...): no tensors,
//     only the side files, in a region of kTensorAlignment zero bytes.
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
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

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
  // The record's base: which prefix table splits a single-file main
  // checkpoint into submodels.
  std::string base;
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

// One submodel of a single-file main checkpoint: the tensors whose names
// start with `prefix` (names are kept whole, prefix included).
struct SubmodelPrefix {
  absl::string_view submodel;
  absl::string_view prefix;
};

// How the single-file main checkpoints of one base are split.
struct CheckpointLayout {
  absl::string_view base;
  std::span<const SubmodelPrefix> submodels;
  // The submodel that is the whole file when no tensor name starts with
  // any of the prefixes (FLUX files holding only the transformer, with
  // bare names); empty: none.
  absl::string_view bare_submodel;
};

// The table (docs/loader.md lists it): sd-1, sd-2, sdxl, sdxl-refiner, flux.
std::span<const CheckpointLayout> CheckpointLayouts();

// INTERNAL when two submodels of `layout` share a name, or one's prefix
// starts with another's (a tensor would belong to both), or a prefix is
// empty. PlanLoad checks the layout it uses, so a bad table entry fails
// loudly instead of splitting wrongly.
absl::Status CheckCheckpointLayout(const CheckpointLayout& layout);

// Submodel folders of a diffusers model that hold no weights, only small
// files (tokenizer, tokenizer_2, tokenizer_3, scheduler, feature_extractor).
bool IsFilesOnlySubmodel(absl::string_view submodel);

// NOT_FOUND: the path or the submodel folder is missing, a folder has no
// weights, a files-only folder has no side files, or a single-file main
// checkpoint lacks the submodel (the message lists those it has).
// INVALID_ARGUMENT: a submodel asked of a single file that is not a main
// model, a submodel name that is not a folder name, or a diffusers main
// model without a submodel. DATA_LOSS: a header that contradicts itself or
// its file, a shard index naming a tensor its shard lacks, a tensor in two
// shards, a submodel folder that leads out of the model folder (symlink).
// UNIMPLEMENTED: a weights format not loaded yet, a strided PyTorch view,
// a single-file main checkpoint of a base with no prefix table.
// INTERNAL: a prefix table entry that collides (CheckCheckpointLayout).
// With a dtype: INVALID_ARGUMENT for a dtype not listed above, and for GGUF
// weights (their blocks are loaded as stored: quantized types have no torch
// counterpart, and converting only the F32/F16 tensors among them would
// hand out a model no GGUF reader expects); UNIMPLEMENTED for a floating
// type libtorch 1.13 cannot convert (F8_*).
absl::StatusOr<LoadPlan> PlanLoad(const PlanRequest& request);

}  // namespace mm::loader

#endif  // MM_SERVICES_LOADER_LOAD_PLAN_H_
