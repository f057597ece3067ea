// `mm load`, `mm ps`, `mm unload`, `mm cache`: the loader service from the
// command line (docs/loader.md, docs/cli.md).
//
// Declared as one CommandGroup (command.h) on the loader's stub.
//
// Thread-safety: reentrant; the stub may be shared.
#ifndef MM_CLI_LOADER_COMMANDS_H_
#define MM_CLI_LOADER_COMMANDS_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "cli/cli.h"
#include "cli/command.h"
#include "modelmanager/v1/loader.grpc.pb.h"

namespace mm::cli {

// The usage lines of these commands (`mm load --help`).
std::string LoaderCommandsUsage();

// Runs one loader command (tests, against a fake or a real stub). The
// unary rpcs (ps, unload, cache) use io.timeout; a Load has no deadline: a
// large model takes as long as it takes, and `--hold` holds until the
// process ends.
absl::Status RunLoaderCommand(const ParsedArgs& args,
                              modelmanager::v1::Loader::StubInterface& stub,
                              const CommandIo& io);

CommandGroup LoaderCommands();

}  // namespace mm::cli

#endif  // MM_CLI_LOADER_COMMANDS_H_
