// Model identification ("probe", spec §4): given a weights file or a model
// folder on disk, decide what it is (type, format, base and the family's
// extra fields) and build the config record the records service stores,
// in the reference's field names.
//
// The probe reads headers only (tensor tables, small JSON files), never
// tensor data, unless a hash is asked for. The rules live in the matcher
// tables of model/probe_matchers.h; this is the engine and the record
// builder around them.
//
// Stateless; thread-safe.
//
//   ASSIGN_OR_RETURN(nlohmann::json config,
//                    mm::model::Probe("/models/sd15.safetensors", {}));
//   // {"type": "main", "format": "checkpoint", "base": "sd-1",
//   //  "variant": "normal", "prediction_type": "epsilon", "name": "sd15",
//   //  "path": "/models/sd15.safetensors", "file_size": ..., ...}
#ifndef MM_MODEL_PROBE_H_
#define MM_MODEL_PROBE_H_

#include <filesystem>
#include <optional>

#include "absl/status/statusor.h"
#include "model/hashing.h"
#include "model/probe_matchers.h"
#include "nlohmann/json.hpp"

namespace mm::model {

struct ProbeOptions {
  // Fields the caller already knows (a JSON object; default: empty). Type,
  // format and base must agree with what the file is: a matcher whose
  // answer contradicts them is refused (spec §4), and when every match is
  // refused the probe fails. Any other field (name, description,
  // prediction_type, ...) replaces the probed value; a null removes it.
  nlohmann::json overrides = nlohmann::json::object();
  // Default false: a path no matcher recognises is INVALID_ARGUMENT. When
  // true it becomes type/format/base "unknown" instead (overrides other
  // than type, format and base still apply). An override that contradicts
  // a match is an error either way.
  bool allow_unknown = false;
  // Default none: no hash is computed and the result has no `hash` field
  // (hashing reads every byte; the installer hashes after placing the
  // file). When set, `hash` is "<algo>:<hex>" from HashPath().
  std::optional<HashOptions> hash;
};

// Probes `path` (a .safetensors .ckpt .pt .pth .bin .gguf .onnx file or a
// folder) and returns its config: the matcher's fields plus
//   name         file stem for .safetensors .bin .pt .ckpt, else the file or
//                folder name
//   path         absolute form of `path`
//   file_size    bytes of the file, or of all files under the folder
//   source       the same absolute path; source_type "path"
//   default_settings  {width, height} for SD main models (sd-1 512, sd-2
//                768, sdxl 1024)
//   description, trigger_phrases  from a LoRA's <stem>.json side-car
//                (spec §4.4); description is otherwise absent
//   hash         only when options.hash is set
// Errors: NOT_FOUND when `path` does not exist; INVALID_ARGUMENT "not a
// recognised model: <path>: <reasons>" when nothing matches (and
// !allow_unknown) or overrides refuse every match, or when overrides make
// the config invalid (naming the field); the file readers' errors
// (DATA_LOSS for a corrupt file, UNIMPLEMENTED for an unsupported variant
// of a format) pass through.
absl::StatusOr<nlohmann::json> Probe(const std::filesystem::path& path,
                                     const ProbeOptions& options);

// Probe with the weights-file reader injected (tests; callers that cache
// tensor tables). Probe() passes ReadTensorIndex.
absl::StatusOr<nlohmann::json> ProbeWithReader(
    const std::filesystem::path& path, const ProbeOptions& options,
    const TensorIndexReader& reader);

// The spec §4 record name of `path`: the stem for .safetensors .bin .pt
// .ckpt files, else the file or folder name.
std::string ModelNameFromPath(const std::filesystem::path& path);

}  // namespace mm::model

#endif  // MM_MODEL_PROBE_H_
