#include "services/loader/load_plan.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "model/safetensors.h"
#include "model/tensor_index.h"
#include "model/weights_file.h"
#include "model/zip_archive.h"
#include "nlohmann/json.hpp"
#include "services/loader/dtype_conversion.h"

namespace mm::loader {
namespace {

namespace fs = std::filesystem;

constexpr char kSafetensorsSuffix[] = ".safetensors";
constexpr char kIndexSuffix[] = ".safetensors.index.json";
constexpr char kBinSuffix[] = ".bin";
constexpr char kBinIndexSuffix[] = ".bin.index.json";
// The `.bin` weights a diffusers folder may hold (diffusers' and
// transformers' names); any other `.bin` there (training_args.bin,
// optimizer.bin, ...) is not weights and is never picked.
constexpr absl::string_view kBinWeightStems[] = {"diffusion_pytorch_model",
                                                 "pytorch_model"};

// The prefix table of single-file main checkpoints (docs/loader.md). The
// SD prefixes are the original LDM checkpoint layout the probe recognises
// (spec §4.1); SDXL's two text encoders are the conditioner's embedders in
// order (the refiner has only the second, OpenCLIP bigG, which diffusers
// calls text_encoder_2); FLUX files are either the bare transformer (BFL's
// release) or the all-in-one layout with model.diffusion_model., vae. and
// text_encoders.* prefixes.
constexpr SubmodelPrefix kSdSubmodels[] = {
    {"unet", "model.diffusion_model."},
    {"vae", "first_stage_model."},
    {"text_encoder", "cond_stage_model."},
};
constexpr SubmodelPrefix kSdxlSubmodels[] = {
    {"unet", "model.diffusion_model."},
    {"vae", "first_stage_model."},
    {"text_encoder", "conditioner.embedders.0."},
    {"text_encoder_2", "conditioner.embedders.1."},
};
constexpr SubmodelPrefix kSdxlRefinerSubmodels[] = {
    {"unet", "model.diffusion_model."},
    {"vae", "first_stage_model."},
    {"text_encoder_2", "conditioner.embedders.0."},
};
constexpr SubmodelPrefix kFluxSubmodels[] = {
    {"transformer", "model.diffusion_model."},
    {"vae", "vae."},
    {"text_encoder", "text_encoders.clip_l."},
    {"text_encoder_2", "text_encoders.t5xxl."},
};
constexpr CheckpointLayout kCheckpointLayouts[] = {
    {"sd-1", kSdSubmodels, ""},
    {"sd-2", kSdSubmodels, ""},
    {"sdxl", kSdxlSubmodels, ""},
    {"sdxl-refiner", kSdxlRefinerSubmodels, ""},
    {"flux", kFluxSubmodels, "transformer"},
};

constexpr absl::string_view kFilesOnlySubmodels[] = {"tokenizer", "tokenizer_2",
                                                     "tokenizer_3", "scheduler",
                                                     "feature_extractor"};
// A shard index lists tensor names and file names only; real ones are a few
// hundred kilobytes.
constexpr uint64_t kMaxIndexBytes = 64 << 20;

uint64_t AlignUp(uint64_t value) {
  return (value + kTensorAlignment - 1) / kTensorAlignment * kTensorAlignment;
}

absl::StatusOr<std::string> ReadSmallFile(const fs::path& path,
                                          uint64_t limit) {
  std::error_code error;
  uint64_t size = fs::file_size(path, error);
  if (error) {
    return absl::NotFoundError(
        absl::StrCat(path.string(), ": ", error.message()));
  }
  if (size > limit) {
    return absl::DataLossError(absl::StrCat(path.string(), " is ", size,
                                            " bytes, over the limit of ", limit,
                                            " for this kind of file"));
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  if (!in && !in.eof()) {
    return absl::InternalError(absl::StrCat("cannot read ", path.string()));
  }
  return out.str();
}

// "model.fp16" → "fp16"; "model" → "".
std::string VariantLabel(absl::string_view base) {
  size_t dot = base.rfind('.');
  return dot == absl::string_view::npos ? ""
                                        : std::string(base.substr(dot + 1));
}

// Row-major with no gaps (what torch.save writes for an ordinary tensor).
bool IsContiguous(const std::vector<int64_t>& shape,
                  const std::vector<int64_t>& strides) {
  if (strides.size() != shape.size()) return strides.empty() && shape.empty();
  int64_t expected = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1 && strides[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

bool IsShardName(absl::string_view base) {
  // "name-00001-of-00003" (HF's shard naming).
  size_t of = base.rfind("-of-");
  if (of == absl::string_view::npos || of < 6) return false;
  absl::string_view number = base.substr(of - 5, 5);
  return base[of - 6] == '-' &&
         std::all_of(number.begin(), number.end(),
                     [](char c) { return c >= '0' && c <= '9'; });
}

// Adds every tensor of the weights file `path` to `plan`.
absl::Status AddFile(const fs::path& path, LoadPlan& plan,
                     absl::flat_hash_map<std::string, size_t>& seen,
                     model::TensorIndex* index_out = nullptr) {
  ASSIGN_OR_RETURN(model::TensorIndex index, model::ReadTensorIndex(path));
  if (index.tensors.empty()) {
    // E.g. a pickle whose only content was calls the unpickler refused:
    // there is nothing to load, and nothing was run.
    return absl::InvalidArgumentError(absl::StrCat(
        path.string(), ": no tensors to load",
        index.findings.empty()
            ? std::string()
            : absl::StrCat(" (", absl::StrJoin(index.findings, "; "), ")")));
  }
  if (index.format == model::WeightsFormat::kGguf) plan.gguf = true;
  if (index.format == model::WeightsFormat::kTorchZip) {
    // model/'s data-only unpickler found each tensor's storage entry and
    // byte offset in it; make that an absolute file offset.
    ASSIGN_OR_RETURN(std::unique_ptr<model::ZipArchive> zip,
                     model::ZipArchive::Open(path));
    for (model::TensorInfo& info : index.tensors) {
      const model::ZipEntry* entry = zip->Find(info.storage);
      if (entry == nullptr) {
        return absl::DataLossError(absl::StrCat(
            path.string(), ": tensor '", info.name, "' names storage ",
            info.storage, ", which the archive lacks"));
      }
      if (entry->method != 0) {
        return absl::UnimplementedError(absl::StrCat(
            path.string(), ": storage ", info.storage,
            " is compressed; re-save the checkpoint uncompressed or as "
            "safetensors"));
      }
      if (!IsContiguous(info.shape, info.strides)) {
        return absl::UnimplementedError(absl::StrCat(
            path.string(), ": tensor '", info.name,
            "' is a strided view of its storage, which is not loaded yet; "
            "save it contiguous (tensor.contiguous()) or as safetensors"));
      }
      ASSIGN_OR_RETURN(uint64_t data, zip->DataOffset(*entry));
      info.offset += data;
    }
  }
  std::error_code error;
  uint64_t size = fs::file_size(path, error);
  if (error) {
    return absl::NotFoundError(
        absl::StrCat(path.string(), ": ", error.message()));
  }
  size_t file = plan.files.size();
  plan.files.push_back(path);
  plan.file_sizes.push_back(size);
  for (model::TensorInfo& info : index.tensors) {
    // The readers already refused offsets past the end and overlaps; this is
    // the defence for the sum, and for names repeated across shards.
    if (info.offset > size || info.byte_size > size - info.offset) {
      return absl::DataLossError(
          absl::StrCat(path.string(), ": tensor '", info.name,
                       "' ends past the end of the file"));
    }
    if (!seen.emplace(info.name, file).second) {
      return absl::DataLossError(absl::StrCat(
          path.string(), ": tensor '", info.name, "' also appears in ",
          plan.files[seen[info.name]].string()));
    }
    PlannedTensor tensor;
    tensor.name = info.name;
    tensor.dtype = info.dtype;
    tensor.shape = info.shape;
    tensor.file = file;
    tensor.file_offset = info.offset;
    tensor.byte_size = info.byte_size;
    plan.tensors.push_back(std::move(tensor));
  }
  if (index_out != nullptr) *index_out = std::move(index);
  return absl::OkStatus();
}

absl::Status AddShards(const fs::path& index_path, LoadPlan& plan) {
  ASSIGN_OR_RETURN(std::string text, ReadSmallFile(index_path, kMaxIndexBytes));
  nlohmann::json json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_discarded() || !json.is_object() ||
      !json.contains("weight_map") || !json["weight_map"].is_object()) {
    return absl::DataLossError(absl::StrCat(
        index_path.string(),
        ": not a shard index (no \"weight_map\" object); the file is corrupt"));
  }
  std::set<std::string> shards;
  absl::flat_hash_map<std::string, std::string> shard_of;
  for (const auto& [name, shard] : json["weight_map"].items()) {
    if (!shard.is_string()) {
      return absl::DataLossError(absl::StrCat(index_path.string(), ": tensor '",
                                              name, "' maps to no file name"));
    }
    std::string file = shard.get<std::string>();
    // A shard is a sibling file: never a path that leaves the folder.
    if (file.empty() || file.find('/') != std::string::npos || file == "." ||
        file == "..") {
      return absl::DataLossError(absl::StrCat(index_path.string(),
                                              ": shard name '", file,
                                              "' is not a file in the folder"));
    }
    shards.insert(file);
    shard_of[name] = file;
  }
  absl::flat_hash_map<std::string, size_t> seen;
  for (const std::string& shard : shards) {
    fs::path shard_path = index_path.parent_path() / shard;
    size_t first = plan.tensors.size();
    RETURN_IF_ERROR(AddFile(shard_path, plan, seen));
    for (size_t i = first; i < plan.tensors.size(); ++i) {
      auto it = shard_of.find(plan.tensors[i].name);
      if (it != shard_of.end() && it->second != shard) {
        return absl::DataLossError(absl::StrCat(
            index_path.string(), ": tensor '", plan.tensors[i].name,
            "' is mapped to ", it->second, " but found in ", shard));
      }
    }
  }
  for (const auto& [name, shard] : shard_of) {
    if (!seen.contains(name)) {
      return absl::DataLossError(absl::StrCat(index_path.string(), ": tensor '",
                                              name, "' is missing from ",
                                              shard));
    }
  }
  return absl::OkStatus();
}

bool IsSideFile(absl::string_view name) {
  if (absl::EndsWith(name, ".index.json")) return false;
  return absl::EndsWith(name, ".json") || absl::EndsWith(name, ".txt") ||
         absl::EndsWith(name, ".model") || absl::EndsWith(name, ".jinja");
}

// The folder's entries, sorted by name so every choice below is
// deterministic.
absl::StatusOr<std::vector<fs::directory_entry>> SortedEntries(
    const fs::path& dir) {
  std::error_code error;
  std::vector<fs::directory_entry> entries;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, error)) {
    entries.push_back(entry);
  }
  if (error) {
    return absl::NotFoundError(
        absl::StrCat(dir.string(), ": ", error.message()));
  }
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.path() < b.path(); });
  return entries;
}

