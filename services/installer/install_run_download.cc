// The remote phase of an install run (install_run.h): a URL or Hugging
// Face source is planned into files, fetched by one downloader job into
// the job's temporary folder, and followed until it ends, its progress
// mirrored into the install job. The downloader job is made with the
// install job's id as request_id, so a run that resumes after a crash gets
// the same download back instead of a second one.
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "services/installer/install_run.h"

namespace mm::installer {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::modelmanager::v1;

// How long one Watch of a download runs before it is renewed: well under
// the lease, which each renewal also renews.
constexpr absl::Duration kWatchSlice = absl::Seconds(5);

// Mirrors the download's progress into the install job.
void Mirror(const v1::DownloadJob& download, InstallJob& job) {
  job.bytes = download.bytes();
  job.total_bytes = download.total_bytes();
  job.download_revision = download.revision();
  job.parts.clear();
  for (const v1::PartProgress& part : download.parts()) {
    job.parts.push_back(
        {part.name(), part.bytes(), part.total_bytes(), part.done()});
  }
}

bool Settled(const v1::DownloadJob& download) {
  return download.done() || download.state() == v1::DOWNLOAD_STATE_PAUSED;
}

}  // namespace

InstallRun::Outcome InstallRun::PlanStep() {
  if (!job_.remote()) {
    // A local source was planned when the job was made.
    return Save([&](InstallJob& job) {
      job.model_path = job.plan.local_path;
      job.step = InstallStep::kIdentify;
      return absl::OkStatus();
    });
  }
  Outcome outcome;
  std::optional<std::string> token = Token(outcome);
  if (!token) return outcome;
  absl::StatusOr<ResolvedSource> source = deps_.resolver->Parse(job_.source);
  if (!source.ok()) return Fail(source.status(), "InvalidSource");
  absl::StatusOr<InstallPlan> plan = deps_.resolver->Plan(*source, *token);
  if (!plan.ok()) {
    return Retryable(
        plan.status(), "the Hugging Face hub",
        absl::StrCat("HubError(",
                     absl::StatusCodeToString(plan.status().code()), ")"));
  }
  attempts_ = 0;
  return Save([&](InstallJob& job) {
    job.plan = *plan;
    job.total_bytes = plan->TotalBytes();
    job.parts.clear();
    for (const PlannedFile& file : plan->files) {
      job.parts.push_back(
          {file.path.empty() ? file.url : file.path, 0, file.size, false});
    }
    job.status_message.clear();
    job.step = InstallStep::kDownload;
    return absl::OkStatus();
  });
}

InstallRun::Outcome InstallRun::DownloadStep() {
  Outcome outcome;
  std::optional<std::string> token = Token(outcome);
  if (!token) return outcome;
  if (job_.download_id.empty()) return StartDownload(*token);
  // Once resumed the job is DOWNLOADING, and the next step follows it.
  if (job_.state == InstallState::kWaiting) return ResumeDownload(*token);
  return FollowDownload();
}

InstallRun::Outcome InstallRun::StartDownload(const std::string& token) {
  std::error_code error;
  fs::create_directories(job_.temp_dir, error);
  if (error) {
    return Fail(
        absl::InternalError(absl::StrCat(
            "cannot create the temporary folder ", job_.temp_dir, ": ",
            error.message(), " (check that the models folder is writable)")),
        "OSError");
  }
  v1::CreateDownloadRequest request =
      DownloadRequestFor(job_.plan, job_.temp_dir, token);
  request.set_request_id(DependencyRequestId(job_));
  absl::StatusOr<v1::DownloadJob> download = deps_.downloader->Create(request);
  if (!download.ok()) {
    return Retryable(download.status(), "the downloader", "DownloadRefused");
  }
  attempts_ = 0;
  const absl::Time now = clock_->Now();
  return Save([&](InstallJob& job) {
    job.download_id = download->id();
    if (job.state == InstallState::kWaiting) {
      RETURN_IF_ERROR(job.TransitionTo(InstallState::kDownloading, now));
    }
    if (job.started == absl::InfinitePast()) job.started = now;
    job.AddEvent("download_started", now);
    Mirror(*download, job);
    return absl::OkStatus();
  });
}

