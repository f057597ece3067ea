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
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
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
using json = nlohmann::json;

// One option a command accepts.
struct OptionSpec {
  const char* name;  // "--json"
  bool takes_value;
  bool repeatable;
};

struct ParsedArgs {
  std::vector<std::string> positional;
  // Option name → values in order (flags get one empty value).
  std::map<std::string, std::vector<std::string>> options;
  bool help = false;

  bool Has(const std::string& name) const { return options.count(name) > 0; }
  std::optional<std::string> Value(const std::string& name) const {
    auto it = options.find(name);
    if (it == options.end()) return std::nullopt;
    return it->second.back();
  }
};

absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args,
                                     const std::vector<OptionSpec>& specs) {
  ParsedArgs parsed;
  bool options_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (options_done || !absl::StartsWith(arg, "-") || arg == "-") {
      parsed.positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      options_done = true;
      continue;
    }
    if (arg == "--help" || arg == "-h") {
      parsed.help = true;
      continue;
    }
    std::string name = arg;
    std::optional<std::string> inline_value;
    if (const size_t eq = arg.find('='); eq != std::string::npos) {
      name = arg.substr(0, eq);
      inline_value = arg.substr(eq + 1);
    }
    const auto spec =
        std::find_if(specs.begin(), specs.end(),
                     [&name](const OptionSpec& s) { return name == s.name; });
    if (spec == specs.end()) {
      std::vector<std::string> known;
      for (const OptionSpec& s : specs) known.push_back(s.name);
      return absl::InvalidArgumentError(
          absl::StrCat("unknown option '", name, "'; expected ",
                       known.empty() ? "none" : absl::StrJoin(known, ", ")));
    }
    std::string value;
    if (spec->takes_value) {
      if (inline_value.has_value()) {
        value = *inline_value;
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("option ", name, " needs a value"));
      }
    } else if (inline_value.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("option ", name, " takes no value"));
    }
    std::vector<std::string>& values = parsed.options[name];
    if (!values.empty() && !spec->repeatable) {
      return absl::InvalidArgumentError(
          absl::StrCat("option ", name, " given twice; give it once"));
    }
    values.push_back(std::move(value));
  }
  return parsed;
}

absl::Status ExpectOnePath(const ParsedArgs& parsed, absl::string_view what) {
  if (parsed.positional.size() == 1) return absl::OkStatus();
  if (parsed.positional.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("missing ", what));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("expected one ", what, ", got ", parsed.positional.size(),
                   ": ", absl::StrJoin(parsed.positional, " ")));
}

// Reports `status` as the one error line and returns the exit code.
int Fail(absl::string_view command, const absl::Status& status,
         std::ostream& err) {
  std::string message(status.message());
  message = absl::StrReplaceAll(message, {{"\r", " "}, {"\n", " "}});
  err << "mm " << command << ": " << absl::StatusCodeToString(status.code())
      << ": " << message << "\n";
  return 1;
}

// Runs `body` (which writes its output) and turns its status into the exit
// code. Nothing is written to `out` unless `body` succeeds, so a failed
// command never leaves half a result.
template <typename Body>
int Run(absl::string_view command, const char* usage,
        const std::vector<std::string>& args,
        const std::vector<OptionSpec>& specs, std::ostream& out,
        std::ostream& err, Body body) {
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args, specs);
  if (!parsed.ok()) {
    return Fail(command,
                Annotate(parsed.status(), absl::StrCat("usage: ", usage)), err);
  }
  if (parsed->help) {
    out << "usage: " << usage << "\n";
    return 0;
  }
  absl::StatusOr<std::string> text = body(*parsed);
  if (!text.ok()) return Fail(command, text.status(), err);
  out << *text;
  out.flush();
  return 0;
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

std::string HumanValue(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  return value.dump();
}

