// Following download jobs to their end: `mm download --wait` and `mm
// downloads watch`. Each job is streamed with WatchDownload; a stream that
// breaks is reopened from the last revision seen (CommandIo's reconnect
// settings), and several jobs are followed concurrently, one thread each,
// printing through one lock: redrawn progress lines on a terminal, else one
// line (or one JSON object) per state change.
//
//   RETURN_IF_ERROR(WatchJobs({job.id()}, stub, io));
//
// Thread-safety: reentrant; io.out must not be written by anyone else while
// a watch runs.
#ifndef MM_CLI_DOWNLOAD_WATCH_H_
#define MM_CLI_DOWNLOAD_WATCH_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "cli/command.h"
#include "modelmanager/v1/downloader.grpc.pb.h"

namespace mm::cli {

// Follows every job (concurrently when several) to the end, then returns
// the first error: a broken watch first, else a job that did not succeed.
absl::Status WatchJobs(const std::vector<std::string>& ids,
                       modelmanager::v1::Downloader::StubInterface& stub,
                       const CommandIo& io);

}  // namespace mm::cli

#endif  // MM_CLI_DOWNLOAD_WATCH_H_
