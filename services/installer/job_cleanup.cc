#include "services/installer/job_cleanup.h"

#include <filesystem>
#include <system_error>

#include "common/logging.h"

namespace mm::installer {

// The downloader answers FAILED_PRECONDITION for a download that has
// already ended (or is already paused): nothing left to undo.

void CancelJobDownload(DownloaderClient& downloader, const InstallJob& job) {
  if (job.download_id.empty()) return;
  absl::StatusOr<modelmanager::v1::DownloadJob> cancelled =
      downloader.Cancel(job.download_id);
  if (!cancelled.ok() &&
      cancelled.status().code() != absl::StatusCode::kFailedPrecondition) {
    MM_LOG(WARNING) << "install " << job.id << ": cannot cancel download "
                    << job.download_id << ": " << cancelled.status();
  }
}

void PauseJobDownload(DownloaderClient& downloader, const InstallJob& job) {
  if (job.download_id.empty()) return;
  absl::StatusOr<modelmanager::v1::DownloadJob> paused =
      downloader.Pause(job.download_id);
  if (!paused.ok() &&
      paused.status().code() != absl::StatusCode::kFailedPrecondition) {
    MM_LOG(WARNING) << "install " << job.id << ": cannot pause download "
                    << job.download_id << ": " << paused.status();
  }
}

void RemoveJobTemporary(const InstallJob& job) {
  if (job.temp_dir.empty()) return;
  std::error_code error;
  std::filesystem::remove_all(job.temp_dir, error);
  if (error) {
    // Start-up removes temporary folders no live job owns, so one left
    // here does not stay for good.
    MM_LOG(WARNING) << "install " << job.id << ": cannot remove "
                    << job.temp_dir << ": " << error.message();
  }
}

}  // namespace mm::installer
