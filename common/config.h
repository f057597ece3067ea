// Process configuration: named options with documented defaults, read from
// (lowest to highest precedence) the built-in default, a YAML file given by
// --config FILE, command-line flags, and MM_* environment variables.
//
//   std::vector<OptionSpec> specs = ServerOptionSpecs();
//   specs.push_back({"db", "sqlite:records.db", "Record store URL"});
//   ASSIGN_OR_RETURN(Config config, Config::Load(specs, argc, argv));
//   std::string db = config.GetString("db");
//
// Flags are `--name value`, `--name=value`, or `--name` alone for a boolean
// (true). A flag given several times (or a YAML list) is a list: GetList.
// The environment variable of option "auth-token-file" is
// MM_AUTH_TOKEN_FILE; the YAML key is "auth-token-file" or
// "auth_token_file". Unknown flags or YAML keys are errors naming them.
// Immutable after Load: safe to read from any thread.
#ifndef MM_COMMON_CONFIG_H_
#define MM_COMMON_CONFIG_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace mm {

struct OptionSpec {
  // Flag name without dashes, e.g. "listen".
  std::string name;
  // Default value as text; empty means "unset".
  std::string default_value;
  // One-line description, printed by --help.
  std::string help;
  // True for a flag that takes no value (--detach).
  bool is_bool = false;
};

// Returns the value of an environment variable, or nullopt.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup ProcessEnvironment();

class Config {
 public:
  // Parses `args` (without the program name). Non-flag arguments are kept as
  // positional(). `--help` sets help_requested().
  static absl::StatusOr<Config> Load(
      const std::vector<OptionSpec>& specs,
      const std::vector<std::string>& args,
      const EnvLookup& env = ProcessEnvironment());
  static absl::StatusOr<Config> Load(const std::vector<OptionSpec>& specs,
                                     int argc, char** argv);

  // The last value given for `name` (or its default).
  std::string GetString(const std::string& name) const;
  // Every value given for `name`, in order (the default when none).
  std::vector<std::string> GetList(const std::string& name) const;
  absl::StatusOr<int64_t> GetInt(const std::string& name) const;
  absl::StatusOr<bool> GetBool(const std::string& name) const;
  // Durations like "10s", "250ms", "2m".
  absl::StatusOr<absl::Duration> GetDuration(const std::string& name) const;
  // True when a file, flag or environment variable set `name`.
  bool IsSet(const std::string& name) const;

  const std::vector<std::string>& positional() const { return positional_; }
  bool help_requested() const { return help_requested_; }
  // "  --name  help (default: x)" lines for every option.
  static std::string Usage(const std::vector<OptionSpec>& specs);

 private:
  std::map<std::string, std::vector<std::string>> values_;
  std::map<std::string, std::string> defaults_;
  std::vector<std::string> positional_;
  bool help_requested_ = false;
};

}  // namespace mm

#endif  // MM_COMMON_CONFIG_H_
