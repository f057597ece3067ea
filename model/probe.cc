// The probe engine: runs the matcher tables, picks the winner by priority,
// and builds the config record around it.
#include "model/probe.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/logging.h"
#include "common/status.h"
#include "model/config_validation.h"
#include "model/taxonomy.h"
#include "model/weights_file.h"

namespace mm::model {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// The taxonomy fields an override may not contradict.
constexpr std::array<absl::string_view, 3> kIdentityFields = {"type", "format",
                                                              "base"};

struct TableOutcome {
  // The winner's fields, when something matched and was not refused.
  std::optional<json> winner;
  // Why matchers declined or found the subject unusable.
  std::vector<std::string> reasons;
  // Matches refused because an override contradicts them.
  std::vector<std::string> refusals;
};

TableOutcome RunTable(std::span<const ModelMatcher> table,
                      const ProbeSubject& subject) {
  TableOutcome outcome;
  int best_priority = 0;
  for (const ModelMatcher& matcher : table) {
    MatchResult result = matcher.match(subject);
    if (result.kind != MatchKind::kMatch) {
      if (!result.reason.empty()) outcome.reasons.push_back(result.reason);
      continue;
    }
    bool refused = false;
    for (absl::string_view field : kIdentityFields) {
      const auto wanted = subject.overrides->find(field);
      if (wanted == subject.overrides->end() || wanted->is_null()) continue;
      const auto probed = result.fields.find(field);
      if (probed != result.fields.end() && *probed != *wanted) {
        outcome.refusals.push_back(absl::StrCat(
            "override ", field, "=", wanted->dump(), " contradicts the ",
            matcher.name, " match (", field, " ", probed->dump(), ")"));
        refused = true;
        break;
      }
    }
    if (refused) continue;
    const std::string tag = ConfigTag(result.fields);
    if (FindFamily(tag) == nullptr) {
      outcome.reasons.push_back(absl::StrCat(
          matcher.name, ": ", tag, " is not a registered model family"));
      continue;
    }
    const int priority =
        MatchPriority(result.fields.value("type", std::string()));
    if (!outcome.winner.has_value() || priority < best_priority) {
      outcome.winner = std::move(result.fields);
      best_priority = priority;
    }
  }
  return outcome;
}

absl::Status NotRecognised(const fs::path& path,
                           const std::vector<std::string>& refusals,
                           const std::vector<std::string>& reasons) {
  std::vector<std::string> all = refusals;
  all.insert(all.end(), reasons.begin(), reasons.end());
  std::string hint;
  if (!refusals.empty()) {
    hint = "; remove or correct the type/format/base override";
  } else {
    hint =
        "; if it is a model, give its type and base explicitly, or allow "
        "unknown models to register it as unknown";
  }
  const std::string why =
      all.empty() ? "no model family matched" : absl::StrJoin(all, "; ");
  return absl::InvalidArgumentError(
      absl::StrCat("not a recognised model: ", path.string(), ": ", why, hint));
}

json UnknownFields() {
  return json{{"type", "unknown"}, {"format", "unknown"}, {"base", "unknown"}};
}

// Turns a table outcome into fields, applying allow_unknown.
absl::StatusOr<json> Decide(const fs::path& path, TableOutcome outcome,
                            bool allow_unknown) {
  if (outcome.winner.has_value()) return std::move(*outcome.winner);
  if (allow_unknown && outcome.refusals.empty()) return UnknownFields();
  return NotRecognised(path, outcome.refusals, outcome.reasons);
}

// Runs the checkpoint table, after the spec's "not a model" pre-checks.
TableOutcome RunStateDict(const TensorIndex& index, const json& overrides,
                          const fs::path& path) {
  TableOutcome outcome;
  const StateDictView view(index);
  if (index.tensors.empty()) {
    outcome.reasons.push_back("the file holds no tensors");
    return outcome;
  }
  if (AllKeysAreIntegers(view)) {
    outcome.reasons.push_back(
        "its state dict is keyed by integers (a list of tensors, not a "
        "model)");
    return outcome;
  }
  ProbeSubject subject;
  subject.path = path;
  subject.state_dict = &view;
  subject.overrides = &overrides;
  return RunTable(CheckpointMatchers(), subject);
}

bool IsStateDictSuffix(absl::string_view ext) {
  return ext == ".safetensors" || ext == ".ckpt" || ext == ".pt" ||
         ext == ".pth" || ext == ".bin" || ext == ".gguf";
}

absl::StatusOr<json> MatchFile(const fs::path& path,
                               const ProbeOptions& options,
                               const TensorIndexReader& reader) {
  const std::string ext = absl::AsciiStrToLower(path.extension().string());
  if (!IsStateDictSuffix(ext)) {
    TableOutcome outcome;
    outcome.reasons.push_back(
        ext == ".onnx"
            ? std::string("ONNX files are stored but not identified")
            : absl::StrCat("'", ext,
                           "' is not a model file suffix (expected "
                           ".safetensors .ckpt .pt .pth .bin .gguf .onnx)"));
    return Decide(path, std::move(outcome), options.allow_unknown);
  }
  absl::StatusOr<TensorIndex> index = reader(path);
  if (!index.ok()) {
    // A format we recognise but do not read (legacy torch.save, ...) can
    // still be kept as unknown when the caller allows it.
    if (options.allow_unknown &&
        index.status().code() == absl::StatusCode::kUnimplemented) {
      return UnknownFields();
    }
    return index.status();
  }
  return Decide(path, RunStateDict(*index, options.overrides, path),
                options.allow_unknown);
}

// Sum of the sizes of every file under `folder` (not following directory
// links, so a link loop cannot recurse forever).
uint64_t FolderSize(const fs::path& folder) {
  uint64_t total = 0;
  std::error_code ec;
  fs::recursive_directory_iterator it(
      folder, fs::directory_options::skip_permission_denied, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code size_ec;
    if (it->is_regular_file(size_ec)) {
      const uintmax_t size = it->file_size(size_ec);
      if (!size_ec) total += size;
    }
  }
  return total;
}

// Spec §4.4: <stem>.json beside a LoRA file gives description and
// trigger_phrases. A malformed side-car is ignored with a warning: it is
// optional decoration, not part of the model.
void ApplyLoraSidecar(const fs::path& model, json& config) {
  fs::path sidecar = model;
  sidecar.replace_extension(".json");
  std::error_code ec;
  if (!fs::is_regular_file(sidecar, ec)) return;
  std::ifstream in(sidecar, std::ios::binary);
  const json data = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!data.is_object()) {
    MM_LOG(WARNING) << "ignoring LoRA side-car " << sidecar.string()
                    << ": not a JSON object";
    return;
  }
  std::vector<std::string> description;
  if (auto it = data.find("description");
      it != data.end() && it->is_string() && !it->get<std::string>().empty()) {
    description.push_back(it->get<std::string>());
  }
  if (auto it = data.find("notes");
      it != data.end() && it->is_string() && !it->get<std::string>().empty()) {
    description.push_back(it->get<std::string>());
  }
  if (!description.empty()) {
    config["description"] = absl::StrJoin(description, " | ");
  }
  if (auto it = data.find("activation text");
      it != data.end() && it->is_string()) {
    json phrases = json::array();
    const std::string activation_text = it->get<std::string>();
    for (absl::string_view part : absl::StrSplit(activation_text, ',')) {
      const std::string phrase(absl::StripAsciiWhitespace(part));
      if (phrase.empty()) continue;
      if (std::find(phrases.begin(), phrases.end(), phrase) != phrases.end())
        continue;  // trigger_phrases is a set
      phrases.push_back(phrase);
    }
    if (!phrases.empty()) config["trigger_phrases"] = std::move(phrases);
  }
}

