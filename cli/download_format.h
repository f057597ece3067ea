// How `mm download` and `mm downloads` show a download job: state names,
// one-line states and progress bars, the list table, `field: value` blocks
// and JSON, and what a finished job means for the exit status. Pure
// functions of the job, tested without a server.
//
//   *io.out << JobStateLine(job) << '\n';   // "7f3a... succeeded /m/x"
//   RETURN_IF_ERROR(JobOutcome(job));        // the job's error, if any
//
// Thread-safety: reentrant.
#ifndef MM_CLI_DOWNLOAD_FORMAT_H_
#define MM_CLI_DOWNLOAD_FORMAT_H_

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "modelmanager/v1/downloader.pb.h"

namespace mm::cli {

// "running" for DOWNLOAD_STATE_RUNNING: the names the CLI prints and
// `--state` takes. ParseDownloadState's usage error names the accepted
// ones.
std::string DownloadStateName(modelmanager::v1::DownloadState state);
absl::StatusOr<modelmanager::v1::DownloadState> ParseDownloadState(
    const std::string& name);

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

// The first characters of a job id, as progress lines show it.
std::string ShortJobId(const std::string& id);

// The jobs as a JSON array of their protobuf JSON (ProtoJson, output.h).
absl::StatusOr<std::string> DownloadListJson(
    const std::vector<modelmanager::v1::DownloadJob>& jobs);

}  // namespace mm::cli

#endif  // MM_CLI_DOWNLOAD_FORMAT_H_
