#include "cli/download_watch.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "cli/download_format.h"
#include "cli/output.h"
#include "common/grpc_status.h"
#include "common/mutex.h"
#include "common/status.h"
#include "grpcpp/client_context.h"
#include "nlohmann/json.hpp"

namespace mm::cli {
namespace {

namespace v1 = modelmanager::v1;

// Serialises the output of concurrent watches: one progress line per job
// redrawn in place on a terminal, else one line (or JSON object) per state
// change. Shared by the watcher threads; every method takes the lock.
class WatchPrinter {
 public:
  WatchPrinter(const std::vector<std::string>& ids, const CommandIo& io)
      : io_(io),
        lines_(ids.size()),
        printed_state_(ids.size(), v1::DOWNLOAD_STATE_UNSPECIFIED) {
    for (size_t i = 0; i < ids.size(); ++i) lines_[i] = ShortJobId(ids[i]);
  }

  // Called by the watcher of job `index` with every message it receives.
  absl::Status Update(size_t index, const v1::DownloadJob& job) {
    MutexLock lock(&mu_);
    std::ostream& out = *io_.out;
    if (!io_.json && io_.terminal) {
      lines_[index] = job.done() ? JobStateLine(job) : JobProgressLine(job);
      Redraw(out);
      return absl::OkStatus();
    }
    // Progress ticks repeat the state; only a new state is news here.
    if (job.state() == printed_state_[index]) return absl::OkStatus();
    printed_state_[index] = job.state();
    if (io_.json) {
      ASSIGN_OR_RETURN(nlohmann::json value, ProtoJson(job));
      out << JsonText(value, -1) << std::endl;
    } else {
      out << JobStateLine(job) << std::endl;
    }
    return absl::OkStatus();
  }

 private:
  // Moves the cursor back over the block drawn last time (one line per
  // job) and draws it again, each line cleared first.
  void Redraw(std::ostream& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (drawn_) out << "\x1b[" << lines_.size() << "A";
    for (const std::string& line : lines_) out << "\r\x1b[2K" << line << "\n";
    out.flush();
    drawn_ = true;
  }

  Mutex mu_;
  const CommandIo& io_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::DownloadState> printed_state_ ABSL_GUARDED_BY(mu_);
  bool drawn_ ABSL_GUARDED_BY(mu_) = false;
};

// Streams one job until a message with done = true, reopening a broken
// stream from the last revision seen; returns that final job.
absl::StatusOr<v1::DownloadJob> FollowJob(
    v1::Downloader::StubInterface& stub, const std::string& id,
    const CommandIo& io,
    const std::function<absl::Status(const v1::DownloadJob&)>& on_update) {
  int64_t since_revision = 0;
  int failures = 0;
  absl::Duration backoff = io.reconnect_backoff;
  while (true) {
    grpc::ClientContext context;
    v1::WatchDownloadRequest request;
    request.set_id(id);
    request.set_since_revision(since_revision);
    std::unique_ptr<grpc::ClientReaderInterface<v1::DownloadJob>> reader =
        stub.WatchDownload(&context, request);
    v1::DownloadJob job;
    std::optional<v1::DownloadJob> final_job;
    absl::Status update_status;
    while (reader->Read(&job)) {
      failures = 0;
      backoff = io.reconnect_backoff;
      since_revision = std::max(since_revision, job.revision());
      update_status = on_update(job);
      if (!update_status.ok()) break;
      if (job.done()) {
        final_job = job;
        break;
      }
    }
    if (!update_status.ok() || final_job.has_value()) {
      // The server ends the stream after the final message; not waiting
      // for that keeps a slow close from holding up the exit.
      context.TryCancel();
      reader->Finish().IgnoreError();
      if (!update_status.ok()) return update_status;
      return *std::move(final_job);
    }
    grpc::Status status = reader->Finish();
    // A stream that ends OK before `done` broke as surely as one that
    // reports UNAVAILABLE: the job is still going.
    if (!status.ok() && status.error_code() != grpc::StatusCode::UNAVAILABLE) {
      return FromGrpcStatus(status);
    }
    if (failures >= io.reconnect_attempts) {
      std::string reason = status.ok() ? "the stream ended before the job "
                                         "finished"
                                       : GrpcStatusLine(status);
      return absl::UnavailableError(absl::StrCat(
          "lost the watch of download ", id, " ", failures + 1,
          " times in a row (last: ", reason, "); run `mm downloads watch ", id,
          "` to follow it again"));
    }
    ++failures;
    absl::SleepFor(backoff);
    backoff *= 2;
  }
}

}  // namespace

// Follows every job (concurrently when several) to the end, then returns
// the first error: a broken watch first, else a job that did not succeed.
absl::Status WatchJobs(const std::vector<std::string>& ids,
                       v1::Downloader::StubInterface& stub,
                       const CommandIo& io) {
  WatchPrinter printer(ids, io);
  std::vector<absl::StatusOr<v1::DownloadJob>> results(
      ids.size(), absl::UnknownError("not watched"));
  auto follow = [&](size_t index) {
    results[index] = FollowJob(
        stub, ids[index], io,
        [&](const v1::DownloadJob& job) { return printer.Update(index, job); });
  };
  if (ids.size() == 1) {
    follow(0);
  } else {
    std::vector<std::thread> threads;
    threads.reserve(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) threads.emplace_back(follow, i);
    for (std::thread& thread : threads) thread.join();
  }
  for (const auto& result : results) RETURN_IF_ERROR(result.status());
  for (const auto& result : results) RETURN_IF_ERROR(JobOutcome(*result));
  return absl::OkStatus();
}

}  // namespace mm::cli