// Checks the finished config against the taxonomy, filling in the fields
// the records service assigns later (key, and hash when not computed), so
// a bad override is reported now, naming the field.
absl::Status CheckConfig(const json& config) {
  json candidate = config;
  if (!candidate.contains("key")) candidate["key"] = "probe";
  if (!candidate.contains("hash")) {
    candidate["hash"] = absl::StrCat("blake3:", std::string(64, '0'));
  }
  absl::StatusOr<json> validated = ValidateConfig(candidate);
  if (!validated.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the probed config is invalid: ", validated.status().message()));
  }
  return absl::OkStatus();
}

}  // namespace

int MatchPriority(absl::string_view type) {
  if (type == "main") return 0;
  if (type == "lora") return 1;
  if (type == "clip_embed") return 2;
  return 3;
}

StateDictView::StateDictView(const TensorIndex& index) : index_(index) {
  by_name_.reserve(index.tensors.size());
  for (const TensorInfo& tensor : index.tensors) {
    by_name_.emplace(tensor.name, &tensor);
  }
}

const TensorInfo* StateDictView::Find(absl::string_view name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

bool StateDictView::AnyKeyStartsWith(absl::string_view prefix) const {
  for (const TensorInfo& tensor : index_.tensors) {
    if (absl::StartsWith(tensor.name, prefix)) return true;
  }
  return false;
}

size_t StateDictView::TopLevelKeyCount() const {
  size_t count = index_.tensors.size();
  if (index_.scalars.is_object()) {
    for (const auto& [key, value] : index_.scalars.items()) {
      if (key != "metadata") ++count;
    }
  }
  return count;
}

bool StateDictView::AllTopLevelKeysAreTensors() const {
  return TopLevelKeyCount() == index_.tensors.size();
}

absl::StatusOr<json> MatchStateDict(const TensorIndex& index,
                                    const json& overrides,
                                    const fs::path& path) {
  return Decide(path, RunStateDict(index, overrides, path),
                /*allow_unknown=*/false);
}

absl::StatusOr<json> MatchFolder(const fs::path& folder, const json& overrides,
                                 const TensorIndexReader& reader) {
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) {
    return absl::NotFoundError(
        absl::StrCat("model folder ", folder.string(),
                     " does not exist or is not a folder"));
  }
  const FolderFacts facts = ReadFolderFacts(folder);
  if (std::optional<std::string> refusal =
          GenericFolderRefusal(folder, facts)) {
    return NotRecognised(folder, {}, {*refusal});
  }
  ProbeSubject subject;
  subject.path = folder;
  subject.folder = &facts;
  subject.overrides = &overrides;
  subject.read_index = &reader;
  TableOutcome outcome = RunTable(FolderMatchers(), subject);
  return Decide(folder, std::move(outcome), /*allow_unknown=*/false);
}