// Adds `entry` to the plan's side files when it is one (by name) and small
// enough; bigger ones are left out of the handle.
absl::Status MaybeAddSideFile(const fs::directory_entry& entry,
                              LoadPlan& plan) {
  std::error_code error;
  std::string name = entry.path().filename().string();
  if (!IsSideFile(name) || !entry.is_regular_file(error)) {
    return absl::OkStatus();
  }
  if (entry.file_size(error) > kMaxSideFileBytes || error) {
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(plan.side_files[name],
                   ReadSmallFile(entry.path(), kMaxSideFileBytes));
  return absl::OkStatus();
}

bool IsBinWeightStem(absl::string_view base) {
  // "pytorch_model", "pytorch_model.fp16" or a shard,
  // "pytorch_model-00001-of-00002".
  absl::string_view stem = base.substr(0, base.find_first_of(".-"));
  return std::find(std::begin(kBinWeightStems), std::end(kBinWeightStems),
                   stem) != std::end(kBinWeightStems);
}

absl::Status PlanFolder(const fs::path& dir, const PlanRequest& request,
                        LoadPlan& plan) {
  struct Candidate {
    std::string name;
    bool is_index;
    bool safetensors;
    int score;
  };
  std::string wanted = request.repo_variant;
  if (wanted == "default" || wanted == "fp32") wanted.clear();
  std::vector<Candidate> candidates;
  std::vector<std::string> other_weights;
  std::error_code error;
  ASSIGN_OR_RETURN(std::vector<fs::directory_entry> entries,
                   SortedEntries(dir));
  for (const fs::directory_entry& entry : entries) {
    if (!entry.is_regular_file(error)) continue;
    std::string name = entry.path().filename().string();
    std::string base;
    bool is_index = false;
    bool safetensors = true;
    if (absl::EndsWith(name, kIndexSuffix)) {
      base = name.substr(0, name.size() - strlen(kIndexSuffix));
      is_index = true;
    } else if (absl::EndsWith(name, kSafetensorsSuffix)) {
      base = name.substr(0, name.size() - strlen(kSafetensorsSuffix));
      if (IsShardName(base)) continue;  // read through its index
    } else if (absl::EndsWith(name, kBinIndexSuffix) &&
               IsBinWeightStem(
                   name.substr(0, name.size() - strlen(kBinIndexSuffix)))) {
      base = name.substr(0, name.size() - strlen(kBinIndexSuffix));
      is_index = true;
      safetensors = false;
    } else if (absl::EndsWith(name, kBinSuffix) &&
               IsBinWeightStem(
                   name.substr(0, name.size() - strlen(kBinSuffix)))) {
      base = name.substr(0, name.size() - strlen(kBinSuffix));
      safetensors = false;
      if (IsShardName(base)) continue;  // read through its index
    } else {
      if (absl::EndsWith(name, ".bin") || absl::EndsWith(name, ".ckpt") ||
          absl::EndsWith(name, ".pt") || absl::EndsWith(name, ".pth") ||
          absl::EndsWith(name, ".gguf")) {
        other_weights.push_back(name);
      }
      RETURN_IF_ERROR(MaybeAddSideFile(entry, plan));
      continue;
    }
    std::string label = VariantLabel(base);
    int score = label == wanted ? 2 : label.empty() ? 1 : 0;
    candidates.push_back({name, is_index, safetensors, score});
  }
  if (candidates.empty()) {
    if (!other_weights.empty()) {
      return absl::UnimplementedError(absl::StrCat(
          dir.string(), ": no safetensors, diffusion_pytorch_model*.bin or ",
          "pytorch_model*.bin weights; the loader does not read ",
          absl::StrJoin(other_weights, ", "),
          " from a folder: convert them to safetensors"));
    }
    return absl::NotFoundError(absl::StrCat(
        "no weights in ", dir.string(),
        " (*.safetensors, diffusion_pytorch_model*.bin, pytorch_model*.bin, "
        "or their *.index.json)"));
  }
  // PyTorch `.bin` weights only when the folder has no safetensors at all
  // (as diffusers prefers safetensors); then the best score; on a tie an
  // index (the whole sharded model) before a single file, then the first
  // name.
  const bool any_safetensors =
      std::any_of(candidates.begin(), candidates.end(),
                  [](const Candidate& c) { return c.safetensors; });
  const Candidate* best = nullptr;
  for (const Candidate& c : candidates) {
    if (c.safetensors != any_safetensors) continue;
    if (best == nullptr || c.score > best->score ||
        (c.score == best->score && c.is_index && !best->is_index)) {
      best = &c;
    }
  }
  if (best->is_index) return AddShards(dir / best->name, plan);
  absl::flat_hash_map<std::string, size_t> seen;
  return AddFile(dir / best->name, plan, seen);
}

// A files-only submodel folder: its side files, no tensors.
absl::Status PlanSideFilesOnly(const fs::path& dir, LoadPlan& plan) {
  ASSIGN_OR_RETURN(std::vector<fs::directory_entry> entries,
                   SortedEntries(dir));
  for (const fs::directory_entry& entry : entries) {
    RETURN_IF_ERROR(MaybeAddSideFile(entry, plan));
  }
  if (plan.side_files.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no files to hand out in ", dir.string(),
                     " (*.json, *.txt, *.model, *.jinja of at most ",
                     kMaxSideFileBytes, " bytes)"));
  }
  return absl::OkStatus();
}

