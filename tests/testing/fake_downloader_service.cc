#include "tests/testing/fake_downloader_service.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace mm::testing {

namespace v1 = modelmanager::v1;

// How long a watch held back by WatchWaitsFor waits for the other one; long
// enough for a loaded machine, short enough to fail a broken test quickly.
constexpr absl::Duration kOverlapWait = absl::Seconds(10);

v1::DownloadJob FakeDownloadJob(const std::string& id, v1::DownloadState state,
                                int64_t revision, int64_t bytes,
                                int64_t total) {
  v1::DownloadJob job;
  job.set_id(id);
  job.set_state(state);
  job.set_done(state == v1::DOWNLOAD_STATE_SUCCEEDED ||
               state == v1::DOWNLOAD_STATE_FAILED ||
               state == v1::DOWNLOAD_STATE_CANCELLED);
  job.set_source(absl::StrCat("https://example.com/", id, ".safetensors"));
  job.set_revision(revision);
  job.set_bytes(bytes);
  job.set_total_bytes(total);
  job.set_priority(10);
  if (state == v1::DOWNLOAD_STATE_SUCCEEDED) {
    job.set_final_path(absl::StrCat("/models/", id, ".safetensors"));
  }
  if (state == v1::DOWNLOAD_STATE_FAILED) {
    job.mutable_error()->set_code("NOT_FOUND");
    job.mutable_error()->set_type("HTTPError(NOT FOUND)");
    job.mutable_error()->set_message("404 from example.com");
  }
  return job;
}

void FakeDownloaderService::AddJob(const v1::DownloadJob& job) {
  MutexLock lock(&mu_);
  jobs_.push_back(job);
}

void FakeDownloaderService::ScriptWatch(const std::string& id,
                                        FakeWatchSession session) {
  MutexLock lock(&mu_);
  watch_scripts_[id].push_back(std::move(session));
}

void FakeDownloaderService::WatchWaitsFor(const std::string& id,
                                          const std::string& other) {
  MutexLock lock(&mu_);
  watch_waits_for_[id] = other;
}

void FakeDownloaderService::set_max_page_size(int size) {
  MutexLock lock(&mu_);
  max_page_size_ = size;
}

grpc::Status FakeDownloaderService::CreateDownload(
    grpc::ServerContext*, const v1::CreateDownloadRequest* request,
    v1::DownloadJob* response) {
  MutexLock lock(&mu_);
  create_requests_.push_back(*request);
  *response = FakeDownloadJob("new1", request->has_start() && !request->start()
                                          ? v1::DOWNLOAD_STATE_WAITING
                                          : v1::DOWNLOAD_STATE_QUEUED);
  response->set_source(request->url());
  response->set_destination(request->dest_dir());
  response->set_has_access_token(!request->access_token().empty());
  return grpc::Status::OK;
}

grpc::Status FakeDownloaderService::GetDownload(
    grpc::ServerContext*, const v1::GetDownloadRequest* request,
    v1::DownloadJob* response) {
  MutexLock lock(&mu_);
  return Find(request->id(), response);
}

grpc::Status FakeDownloaderService::ListDownloads(
    grpc::ServerContext*, const v1::ListDownloadsRequest* request,
    v1::ListDownloadsResponse* response) {
  MutexLock lock(&mu_);
  list_requests_.push_back(*request);
  std::set<int> states(request->states().begin(), request->states().end());
  std::vector<const v1::DownloadJob*> matching;
  for (const v1::DownloadJob& job : jobs_) {
    if (states.empty() || states.count(job.state()) > 0) {
      matching.push_back(&job);
    }
  }
  // The token is the index of the next job: enough for a fake, whose list
  // does not change while a client pages through it.
  size_t start = 0;
  if (!request->page_token().empty() &&
      !absl::SimpleAtoi(request->page_token(), &start)) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad token");
  }
  int size = request->page_size() == 0 ? 100 : request->page_size();
  size = std::min(size, max_page_size_);
  size_t end = std::min(matching.size(), start + size);
  for (size_t i = start; i < end; ++i) *response->add_jobs() = *matching[i];
  if (end < matching.size()) {
    response->set_next_page_token(absl::StrCat(end));
  }
  return grpc::Status::OK;
}

grpc::Status FakeDownloaderService::StartDownload(
    grpc::ServerContext*, const v1::DownloadJobRequest* request,
    v1::DownloadJob* response) {
  return Act("start", request->id(), v1::DOWNLOAD_STATE_QUEUED, response);
}

grpc::Status FakeDownloaderService::PauseDownload(
    grpc::ServerContext*, const v1::DownloadJobRequest* request,
    v1::DownloadJob* response) {
  return Act("pause", request->id(), v1::DOWNLOAD_STATE_PAUSED, response);
}

grpc::Status FakeDownloaderService::ResumeDownload(
    grpc::ServerContext*, const v1::ResumeDownloadRequest* request,
    v1::DownloadJob* response) {
  {
    MutexLock lock(&mu_);
    resume_tokens_.push_back(request->access_token());
  }
  return Act("resume", request->id(), v1::DOWNLOAD_STATE_QUEUED, response);
}

