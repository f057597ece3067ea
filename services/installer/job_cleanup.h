// Undoing what an install job holds outside its row (its downloader job,
// its temporary folder), shared by the worker, when a run stops, and the
// manager, for a request on a job that no worker may hold right now. Both
// may do it for one job: each function is harmless twice, and a failure is
// only logged, since the job's own state is what the caller reports.
//
// Thread-safety: as the DownloaderClient (thread-safe).
#ifndef MM_SERVICES_INSTALLER_JOB_CLEANUP_H_
#define MM_SERVICES_INSTALLER_JOB_CLEANUP_H_

#include "services/installer/install_job.h"
#include "services/installer/service_clients.h"

namespace mm::installer {

// Cancels the job's download, if it has one that has not ended.
void CancelJobDownload(DownloaderClient& downloader, const InstallJob& job);
// Pauses the job's download, if it has one that is still running.
void PauseJobDownload(DownloaderClient& downloader, const InstallJob& job);
// Removes the job's temporary folder (remote sources), if any.
void RemoveJobTemporary(const InstallJob& job);

}  // namespace mm::installer

#endif  // MM_SERVICES_INSTALLER_JOB_CLEANUP_H_
