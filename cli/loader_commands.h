// `mm load`, `mm ps`, `mm unload`, `mm cache`: the loader service from the
// command line (docs/loader.md, docs/cli.md).
//
//   auto stub = modelmanager::v1::Loader::NewStub(channel);
//   LoaderCommandIo io{.out = &std::cout};
//   absl::Status status = RunLoaderCommand(args, *stub, io);
//
// Thread-safety: reentrant; the stub may be shared.
#ifndef MM_CLI_LOADER_COMMANDS_H_
#define MM_CLI_LOADER_COMMANDS_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "cli/cli.h"
#include "modelmanager/v1/loader.grpc.pb.h"

namespace mm::cli {

struct LoaderCommandIo {
  std::ostream* out = nullptr;
  bool json = false;
  // Deadline of the unary rpcs (ps, unload, cache). A Load has none: a
  // large model takes as long as it takes, and `--hold` holds until the
  // process ends.
  absl::Duration timeout = absl::Seconds(30);
};

// True for the words this file handles: load, ps, unload, cache.
bool IsLoaderCommand(const std::string& word);

// The usage lines of these commands, for `mm --help`.
std::string LoaderCommandsUsage();

// Runs `args` (words[0] is one of IsLoaderCommand's words).
absl::Status RunLoaderCommand(const ParsedArgs& args,
                              modelmanager::v1::Loader::StubInterface& stub,
                              const LoaderCommandIo& io);

}  // namespace mm::cli

#endif  // MM_CLI_LOADER_COMMANDS_H_
