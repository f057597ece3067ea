// `mm download URL` and `mm downloads list|get|wait|watch|start|pause|
// resume|cancel|prune`: the downloader service from the command line. The
// request builders (download_requests.h), the formatting
// (download_format.h) and following jobs (download_watch.h) are apart from
// the rpc calls so they can be tested without a server.
//
//   auto stub = modelmanager::v1::Downloader::NewStub(channel);
//   CommandIo io;
//   io.out = &std::cout;
//   io.working_dir = std::filesystem::current_path();
//   absl::Status status = RunDownloadsCommand(args, *stub, io);
//
// Thread-safety: reentrant; the stub may be shared (gRPC stubs are
// thread-safe). Watching several jobs runs one thread per job, all writing
// to io.out under one lock, so io.out must not be written by anyone else
// meanwhile.
#ifndef MM_CLI_DOWNLOADS_COMMANDS_H_
#define MM_CLI_DOWNLOADS_COMMANDS_H_

#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cli/cli.h"
#include "cli/command.h"
#include "cli/download_format.h"
#include "cli/download_requests.h"
#include "modelmanager/v1/downloader.grpc.pb.h"

namespace mm::cli {

// Runs `mm download ...` (args.words[0] == "download") or `mm downloads
// ...` against `stub`. Errors from the server come back with their gRPC
// code; a followed job that failed or was cancelled comes back as
// JobOutcome says.
absl::Status RunDownloadsCommand(
    const ParsedArgs& args, modelmanager::v1::Downloader::StubInterface& stub,
    const CommandIo& io);

// The commands for RunCli (command.h), on the "downloader" service.
CommandGroup DownloadsCommands();

// Usage text of `mm download` and `mm downloads`.
std::string DownloadsUsage();

}  // namespace mm::cli

#endif  // MM_CLI_DOWNLOADS_COMMANDS_H_
