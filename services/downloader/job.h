// The download job as the downloader keeps it: what was asked (sources,
// destination, expectations), where it is (state, per-part and per-segment
// progress, validators), and who works on it (lease). Stored by JobStore,
// turned into the wire DownloadJob by the service. No token is ever part of
// it; `has_token` only says one was given.
//
// Thread-safety: plain values.
#ifndef MM_SERVICES_DOWNLOADER_JOB_H_
#define MM_SERVICES_DOWNLOADER_JOB_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace mm::downloader {

enum class JobState {
  kWaiting,
  kQueued,
  kRunning,
  kPaused,
  kSucceeded,
  kFailed,
  kCancelled,
};

// "waiting", "queued", ... as stored in the database and shown by `mm`.
std::string_view StateName(JobState state);
std::optional<JobState> StateFromName(std::string_view name);
bool IsTerminal(JobState state);
// The job state machine: whether a job may move from `from` to `to` (a
// change of state; false when they are equal). WAITING -> QUEUED (start);
// QUEUED -> RUNNING (a worker claimed it); WAITING | QUEUED | RUNNING ->
// PAUSED; PAUSED -> QUEUED (resume); RUNNING -> SUCCEEDED | FAILED; any
// non-terminal -> CANCELLED. A job whose worker died goes on in RUNNING on
// another worker (no change of state). Requests (DownloadManager), worker
// saves (JobStore::SaveProgress) and the runner's wind-down consult it.
bool CanTransition(JobState from, JobState to);

// A byte range of one file fetched on its own connection. `end` is
// exclusive; -1 while the file's size is unknown (one open-ended stream).
struct Segment {
  int64_t begin = 0;
  int64_t end = -1;
  // Bytes written from `begin` on. Persisted progress never runs ahead of
  // the bytes handed to the kernel.
  int64_t done = 0;

  bool Complete() const { return end >= 0 && begin + done >= end; }
};

// One file of a job.
struct Part {
  std::string url;
  // Multi-file jobs: the path under the destination directory.
  std::string relative_path;
  // The final file; empty until known (a name from Content-Disposition).
  std::string path;
  int64_t expected_size = 0;    // 0 = unknown
  std::string expected_sha256;  // lowercase hex; empty = unknown
  int64_t total_bytes = 0;      // 0 = unknown
  // ETag (preferred) or Last-Modified of the bytes on disk, for If-Range.
  std::string validator;
  // Segments planned so far; empty before the first response.
  std::vector<Segment> segments;
  bool done = false;

  // Bytes on disk that count as progress.
  int64_t Bytes() const;
  // Name shown in progress: the relative path, else the URL.
  std::string DisplayName() const;
};

// Why a job failed, as data: the code and the type are set where the
// failure is found and never parsed back out of the message. The rpc edge
// (and the stored JSON body) turn the code into its name ("NOT_FOUND").
struct JobError {
  absl::StatusCode code = absl::StatusCode::kUnknown;
  // The kind of failure as clients match on it, e.g. "SizeMismatch",
  // "HTTPError(NOT FOUND)", "ConnectionError" (spec's error types).
  std::string type;
  // For a person: what went wrong, with the URL or path and the numbers.
  std::string message;

  friend bool operator==(const JobError&, const JobError&) = default;
};

struct Job {
  std::string id;
  int64_t sequence = 0;
  std::string request_id;
  JobState state = JobState::kQueued;
  int priority = 10;
  // The destination as requested: a directory (dest_is_dir) or a file.
  std::string destination;
  bool dest_is_dir = true;
  // Single-file job into a directory with a client-chosen name.
  std::string file_name;
  bool keep_partial = false;
  bool has_token = false;
  // The replica holding the job's token in memory (per-job tokens only).
  std::string token_owner;
  std::vector<Part> parts;
  // Whether the job has more than one file (even if it has only one part).
  bool multi_file = false;
  double bytes_per_second = 0;
  int retries = 0;
  std::optional<JobError> error;
  std::string status_message;
  absl::Time created = absl::InfinitePast();
  absl::Time started = absl::InfinitePast();
  absl::Time ended = absl::InfinitePast();
  int64_t revision = 0;
  std::string lease_owner;
  int64_t lease_expires_ms = 0;

  int64_t Bytes() const;
  // Sum of the parts' totals; 0 when any part's total is unknown.
  int64_t TotalBytes() const;
  // Where the finished job's file or directory is.
  std::string FinalPath() const;
  // The URL of a single-file job, or "<first url> (+N more)".
  std::string Source() const;
};

// The fields not kept in their own columns, as JSON (the `body` column).
nlohmann::json JobBodyJson(const Job& job);
// Fills `job` from JobBodyJson's output; DATA_LOSS for malformed JSON. The
// error's code is stored by name ("DATA_LOSS"), as rows have always held
// it; a name this build does not know reads as UNKNOWN.
absl::Status JobBodyFromJson(const nlohmann::json& body, Job& job);

}  // namespace mm::downloader

#endif  // MM_SERVICES_DOWNLOADER_JOB_H_
