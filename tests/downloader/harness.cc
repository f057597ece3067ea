#include "tests/downloader/harness.h"

#include <chrono>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "grpcpp/server_builder.h"
#include "services/downloader/paths.h"

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
  h->options_ = options;
  auto policy = std::make_shared<http::AddressPolicy>();
  if (options.allow_private) policy->AllowAllPrivate();
  for (const std::string& cidr : options.allow_cidrs) {
    RETURN_IF_ERROR(policy->Allow(cidr));
  }
  options.engine.address_policy = policy;
  ASSIGN_OR_RETURN(h->store_,
                   JobStore::Open(options.db_url, options.replica_id));
  if (h->store_->dialect() == sql::Dialect::kSqlite) {
    RETURN_IF_ERROR(h->store_->ExpireAllLeases());
  }
  ASSIGN_OR_RETURN(h->tokens_, TokenProvider::Create(options.token_rules));
  http::TransferLoop::Options loop_options;
  loop_options.max_bytes_per_second = options.max_bytes_per_second;
  loop_options.max_host_connections = options.max_host_connections;
  h->loop_ = http::TransferLoop::Create(loop_options);
  h->engine_ = std::make_unique<Engine>(h->store_.get(), h->loop_.get(),
                                        h->tokens_.get(), options.engine);
  ASSIGN_OR_RETURN(DownloadRoots roots, DownloadRoots::Create({options.root}));
  h->service_ = std::make_unique<DownloaderService>(
      h->store_.get(), h->engine_.get(), h->tokens_.get(), std::move(roots),
      policy);
  grpc::ServerBuilder builder;
  builder.RegisterService(h->service_.get());
  h->server_ = builder.BuildAndStart();
  if (h->server_ == nullptr) return absl::InternalError("no server");
  h->stub_ = v1::Downloader::NewStub(
      h->server_->InProcessChannel(grpc::ChannelArguments()));
  h->engine_->Start();
  return h;
}

Harness::~Harness() {
  service_->Shutdown();
  engine_->Stop();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  engine_.reset();
  loop_.reset();
}

void Harness::StopEngine() { engine_->Stop(); }

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
