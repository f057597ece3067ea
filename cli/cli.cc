#include "cli/cli.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <set>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/build_services.h"
#include "cli/downloads_commands.h"
#include "cli/loader_commands.h"
#include "cli/local_commands.h"
#include "cli/models_commands.h"
#include "cli/supervisor.h"
#include "common/status.h"

namespace mm::cli {
namespace {

namespace fs = std::filesystem;

constexpr char kUsagePayloadUrl[] = "mm.cli/usage";

struct FlagSpec {
  const char* name;
  bool takes_value;
};

// Every flag of every command; which command accepts which is checked
// after parsing (CommandSpec::flags), so the messages can name the command.
constexpr FlagSpec kFlags[] = {
    // Global.
    {"records", true},
    {"downloader", true},
    {"installer", true},
    {"loader", true},
    {"token-file", true},
    {"tls-ca", true},
    {"tls-cert", true},
    {"tls-key", true},
    {"tls-server-name", true},
    {"home", true},
    {"timeout", true},
    {"json", false},
    {"help", false},
    // models list.
    {"name", true},
    {"base", true},
    {"type", true},
    {"format", true},
    {"tag", true},
    {"order-by", true},
    {"desc", false},
    {"limit", true},
    // models add / update / rm / watch.
    {"request-id", true},
    {"set", true},
    {"allow-class-change", false},
    {"etag", true},
    {"since", true},
    // models import.
    {"dry-run", false},
    {"models-dir", true},
    {"target-models-dir", true},
    {"no-hash", false},
    // up.
    {"detach", false},
    // download and downloads.
    {"dest", true},
    {"output", true},
    {"priority", true},
    {"sha256", true},
    {"size", true},
    {"keep-partial", false},
    {"no-start", false},
    {"wait", false},
    {"state", true},
    {"all", false},
    {"before", true},
    {"files", true},
    // load, unload (cli/loader_commands.h).
    {"submodel", true},
    {"dtype", true},
    {"tier", true},
    {"hold", false},
};

const char* const kGlobalFlags[] = {
    "records", "downloader", "installer", "loader",          "token-file",
    "tls-ca",  "tls-cert",   "tls-key",   "tls-server-name", "home",
    "timeout", "json",       "help"};

const FlagSpec* FindFlag(std::string_view name) {
  for (const FlagSpec& spec : kFlags) {
    if (name == spec.name) return &spec;
  }
  return nullptr;
}

struct CommandSpec {
  std::vector<std::string> words;
  std::set<std::string> flags;
};

const std::vector<CommandSpec>& Commands() {
  static const auto* const kCommands = new std::vector<CommandSpec>{
      {{"up"}, {"detach"}},
      {{"down"}, {}},
      {{"status"}, {}},
      {{"models", "list"},
       {"name", "base", "type", "format", "tag", "order-by", "desc", "limit"}},
      {{"models", "get"}, {}},
      {{"models", "add"}, {"request-id"}},
      {{"models", "update"}, {"set", "allow-class-change", "etag"}},
      {{"models", "rm"}, {"etag"}},
      {{"models", "import"},
       {"dry-run", "models-dir", "target-models-dir", "no-hash"}},
      {{"models", "watch"}, {"since"}},
      {{"download"},
       {"dest", "output", "name", "priority", "sha256", "size", "keep-partial",
        "no-start", "request-id", "wait", "files"}},
      {{"downloads", "list"}, {"state"}},
      {{"downloads", "get"}, {}},
      {{"downloads", "wait"}, {}},
      {{"downloads", "watch"}, {}},
      {{"downloads", "start"}, {"all"}},
      {{"downloads", "pause"}, {"all"}},
      {{"downloads", "resume"}, {"all"}},
      {{"downloads", "cancel"}, {"all"}},
      {{"downloads", "prune"}, {"before"}},
      {{"load"}, {"submodel", "dtype", "tier", "hold"}},
      {{"ps"}, {}},
      {{"unload"}, {"dtype"}},
      {{"cache"}, {}},
  };
  return *kCommands;
}

const CommandSpec* FindCommand(const ParsedArgs& args) {
  const CommandSpec* best = nullptr;
  for (const CommandSpec& command : Commands()) {
    if (args.words.size() < command.words.size()) continue;
    if (!std::equal(command.words.begin(), command.words.end(),
                    args.words.begin())) {
      continue;
    }
    if (best == nullptr || command.words.size() > best->words.size()) {
      best = &command;
    }
  }
  return best;
}

bool IsGlobalFlag(const std::string& name) {
  for (const char* flag : kGlobalFlags) {
    if (name == flag) return true;
  }
  return false;
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

// Where the local commands (probe, hash, scan, inspect) begin: the first
// word, skipping global flags (and their values) before it.
std::optional<size_t> FirstWordIndex(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--")
      return i + 1 < args.size() ? std::optional(i + 1) : std::nullopt;
    if (arg == "-" || !absl::StartsWith(arg, "-")) return i;
    if (!absl::StartsWith(arg, "--")) continue;
    std::string name = arg.substr(2);
    if (absl::StrContains(name, "=")) continue;
    const FlagSpec* spec = FindFlag(name);
    if (spec != nullptr && spec->takes_value) ++i;
  }
  return std::nullopt;
}

std::string UsageHint(const ParsedArgs* args) {
  if (args != nullptr && !args->words.empty()) {
    const std::string& group = args->words[0];
    if (group == "models" || group == "download" || group == "downloads") {
      return absl::StrCat("run `mm ", group, " --help` for usage");
    }
  }
  return "run `mm --help` for usage";
}

// Adds where the address came from to errors reaching a service.
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

absl::Status RunModels(const ParsedArgs& args, const GlobalOptions& options,
                       const CliIo& io) {
  const ServiceAddress& address = options.addresses.at("records");
  if (address.from_state_dir && !options.state_dir_error.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(options.state_dir_error.message(),
                     "; or pass --records ADDR or set MM_RECORDS_ADDR"));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                   MakeChannel(address.address, options.client));
  auto stub = modelmanager::v1::ModelRecords::NewStub(channel);
  ModelsCommandIo models_io;
  models_io.in = io.in;
  models_io.out = io.out;
  models_io.json = options.json;
  models_io.timeout = options.timeout;
  // Where `mm up` keeps models (supervisor.h StateLayout::ModelsDir).
  if (options.state_dir_error.ok() && !options.state_dir.empty()) {
    models_io.target_models_dir = StateLayout(options.state_dir).ModelsDir();
  }
  return ExplainUnavailable(RunModelsCommand(args, *stub, models_io), options,
                            "records");
}

// `mm download` and `mm downloads resume` take --token-file as the URL's
// access token, so there the bearer token for the downloader itself comes
// only from MM_TOKEN_FILE: the URL's token must not double as our own.
bool TokenFileIsAccessToken(const ParsedArgs& args) {
  return args.words[0] == "download" ||
         (args.words[0] == "downloads" && args.words.size() > 1 &&
          args.words[1] == "resume");
}

// Whether `mm` writes to a terminal that understands cursor movement.
bool OutputIsTerminal(const CliIo& io) {
  if (io.out != &std::cout || isatty(STDOUT_FILENO) != 1) return false;
  return EnvValue(io.env, "TERM").value_or("") != "dumb";
}

absl::Status RunDownloads(const ParsedArgs& args, GlobalOptions options,
                          const CliIo& io) {
  const ServiceAddress& address = options.addresses.at("downloader");
  if (address.from_state_dir && !options.state_dir_error.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(options.state_dir_error.message(),
                     "; or pass --downloader ADDR or set MM_DOWNLOADER_ADDR"));
  }
  if (TokenFileIsAccessToken(args)) {
    options.client.token_file = EnvValue(io.env, "MM_TOKEN_FILE").value_or("");
  }
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                   MakeChannel(address.address, options.client));
  auto stub = modelmanager::v1::Downloader::NewStub(channel);
  DownloadsCommandIo downloads_io;
  downloads_io.out = io.out;
  downloads_io.json = options.json;
  downloads_io.timeout = options.timeout;
  downloads_io.terminal = OutputIsTerminal(io);
  std::error_code error;
  downloads_io.working_dir = fs::current_path(error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read the current directory: ", error.message()));
  }
  return ExplainUnavailable(RunDownloadsCommand(args, *stub, downloads_io),
                            options, "downloader");
}

