// The `mm` command: argument parsing, global options (service addresses,
// token, state directory, --json) and dispatch to the commands declared in
// command_registry.cc (see command.h for how a command is written).
//
// Every command writes its result to `out` and returns a status; RunCli
// alone turns a failure into one line `mm: CODE: message` on `err` and exit
// 1 (for usage errors `mm: message`, a usage hint and exit 2). Nothing here
// touches process-wide state except `mm up`, which installs its own signal
// handling (cli/supervisor.h).
//
//   CliIo io{&std::cin, &std::cout, &std::cerr, ProcessEnvironment(),
//            SelfExecutablePath(argv[0])};
//   return RunCli({"models", "list", "--json"}, io);
//
// Thread-safety: the functions are reentrant; a CliIo's streams must not be
// shared between concurrent runs.
#ifndef MM_CLI_CLI_H_
#define MM_CLI_CLI_H_

#include <filesystem>
#include <istream>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/client.h"
#include "common/config.h"
#include "grpcpp/channel.h"

namespace mm::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// The outside world of one run, injected so tests run commands in-process.
struct CliIo {
  std::istream* in = nullptr;
  std::ostream* out = nullptr;
  std::ostream* err = nullptr;
  // Environment variables (MM_HOME, MM_RECORDS_ADDR, HOME, ...).
  EnvLookup env;
  // The running `mm` binary; service executables are looked up beside it.
  std::filesystem::path self_exe;
};

// The command line after parsing: the command words and positional
// arguments in order, and the flags by name (without dashes).
struct ParsedArgs {
  std::vector<std::string> words;
  std::map<std::string, std::vector<std::string>> flags;

  bool Has(const std::string& flag) const { return flags.count(flag) > 0; }
  // The last value given for `flag`, or `fallback`.
  std::string Get(const std::string& flag,
                  const std::string& fallback = "") const;
  // Every value given for `flag`, in order.
  std::vector<std::string> GetAll(const std::string& flag) const;
};

// Splits `args` (without the program name) into words and flags. Flags are
// `--name value`, `--name=value`, or `--name` alone for the boolean ones;
// `-h` is `--help`; `--` ends the flags. The flags are the global ones and
// those every command declares (command.h); which command takes which is
// checked at dispatch. Unknown flags, and a value flag without a value, are
// usage errors (see IsUsageError).
absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args);

// Whether `name` is a flag every command takes: --home, --json, --timeout,
// --token-file, the --tls-* flags, --help and one address flag per known
// service (--records, --downloader, ...).
bool IsGlobalFlag(std::string_view name);

// A status meaning "the command line is wrong": RunCli exits 2 and prints a
// usage hint. Its code is INVALID_ARGUMENT.
absl::Status UsageError(std::string_view message);
bool IsUsageError(const absl::Status& status);

// The state directory: `home_flag`, else $MM_HOME, else
// $XDG_STATE_HOME/modelmanager, else $HOME/.local/state/modelmanager.
// Does not create it. FAILED_PRECONDITION when none of these is set.
absl::StatusOr<std::filesystem::path> ResolveStateDir(
    const std::string& home_flag, const EnvLookup& env);
// Creates `dir` (and parents) if missing, with mode 0700.
absl::Status EnsureStateDir(const std::filesystem::path& dir);

// The services the system is made of, in start order.
struct ServiceInfo {
  // Short name: "records"; also the socket and log file stem.
  std::string name;
  // Executable: "mm-records".
  std::string executable;
  // Health-check service name reported SERVING once ready.
  std::string health_name;
  // Empty when this build makes the executable; otherwise why it does not
  // (e.g. "not part of this version yet"), which `mm up` prints instead of
  // starting the service.
  std::string missing_reason;
};
const std::vector<ServiceInfo>& KnownServices();
const ServiceInfo* FindService(std::string_view name);

// Where a service is reached, and why there.
struct ServiceAddress {
  std::string address;
  // True when derived from the state directory (not --X or MM_X_ADDR).
  bool from_state_dir = false;
};

// Options every command shares, resolved from flags and environment.
struct GlobalOptions {
  // Empty when it cannot be resolved (state_dir_error says why).
  std::filesystem::path state_dir;
  absl::Status state_dir_error;
  // By service name: "records" -> address.
  std::map<std::string, ServiceAddress> addresses;
  // --token-file / MM_TOKEN_FILE, --tls-ca / MM_TLS_CA, ...
  ClientOptions client;
  bool json = false;
  // Deadline of each unary rpc (--timeout, default 30s).
  absl::Duration timeout = absl::Seconds(30);
};

// Resolves addresses for every KnownServices() entry X: `--X ADDR`, else
// $MM_X_ADDR, else unix:<state dir>/X.sock.
absl::StatusOr<GlobalOptions> ResolveGlobalOptions(const ParsedArgs& args,
                                                   const EnvLookup& env);

// A channel to `service` at its resolved address with `client`'s
// credentials. FAILED_PRECONDITION when the address would come from a state
// directory that cannot be resolved (naming --X ADDR and MM_X_ADDR).
absl::StatusOr<std::shared_ptr<grpc::Channel>> ConnectToService(
    const GlobalOptions& options, const std::string& service,
    const ClientOptions& client);

// `status` from a command on `service` with, for UNAVAILABLE, where the
// address came from and what to check ("is `mm up` running with state
// directory D? (or pass --X ADDR)").
absl::Status ExplainUnavailable(const absl::Status& status,
                                const GlobalOptions& options,
                                const std::string& service);

// The one place a command's status becomes output and an exit code: OK is
// 0 and prints nothing; a usage error prints `mm: message` and
// `usage_hint` on two lines and is 2; any other error prints exactly one
// line `mm: CODE: message` (line breaks in the message become spaces) and
// is 1.
int ReportStatus(const absl::Status& status, const std::string& usage_hint,
                 std::ostream& err);

// The whole `mm` command. Returns the process exit code.
int RunCli(const std::vector<std::string>& args, const CliIo& io);

// For main(): /proc/self/exe, else argv0 made absolute.
std::filesystem::path SelfExecutablePath(const char* argv0);

// The top-level help text: the groups' summary lines and the global flags.
std::string TopLevelUsage();

}  // namespace mm::cli

#endif  // MM_CLI_CLI_H_
