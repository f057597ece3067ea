#include "cli/cli.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "cli/build_services.h"
#include "cli/command.h"
#include "cli/supervisor.h"
#include "common/status.h"

namespace mm::cli {
namespace {

namespace fs = std::filesystem;

constexpr char kUsagePayloadUrl[] = "mm.cli/usage";

// Global flags besides one address flag per known service.
constexpr const char* kGlobalValueFlags[] = {
    "token-file",      "tls-ca", "tls-cert", "tls-key",
    "tls-server-name", "home",   "timeout"};
constexpr const char* kGlobalBooleanFlags[] = {"json", "help"};

// Whether --name takes a value: nullopt for a flag no command declares.
std::optional<bool> FlagTakesValue(std::string_view name) {
  for (const char* flag : kGlobalValueFlags) {
    if (name == flag) return true;
  }
  for (const char* flag : kGlobalBooleanFlags) {
    if (name == flag) return false;
  }
  if (FindService(name) != nullptr) return true;
  for (const CommandGroup& group : CommandGroups()) {
    for (const Command& command : group.commands) {
      for (const FlagSpec& flag : command.flags) {
        if (flag.name == name) return flag.takes_value;
      }
    }
  }
  return std::nullopt;
}

absl::StatusOr<const Command*> FindCommand(
    const std::vector<std::string>& words) {
  std::vector<const Command*> all;
  std::vector<std::vector<std::string>> known;
  for (const CommandGroup& group : CommandGroups()) {
    for (const Command& command : group.commands) {
      all.push_back(&command);
      known.push_back(command.words);
    }
  }
  ASSIGN_OR_RETURN(size_t index, MatchCommandWords(known, words));
  return all[index];
}

// The group whose commands begin with `head`.
const CommandGroup* GroupOf(const std::string& head) {
  for (const CommandGroup& group : CommandGroups()) {
    for (const Command& command : group.commands) {
      if (command.words[0] == head) return &group;
    }
  }
  return nullptr;
}

std::optional<std::string> EnvValue(const EnvLookup& env,
                                    const std::string& name) {
  if (!env) return std::nullopt;
  std::optional<std::string> value = env(name);
  if (value && value->empty()) return std::nullopt;
  return value;
}

// A flag, else an environment variable, else "".
std::string FlagOrEnv(const ParsedArgs& args, const std::string& flag,
                      const EnvLookup& env, const std::string& variable) {
  if (args.Has(flag)) return args.Get(flag);
  return EnvValue(env, variable).value_or("");
}

std::string AddressVariable(const std::string& service) {
  return absl::StrCat("MM_", absl::AsciiStrToUpper(service), "_ADDR");
}

// What `mm WORDS --help` prints: the command's own usage, else its group's,
// else the top-level usage.
std::string HelpText(const std::vector<std::string>& words) {
  if (words.empty() || words[0] == "help") return TopLevelUsage();
  if (absl::StatusOr<const Command*> found = FindCommand(words);
      found.ok() && !(*found)->usage.empty()) {
    return (*found)->usage;
  }
  const CommandGroup* group = GroupOf(words[0]);
  if (group == nullptr || group->usage.empty()) return TopLevelUsage();
  return group->usage;
}

// Points at the help of the command group the words begin with, when it
// has help of its own.
std::string UsageHint(const ParsedArgs* args) {
  if (args != nullptr && !args->words.empty() &&
      HelpText({args->words[0]}) != TopLevelUsage()) {
    return absl::StrCat("run `mm ", args->words[0], " --help` for usage");
  }
  return "run `mm --help` for usage";
}

// Whether `mm` writes to a terminal that understands cursor movement.
bool OutputIsTerminal(const CliIo& io) {
  if (io.out != &std::cout || isatty(STDOUT_FILENO) != 1) return false;
  return EnvValue(io.env, "TERM").value_or("") != "dumb";
}

absl::Status Dispatch(const ParsedArgs& args, const CliIo& io) {
  ASSIGN_OR_RETURN(const Command* found, FindCommand(args.words));
  const Command& command = *found;
  for (const auto& [flag, values] : args.flags) {
    if (IsGlobalFlag(flag)) continue;
    bool taken = std::any_of(
        command.flags.begin(), command.flags.end(),
        [&flag = flag](const FlagSpec& spec) { return spec.name == flag; });
    if (!taken) {
      return UsageError(absl::StrCat("mm ", absl::StrJoin(command.words, " "),
                                     " does not take --", flag));
    }
  }
  ASSIGN_OR_RETURN(GlobalOptions options, ResolveGlobalOptions(args, io.env));
  CommandIo command_io;
  command_io.in = io.in;
  command_io.out = io.out;
  command_io.json = options.json;
  command_io.timeout = options.timeout;
  command_io.terminal = OutputIsTerminal(io);
  std::error_code error;
  command_io.working_dir = fs::current_path(error);
  if (error) command_io.working_dir.clear();
  // Where `mm up` keeps models (supervisor.h StateLayout::ModelsDir).
  if (options.state_dir_error.ok() && !options.state_dir.empty()) {
    command_io.models_dir = StateLayout(options.state_dir).ModelsDir();
  }
  CommandContext context{args, options, io, command_io, nullptr};
  if (command.service.empty()) return command.run(context);
  ClientOptions client = options.client;
  if (command.token_file_is_access_token) {
    client.token_file = EnvValue(io.env, "MM_TOKEN_FILE").value_or("");
  }
  ASSIGN_OR_RETURN(context.channel,
                   ConnectToService(options, command.service, client));
  return ExplainUnavailable(command.run(context), options, command.service);
}

}  // namespace

std::string ParsedArgs::Get(const std::string& flag,
                            const std::string& fallback) const {
  auto it = flags.find(flag);
  if (it == flags.end() || it->second.empty()) return fallback;
  return it->second.back();
}

std::vector<std::string> ParsedArgs::GetAll(const std::string& flag) const {
  auto it = flags.find(flag);
  if (it == flags.end()) return {};
  return it->second;
}

absl::Status UsageError(std::string_view message) {
  absl::Status status(absl::StatusCode::kInvalidArgument,
                      absl::string_view(message.data(), message.size()));
  status.SetPayload(kUsagePayloadUrl, absl::Cord("1"));
  return status;
}

bool IsUsageError(const absl::Status& status) {
  return status.GetPayload(kUsagePayloadUrl).has_value();
}

absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args) {
  ParsedArgs parsed;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      parsed.words.insert(parsed.words.end(), args.begin() + i + 1, args.end());
      break;
    }
    if (arg == "-h") {
      parsed.flags["help"].push_back("true");
      continue;
    }
    // A lone "-" is a word: `mm models add -` reads standard input.
    if (arg.size() < 2 || arg[0] != '-') {
      parsed.words.push_back(arg);
      continue;
    }
    if (arg.size() < 3 || arg[1] != '-') {
      return UsageError(
          absl::StrCat("unknown flag ", arg, "; flags are spelled --name"));
    }
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    std::optional<bool> takes_value = FlagTakesValue(name);
    if (!takes_value) {
      return UsageError(absl::StrCat("unknown flag --", name));
    }
    if (*takes_value) {
      if (!value) {
        if (i + 1 >= args.size()) {
          return UsageError(absl::StrCat("flag --", name, " needs a value"));
        }
        value = args[++i];
      }
    } else if (value) {
      std::string lower = absl::AsciiStrToLower(*value);
      if (lower == "false" || lower == "0" || lower == "no") continue;
      if (lower != "true" && lower != "1" && lower != "yes") {
        return UsageError(absl::StrCat("flag --", name,
                                       " takes no value (or true/false), got '",
                                       *value, "'"));
      }
    }
    parsed.flags[name].push_back(value.value_or("true"));
  }
  return parsed;
}

