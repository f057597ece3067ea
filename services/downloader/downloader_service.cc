#include "services/downloader/downloader_service.h"

#include <filesystem>
#include <random>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/http/url.h"
#include "common/logging.h"
#include "common/status.h"
#include "common/strings.h"
#include "google/protobuf/util/time_util.h"

namespace mm::downloader {
namespace {

namespace v1 = modelmanager::v1;
namespace fs = std::filesystem;
using google::protobuf::util::TimeUtil;

// How long Watch/Wait sleep between looks when no change arrives (also the
// bound on how late a missed cross-process change is seen).
constexpr absl::Duration kPoll = absl::Seconds(1);
constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 1000;
constexpr int kMaxFiles = 100000;

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

std::string NewJobId() {
  static thread_local std::mt19937_64 random{std::random_device{}()};
  return absl::StrCat(absl::Hex(random(), absl::kZeroPad16),
                      absl::Hex(random(), absl::kZeroPad16));
}

absl::Status ValidateSha256(const std::string& hex, std::string_view field) {
  if (hex.empty()) return absl::OkStatus();
  bool ok = hex.size() == 64;
  for (char c : hex) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) ok = false;
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat(AsAbsl(field), " must be 64 hexadecimal digits"));
  }
  return absl::OkStatus();
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

DownloaderService::DownloaderService(
    JobStore* store, Engine* engine, TokenProvider* tokens, DownloadRoots roots,
    std::shared_ptr<const http::AddressPolicy> policy)
    : store_(store),
      engine_(engine),
      tokens_(tokens),
      roots_(std::move(roots)),
      policy_(std::move(policy)) {}

void DownloaderService::Shutdown() {
  shutting_down_ = true;
  store_->changes().Interrupt();
}

absl::StatusOr<Job> DownloaderService::BuildJob(
    const v1::CreateDownloadRequest& request) {
  bool single = !request.url().empty();
  if (single == (request.files_size() > 0)) {
    return absl::InvalidArgumentError(
        "exactly one of url and files must be set");
  }
  if (!request.dest_dir().empty() && !request.output_path().empty()) {
    return absl::InvalidArgumentError("dest_dir and output_path are exclusive");
  }
  if (!single &&
      (!request.output_path().empty() || !request.file_name().empty() ||
       request.expected_size() != 0 || !request.expected_sha256().empty())) {
    return absl::InvalidArgumentError(
        "output_path, file_name, expected_size and expected_sha256 are for "
        "single-file downloads; give size and sha256 per file");
  }
  if (request.files_size() > kMaxFiles) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", kMaxFiles, " files per download"));
  }
  if (request.expected_size() < 0) {
    return absl::InvalidArgumentError("expected_size must not be negative");
  }
  Job job;
  job.id = NewJobId();
  job.request_id = request.request_id();
  job.priority = request.has_priority() ? request.priority() : 10;
  job.state = request.has_start() && !request.start() ? JobState::kWaiting
                                                      : JobState::kQueued;
  job.keep_partial = request.keep_partial_on_error();
  job.created = absl::Now();
  job.multi_file = !single;
  if (!request.output_path().empty()) {
    ASSIGN_OR_RETURN(fs::path file,
                     roots_.ResolveFile(request.output_path(), "output_path"));
    job.destination = file.string();
    job.dest_is_dir = false;
  } else {
    std::string dir = request.dest_dir().empty()
                          ? roots_.roots().front().string()
                          : request.dest_dir();
    ASSIGN_OR_RETURN(fs::path resolved,
                     roots_.ResolveDirectory(dir, "dest_dir"));
    job.destination = resolved.string();
    job.dest_is_dir = true;
  }
  if (!request.file_name().empty()) {
    RETURN_IF_ERROR(ValidateFileName(request.file_name(), "file_name"));
    if (!job.dest_is_dir) {
      return absl::InvalidArgumentError(
          "file_name goes with dest_dir, not output_path");
    }
    job.file_name = request.file_name();
  }
  int64_t known_bytes = 0;
  if (single) {
    RETURN_IF_ERROR(http::CheckUrl(request.url(), "url", *policy_));
    RETURN_IF_ERROR(
        ValidateSha256(request.expected_sha256(), "expected_sha256"));
    Part part;
    part.url = request.url();
    part.expected_size = request.expected_size();
    part.expected_sha256 = absl::AsciiStrToLower(request.expected_sha256());
    if (!job.dest_is_dir) {
      part.path = job.destination;
    } else if (!job.file_name.empty()) {
      part.path = (fs::path(job.destination) / job.file_name).string();
    }
    known_bytes = part.expected_size;
    job.parts.push_back(std::move(part));
  } else {
    std::set<std::string> seen;
    for (int i = 0; i < request.files_size(); ++i) {
      const v1::DownloadFile& file = request.files(i);
      std::string field = absl::StrCat("files[", i, "]");
      RETURN_IF_ERROR(
          http::CheckUrl(file.url(), absl::StrCat(field, ".url"), *policy_));
      RETURN_IF_ERROR(ValidateRelativePath(
          file.relative_path(), absl::StrCat(field, ".relative_path")));
      RETURN_IF_ERROR(
          ValidateSha256(file.sha256(), absl::StrCat(field, ".sha256")));
      if (file.size() < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".size must not be negative"));
      }
      if (!seen.insert(file.relative_path()).second) {
        return absl::InvalidArgumentError(absl::StrCat(
            field, ".relative_path ", file.relative_path(), " appears twice"));
      }
      Part part;
      part.url = file.url();
      part.relative_path = file.relative_path();
      part.expected_size = file.size();
      part.expected_sha256 = absl::AsciiStrToLower(file.sha256());
      known_bytes += part.expected_size;
      job.parts.push_back(std::move(part));
    }
  }
  if (known_bytes > 0) {
    fs::path dir = job.dest_is_dir ? fs::path(job.destination)
                                   : fs::path(job.destination).parent_path();
    absl::StatusOr<int64_t> free_bytes = FreeBytes(dir);
    if (free_bytes.ok() && *free_bytes < known_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "not enough free space in ", dir.string(), ": ", known_bytes,
          " bytes needed, ", *free_bytes, " available"));
    }
  }
  if (!request.access_token().empty()) {
    job.has_token = true;
    job.token_owner = store_->replica_id();
  }
  return job;
}

