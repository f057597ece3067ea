// The matcher table behind the probe (spec §4): one independent entry per
// model family. Each matcher looks at one subject (a checkpoint's state dict,
// or a folder) and answers match (with the config fields it decided: type,
// format, base, variant, ...), not mine, or mine but unusable (with a reason
// a user can act on). Adding a family means adding one matcher to the table
// in probe_checkpoint.cc (files) or probe_diffusers.cc (folders); the engine
// in probe.cc runs every entry and picks the winner by priority.
//
// This header is the seam the unit tests use: MatchStateDict() and
// MatchFolder() run the tables over an in-memory TensorIndex or a folder,
// with an injected tensor reader, without the file format readers.
//
// Everything here is stateless and thread-safe.
//
//   ASSIGN_OR_RETURN(nlohmann::json fields,
//                    mm::model::MatchStateDict(index, overrides, "x.ckpt"));
//   // fields: {"type": "main", "format": "checkpoint", "base": "sd-1", ...}
#ifndef MM_MODEL_PROBE_MATCHERS_H_
#define MM_MODEL_PROBE_MATCHERS_H_

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/tensor_index.h"
#include "nlohmann/json.hpp"

namespace mm::model {

// Reads the tensor table of a weights file; folder matchers use it for the
// weight file inside a LoRA, IP-Adapter or embedding folder. Production code
// passes ReadTensorIndex (model/weights_file.h); tests pass fakes.
using TensorIndexReader =
    std::function<absl::StatusOr<TensorIndex>(const std::filesystem::path&)>;

// A TensorIndex with O(1) look-up by name. The matchers query a few dozen
// names on state dicts of thousands of tensors; a linear Find() each time
// would dominate the probe. Holds pointers into `index`, which must outlive
// the view.
class StateDictView {
 public:
  explicit StateDictView(const TensorIndex& index);
  StateDictView(const StateDictView&) = delete;
  StateDictView& operator=(const StateDictView&) = delete;

  const TensorInfo* Find(absl::string_view name) const;
  bool Has(absl::string_view name) const { return Find(name) != nullptr; }
  // True when some tensor name starts with `prefix`.
  bool AnyKeyStartsWith(absl::string_view prefix) const;
  const std::vector<TensorInfo>& tensors() const { return index_.tensors; }
  const TensorIndex& index() const { return index_; }
  // Number of top-level state-dict entries: tensors plus non-tensor values
  // (every scalar except the file "metadata").
  size_t TopLevelKeyCount() const;
  // True when every top-level entry is a tensor (no scalar except
  // "metadata").
  bool AllTopLevelKeysAreTensors() const;

 private:
  const TensorIndex& index_;
  absl::flat_hash_map<absl::string_view, const TensorInfo*> by_name_;
};

// What a folder matcher sees besides the path: the parsed class-defining
// JSON files, read once by the engine.
struct FolderFacts {
  // model_index.json, or null when absent or unreadable.
  nlohmann::json model_index;
  // config.json, or null when absent or unreadable.
  nlohmann::json config;
  // `_class_name` of model_index.json, else `_class_name` or
  // `architectures[0]` of config.json; empty when neither says.
  std::string class_name;
};

// The thing being identified.
struct ProbeSubject {
  // Absolute path of the file or folder.
  std::filesystem::path path;
  // Files only: the state dict (after {"state_dict": ...} unwrapping).
  const StateDictView* state_dict = nullptr;
  // Folders only.
  const FolderFacts* folder = nullptr;
  // Caller overrides (a JSON object, possibly empty). Matchers whose base
  // is a guess (the VAE file-name rule) take `base` from here; the engine
  // refuses a match whose type, format or base contradicts an override.
  const nlohmann::json* overrides = nullptr;
  // Folders only: reads a weight file inside the folder.
  const TensorIndexReader* read_index = nullptr;
};

enum class MatchKind {
  kMatch,     // the subject is this family; `fields` say what it is
  kNotMine,   // the subject is not this family
  kUnusable,  // the subject is this family but cannot be used; see `reason`
};

struct MatchResult {
  MatchKind kind = MatchKind::kNotMine;
  // kMatch: type, format, base and the family's extra fields.
  nlohmann::json fields = nlohmann::json::object();
  // kNotMine (optional) and kUnusable (always): why, with the values seen.
  std::string reason;