absl::StatusOr<fs::path> ResolveStateDir(const std::string& home_flag,
                                         const EnvLookup& env) {
  if (!home_flag.empty()) return fs::absolute(home_flag).lexically_normal();
  if (auto home = EnvValue(env, "MM_HOME")) {
    return fs::absolute(*home).lexically_normal();
  }
  if (auto xdg = EnvValue(env, "XDG_STATE_HOME")) {
    return (fs::absolute(*xdg) / "modelmanager").lexically_normal();
  }
  if (auto home = EnvValue(env, "HOME")) {
    return (fs::absolute(*home) / ".local" / "state" / "modelmanager")
        .lexically_normal();
  }
  return absl::FailedPreconditionError(
      "no state directory: pass --home DIR or set MM_HOME (HOME is not set)");
}

absl::Status EnsureStateDir(const fs::path& dir) {
  std::error_code error;
  if (fs::is_directory(dir, error)) return absl::OkStatus();
  if (!dir.parent_path().empty() && dir.parent_path() != dir) {
    fs::create_directories(dir.parent_path(), error);
  }
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot create state directory ", dir.string(), ": ",
        std::strerror(errno), "; choose another with --home DIR or MM_HOME"));
  }
  return absl::OkStatus();
}

const std::vector<ServiceInfo>& KnownServices() {
  static const auto* const kServices = [] {
    auto* services = new std::vector<ServiceInfo>{
        {"records", "mm-records", "modelmanager.v1.ModelRecords", ""},
        {"downloader", "mm-downloader", "modelmanager.v1.Downloader", ""},
        {"installer", "mm-installer", "modelmanager.v1.Installer", ""},
        {"loader", "mm-loader", "modelmanager.v1.Loader", ""},
    };
    for (ServiceInfo& service : *services) {
      for (const BuildService& built : kBuildServices) {
        if (service.name == built.name) {
          service.missing_reason = built.missing_reason;
        }
      }
    }
    return services;
  }();
  return *kServices;
}

