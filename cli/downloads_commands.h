// `mm download URL` and `mm downloads list|get|wait|watch|start|pause|
// resume|cancel|prune`: the downloader service from the command line. The
// request builders and the formatting are separate from the rpc calls so
// they can be tested without a server.
//
//   auto stub = modelmanager::v1::Downloader::NewStub(channel);
//   DownloadsCommandIo io;
//   io.out = &std::cout;
//   io.terminal = isatty(STDOUT_FILENO);
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
#include "absl/time/time.h"
#include "cli/cli.h"
#include "modelmanager/v1/downloader.grpc.pb.h"

namespace mm::cli {

struct DownloadsCommandIo {
  std::ostream* out = nullptr;
  bool json = false;
  // Deadline of each unary rpc. `downloads wait` uses it only when
  // --timeout was given, and otherwise waits without a deadline.
  absl::Duration timeout = absl::Seconds(30);
  // Whether `out` is a terminal: watching then redraws one progress line
  // per job in place (ANSI cursor movement) instead of printing one line
  // per state change.
  bool terminal = false;
  // Relative --dest and --output are made absolute against this: the
  // server shares the filesystem but not our working directory.
  std::filesystem::path working_dir;
  // A watch stream that breaks (UNAVAILABLE, or ends before the job is
  // done) is reopened from the last revision seen, at most this many times
  // in a row, waiting `reconnect_backoff` before the first retry and twice
  // as long before each next one.
  int reconnect_attempts = 5;
  absl::Duration reconnect_backoff = absl::Milliseconds(500);
};

// "running" for DOWNLOAD_STATE_RUNNING: the names the CLI prints and
// `--state` takes. ParseDownloadState's usage error names the accepted
// ones.
std::string DownloadStateName(modelmanager::v1::DownloadState state);
absl::StatusOr<modelmanager::v1::DownloadState> ParseDownloadState(
    const std::string& name);

// `mm download URL ...` (or `mm download --files LIST ...`, the files of
// LIST as one multi-file job) as the request, with --dest/--output made
// absolute against `working_dir` and the --token-file's token as
// access_token. Bad flag values and bad lines of LIST are usage errors; an
// unreadable token file or LIST is NOT_FOUND.
absl::StatusOr<modelmanager::v1::CreateDownloadRequest>
BuildCreateDownloadRequest(const ParsedArgs& args,
                           const std::filesystem::path& working_dir);

// `mm downloads list [--state STATE...]` as the first page's request. Each
// --state may also hold a comma-separated list.
absl::StatusOr<modelmanager::v1::ListDownloadsRequest>
BuildListDownloadsRequest(const ParsedArgs& args);

// `mm downloads prune [--before RFC3339]`.
absl::StatusOr<modelmanager::v1::PruneDownloadsRequest> BuildPruneRequest(
    const ParsedArgs& args);

// What a finished (or stopped) job means for the exit status: OK when it
// succeeded or is still going; for FAILED the job's error code (by name,
// UNKNOWN when unrecognised) and message; CANCELLED for a cancelled job;
// FAILED_PRECONDITION for a paused one, naming how to resume it.
absl::Status JobOutcome(const modelmanager::v1::DownloadJob& job);

// One line naming the job and its state: "ID running", "ID succeeded
// FINAL_PATH", "ID failed TYPE: MESSAGE", "ID paused STATUS_MESSAGE".
std::string JobStateLine(const modelmanager::v1::DownloadJob& job);

// The terminal's progress line: short id, state, a bar, percent,
// bytes/total, rate, ETA and "parts d/n" for multi-file jobs; with an
// unknown total only bytes and rate.
std::string JobProgressLine(const modelmanager::v1::DownloadJob& job);

// The list table (ID STATE PROGRESS BYTES/TOTAL RATE PRIORITY SOURCE) or a
// JSON array of the jobs' protobuf JSON (proto field names, default values
// included). INTERNAL only if protobuf cannot print a job as JSON.
absl::Status PrintDownloadList(
    const std::vector<modelmanager::v1::DownloadJob>& jobs, bool json,
    std::ostream& out);

// One job as `field: value` lines (id first), or its protobuf JSON.
absl::Status PrintDownloadJob(const modelmanager::v1::DownloadJob& job,
                              bool json, std::ostream& out);

// Runs `mm download ...` (args.words[0] == "download") or `mm downloads
// ...` against `stub`. Errors from the server come back with their gRPC
// code; a followed job that failed or was cancelled comes back as
// JobOutcome says.
absl::Status RunDownloadsCommand(
    const ParsedArgs& args, modelmanager::v1::Downloader::StubInterface& stub,
    const DownloadsCommandIo& io);

// Usage text of `mm download` and `mm downloads`.
std::string DownloadsUsage();

}  // namespace mm::cli

#endif  // MM_CLI_DOWNLOADS_COMMANDS_H_