// Keeps only `request.submodel`'s tensors of the single-file main
// checkpoint already in `plan` (before any region offset is assigned, so
// the region holds that submodel's bytes alone).
absl::Status SplitCheckpoint(const PlanRequest& request, LoadPlan& plan) {
  const std::string file = request.path.string();
  const CheckpointLayout* layout = nullptr;
  for (const CheckpointLayout& l : CheckpointLayouts()) {
    if (l.base == request.base) layout = &l;
  }
  if (layout == nullptr) {
    std::vector<std::string> bases;
    for (const CheckpointLayout& l : CheckpointLayouts()) {
      bases.emplace_back(l.base);
    }
    return absl::UnimplementedError(absl::StrCat(
        "submodel '", request.submodel, "' asked of ", file,
        ", a single-file main checkpoint of base '", request.base,
        "': the loader has no submodel prefix table for that base (it has "
        "one for ",
        absl::StrJoin(bases, ", "), "); load it without a submodel"));
  }
  RETURN_IF_ERROR(CheckCheckpointLayout(*layout));
  // The submodels this file holds, in table order.
  std::vector<SubmodelPrefix> held;
  for (const SubmodelPrefix& entry : layout->submodels) {
    if (std::any_of(plan.tensors.begin(), plan.tensors.end(),
                    [&](const PlannedTensor& t) {
                      return absl::StartsWith(t.name, entry.prefix);
                    })) {
      held.push_back(entry);
    }
  }
  if (held.empty() && !layout->bare_submodel.empty()) {
    held.push_back({layout->bare_submodel, ""});
  }
  auto wanted = std::find_if(held.begin(), held.end(), [&](const auto& e) {
    return e.submodel == request.submodel;
  });
  if (wanted == held.end()) {
    std::vector<std::string> names;
    for (const SubmodelPrefix& e : held) names.emplace_back(e.submodel);
    std::string why;
    for (const SubmodelPrefix& e : layout->submodels) {
      if (e.submodel == request.submodel) {
        why = absl::StrCat(" (no tensor name starts with '", e.prefix, "')");
      }
    }
    return absl::NotFoundError(absl::StrCat(
        "submodel '", request.submodel, "' not found in ", file, ", a ",
        request.base, " main checkpoint", why, "; its submodels: ",
        names.empty() ? "none" : absl::StrJoin(names, ", ")));
  }
  std::erase_if(plan.tensors, [&](const PlannedTensor& t) {
    return !absl::StartsWith(t.name, wanted->prefix);
  });
  return absl::OkStatus();
}