const ServiceInfo* FindService(std::string_view name) {
  for (const ServiceInfo& service : KnownServices()) {
    if (service.name == name) return &service;
  }
  return nullptr;
}

absl::StatusOr<GlobalOptions> ResolveGlobalOptions(const ParsedArgs& args,
                                                   const EnvLookup& env) {
  GlobalOptions options;
  absl::StatusOr<fs::path> state_dir = ResolveStateDir(args.Get("home"), env);
  if (state_dir.ok()) {
    options.state_dir = *state_dir;
  } else {
    options.state_dir_error = state_dir.status();
  }
  for (const ServiceInfo& service : KnownServices()) {
    ServiceAddress address;
    address.address =
        FlagOrEnv(args, service.name, env, AddressVariable(service.name));
    if (address.address.empty()) {
      address.from_state_dir = true;
      if (state_dir.ok()) {
        address.address = absl::StrCat(
            "unix:", (*state_dir / (service.name + ".sock")).string());
      }
    }
    options.addresses[service.name] = address;
  }
  options.client.token_file =
      FlagOrEnv(args, "token-file", env, "MM_TOKEN_FILE");
  // Flags only: the services read MM_TLS_CERT/MM_TLS_KEY as their own
  // server certificate, so sharing those names would confuse the two.
  options.client.tls_ca = args.Get("tls-ca");
  options.client.tls_cert = args.Get("tls-cert");
  options.client.tls_key = args.Get("tls-key");
  options.client.tls_server_name = args.Get("tls-server-name");
  if (options.client.tls_cert.empty() != options.client.tls_key.empty()) {
    return UsageError("--tls-cert and --tls-key go together; give both");
  }
  options.json = args.Has("json");
  if (args.Has("timeout")) {
    absl::Duration timeout;
    if (!absl::ParseDuration(args.Get("timeout"), &timeout) ||
        timeout <= absl::ZeroDuration()) {
      return UsageError(absl::StrCat(
          "--timeout must be a positive duration like 30s or 2m, got '",
          args.Get("timeout"), "'"));
    }
    options.timeout = timeout;
  }
  return options;
}

bool IsGlobalFlag(std::string_view name) {
  for (const char* flag : kGlobalValueFlags) {
    if (name == flag) return true;
  }
  for (const char* flag : kGlobalBooleanFlags) {
    if (name == flag) return true;
  }
  return FindService(name) != nullptr;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> ConnectToService(
    const GlobalOptions& options, const std::string& service,
    const ClientOptions& client) {
  auto it = options.addresses.find(service);
  if (it == options.addresses.end()) {
    return absl::InternalError(
        absl::StrCat("no address for unknown service '", service, "'"));
  }
  if (it->second.from_state_dir && !options.state_dir_error.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(options.state_dir_error.message(), "; or pass --", service,
                     " ADDR or set ", AddressVariable(service)));
  }
  return MakeChannel(it->second.address, client);
}

