// How an `mm` command is declared and what it is given when it runs: the
// one convention every command follows.
//
// A command returns absl::Status and writes its normal output to
// CommandIo::out; it never prints an error itself. RunCli (cli.h) turns a
// non-OK status into the one line `mm: CODE: message` on stderr and exit 1,
// or, for a UsageError, `mm: message` plus a usage hint and exit 2.
//
// Commands come in groups, one per file (models_commands.cc,
// downloads_commands.cc, ...), each a function returning its CommandGroup,
// listed once in command_registry.cc. A group of commands that call one
// service declares them as StubCommands on that service's stub, so the
// same table serves the CLI (ServiceCommands: RunCli resolves the service's
// address and connects) and tests (RunStubCommand against a fake):
//
//   absl::Status RunList(const ParsedArgs& args,
//                        v1::Installer::StubInterface& stub,
//                        const CommandIo& io);
//   const std::vector<StubCommand<v1::Installer::StubInterface>> kTable = {
//       {{"installs", "list"}, {ValueFlag("state")}, RunList}};
//   CommandGroup InstallerCommands() {
//     return {InstallerUsage(), {{"mm installs ...", "the install jobs"}},
//             ServiceCommands<v1::Installer>("installer", kTable)};
//   }
//
// Thread-safety: the declarations are plain values; a CommandIo's streams
// belong to one run.
#ifndef MM_CLI_COMMAND_H_
#define MM_CLI_COMMAND_H_

#include <filesystem>
#include <functional>
#include <istream>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cli/cli.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"

namespace mm::cli {

// A flag a command takes besides the global ones (cli.h). A flag name means
// the same kind (boolean or with a value) in every command that takes it.
struct FlagSpec {
  std::string name;  // without dashes: "dest"
  bool takes_value = false;
};
inline FlagSpec ValueFlag(std::string name) { return {std::move(name), true}; }
inline FlagSpec BoolFlag(std::string name) { return {std::move(name), false}; }

// What a command writes to and how, resolved once by RunCli from the global
// options.
struct CommandIo {
  // Read by commands that take `-` for standard input.
  std::istream* in = nullptr;
  std::ostream* out = nullptr;
  // --json: JSON instead of tables and `field: value` lines.
  bool json = false;
  // Deadline of each unary rpc (--timeout). Waiting commands use it only
  // when --timeout was given, and otherwise wait without a deadline.
  absl::Duration timeout = absl::Seconds(30);
  // Whether `out` is a terminal: progress is then redrawn in place (ANSI
  // cursor movement) instead of one line per state change.
  bool terminal = false;
  // Relative paths sent to a service are made absolute against this: the
  // server shares the filesystem but not our working directory. Empty when
  // it could not be read.
  std::filesystem::path working_dir;
  // The models folder of the system `mm up` runs (<state dir>/models);
  // empty when there is no state directory.
  std::filesystem::path models_dir;
  // A watch stream that breaks (UNAVAILABLE, or ends before the job is
  // done) is reopened from the last revision seen, at most this many times
  // in a row, waiting `reconnect_backoff` before the first retry and twice
  // as long before each next one.
  int reconnect_attempts = 5;
  absl::Duration reconnect_backoff = absl::Milliseconds(500);
};

// A client context whose deadline is io.timeout from now, for one unary rpc.
std::unique_ptr<grpc::ClientContext> UnaryContext(const CommandIo& io);

// Everything one run of a command is given.
struct CommandContext {
  const ParsedArgs& args;
  const GlobalOptions& options;
  // The process's world: environment, the `mm` binary.
  const CliIo& cli;
  const CommandIo& io;
  // Connected to Command::service; null for a command that has none.
  std::shared_ptr<grpc::Channel> channel;
};

struct Command {
  // The command words: {"downloads", "list"}. Words after them are the
  // command's arguments, which `run` checks.
  std::vector<std::string> words;
  std::vector<FlagSpec> flags;
  // The service (a KnownServices() name) the command calls, or "" for none.
  // RunCli resolves its address (--X ADDR, MM_X_ADDR, the state
  // directory), connects, and adds to an UNAVAILABLE error where the
  // address came from.
  std::string service;
  // --token-file is a credential the command passes on (a URL's or a hub's
  // token), so the bearer token for the service itself then comes only
  // from MM_TOKEN_FILE.
  bool token_file_is_access_token = false;
  // `mm WORDS --help` prints this; empty: the group's usage.
  std::string usage;
  std::function<absl::Status(const CommandContext&)> run;
};

struct CommandGroup {
  // `mm HEAD --help` prints this for each first word of the commands; empty
  // for the top-level usage.
  std::string usage;
  // Lines of the top-level usage: {"mm models ...", "the model records"}.
  std::vector<std::pair<std::string, std::string>> summary;
  std::vector<Command> commands;
};

// A command on one service's stub (see the file comment).
template <typename Stub>
struct StubCommand {
  std::vector<std::string> words;
  std::vector<FlagSpec> flags;
  absl::Status (*run)(const ParsedArgs& args, Stub& stub, const CommandIo& io);
  bool token_file_is_access_token = false;
};

// The command among `known` whose words begin `words` (the longest such),
// or a usage error: "mm models needs a command: list, get or add",
// "unknown command 'mm models frob'; use list, get or add", "unknown
// command 'frob'".
absl::StatusOr<size_t> MatchCommandWords(
    const std::vector<std::vector<std::string>>& known,
    const std::vector<std::string>& words);

template <typename Stub>
absl::Status RunStubCommand(const std::vector<StubCommand<Stub>>& commands,
                            const ParsedArgs& args, Stub& stub,
                            const CommandIo& io) {
  std::vector<std::vector<std::string>> known;
  for (const StubCommand<Stub>& command : commands) {
    known.push_back(command.words);
  }
  absl::StatusOr<size_t> index = MatchCommandWords(known, args.words);
  if (!index.ok()) return index.status();
  return commands[*index].run(args, stub, io);
}

// The table's commands for RunCli, each making its stub from the channel
// to `service`. `Service` is the generated class (v1::Downloader).
template <typename Service>
std::vector<Command> ServiceCommands(
    const std::string& service,
    const std::vector<StubCommand<typename Service::StubInterface>>& table) {
  std::vector<Command> commands;
  for (const auto& entry : table) {
    Command command;
    command.words = entry.words;
    command.flags = entry.flags;
    command.service = service;
    command.token_file_is_access_token = entry.token_file_is_access_token;
    command.run = [run = entry.run](const CommandContext& context) {
      auto stub = Service::NewStub(context.channel);
      return run(context.args, *stub, context.io);
    };
    commands.push_back(std::move(command));
  }
  return commands;
}

// Argument checks shared by the commands: "mm downloads list" of
// `args.words`, no words after the command's `depth` words, exactly one.
std::string CommandName(const ParsedArgs& args, size_t depth);
absl::Status NoArguments(const ParsedArgs& args, size_t depth);
absl::StatusOr<std::string> SingleArgument(const ParsedArgs& args, size_t depth,
                                           const char* what);

// Every group of `mm` commands (command_registry.cc): the one list RunCli
// parses, dispatches and prints help from.
const std::vector<CommandGroup>& CommandGroups();

// INTERNAL naming the problem unless the table is consistent: every
// command has words and a run function, no two commands have the same
// words, a command names only known services and takes no global flag as
// its own, and each flag name has one kind across all commands.
absl::Status ValidateCommandGroups(const std::vector<CommandGroup>& groups);

}  // namespace mm::cli

#endif  // MM_CLI_COMMAND_H_