// DATA_LOSS when `dir` (the submodel folder) resolves outside `root` (the
// model folder), e.g. through a symlink: a record names one folder, and
// the loader reads nothing outside it.
absl::Status CheckInside(const fs::path& root, const fs::path& dir,
                         const std::string& submodel) {
  std::error_code error;
  fs::path real_root = fs::canonical(root, error);
  if (error) {
    return absl::NotFoundError(
        absl::StrCat(root.string(), ": ", error.message()));
  }
  fs::path real = fs::canonical(dir, error);
  if (error) {
    return absl::NotFoundError(
        absl::StrCat(dir.string(), ": ", error.message()));
  }
  fs::path relative = real.lexically_relative(real_root);
  if (relative.empty() || *relative.begin() == "..") {
    return absl::DataLossError(absl::StrCat(
        "submodel folder '", submodel, "' (", dir.string(), ") resolves to ",
        real.string(), ", outside the model folder ", real_root.string(),
        "; refusing to read it"));
  }
  return absl::OkStatus();
}

// Plans the conversion of every floating tensor to `dtype` (see
// PlanRequest::dtype).
absl::Status PlanConversion(const std::string& dtype, LoadPlan& plan) {
  if (!IsTargetDtype(dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dtype: '", dtype, "' is not one of F16, BF16, F32 (or empty)"));
  }
  if (plan.gguf) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dtype ", dtype,
        " asked of GGUF weights: GGUF tensors are loaded as their stored "
        "blocks; load without a dtype"));
  }
  ASSIGN_OR_RETURN(uint64_t target_size, model::SafetensorsDtypeSize(dtype));
  for (PlannedTensor& tensor : plan.tensors) {
    if (tensor.dtype == dtype) continue;
    if (absl::StartsWith(tensor.dtype, "F8_")) {
      return absl::UnimplementedError(
          absl::StrCat("tensor '", tensor.name, "' is ", tensor.dtype,
                       ", which this loader's libtorch cannot convert to ",
                       dtype, "; load without a dtype"));
    }
    if (!IsConvertibleDtype(tensor.dtype)) continue;  // integers, bool
    ASSIGN_OR_RETURN(uint64_t source_size,
                     model::SafetensorsDtypeSize(tensor.dtype));
    // The readers checked byte_size against the shape; a mismatch here
    // would make the conversion run past the tensor.
    uint64_t elements = 1;
    bool overflow = false;
    for (int64_t d : tensor.shape) {
      overflow |= d < 0 || __builtin_mul_overflow(
                               elements, static_cast<uint64_t>(d), &elements);
    }
    if (overflow || tensor.byte_size % source_size != 0 ||
        tensor.byte_size / source_size != elements) {
      return absl::DataLossError(
          absl::StrCat("tensor '", tensor.name, "' has ", tensor.byte_size,
                       " bytes, not the ", elements, " elements of ",
                       tensor.dtype, " its shape says"));
    }
    tensor.source_dtype = tensor.dtype;
    tensor.source_byte_size = tensor.byte_size;
    tensor.dtype = dtype;
    tensor.byte_size = elements * target_size;
    ++plan.converted_tensors;
  }
  return absl::OkStatus();
}

}  // namespace