grpc::Status FakeDownloaderService::CancelDownload(
    grpc::ServerContext*, const v1::DownloadJobRequest* request,
    v1::DownloadJob* response) {
  return Act("cancel", request->id(), v1::DOWNLOAD_STATE_CANCELLED, response);
}

grpc::Status FakeDownloaderService::BulkDownloadAction(
    grpc::ServerContext*, const v1::BulkDownloadActionRequest* request,
    v1::BulkDownloadActionResponse* response) {
  MutexLock lock(&mu_);
  bulk_actions_.push_back(request->action());
  // Whatever the action, the running jobs come back paused: the fake checks
  // what the client sent and how it prints the answer, not the action.
  for (const v1::DownloadJob& job : jobs_) {
    if (job.state() == v1::DOWNLOAD_STATE_RUNNING) {
      v1::DownloadJob* changed = response->add_jobs();
      *changed = job;
      changed->set_state(v1::DOWNLOAD_STATE_PAUSED);
    }
  }
  return grpc::Status::OK;
}

grpc::Status FakeDownloaderService::PruneDownloads(
    grpc::ServerContext*, const v1::PruneDownloadsRequest* request,
    v1::PruneDownloadsResponse* response) {
  MutexLock lock(&mu_);
  prune_requests_.push_back(*request);
  response->set_pruned(3);
  return grpc::Status::OK;
}

grpc::Status FakeDownloaderService::WaitDownload(
    grpc::ServerContext* context, const v1::DownloadJobRequest* request,
    v1::DownloadJob* response) {
  MutexLock lock(&mu_);
  wait_deadlines_.push_back(context->deadline());
  return Find(request->id(), response);
}

grpc::Status FakeDownloaderService::WatchDownload(
    grpc::ServerContext*, const v1::WatchDownloadRequest* request,
    grpc::ServerWriter<v1::DownloadJob>* writer) {
  FakeWatchSession session;
  {
    MutexLock lock(&mu_);
    watch_requests_.push_back(*request);
    watch_started_.insert(request->id());
    auto script = watch_scripts_.find(request->id());
    if (script == watch_scripts_.end() || script->second.empty()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("no download '", request->id(), "'"));
    }
    session = std::move(script->second.front());
    script->second.pop_front();
    auto other = watch_waits_for_.find(request->id());
    if (other != watch_waits_for_.end()) {
      const std::string wanted = other->second;
      if (mu_.AwaitWithTimeout(
              [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                return watch_started_.count(wanted) > 0;
              },
              kOverlapWait)) {
        ++overlapped_;
      }
    }
  }
  for (const v1::DownloadJob& job : session.messages) writer->Write(job);
  return session.end;
}

std::vector<v1::CreateDownloadRequest>
FakeDownloaderService::create_requests() {
  MutexLock lock(&mu_);
  return create_requests_;
}

std::vector<v1::ListDownloadsRequest> FakeDownloaderService::list_requests() {
  MutexLock lock(&mu_);
  return list_requests_;
}

std::vector<std::string> FakeDownloaderService::actions() {
  MutexLock lock(&mu_);
  return actions_;
}

std::vector<std::string> FakeDownloaderService::resume_tokens() {
  MutexLock lock(&mu_);
  return resume_tokens_;
}

std::vector<v1::BulkDownloadActionRequest::Action>
FakeDownloaderService::bulk_actions() {
  MutexLock lock(&mu_);
  return bulk_actions_;
}

std::vector<v1::PruneDownloadsRequest> FakeDownloaderService::prune_requests() {
  MutexLock lock(&mu_);
  return prune_requests_;
}

std::vector<std::chrono::system_clock::time_point>
FakeDownloaderService::wait_deadlines() {
  MutexLock lock(&mu_);
  return wait_deadlines_;
}

std::vector<v1::WatchDownloadRequest> FakeDownloaderService::watch_requests() {
  MutexLock lock(&mu_);
  return watch_requests_;
}

int FakeDownloaderService::WatchesOverlapped() {
  MutexLock lock(&mu_);
  return overlapped_;
}

grpc::Status FakeDownloaderService::Find(const std::string& id,
                                         v1::DownloadJob* response) {
  for (const v1::DownloadJob& job : jobs_) {
    if (job.id() == id) {
      *response = job;
      return grpc::Status::OK;
    }
  }
  return grpc::Status(grpc::StatusCode::NOT_FOUND,
                      absl::StrCat("no download '", id, "'"));
}

grpc::Status FakeDownloaderService::Act(const std::string& verb,
                                        const std::string& id,
                                        v1::DownloadState next,
                                        v1::DownloadJob* response) {
  MutexLock lock(&mu_);
  actions_.push_back(absl::StrCat(verb, " ", id));
  grpc::Status found = Find(id, response);
  if (!found.ok()) return found;
  if (response->done()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat("download '", id, "' already finished"));
  }
  response->set_state(next);
  return grpc::Status::OK;
}

}  // namespace mm::testing
