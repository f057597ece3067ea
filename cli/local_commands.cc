#include "cli/local_commands.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "cli/command.h"
#include "common/status.h"
#include "model/hashing.h"
#include "model/probe.h"
#include "model/scan.h"
#include "model/tensor_index.h"
#include "model/weights_file.h"
#include "nlohmann/json.hpp"

namespace mm::cli {
namespace {

namespace fs = std::filesystem;

// The one PATH after the command word.
absl::StatusOr<fs::path> OnePath(const ParsedArgs& args, const char* what) {
  ASSIGN_OR_RETURN(std::string path, SingleArgument(args, 1, what));
  return fs::path(path);
}

// Each command builds its whole output first and writes it only when it
// succeeded, so a failed command never leaves half a result.
absl::Status WriteResult(absl::StatusOr<std::string> text,
                         const CommandIo& io) {
  if (!text.ok()) return text.status();
  *io.out << *text;
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// probe

// Fields first in this order, then the rest alphabetically.
constexpr std::array<const char*, 16> kProbeFieldOrder = {"name",
                                                          "type",
                                                          "format",
                                                          "base",
                                                          "variant",
                                                          "prediction_type",
                                                          "repo_variant",
                                                          "path",
                                                          "file_size",
                                                          "hash",
                                                          "source",
                                                          "source_type",
                                                          "description",
                                                          "trigger_phrases",
                                                          "default_settings",
                                                          "submodels"};

std::string HumanValue(const nlohmann::json& value) {
  if (value.is_string()) return value.get<std::string>();
  return value.dump();
}

std::string HumanConfig(const nlohmann::json& config) {
  std::string text;
  std::vector<std::string> done;
  for (const char* field : kProbeFieldOrder) {
    const auto it = config.find(field);
    if (it == config.end()) continue;
    absl::StrAppend(&text, field, ": ", HumanValue(*it), "\n");
    done.push_back(field);
  }
  for (const auto& [field, value] : config.items()) {  // sorted keys
    if (std::find(done.begin(), done.end(), field) != done.end()) continue;
    absl::StrAppend(&text, field, ": ", HumanValue(value), "\n");
  }
  return text;
}

absl::StatusOr<std::string> Probe(const ParsedArgs& args, bool json) {
  ASSIGN_OR_RETURN(fs::path path, OnePath(args, "a model PATH"));
  model::ProbeOptions options;
  options.allow_unknown = args.Has("allow-unknown");
  {
    for (const std::string& assignment : args.GetAll("set")) {
      const size_t eq = assignment.find('=');
      if (eq == std::string::npos || eq == 0) {
        return UsageError(
            absl::StrCat("--set '", assignment,
                         "': expected FIELD=VALUE, e.g. --set base=sdxl"));
      }
      const std::string field = assignment.substr(0, eq);
      const std::string text = assignment.substr(eq + 1);
      // Numbers, booleans, lists and quoted strings as JSON; anything else
      // is a plain string (--set name=My model).
      nlohmann::json value =
          nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (value.is_discarded()) value = text;
      options.overrides[field] = std::move(value);
    }
  }
  if (args.Has("hash")) {
    ASSIGN_OR_RETURN(model::HashAlgorithm algorithm,
                     model::ParseHashAlgorithm(args.Get("hash")));
    options.hash = model::HashOptions{.algorithm = algorithm};
  }
  ASSIGN_OR_RETURN(nlohmann::json config, model::Probe(path, options));
  if (json) return config.dump(2) + "\n";
  return HumanConfig(config);
}

// ---------------------------------------------------------------------------
// hash

absl::StatusOr<std::string> Hash(const ParsedArgs& args) {
  ASSIGN_OR_RETURN(fs::path path, OnePath(args, "a PATH to hash"));
  model::HashOptions options;
  if (args.Has("algo")) {
    ASSIGN_OR_RETURN(options.algorithm,
                     model::ParseHashAlgorithm(args.Get("algo")));
  }
  ASSIGN_OR_RETURN(std::string hash, model::HashPath(path, options));
  return hash + "\n";
}

// ---------------------------------------------------------------------------
// scan

absl::StatusOr<std::string> Scan(const ParsedArgs& args, bool json) {
  ASSIGN_OR_RETURN(fs::path dir, OnePath(args, "a DIR to scan"));
  ASSIGN_OR_RETURN(std::vector<fs::path> found, model::ScanForModels(dir));
  if (json) {
    nlohmann::json list = nlohmann::json::array();
    for (const fs::path& path : found) list.push_back(path.string());
    return list.dump(2) + "\n";
  }
  std::string text;
  for (const fs::path& path : found)
    absl::StrAppend(&text, path.string(), "\n");
  return text;
}

// ---------------------------------------------------------------------------
// inspect

const char* FormatName(model::WeightsFormat format) {
  switch (format) {
    case model::WeightsFormat::kSafetensors:
      return "safetensors";
    case model::WeightsFormat::kTorchZip:
      return "torch_zip";
    case model::WeightsFormat::kGguf:
      return "gguf";
  }
  return "unknown";
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<std::string> Inspect(const ParsedArgs& args, bool json) {
  ASSIGN_OR_RETURN(fs::path path, OnePath(args, "a weights file PATH"));
  ASSIGN_OR_RETURN(model::TensorIndex index, model::ReadTensorIndex(path));
  if (json) {
    nlohmann::json tensors = nlohmann::json::array();
    for (const model::TensorInfo& tensor : index.tensors) {
      tensors.push_back({{"name", tensor.name},
                         {"dtype", tensor.dtype},
                         {"shape", tensor.shape},
                         {"offset", tensor.offset},
                         {"byte_size", tensor.byte_size}});
    }
    const nlohmann::json result = {{"format", FormatName(index.format)},
                                   {"tensors", std::move(tensors)},
                                   {"scalars", index.scalars},
                                   {"findings", index.findings}};
    return result.dump(2) + "\n";
  }
  // Column widths from the data, so the table lines up.
  size_t name_width = 4, dtype_width = 5, shape_width = 5;
  uint64_t total = 0;
  for (const model::TensorInfo& tensor : index.tensors) {
    name_width = std::max(name_width, tensor.name.size());
    dtype_width = std::max(dtype_width, tensor.dtype.size());
    shape_width = std::max(shape_width, ShapeText(tensor.shape).size());
    total += tensor.byte_size;
  }
  auto row = [&](absl::string_view name, absl::string_view dtype,
                 absl::string_view shape, absl::string_view bytes) {
    return absl::StrCat(name, std::string(name_width - name.size() + 2, ' '),
                        dtype, std::string(dtype_width - dtype.size() + 2, ' '),
                        shape, std::string(shape_width - shape.size() + 2, ' '),
                        bytes, "\n");
  };
  std::string text = absl::StrCat("format: ", FormatName(index.format), "\n",
                                  "tensors: ", index.tensors.size(), "\n",
                                  "tensor bytes: ", total, "\n");
  absl::StrAppend(&text, row("name", "dtype", "shape", "bytes"));
  for (const model::TensorInfo& tensor : index.tensors) {
    absl::StrAppend(&text,
                    row(tensor.name, tensor.dtype, ShapeText(tensor.shape),
                        absl::StrCat(tensor.byte_size)));
  }
  if (index.scalars.is_object()) {
    for (const auto& [key, value] : index.scalars.items()) {
      absl::StrAppend(&text, key, ": ", value.dump(), "\n");
    }
  }
  for (const std::string& finding : index.findings) {
    absl::StrAppend(&text, "finding: ", finding, "\n");
  }
  return text;
}

}  // namespace

CommandGroup LocalCommands() {
  CommandGroup group;
  group.summary = {{"mm probe|hash|scan|inspect ...",
                    "local file commands (no service needed)"}};
  group.commands = {
      {.words = {"probe"},
       .flags = {ValueFlag("set"), ValueFlag("hash"),
                 BoolFlag("allow-unknown")},
       .usage = "usage: mm probe PATH [--set FIELD=VALUE]... [--hash ALGO] "
                "[--allow-unknown] [--json]\n",
       .run =
           [](const CommandContext& context) {
             return WriteResult(Probe(context.args, context.io.json),
                                context.io);
           }},
      {.words = {"hash"},
       .flags = {ValueFlag("algo")},
       .usage = "usage: mm hash PATH [--algo ALGO]\n",
       .run =
           [](const CommandContext& context) {
             return WriteResult(Hash(context.args), context.io);
           }},
      {.words = {"scan"},
       .usage = "usage: mm scan DIR [--json]\n",
       .run =
           [](const CommandContext& context) {
             return WriteResult(Scan(context.args, context.io.json),
                                context.io);
           }},
      {.words = {"inspect"},
       .usage = "usage: mm inspect PATH [--json]\n",
       .run =
           [](const CommandContext& context) {
             return WriteResult(Inspect(context.args, context.io.json),
                                context.io);
           }},
  };
  return group;
}

}  // namespace mm::cli