absl::Status RunLoader(const ParsedArgs& args, const GlobalOptions& options,
                       const CliIo& io) {
  const ServiceAddress& address = options.addresses.at("loader");
  if (address.from_state_dir && !options.state_dir_error.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(options.state_dir_error.message(),
                     "; or pass --loader ADDR or set MM_LOADER_ADDR"));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                   MakeChannel(address.address, options.client));
  auto stub = modelmanager::v1::Loader::NewStub(channel);
  LoaderCommandIo loader_io;
  loader_io.out = io.out;
  loader_io.json = options.json;
  loader_io.timeout = options.timeout;
  return ExplainUnavailable(RunLoaderCommand(args, *stub, loader_io), options,
                            "loader");
}

absl::Status Dispatch(const ParsedArgs& args, const CliIo& io) {
  const CommandSpec* command = FindCommand(args);
  if (command == nullptr) {
    if (args.words[0] == "downloads") {
      if (args.words.size() < 2) {
        return UsageError(
            "mm downloads needs a command: list, get, wait, watch, start, "
            "pause, resume, cancel or prune");
      }
      return UsageError(absl::StrCat(
          "unknown command 'mm downloads ", args.words[1],
          "'; use list, get, wait, watch, start, pause, resume, cancel or "
          "prune"));
    }
    if (args.words[0] == "models") {
      if (args.words.size() < 2) {
        return UsageError(
            "mm models needs a command: list, get, add, update, rm, import "
            "or watch");
      }
      return UsageError(absl::StrCat("unknown command 'mm models ",
                                     args.words[1],
                                     "'; use list, get, add, update, rm, "
                                     "import or watch"));
    }
    return UsageError(absl::StrCat("unknown command '", args.words[0], "'"));
  }
  for (const auto& [flag, values] : args.flags) {
    if (!IsGlobalFlag(flag) && command->flags.count(flag) == 0) {
      return UsageError(absl::StrCat("mm ", absl::StrJoin(command->words, " "),
                                     " does not take --", flag));
    }
  }
  ASSIGN_OR_RETURN(GlobalOptions options, ResolveGlobalOptions(args, io.env));
  const std::string& verb = args.words[0];
  if (verb == "models") return RunModels(args, options, io);
  if (verb == "download" || verb == "downloads") {
    return RunDownloads(args, std::move(options), io);
  }
  if (IsLoaderCommand(verb)) return RunLoader(args, options, io);
  if (args.words.size() > 1) {
    return UsageError(absl::StrCat("mm ", verb, " takes no arguments, got '",
                                   args.words[1], "'"));
  }
  if (verb == "status") return RunStatus(options, *io.out);
  RETURN_IF_ERROR(options.state_dir_error);
  if (verb == "down") return RunDown(options.state_dir, *io.out);
  SupervisorOptions supervisor;
  supervisor.state_dir = options.state_dir;
  supervisor.self_exe = io.self_exe;
  supervisor.env = io.env;
  supervisor.detach = args.Has("detach");
  return RunUp(supervisor, *io.out);
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
    const FlagSpec* spec = FindFlag(name);
    if (spec == nullptr) {
      return UsageError(absl::StrCat("unknown flag --", name));
    }
    if (spec->takes_value) {
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
    std::string upper = absl::AsciiStrToUpper(service.name);
    ServiceAddress address;
    address.address =
        FlagOrEnv(args, service.name, env, absl::StrCat("MM_", upper, "_ADDR"));
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

std::string TopLevelUsage() {
  return R"(mm: the model manager command.

Usage:
  mm up [--detach]         start every service under the state directory
  mm down                  stop a running `mm up`
  mm status                health of each service
  mm models ...            the model records (`mm models --help`)
  mm download URL ...      queue a download (`mm download --help`)
  mm downloads ...         the download jobs (`mm downloads --help`)
)" + LoaderCommandsUsage() +
         R"(  mm probe|hash|scan|inspect ...   local file commands (no service needed)

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
)";
}