std::span<const CheckpointLayout> CheckpointLayouts() {
  return kCheckpointLayouts;
}

absl::Status CheckCheckpointLayout(const CheckpointLayout& layout) {
  for (size_t i = 0; i < layout.submodels.size(); ++i) {
    const SubmodelPrefix& a = layout.submodels[i];
    if (a.prefix.empty()) {
      return absl::InternalError(absl::StrCat("submodel table of base '",
                                              layout.base, "': '", a.submodel,
                                              "' has an empty prefix"));
    }
    for (size_t j = 0; j < layout.submodels.size(); ++j) {
      const SubmodelPrefix& b = layout.submodels[j];
      if (i == j) continue;
      if (a.submodel == b.submodel) {
        return absl::InternalError(absl::StrCat("submodel table of base '",
                                                layout.base, "': '", a.submodel,
                                                "' is listed twice"));
      }
      if (absl::StartsWith(b.prefix, a.prefix)) {
        return absl::InternalError(
            absl::StrCat("submodel table of base '", layout.base,
                         "': the prefix '", b.prefix, "' of '", b.submodel,
                         "' starts with the prefix '", a.prefix, "' of '",
                         a.submodel, "', so a tensor would belong to both"));
      }
    }
  }
  return absl::OkStatus();
}

bool IsFilesOnlySubmodel(absl::string_view submodel) {
  return std::find(std::begin(kFilesOnlySubmodels),
                   std::end(kFilesOnlySubmodels),
                   submodel) != std::end(kFilesOnlySubmodels);
}