absl::StatusOr<Job> DownloaderService::Create(
    const v1::CreateDownloadRequest& request) {
  ASSIGN_OR_RETURN(Job job, BuildJob(request));
  std::string id = job.id;
  // The token is in memory before the job can be claimed.
  if (job.has_token) tokens_->PutJobToken(id, request.access_token());
  absl::StatusOr<Job> created = store_->Create(std::move(job));
  if (!created.ok() || created->id != id) tokens_->ForgetJob(id);
  if (created.ok()) engine_->Wake();
  return created;
}

absl::StatusOr<Job> DownloaderService::Apply(const std::string& id,
                                             Action action,
                                             const std::string& token) {
  if (id.empty()) return absl::InvalidArgumentError("id is required");
  if (action == Action::kPause) {
    // Pausing a paused job changes nothing: answer without a write.
    ASSIGN_OR_RETURN(Job current, store_->Get(id));
    if (current.state == JobState::kPaused) return current;
  }
  bool changed = false;
  // Resume with a token: the token this one replaced in memory, to put back
  // if the write does not happen.
  bool token_put = false;
  std::optional<std::string> replaced_token;
  absl::StatusOr<Job> job = store_->Update(id, [&](Job& job) -> absl::Status {
    changed = false;
    auto wrong_state = [&](std::string_view verb) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot ", AsAbsl(verb), " download ", id, ": it is ",
                       AsAbsl(StateName(job.state))));
    };
    switch (action) {
      case Action::kStart:
        if (job.state != JobState::kWaiting) return wrong_state("start");
        job.state = JobState::kQueued;
        break;
      case Action::kPause:
        if (IsTerminal(job.state)) return wrong_state("pause");
        job.state = JobState::kPaused;
        break;
      case Action::kResume:
        if (job.state != JobState::kPaused) return wrong_state("resume");
        job.state = JobState::kQueued;
        job.status_message.clear();
        if (!token.empty()) {
          job.has_token = true;
          job.token_owner = store_->replica_id();
          // In memory before the commit makes the job claimable: a worker
          // that claims it the moment it is queued must find the token, or
          // it pauses the job again for want of one.
          if (!token_put) {
            replaced_token = tokens_->PutJobToken(id, token);
            token_put = true;
          }
        }
        break;
      case Action::kCancel:
        if (IsTerminal(job.state)) return wrong_state("cancel");
        job.state = JobState::kCancelled;
        job.ended = absl::Now();
        job.bytes_per_second = 0;
        break;
    }
    changed = true;
    return absl::OkStatus();
  });
  if (!job.ok()) {
    if (token_put) {
      if (replaced_token.has_value()) {
        tokens_->PutJobToken(id, *std::move(replaced_token));
      } else {
        tokens_->ForgetJob(id);
      }
    }
    return job.status();
  }
  if (changed && action == Action::kCancel) {
    // A running worker removes them too once it has stopped writing.
    RemovePartialFiles(*job);
    tokens_->ForgetJob(id);
  }
  if (changed) engine_->Wake();
  return job;
}