std::string ModelNameFromPath(const fs::path& path) {
  fs::path clean = path;
  if (!clean.has_filename()) clean = clean.parent_path();
  const std::string ext = clean.extension().string();
  if (ext == ".safetensors" || ext == ".bin" || ext == ".pt" ||
      ext == ".ckpt") {
    return clean.stem().string();
  }
  return clean.filename().string();
}

absl::StatusOr<json> ProbeWithReader(const fs::path& path,
                                     const ProbeOptions& options,
                                     const TensorIndexReader& reader) {
  if (path.empty()) {
    return absl::InvalidArgumentError(
        "path: empty; give the model file or folder to probe");
  }
  if (!options.overrides.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("overrides: expected a JSON object of config fields, got ",
                     options.overrides.dump()));
  }
  std::error_code ec;
  fs::path absolute = fs::absolute(path, ec).lexically_normal();
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat(
        "path ", path.string(), ": cannot make it absolute: ", ec.message()));
  }
  if (!absolute.has_filename() && absolute.has_parent_path() &&
      absolute != absolute.root_path()) {
    absolute = absolute.parent_path();  // "models/sd/" -> "models/sd"
  }
  const fs::file_status status = fs::status(absolute, ec);
  if (ec || !fs::exists(status)) {
    return absl::NotFoundError(absl::StrCat("model path ", absolute.string(),
                                            " does not exist; check the path"));
  }

  json config;
  uint64_t file_size = 0;
  const bool is_folder = fs::is_directory(status);
  if (is_folder) {
    const FolderFacts facts = ReadFolderFacts(absolute);
    TableOutcome outcome;
    if (std::optional<std::string> refusal =
            GenericFolderRefusal(absolute, facts)) {
      outcome.reasons.push_back(*refusal);
    } else {
      ProbeSubject subject;
      subject.path = absolute;
      subject.folder = &facts;
      subject.overrides = &options.overrides;
      subject.read_index = &reader;
      outcome = RunTable(FolderMatchers(), subject);
    }
    ASSIGN_OR_RETURN(
        config, Decide(absolute, std::move(outcome), options.allow_unknown));
    file_size = FolderSize(absolute);
  } else if (fs::is_regular_file(status)) {
    ASSIGN_OR_RETURN(config, MatchFile(absolute, options, reader));
    file_size = fs::file_size(absolute, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("model file ", absolute.string(),
                       ": cannot read its size: ", ec.message()));
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "model path ", absolute.string(),
        " is neither a regular file nor a folder; give a weights file or a "
        "model folder"));
  }

  config["name"] = ModelNameFromPath(absolute);
  config["path"] = absolute.string();
  config["file_size"] = file_size;
  config["source"] = absolute.string();
  config["source_type"] = "path";
  if (const FamilySpec* family = FindFamily(ConfigTag(config));
      family != nullptr && family->probe_default_image_size > 0) {
    config["default_settings"] = {{"width", family->probe_default_image_size},
                                  {"height", family->probe_default_image_size}};
  }
  if (!is_folder && config["type"] == "lora") {
    ApplyLoraSidecar(absolute, config);
  }
  const bool unknown = config["type"] == "unknown";
  for (const auto& [field, value] : options.overrides.items()) {
    // An unknown model stays unknown: the override could not be checked
    // against the file.
    if (unknown && (field == "type" || field == "format" || field == "base"))
      continue;
    if (value.is_null()) {
      config.erase(field);
    } else {
      config[field] = value;
    }
  }
  if (options.hash.has_value()) {
    ASSIGN_OR_RETURN(std::string hash, HashPath(absolute, *options.hash));
    config["hash"] = std::move(hash);
  }
  RETURN_IF_ERROR(CheckConfig(config));
  return config;
}

absl::StatusOr<json> Probe(const fs::path& path, const ProbeOptions& options) {
  return ProbeWithReader(path, options, ReadTensorIndex);
}

}  // namespace mm::model
