#include "tests/downloader/harness.h"

#include <chrono>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "grpcpp/server_builder.h"

namespace mm::downloader {

namespace v1 = modelmanager::v1;

void SetDeadline(grpc::ClientContext& context, absl::Duration timeout) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

EngineOptions FastEngineOptions() {
  EngineOptions o;
  o.max_parallel = 5;
  o.max_segments = 4;
  o.min_segment_size = 64 * 1024;
  o.stall_timeout = absl::Seconds(1);
  o.max_attempts = 4;
  o.retry_base_delay = absl::Milliseconds(50);
  o.retry_max_delay = absl::Milliseconds(200);
  o.lease = absl::Seconds(2);
  o.progress_interval = absl::Milliseconds(100);
  return o;
}

absl::StatusOr<std::unique_ptr<Harness>> Harness::Start(
    HarnessOptions options) {
  std::unique_ptr<Harness> h(new Harness());
  DownloaderOptions d;
  d.db = options.db_url;
  d.download_roots = {options.root};
  d.engine = options.engine;
  d.allow_private_urls = options.allow_private;
  d.allow_cidrs = options.allow_cidrs;
  d.token_rules = options.token_rules;
  d.max_bytes_per_second = options.max_bytes_per_second;
  d.max_host_connections = options.max_host_connections;
  d.replica_id = options.replica_id;
  d.clock = options.clock;
  d.metrics = options.metrics;
  h->options_ = std::move(options);
  ASSIGN_OR_RETURN(h->downloader_, Downloader::Create(std::move(d)));
  grpc::ServerBuilder builder;
  builder.RegisterService(&h->downloader_->service());
  h->server_ = builder.BuildAndStart();
  if (h->server_ == nullptr) return absl::InternalError("no server");
  h->stub_ = v1::Downloader::NewStub(
      h->server_->InProcessChannel(grpc::ChannelArguments()));
  h->downloader_->Start();
  return h;
}

Harness::~Harness() {
  downloader_->Stop();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  // Destroying the server joins its threads (handlers that used the store
  // among them) before the store goes; a shut-down server's idle threads
  // would otherwise still be alive, their end unseen by ThreadSanitizer.
  server_.reset();
  downloader_.reset();
}

void Harness::StopEngine() { downloader_->StopEngine(); }

absl::StatusOr<v1::DownloadJob> Harness::Create(
    const v1::CreateDownloadRequest& request) {
  grpc::ClientContext context;
  SetDeadline(context);
  v1::DownloadJob job;
  grpc::Status status = stub_->CreateDownload(&context, request, &job);
  if (!status.ok()) return FromGrpcStatus(status);
  return job;
}

absl::StatusOr<v1::DownloadJob> Harness::Get(const std::string& id) {
  grpc::ClientContext context;
  SetDeadline(context);
  v1::GetDownloadRequest request;
  request.set_id(id);
  v1::DownloadJob job;
  grpc::Status status = stub_->GetDownload(&context, request, &job);
  if (!status.ok()) return FromGrpcStatus(status);
  return job;
}

absl::StatusOr<v1::DownloadJob> Harness::Wait(const std::string& id,
                                              absl::Duration timeout) {
  grpc::ClientContext context;
  SetDeadline(context, timeout);
  v1::DownloadJobRequest request;
  request.set_id(id);
  v1::DownloadJob job;
  grpc::Status status = stub_->WaitDownload(&context, request, &job);
  if (!status.ok()) return FromGrpcStatus(status);
  return job;
}

absl::StatusOr<v1::DownloadJob> Harness::WatchUntil(
    const std::string& id,
    const std::function<bool(const v1::DownloadJob&)>& until,
    absl::Duration timeout) {
  grpc::ClientContext context;
  SetDeadline(context, timeout);
  v1::WatchDownloadRequest request;
  request.set_id(id);
  std::unique_ptr<grpc::ClientReader<v1::DownloadJob>> reader =
      stub_->WatchDownload(&context, request);
  v1::DownloadJob job;
  std::optional<v1::DownloadJob> last;
  while (reader->Read(&job)) {
    last = job;
    if (until(job)) {
      // Found: the rest of the stream is of no interest.
      context.TryCancel();
      reader->Finish().IgnoreError();
      return job;
    }
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) {
    absl::Status error = FromGrpcStatus(status);
    if (!last.has_value()) return error;
    return absl::Status(
        error.code(), absl::StrCat(error.message(),
                                   "; last seen: ", last->ShortDebugString()));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "download ", id, " ended without the awaited message; last seen: ",
      last.has_value() ? last->ShortDebugString() : "nothing"));
}

absl::Status Harness::WaitForState(const std::string& id,
                                   v1::DownloadState state,
                                   absl::Duration timeout) {
  return WatchUntil(
             id,
             [state](const v1::DownloadJob& job) {
               return job.state() == state;
             },
             timeout)
      .status();
}

absl::Status Harness::WaitForBytes(const std::string& id, int64_t bytes,
                                   absl::Duration timeout) {
  return WatchUntil(
             id,
             [bytes](const v1::DownloadJob& job) {
               return job.bytes() >= bytes;
             },
             timeout)
      .status();
}

}  // namespace mm::downloader