grpc::Status DownloaderService::CreateDownload(
    grpc::ServerContext*, const v1::CreateDownloadRequest* request,
    v1::DownloadJob* response) {
  absl::StatusOr<Job> job = Create(*request);
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = JobToProto(*job);
  return grpc::Status::OK;
}

grpc::Status DownloaderService::GetDownload(
    grpc::ServerContext*, const v1::GetDownloadRequest* request,
    v1::DownloadJob* response) {
  if (request->id().empty()) {
    return ToGrpcStatus(absl::InvalidArgumentError("id is required"));
  }
  absl::StatusOr<Job> job = store_->Get(request->id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = JobToProto(*job);
  return grpc::Status::OK;
}

grpc::Status DownloaderService::ListDownloads(
    grpc::ServerContext*, const v1::ListDownloadsRequest* request,
    v1::ListDownloadsResponse* response) {
  if (request->page_size() < 0 || request->page_size() > kMaxPageSize) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        absl::StrCat("page_size must be between 0 and ", kMaxPageSize)));
  }
  int page_size =
      request->page_size() == 0 ? kDefaultPageSize : request->page_size();
  int64_t after = 0;
  if (!request->page_token().empty() &&
      (!absl::SimpleAtoi(request->page_token(), &after) || after < 0)) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        "page_token is not one this service issued"));
  }
  std::vector<JobState> states;
  for (int s : request->states()) {
    std::optional<JobState> state =
        StateFromProto(static_cast<v1::DownloadState>(s));
    if (!state.has_value()) {
      return ToGrpcStatus(absl::InvalidArgumentError(
          absl::StrCat("states has an unknown state ", s)));
    }
    states.push_back(*state);
  }
  absl::StatusOr<std::vector<Job>> jobs =
      store_->List(states, after, page_size + 1);
  if (!jobs.ok()) return ToGrpcStatus(jobs.status());
  bool more = static_cast<int>(jobs->size()) > page_size;
  if (more) jobs->resize(page_size);
  for (const Job& job : *jobs) *response->add_jobs() = JobToProto(job);
  if (more) response->set_next_page_token(absl::StrCat(jobs->back().sequence));
  return grpc::Status::OK;
}

grpc::Status DownloaderService::StartDownload(
    grpc::ServerContext*, const v1::DownloadJobRequest* request,
    v1::DownloadJob* response) {
  absl::StatusOr<Job> job = Apply(request->id(), Action::kStart);
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = JobToProto(*job);
  return grpc::Status::OK;
}

grpc::Status DownloaderService::PauseDownload(
    grpc::ServerContext*, const v1::DownloadJobRequest* request,
    v1::DownloadJob* response) {
  absl::StatusOr<Job> job = Apply(request->id(), Action::kPause);
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = JobToProto(*job);
  return grpc::Status::OK;
}

grpc::Status DownloaderService::ResumeDownload(
    grpc::ServerContext*, const v1::ResumeDownloadRequest* request,
    v1::DownloadJob* response) {
  absl::StatusOr<Job> job =
      Apply(request->id(), Action::kResume, request->access_token());
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = JobToProto(*job);
  return grpc::Status::OK;
}

grpc::Status DownloaderService::CancelDownload(
    grpc::ServerContext*, const v1::DownloadJobRequest* request,
    v1::DownloadJob* response) {
  absl::StatusOr<Job> job = Apply(request->id(), Action::kCancel);
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = JobToProto(*job);
  return grpc::Status::OK;
}

