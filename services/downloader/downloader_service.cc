#include "services/downloader/downloader_service.h"

#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "google/protobuf/util/time_util.h"

namespace mm::downloader {
namespace {

namespace v1 = modelmanager::v1;
using google::protobuf::util::TimeUtil;

v1::DownloadState StateToProto(JobState state) {
  switch (state) {
    case JobState::kWaiting:
      return v1::DOWNLOAD_STATE_WAITING;
    case JobState::kQueued:
      return v1::DOWNLOAD_STATE_QUEUED;
    case JobState::kRunning:
      return v1::DOWNLOAD_STATE_RUNNING;
    case JobState::kPaused:
      return v1::DOWNLOAD_STATE_PAUSED;
    case JobState::kSucceeded:
      return v1::DOWNLOAD_STATE_SUCCEEDED;
    case JobState::kFailed:
      return v1::DOWNLOAD_STATE_FAILED;
    case JobState::kCancelled:
      return v1::DOWNLOAD_STATE_CANCELLED;
  }
  return v1::DOWNLOAD_STATE_UNSPECIFIED;
}

std::optional<JobState> StateFromProto(v1::DownloadState state) {
  switch (state) {
    case v1::DOWNLOAD_STATE_WAITING:
      return JobState::kWaiting;
    case v1::DOWNLOAD_STATE_QUEUED:
      return JobState::kQueued;
    case v1::DOWNLOAD_STATE_RUNNING:
      return JobState::kRunning;
    case v1::DOWNLOAD_STATE_PAUSED:
      return JobState::kPaused;
    case v1::DOWNLOAD_STATE_SUCCEEDED:
      return JobState::kSucceeded;
    case v1::DOWNLOAD_STATE_FAILED:
      return JobState::kFailed;
    case v1::DOWNLOAD_STATE_CANCELLED:
      return JobState::kCancelled;
    default:
      return std::nullopt;
  }
}

void SetTime(absl::Time t, google::protobuf::Timestamp* out) {
  if (t == absl::InfinitePast()) return;
  *out = TimeUtil::MillisecondsToTimestamp(absl::ToUnixMillis(t));
}

// The job as the rpc's answer, or the error as a gRPC status.
grpc::Status Answer(const absl::StatusOr<Job>& job, v1::DownloadJob* out) {
  if (!job.ok()) return ToGrpcStatus(job.status());
  *out = JobToProto(*job);
  return grpc::Status::OK;
}

absl::StatusOr<std::vector<JobState>> StatesFromProto(
    const google::protobuf::RepeatedField<int>& wire) {
  std::vector<JobState> states;
  for (int s : wire) {
    std::optional<JobState> state =
        StateFromProto(static_cast<v1::DownloadState>(s));
    if (!state.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("states has an unknown state ", s));
    }
    states.push_back(*state);
  }
  return states;
}

absl::StatusOr<DownloadManager::Action> ActionFromProto(
    v1::BulkDownloadActionRequest::Action action) {
  switch (action) {
    case v1::BulkDownloadActionRequest::START:
      return DownloadManager::Action::kStart;
    case v1::BulkDownloadActionRequest::PAUSE:
      return DownloadManager::Action::kPause;
    case v1::BulkDownloadActionRequest::RESUME:
      return DownloadManager::Action::kResume;
    case v1::BulkDownloadActionRequest::CANCEL:
      return DownloadManager::Action::kCancel;
    default:
      return absl::InvalidArgumentError("action is required");
  }
}

absl::Time EndedBefore(const v1::PruneDownloadsRequest& request) {
  if (!request.has_ended_before()) return absl::InfiniteFuture();
  return absl::FromUnixMillis(
      TimeUtil::TimestampToMilliseconds(request.ended_before()));
}

}  // namespace

v1::DownloadJob JobToProto(const Job& job) {
  v1::DownloadJob out;
  out.set_id(job.id);
  out.set_state(StateToProto(job.state));
  out.set_done(IsTerminal(job.state));
  out.set_source(job.Source());
  out.set_destination(job.destination);
  out.set_final_path(job.FinalPath());
  out.set_bytes(job.Bytes());
  out.set_total_bytes(job.TotalBytes());
  out.set_bytes_per_second(
      job.state == JobState::kRunning ? job.bytes_per_second : 0);
  if (job.multi_file) {
    for (const Part& part : job.parts) {
      v1::PartProgress* p = out.add_parts();
      p->set_name(part.DisplayName());
      p->set_bytes(part.Bytes());
      p->set_total_bytes(part.total_bytes > 0 ? part.total_bytes
                                              : part.expected_size);
      p->set_done(part.done);
    }
  }
  out.set_priority(job.priority);
  out.set_sequence(job.sequence);
  SetTime(job.created, out.mutable_times()->mutable_create_time());
  SetTime(job.started, out.mutable_times()->mutable_start_time());
  SetTime(job.ended, out.mutable_times()->mutable_end_time());
  if (job.error.has_value()) {
    out.mutable_error()->set_code(absl::StatusCodeToString(job.error->code));
    out.mutable_error()->set_type(job.error->type);
    out.mutable_error()->set_message(job.error->message);
  }
  out.set_revision(job.revision);
  out.set_status_message(job.status_message);
  out.set_has_access_token(job.has_token);
  out.set_retries(job.retries);
  return out;
}