int RunCli(const std::vector<std::string>& args, const CliIo& io) {
  std::ostream& out = *io.out;
  std::ostream& err = *io.err;
  std::optional<size_t> first = FirstWordIndex(args);
  if (first) {
    const std::string& word = args[*first];
    if (word == "probe" || word == "hash" || word == "scan" ||
        word == "inspect") {
      std::vector<std::string> rest(args.begin() + *first + 1, args.end());
      // --json before the command word still applies to it.
      for (size_t i = 0; i < *first; ++i) {
        if (args[i] == "--json") rest.insert(rest.begin(), "--json");
      }
      if (word == "probe") return RunProbeCommand(rest, out, err);
      if (word == "hash") return RunHashCommand(rest, out, err);
      if (word == "scan") return RunScanCommand(rest, out, err);
      return RunInspectCommand(rest, out, err);
    }
  }
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args);
  if (!parsed.ok()) {
    err << "mm: " << parsed.status().message() << "\n"
        << UsageHint(nullptr) << "\n";
    return kExitUsage;
  }
  if (parsed->Has("help") || parsed->words.empty() ||
      parsed->words[0] == "help") {
    std::string group = parsed->words.empty() ? "" : parsed->words[0];
    if (group == "models") {
      out << ModelsUsage();
    } else if (group == "download" || group == "downloads") {
      out << DownloadsUsage();
    } else {
      out << TopLevelUsage();
    }
    return parsed->words.empty() && !parsed->Has("help") ? kExitUsage : kExitOk;
  }
  absl::Status status = Dispatch(*parsed, io);
  out.flush();
  if (status.ok()) return kExitOk;
  if (IsUsageError(status)) {
    err << "mm: " << status.message() << "\n" << UsageHint(&*parsed) << "\n";
    return kExitUsage;
  }
  err << "mm: " << absl::StatusCodeToString(status.code()) << ": "
      << status.message() << "\n";
  return kExitFailure;
}

fs::path SelfExecutablePath(const char* argv0) {
  std::error_code error;
  fs::path self = fs::read_symlink("/proc/self/exe", error);
  if (!error) return self;
  if (argv0 == nullptr) return {};
  return fs::absolute(argv0, error);
}

}  // namespace mm::cli