std::string HumanConfig(const json& config) {
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

absl::StatusOr<std::string> Probe(const ParsedArgs& parsed) {
  RETURN_IF_ERROR(ExpectOnePath(parsed, "model PATH"));
  model::ProbeOptions options;
  options.allow_unknown = parsed.Has("--allow-unknown");
  if (auto it = parsed.options.find("--set"); it != parsed.options.end()) {
    for (const std::string& assignment : it->second) {
      const size_t eq = assignment.find('=');
      if (eq == std::string::npos || eq == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("--set '", assignment,
                         "': expected FIELD=VALUE, e.g. --set base=sdxl"));
      }
      const std::string field = assignment.substr(0, eq);
      const std::string text = assignment.substr(eq + 1);
      // Numbers, booleans, lists and quoted strings as JSON; anything else
      // is a plain string (--set name=My model).
      json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (value.is_discarded()) value = text;
      options.overrides[field] = std::move(value);
    }
  }
  if (std::optional<std::string> algo = parsed.Value("--hash")) {
    ASSIGN_OR_RETURN(model::HashAlgorithm algorithm,
                     model::ParseHashAlgorithm(*algo));
    options.hash = model::HashOptions{.algorithm = algorithm};
  }
  ASSIGN_OR_RETURN(json config,
                   model::Probe(fs::path(parsed.positional[0]), options));
  if (parsed.Has("--json")) return config.dump(2) + "\n";
  return HumanConfig(config);
}

// ---------------------------------------------------------------------------
// hash

absl::StatusOr<std::string> Hash(const ParsedArgs& parsed) {
  RETURN_IF_ERROR(ExpectOnePath(parsed, "PATH to hash"));
  model::HashOptions options;
  if (std::optional<std::string> algo = parsed.Value("--algo")) {
    ASSIGN_OR_RETURN(options.algorithm, model::ParseHashAlgorithm(*algo));
  }
  ASSIGN_OR_RETURN(std::string hash,
                   model::HashPath(fs::path(parsed.positional[0]), options));
  return hash + "\n";
}

// ---------------------------------------------------------------------------
// scan

absl::StatusOr<std::string> Scan(const ParsedArgs& parsed) {
  RETURN_IF_ERROR(ExpectOnePath(parsed, "DIR to scan"));
  ASSIGN_OR_RETURN(std::vector<fs::path> found,
                   model::ScanForModels(fs::path(parsed.positional[0])));
  if (parsed.Has("--json")) {
    json list = json::array();
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

absl::StatusOr<std::string> Inspect(const ParsedArgs& parsed) {
  RETURN_IF_ERROR(ExpectOnePath(parsed, "weights file PATH"));
  ASSIGN_OR_RETURN(model::TensorIndex index,
                   model::ReadTensorIndex(fs::path(parsed.positional[0])));
  if (parsed.Has("--json")) {
    json tensors = json::array();
    for (const model::TensorInfo& tensor : index.tensors) {
      tensors.push_back({{"name", tensor.name},
                         {"dtype", tensor.dtype},
                         {"shape", tensor.shape},
                         {"offset", tensor.offset},
                         {"byte_size", tensor.byte_size}});
    }
    const json result = {{"format", FormatName(index.format)},
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

int RunProbeCommand(const std::vector<std::string>& args, std::ostream& out,
                    std::ostream& err) {
  return Run("probe",
             "mm probe PATH [--set FIELD=VALUE]... [--hash ALGO] "
             "[--allow-unknown] [--json]",
             args,
             {{"--set", true, true},
              {"--hash", true, false},
              {"--allow-unknown", false, false},
              {"--json", false, false}},
             out, err, Probe);
}

int RunHashCommand(const std::vector<std::string>& args, std::ostream& out,
                   std::ostream& err) {
  return Run("hash", "mm hash PATH [--algo ALGO]", args,
             {{"--algo", true, false}}, out, err, Hash);
}

int RunScanCommand(const std::vector<std::string>& args, std::ostream& out,
                   std::ostream& err) {
  return Run("scan", "mm scan DIR [--json]", args, {{"--json", false, false}},
             out, err, Scan);
}

int RunInspectCommand(const std::vector<std::string>& args, std::ostream& out,
                      std::ostream& err) {
  return Run("inspect", "mm inspect PATH [--json]", args,
             {{"--json", false, false}}, out, err, Inspect);
}

}  // namespace mm::cli