grpc::Status DownloaderService::CreateDownload(
    grpc::ServerContext*, const v1::CreateDownloadRequest* request,
    v1::DownloadJob* response) {
  return Answer(manager_->Create(*request), response);
}

grpc::Status DownloaderService::GetDownload(
    grpc::ServerContext*, const v1::GetDownloadRequest* request,
    v1::DownloadJob* response) {
  return Answer(manager_->Get(request->id()), response);
}

grpc::Status DownloaderService::ListDownloads(
    grpc::ServerContext*, const v1::ListDownloadsRequest* request,
    v1::ListDownloadsResponse* response) {
  absl::StatusOr<JobPage> page = [&]() -> absl::StatusOr<JobPage> {
    ASSIGN_OR_RETURN(std::vector<JobState> states,
                     StatesFromProto(request->states()));
    return manager_->List(states, request->page_size(), request->page_token());
  }();
  if (!page.ok()) return ToGrpcStatus(page.status());
  for (const Job& job : page->jobs) *response->add_jobs() = JobToProto(job);
  response->set_next_page_token(page->next_page_token);
  return grpc::Status::OK;
}

grpc::Status DownloaderService::StartDownload(
    grpc::ServerContext*, const v1::DownloadJobRequest* request,
    v1::DownloadJob* response) {
  return Answer(manager_->Apply(request->id(), DownloadManager::Action::kStart),
                response);
}

grpc::Status DownloaderService::PauseDownload(
    grpc::ServerContext*, const v1::DownloadJobRequest* request,
    v1::DownloadJob* response) {
  return Answer(manager_->Apply(request->id(), DownloadManager::Action::kPause),
                response);
}

grpc::Status DownloaderService::ResumeDownload(
    grpc::ServerContext*, const v1::ResumeDownloadRequest* request,
    v1::DownloadJob* response) {
  return Answer(manager_->Apply(request->id(), DownloadManager::Action::kResume,
                                request->access_token()),
                response);
}

grpc::Status DownloaderService::CancelDownload(
    grpc::ServerContext*, const v1::DownloadJobRequest* request,
    v1::DownloadJob* response) {
  return Answer(
      manager_->Apply(request->id(), DownloadManager::Action::kCancel),
      response);
}

grpc::Status DownloaderService::BulkDownloadAction(
    grpc::ServerContext*, const v1::BulkDownloadActionRequest* request,
    v1::BulkDownloadActionResponse* response) {
  absl::StatusOr<std::vector<Job>> changed =
      [&]() -> absl::StatusOr<std::vector<Job>> {
    ASSIGN_OR_RETURN(DownloadManager::Action action,
                     ActionFromProto(request->action()));
    return manager_->ApplyToAll(action);
  }();
  if (!changed.ok()) return ToGrpcStatus(changed.status());
  for (const Job& job : *changed) *response->add_jobs() = JobToProto(job);
  return grpc::Status::OK;
}

grpc::Status DownloaderService::PruneDownloads(
    grpc::ServerContext*, const v1::PruneDownloadsRequest* request,
    v1::PruneDownloadsResponse* response) {
  absl::StatusOr<int64_t> pruned = manager_->Prune(EndedBefore(*request));
  if (!pruned.ok()) return ToGrpcStatus(pruned.status());
  response->set_pruned(*pruned);
  return grpc::Status::OK;
}

grpc::Status DownloaderService::WaitDownload(
    grpc::ServerContext* context, const v1::DownloadJobRequest* request,
    v1::DownloadJob* response) {
  return Answer(
      manager_->Wait(request->id(), absl::FromChrono(context->deadline()),
                     [context] { return context->IsCancelled(); }),
      response);
}

grpc::Status DownloaderService::WatchDownload(
    grpc::ServerContext* context, const v1::WatchDownloadRequest* request,
    grpc::ServerWriter<v1::DownloadJob>* writer) {
  return ToGrpcStatus(manager_->Watch(
      request->id(), request->since_revision(),
      [writer](const Job& job) { return writer->Write(JobToProto(job)); },
      [context] { return context->IsCancelled(); }));
}

}  // namespace mm::downloader
