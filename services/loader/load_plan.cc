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

absl::Status PlanFolder(const fs::path& dir, const PlanRequest& request,
                        LoadPlan& plan) {
  struct Candidate {
    std::string name;
    bool is_index;
    int score;
  };
  std::string wanted = request.repo_variant;
  if (wanted == "default" || wanted == "fp32") wanted.clear();
  std::vector<Candidate> candidates;
  bool other_weights = false;
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
  for (const fs::directory_entry& entry : entries) {
    if (!entry.is_regular_file(error)) continue;
    std::string name = entry.path().filename().string();
    std::string base;
    bool is_index = false;
    if (absl::EndsWith(name, kIndexSuffix)) {
      base = name.substr(0, name.size() - strlen(kIndexSuffix));
      is_index = true;
    } else if (absl::EndsWith(name, kSafetensorsSuffix)) {
      base = name.substr(0, name.size() - strlen(kSafetensorsSuffix));
      if (IsShardName(base)) continue;  // read through its index
    } else {
      if (absl::EndsWith(name, ".bin") || absl::EndsWith(name, ".ckpt") ||
          absl::EndsWith(name, ".pt") || absl::EndsWith(name, ".pth") ||
          absl::EndsWith(name, ".gguf")) {
        other_weights = true;
      }
      if (IsSideFile(name) && entry.file_size(error) <= kMaxSideFileBytes &&
          !error) {
        ASSIGN_OR_RETURN(plan.side_files[name],
                         ReadSmallFile(entry.path(), kMaxSideFileBytes));
      }
      continue;
    }
    std::string label = VariantLabel(base);
    int score = label == wanted ? 2 : label.empty() ? 1 : 0;
    candidates.push_back({name, is_index, score});
  }
  if (candidates.empty()) {
    if (other_weights) {
      return absl::UnimplementedError(absl::StrCat(
          dir.string(),
          ": only PyTorch or GGUF weights in this folder, which this version "
          "of the loader does not read from a folder; convert them to "
          "safetensors"));
    }
    return absl::NotFoundError(
        absl::StrCat("no safetensors weights in ", dir.string()));
  }
  // Best score; on a tie an index (the whole sharded model) before a single
  // file, then the first name.
  const Candidate* best = &candidates.front();
  for (const Candidate& c : candidates) {
    if (c.score > best->score ||
        (c.score == best->score && c.is_index && !best->is_index)) {
      best = &c;
    }
  }
  if (best->is_index) return AddShards(dir / best->name, plan);
  absl::flat_hash_map<std::string, size_t> seen;
  return AddFile(dir / best->name, plan, seen);
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

absl::StatusOr<LoadPlan> PlanLoad(const PlanRequest& request) {
  LoadPlan plan;
  std::error_code error;
  fs::file_status status = fs::status(request.path, error);
  if (error || !fs::exists(status)) {
    return absl::NotFoundError(absl::StrCat(
        "model not found on disk: ", request.path.string(),
        " does not exist; reinstall the model or fix its record's path"));
  }
  if (fs::is_directory(status)) {
    fs::path dir = request.path;
    if (!request.submodel.empty()) {
      if (request.submodel.find('/') != std::string::npos ||
          request.submodel == "." || request.submodel == "..") {
        return absl::InvalidArgumentError(
            absl::StrCat("submodel '", request.submodel,
                         "' is not a folder name (unet, vae, ...)"));
      }
      dir /= request.submodel;
      if (!fs::is_directory(dir, error)) {
        return absl::NotFoundError(absl::StrCat("submodel '", request.submodel,
                                                "' not found: no folder ",
                                                dir.string()));
      }
    } else if (request.type == "main" && request.format == "diffusers") {
      return absl::InvalidArgumentError(
          "a diffusers main model is loaded one submodel at a time: pass a "
          "submodel (unet, vae, text_encoder, ...)");
    }
    RETURN_IF_ERROR(PlanFolder(dir, request, plan));
  } else {
    if (!request.submodel.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "submodel '", request.submodel, "' asked of the single file ",
          request.path.string(),
          "; splitting a checkpoint into submodels is not supported yet: "
          "load it without a submodel"));
    }
    absl::flat_hash_map<std::string, size_t> seen;
    RETURN_IF_ERROR(AddFile(request.path, plan, seen));
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