  static MatchResult Match(nlohmann::json fields) {
    return {MatchKind::kMatch, std::move(fields), ""};
  }
  static MatchResult NotMine(std::string reason = "") {
    return {MatchKind::kNotMine, nlohmann::json::object(), std::move(reason)};
  }
  static MatchResult Unusable(std::string reason) {
    return {MatchKind::kUnusable, nlohmann::json::object(), std::move(reason)};
  }
};

// One family's matcher.
struct ModelMatcher {
  // Short name used in reasons: "main checkpoint", "lora", ...
  absl::string_view name;
  MatchResult (*match)(const ProbeSubject& subject);
};

// The tables, in tie-break order (among matches of equal priority the
// earlier entry wins).
std::span<const ModelMatcher> CheckpointMatchers();  // probe_checkpoint.cc
std::span<const ModelMatcher> FolderMatchers();      // probe_diffusers.cc

// Spec §4 priority of a match by its type: main 0 < lora 1 < clip_embed 2 <
// everything else 3. Lower wins.
int MatchPriority(absl::string_view type);

// Runs the checkpoint table over a state dict read from `path` (the VAE
// base rule reads its file name). Returns the winning match's fields, or
// INVALID_ARGUMENT "not a recognised model: <path>: <reasons>" when nothing
// matches (an empty or integer-keyed state dict, or an override refused
// every match).
absl::StatusOr<nlohmann::json> MatchStateDict(
    const TensorIndex& index, const nlohmann::json& overrides,
    const std::filesystem::path& path);

// Runs the folder table over `folder` (spec §4.2 and the folder rules of
// §4.1), after the generic-folder rule. Errors as MatchStateDict, plus
// NOT_FOUND when `folder` is not a directory.
absl::StatusOr<nlohmann::json> MatchFolder(const std::filesystem::path& folder,
                                           const nlohmann::json& overrides,
                                           const TensorIndexReader& reader);

// --- Rule helpers shared by the two tables (probe_checkpoint.cc). ---

// The LoRA base decision of spec §4.1 for a lycoris-style state dict:
// "sd-1", "sd-2", "sdxl" or "flux", or kUnusable with the reason.
MatchResult LoraBaseFromStateDict(const StateDictView& state_dict);

// The spec §4.1 token vector length of a LoRA (nullopt when no key says).
std::optional<int64_t> LoraTokenVectorLength(const StateDictView& state_dict);

// Textual-inversion base from a state dict already known to be one:
// "sd-1"/"sd-2"/"sdxl" or kUnusable.
MatchResult EmbeddingBaseFromStateDict(const StateDictView& state_dict);

// True when the state dict looks like a textual inversion (spec §4.1).
bool LooksLikeEmbedding(const StateDictView& state_dict);

// The IP-Adapter base rule on a state dict known to be one.
MatchResult IpAdapterBaseFromStateDict(const StateDictView& state_dict);

// True when every key is an integer: a pickled list of tensors, not a
// model (spec §4.1).
bool AllKeysAreIntegers(const StateDictView& state_dict);

// --- Folder helpers (probe_diffusers.cc). ---

// Reads model_index.json and config.json of `folder` (spec §4.2 class name).
FolderFacts ReadFolderFacts(const std::filesystem::path& folder);

// The spec §4.2 generic-folder rule: a reason when `folder` is not a model
// (a generic config.json with more than 50 files, or no weight file within
// two levels), else nullopt.
std::optional<std::string> GenericFolderRefusal(
    const std::filesystem::path& folder, const FolderFacts& facts);

// The spec §4.2 repo_variant of a diffusers folder: "fp16", "openvino",
// "flax", "onnx" or "" (the default).
std::string RepoVariantOfFolder(const std::filesystem::path& folder);

}  // namespace mm::model

#endif  // MM_MODEL_PROBE_MATCHERS_H_