absl::StatusOr<LoadPlan> PlanLoad(const PlanRequest& request) {
  LoadPlan plan;
  std::error_code error;
  fs::file_status status = fs::status(request.path, error);
  if (error || !fs::exists(status)) {
    return absl::NotFoundError(absl::StrCat(
        "model not found on disk: ", request.path.string(),
        " does not exist; reinstall the model or fix its record's path"));
  }
  if (!request.submodel.empty() &&
      (request.submodel.find('/') != std::string::npos ||
       request.submodel.find('\0') != std::string::npos ||
       request.submodel == "." || request.submodel == "..")) {
    return absl::InvalidArgumentError(
        absl::StrCat("submodel '", request.submodel,
                     "' is not a folder name (unet, vae, ...)"));
  }
  if (fs::is_directory(status)) {
    fs::path dir = request.path;
    if (!request.submodel.empty()) {
      dir /= request.submodel;
      if (!fs::is_directory(dir, error)) {
        return absl::NotFoundError(absl::StrCat("submodel '", request.submodel,
                                                "' not found: no folder ",
                                                dir.string()));
      }
      RETURN_IF_ERROR(CheckInside(request.path, dir, request.submodel));
    } else if (request.type == "main" && request.format == "diffusers") {
      return absl::InvalidArgumentError(
          "a diffusers main model is loaded one submodel at a time: pass a "
          "submodel (unet, vae, text_encoder, ...)");
    }
    if (!request.submodel.empty() && IsFilesOnlySubmodel(request.submodel)) {
      RETURN_IF_ERROR(PlanSideFilesOnly(dir, plan));
    } else {
      RETURN_IF_ERROR(PlanFolder(dir, request, plan));
    }
  } else {
    if (!request.submodel.empty() && request.type != "main") {
      return absl::InvalidArgumentError(absl::StrCat(
          "submodel '", request.submodel, "' asked of the single file ",
          request.path.string(), ", which is ",
          request.type.empty() ? std::string("not a main model")
                               : absl::StrCat("a ", request.type, " model"),
          ": only a main model's single-file checkpoint is split into "
          "submodels; load it without a submodel"));
    }
    absl::flat_hash_map<std::string, size_t> seen;
    RETURN_IF_ERROR(AddFile(request.path, plan, seen));
    if (!request.submodel.empty()) {
      RETURN_IF_ERROR(SplitCheckpoint(request, plan));
    }
  }
  if (!request.dtype.empty()) {
    RETURN_IF_ERROR(PlanConversion(request.dtype, plan));
  }
  uint64_t offset = 0;
  for (PlannedTensor& tensor : plan.tensors) {
    tensor.region_offset = AlignUp(offset);
    offset = tensor.region_offset + tensor.byte_size;
    plan.data_bytes += tensor.file_bytes();
  }
  plan.total_bytes = std::max<uint64_t>(AlignUp(offset), kTensorAlignment);
  return plan;
}

}  // namespace mm::loader
