// The `mm` command: argument parsing, global options (service addresses,
// token, state directory, --json) and dispatch to the command groups.
//
// Every command writes its result to `out`, and on failure RunCli prints one
// line `mm: CODE: message` to `err` and returns 1 (2 for usage errors, with
// a usage hint). Nothing here touches process-wide state except `mm up`,
// which installs its own signal handling (cli/supervisor.h).
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
// `-h` is `--help`; `--` ends the flags. Unknown flags, and a value flag
// without a value, are usage errors (see IsUsageError).
absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args);

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

// Resolves addresses: `--records ADDR`, else $MM_RECORDS_ADDR, else
// unix:<state dir>/records.sock (likewise downloader, installer, loader).
absl::StatusOr<GlobalOptions> ResolveGlobalOptions(const ParsedArgs& args,
                                                   const EnvLookup& env);

// The whole `mm` command. Returns the process exit code.
int RunCli(const std::vector<std::string>& args, const CliIo& io);

// For main(): /proc/self/exe, else argv0 made absolute.
std::filesystem::path SelfExecutablePath(const char* argv0);

// The top-level help text.
std::string TopLevelUsage();

}  // namespace mm::cli

#endif  // MM_CLI_CLI_H_