absl::Status ExplainUnavailable(const absl::Status& status,
                                const GlobalOptions& options,
                                const std::string& service) {
  if (status.code() != absl::StatusCode::kUnavailable) return status;
  auto it = options.addresses.find(service);
  if (it == options.addresses.end()) return status;
  std::string hint =
      it->second.from_state_dir
          ? absl::StrCat("; is `mm up` running with state directory ",
                         options.state_dir.string(), "? (or pass --", service,
                         " ADDR)")
          : absl::StrCat("; is the ", service, " service running at ",
                         it->second.address, "?");
  return absl::Status(status.code(), absl::StrCat(status.message(), hint));
}

std::string TopLevelUsage() {
  std::string text = "mm: the model manager command.\n\nUsage:\n";
  // Descriptions start in one column, after the longest synopsis.
  size_t width = 0;
  for (const CommandGroup& group : CommandGroups()) {
    for (const auto& [synopsis, what] : group.summary) {
      width = std::max(width, synopsis.size());
    }
  }
  for (const CommandGroup& group : CommandGroups()) {
    for (const auto& [synopsis, what] : group.summary) {
      absl::StrAppend(&text, "  ", synopsis,
                      std::string(width - synopsis.size() + 2, ' '), what,
                      "\n");
    }
  }
  absl::StrAppend(&text, R"(
Global flags:
  --home DIR               state directory (default: $MM_HOME, else
                           $XDG_STATE_HOME/modelmanager, else
                           ~/.local/state/modelmanager)
  --records ADDR           records service (unix:PATH or HOST:PORT; default
                           $MM_RECORDS_ADDR, else unix:<home>/records.sock);
                           likewise --downloader, --installer, --loader
  --token-file FILE        bearer token ($MM_TOKEN_FILE); for `mm download`
                           and `mm downloads resume`, the URL's token
  --tls-ca FILE            verify the server with this CA: use TLS
  --tls-cert/--tls-key F   client certificate for mutual TLS
  --timeout DURATION       deadline of each call (default 30s)
  --json                   print JSON instead of tables

Exit status: 0 success, 1 failure (one line `mm: CODE: message` on
stderr), 2 bad command line.
)");
  return text;
}

int ReportStatus(const absl::Status& status, const std::string& usage_hint,
                 std::ostream& err) {
  if (status.ok()) return kExitOk;
  // One line, whatever the message holds: scripts read stderr by lines.
  std::string message = absl::StrReplaceAll(
      status.message(), {{"\r\n", " "}, {"\r", " "}, {"\n", " "}});
  if (IsUsageError(status)) {
    err << "mm: " << message << "\n" << usage_hint << "\n";
    return kExitUsage;
  }
  err << "mm: " << absl::StatusCodeToString(status.code()) << ": " << message
      << "\n";
  return kExitFailure;
}

int RunCli(const std::vector<std::string>& args, const CliIo& io) {
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args);
  if (!parsed.ok()) {
    // The words are unknown, but a leading command word still picks the
    // hint: `mm probe x --bogus` points at `mm probe --help`.
    ParsedArgs head;
    if (!args.empty() && !absl::StartsWith(args[0], "-")) {
      head.words.push_back(args[0]);
    }
    return ReportStatus(parsed.status(), UsageHint(&head), *io.err);
  }
  if (parsed->Has("help") || parsed->words.empty() ||
      parsed->words[0] == "help") {
    *io.out << HelpText(parsed->words);
    return parsed->words.empty() && !parsed->Has("help") ? kExitUsage : kExitOk;
  }
  absl::Status status = Dispatch(*parsed, io);
  io.out->flush();
  return ReportStatus(status, UsageHint(&*parsed), *io.err);
}

fs::path SelfExecutablePath(const char* argv0) {
  std::error_code error;
  fs::path self = fs::read_symlink("/proc/self/exe", error);
  if (!error) return self;
  if (argv0 == nullptr) return {};
  return fs::absolute(argv0, error);
}

}  // namespace mm::cli