InstallRun::Outcome InstallRun::ResumeDownload(const std::string& token) {
  absl::StatusOr<v1::DownloadJob> download =
      deps_.downloader->Get(job_.download_id);
  if (!download.ok()) {
    return Retryable(download.status(), "the downloader", "DownloadLost");
  }
  if (download->state() == v1::DOWNLOAD_STATE_PAUSED) {
    absl::StatusOr<v1::DownloadJob> resumed =
        deps_.downloader->Resume(job_.download_id, token);
    // FAILED_PRECONDITION: it is no longer paused (resumed meanwhile).
    if (!resumed.ok() &&
        resumed.status().code() != absl::StatusCode::kFailedPrecondition) {
      return Retryable(resumed.status(), "the downloader", "DownloadLost");
    }
  }
  return Save([&](InstallJob& job) {
    return job.TransitionTo(InstallState::kDownloading, clock_->Now());
  });
}

InstallRun::Outcome InstallRun::FollowDownload() {
  std::optional<v1::DownloadJob> last;
  absl::Time last_save = clock_->Now();
  Outcome outcome = Outcome::kContinue;
  absl::Status watched = deps_.downloader->Watch(
      job_.download_id, job_.download_revision, kWatchSlice,
      [&](const v1::DownloadJob& download) {
        last = download;
        const absl::Time now = clock_->Now();
        // Progress is saved at most every progress_interval (each save is
        // a database write and a message to every watcher); an end is
        // saved at once.
        if (Settled(download) ||
            now - last_save >= options_.progress_interval) {
          last_save = now;
          outcome = Save([&](InstallJob& job) {
            Mirror(download, job);
            job.status_message.clear();
            if (!download.done()) job.AddEvent("download_progress", now);
            return absl::OkStatus();
          });
        }
        return outcome == Outcome::kContinue && !worker_->stopping() &&
               !Settled(download);
      });
  if (outcome == Outcome::kStop) return Outcome::kStop;
  if (!last && watched.ok()) {
    // The stream ends OK without a message when the download finished at
    // the revision this job had already recorded (a replica saved it, then
    // went away before its next step): read the download instead. Seen in
    // tests/e2e/cluster_test.cc, where this was "DownloadLost: OK".
    absl::StatusOr<v1::DownloadJob> download =
        deps_.downloader->Get(job_.download_id);
    if (!download.ok()) {
      return Retryable(download.status(), "the downloader", "DownloadLost");
    }
    last = *std::move(download);
  }
  if (last) {
    attempts_ = 0;
    return DownloadSettled(*last);
  }
  if (watched.code() == absl::StatusCode::kDeadlineExceeded) {
    // A quiet slice: renew the lease and watch again.
    return Save([](InstallJob&) { return absl::OkStatus(); });
  }
  if (watched.code() == absl::StatusCode::kNotFound) {
    // The downloader forgot the job (pruned, or another database): make it
    // again; the files already there are kept.
    return Save([](InstallJob& job) {
      job.download_id.clear();
      job.download_revision = 0;
      return absl::OkStatus();
    });
  }
  return Retryable(watched, "the downloader", "DownloadLost");
}

InstallRun::Outcome InstallRun::DownloadSettled(
    const v1::DownloadJob& download) {
  switch (download.state()) {
    case v1::DOWNLOAD_STATE_SUCCEEDED:
      return DownloadsComplete(download);
    case v1::DOWNLOAD_STATE_FAILED: {
      const v1::JobError& error = download.error();
      return Fail(
          absl::Status(StatusCodeFromName(error.code()), error.message()),
          error.type().empty() ? "DownloadError" : error.type());
    }
    case v1::DOWNLOAD_STATE_CANCELLED:
      return Fail(
          absl::AbortedError(absl::StrCat(
              "its download ", job_.download_id,
              " was cancelled in the downloader; install the source again")),
          "DownloadCancelled");
    case v1::DOWNLOAD_STATE_PAUSED:
      // Paused in the downloader (by a person, or for a token): the install
      // shows it and waits for ResumeInstall.
      return Save([&](InstallJob& job) {
        RETURN_IF_ERROR(job.TransitionTo(InstallState::kPaused, clock_->Now()));
        job.status_message =
            download.status_message().empty()
                ? std::string("its download was paused")
                : absl::StrCat("its download: ", download.status_message());
        return absl::OkStatus();
      });
    default:
      return Outcome::kContinue;  // the slice ended; watch again
  }
}

InstallRun::Outcome InstallRun::DownloadsComplete(
    const v1::DownloadJob& download) {
  const std::string model_path =
      DownloadedModelPath(job_.plan, download, job_.temp_dir).string();
  return Save([&](InstallJob& job) {
    Mirror(download, job);
    job.model_path = model_path;
    RETURN_IF_ERROR(
        job.TransitionTo(InstallState::kDownloadsDone, clock_->Now()));
    job.AddEvent("downloads_complete", clock_->Now());
    job.step = InstallStep::kIdentify;
    return absl::OkStatus();
  });
}

}  // namespace mm::installer