grpc::Status DownloaderService::BulkDownloadAction(
    grpc::ServerContext*, const v1::BulkDownloadActionRequest* request,
    v1::BulkDownloadActionResponse* response) {
  Action action;
  std::vector<JobState> states;
  switch (request->action()) {
    case v1::BulkDownloadActionRequest::START:
      action = Action::kStart;
      states = {JobState::kWaiting};
      break;
    case v1::BulkDownloadActionRequest::PAUSE:
      action = Action::kPause;
      states = {JobState::kWaiting, JobState::kQueued, JobState::kRunning};
      break;
    case v1::BulkDownloadActionRequest::RESUME:
      action = Action::kResume;
      states = {JobState::kPaused};
      break;
    case v1::BulkDownloadActionRequest::CANCEL:
      action = Action::kCancel;
      states = {JobState::kWaiting, JobState::kQueued, JobState::kRunning,
                JobState::kPaused};
      break;
    default:
      return ToGrpcStatus(absl::InvalidArgumentError("action is required"));
  }
  int64_t after = 0;
  while (true) {
    absl::StatusOr<std::vector<Job>> jobs =
        store_->List(states, after, kMaxPageSize);
    if (!jobs.ok()) return ToGrpcStatus(jobs.status());
    for (const Job& job : *jobs) {
      absl::StatusOr<Job> changed = Apply(job.id, action);
      // A job that moved on meanwhile (finished, deleted) is skipped.
      if (changed.ok()) *response->add_jobs() = JobToProto(*changed);
    }
    if (static_cast<int>(jobs->size()) < kMaxPageSize) break;
    after = jobs->back().sequence;
  }
  return grpc::Status::OK;
}

grpc::Status DownloaderService::PruneDownloads(
    grpc::ServerContext*, const v1::PruneDownloadsRequest* request,
    v1::PruneDownloadsResponse* response) {
  absl::Time before = absl::InfiniteFuture();
  if (request->has_ended_before()) {
    before = absl::FromUnixMillis(
        TimeUtil::TimestampToMilliseconds(request->ended_before()));
  }
  absl::StatusOr<std::vector<Job>> pruned = store_->Prune(before);
  if (!pruned.ok()) return ToGrpcStatus(pruned.status());
  response->set_pruned(static_cast<int64_t>(pruned->size()));
  return grpc::Status::OK;
}

grpc::Status DownloaderService::WaitDownload(
    grpc::ServerContext* context, const v1::DownloadJobRequest* request,
    v1::DownloadJob* response) {
  if (request->id().empty()) {
    return ToGrpcStatus(absl::InvalidArgumentError("id is required"));
  }
  absl::Time deadline = absl::FromChrono(context->deadline());
  while (true) {
    int64_t seen = store_->changes().version();
    absl::StatusOr<Job> job = store_->Get(request->id());
    if (!job.ok()) return ToGrpcStatus(job.status());
    if (IsTerminal(job->state) || job->state == JobState::kPaused) {
      *response = JobToProto(*job);
      return grpc::Status::OK;
    }
    if (context->IsCancelled()) return grpc::Status::CANCELLED;
    if (shutting_down_) {
      return ToGrpcStatus(absl::UnavailableError("the service is stopping"));
    }
    if (absl::Now() >= deadline) {
      return ToGrpcStatus(absl::DeadlineExceededError(
          absl::StrCat("download ", request->id(), " is still ",
                       AsAbsl(StateName(job->state)))));
    }
    store_->changes().WaitForChange(seen,
                                    std::min(deadline, absl::Now() + kPoll));
  }
}

grpc::Status DownloaderService::WatchDownload(
    grpc::ServerContext* context, const v1::WatchDownloadRequest* request,
    grpc::ServerWriter<v1::DownloadJob>* writer) {
  if (request->id().empty()) {
    return ToGrpcStatus(absl::InvalidArgumentError("id is required"));
  }
  int64_t last = request->since_revision();
  bool first = true;
  while (true) {
    int64_t seen = store_->changes().version();
    absl::StatusOr<Job> job = store_->Get(request->id());
    if (!job.ok()) {
      // Gone after a look that found it unfinished: it ended and was pruned
      // between two looks, so its final state cannot be sent. Ending OK
      // here would pass for a stream cut short (DESIGN §2: a final `done`
      // message, or NOT_FOUND).
      if (!first && absl::IsNotFound(job.status())) {
        return ToGrpcStatus(absl::NotFoundError(absl::StrCat(
            "download job ", request->id(),
            " ended and was pruned before this watch could send its final "
            "state")));
      }
      return ToGrpcStatus(job.status());
    }
    if (job->revision > last || (first && last == 0)) {
      // Latest wins: whatever changed since the last message is in this one.
      if (!writer->Write(JobToProto(*job))) return grpc::Status::CANCELLED;
      last = job->revision;
    }
    first = false;
    if (IsTerminal(job->state)) return grpc::Status::OK;
    if (context->IsCancelled()) return grpc::Status::CANCELLED;
    if (shutting_down_) {
      return ToGrpcStatus(absl::UnavailableError("the service is stopping"));
    }
    store_->changes().WaitForChange(seen, absl::Now() + kPoll);
  }
}

}  // namespace mm::downloader
