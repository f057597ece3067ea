#include "common/config.h"

#include <cstdlib>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/status.h"
#include "common/strings.h"
#include "yaml-cpp/yaml.h"

namespace mm {
namespace {

std::string EnvName(const std::string& option) {
  std::string env = "MM_" + absl::AsciiStrToUpper(option);
  absl::StrReplaceAll({{"-", "_"}}, &env);
  return env;
}

const OptionSpec* FindSpec(const std::vector<OptionSpec>& specs,
                           std::string name) {
  absl::StrReplaceAll({{"_", "-"}}, &name);
  for (const OptionSpec& spec : specs) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

absl::Status LoadYaml(const std::vector<OptionSpec>& specs,
                      const std::string& file,
                      std::map<std::string, std::vector<std::string>>& out) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(file);
  } catch (const YAML::BadFile&) {
    return absl::NotFoundError(
        absl::StrCat("config file ", file, " cannot be read"));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("config file ", file, ": ", SafeForMessage(e.what())));
  }
  if (root.IsNull()) return absl::OkStatus();
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config file ", file, " must be a YAML mapping of option: value"));
  }
  for (const auto& entry : root) {
    std::string key = entry.first.as<std::string>();
    const OptionSpec* spec = FindSpec(specs, key);
    if (spec == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("config file ", file, ": unknown option '", key, "'"));
    }
    std::vector<std::string>& values = out[spec->name];
    values.clear();
    const YAML::Node& node = entry.second;
    if (node.IsSequence()) {
      for (const auto& item : node) values.push_back(item.as<std::string>());
    } else if (node.IsScalar()) {
      values.push_back(node.as<std::string>());
    } else if (!node.IsNull()) {
      return absl::InvalidArgumentError(
          absl::StrCat("config file ", file, ": option '", key,
                       "' must be a scalar or a list"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

EnvLookup ProcessEnvironment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

absl::StatusOr<Config> Config::Load(const std::vector<OptionSpec>& specs,
                                    int argc, char** argv) {
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  return Load(specs, args, ProcessEnvironment());
}

absl::StatusOr<Config> Config::Load(const std::vector<OptionSpec>& specs,
                                    const std::vector<std::string>& args,
                                    const EnvLookup& env) {
  Config config;
  for (const OptionSpec& spec : specs) {
    config.defaults_[spec.name] = spec.default_value;
  }
  // Flags first into their own map, so the YAML file they name can be
  // applied beneath them.
  std::map<std::string, std::vector<std::string>> flags;
  std::string config_file;
  if (auto from_env = env("MM_CONFIG")) config_file = *from_env;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      config.positional_.insert(config.positional_.end(), args.begin() + i + 1,
                                args.end());
      break;
    }
    if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
      config.positional_.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (name == "help") {
      config.help_requested_ = true;
      continue;
    }
    if (name == "config") {
      if (!value) {
        if (i + 1 >= args.size()) {
          return absl::InvalidArgumentError("--config needs a FILE");
        }
        value = args[++i];
      }
      config_file = *value;
      continue;
    }
    const OptionSpec* spec = FindSpec(specs, name);
    if (spec == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", name, " (see --help)"));
    }
    if (!value) {
      if (spec->is_bool) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("flag --", name, " needs a value"));
      }
    }
    flags[spec->name].push_back(*value);
  }
  if (!config_file.empty()) {
    RETURN_IF_ERROR(LoadYaml(specs, config_file, config.values_));
  }
  for (auto& [name, values] : flags) config.values_[name] = values;
  for (const OptionSpec& spec : specs) {
    if (auto value = env(EnvName(spec.name))) {
      config.values_[spec.name] = {*value};
    }
  }
  return config;
}

std::string Config::GetString(const std::string& name) const {
  auto it = values_.find(name);
  if (it != values_.end() && !it->second.empty()) return it->second.back();
  auto def = defaults_.find(name);
  return def == defaults_.end() ? "" : def->second;
}

std::vector<std::string> Config::GetList(const std::string& name) const {
  auto it = values_.find(name);
  if (it != values_.end()) return it->second;
  auto def = defaults_.find(name);
  if (def == defaults_.end() || def->second.empty()) return {};
  return {def->second};
}

bool Config::IsSet(const std::string& name) const {
  return values_.count(name) > 0;
}

absl::StatusOr<int64_t> Config::GetInt(const std::string& name) const {
  std::string text = GetString(name);
  int64_t value = 0;
  if (!absl::SimpleAtoi(text, &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("option ", name, " must be an integer, got '", text, "'"));
  }
  return value;
}

absl::StatusOr<bool> Config::GetBool(const std::string& name) const {
  std::string text = absl::AsciiStrToLower(GetString(name));
  if (text == "true" || text == "1" || text == "yes" || text == "on") {
    return true;
  }
  if (text.empty() || text == "false" || text == "0" || text == "no" ||
      text == "off") {
    return false;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "option ", name, " must be true or false, got '", text, "'"));
}

absl::StatusOr<absl::Duration> Config::GetDuration(
    const std::string& name) const {
  std::string text = GetString(name);
  absl::Duration value;
  if (!absl::ParseDuration(text, &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("option ", name,
                     " must be a duration like 10s or 250ms, "
                     "got '",
                     text, "'"));
  }
  return value;
}

std::string Config::Usage(const std::vector<OptionSpec>& specs) {
  std::string out = "  --config FILE  YAML file of option: value pairs\n";
  for (const OptionSpec& spec : specs) {
    absl::StrAppend(&out, "  --", spec.name, spec.is_bool ? "" : " VALUE", "  ",
                    spec.help);
    if (!spec.default_value.empty()) {
      absl::StrAppend(&out, " (default: ", spec.default_value, ")");
    }
    absl::StrAppend(&out, "  [env ", EnvName(spec.name), "]\n");
  }
  return out;
}

}  // namespace mm
