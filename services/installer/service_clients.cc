#include "services/installer/service_clients.h"

#include <utility>

#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "grpcpp/client_context.h"

namespace mm::installer {
namespace {

namespace v1 = ::modelmanager::v1;

void SetDeadline(grpc::ClientContext& context, absl::Duration timeout) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

template <typename Response, typename Call>
absl::StatusOr<Response> Unary(Call call) {
  grpc::ClientContext context;
  SetDeadline(context, kCallTimeout);
  Response response;
  grpc::Status status = call(&context, &response);
  if (!status.ok()) {
    // A call that ran out of time counts as the service being unreachable.
    if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      return absl::UnavailableError(status.error_message());
    }
    return FromGrpcStatus(status);
  }
  return response;
}

}  // namespace

RecordsClient::RecordsClient(std::shared_ptr<grpc::Channel> channel)
    : stub_(v1::ModelRecords::NewStub(std::move(channel))) {}

absl::StatusOr<v1::Model> RecordsClient::Create(const nlohmann::json& config,
                                                const std::string& request_id) {
  v1::CreateModelRequest request;
  request.set_config_json(config.dump());
  request.set_request_id(request_id);
  return Unary<v1::Model>([&](grpc::ClientContext* context, v1::Model* out) {
    return stub_->CreateModel(context, request, out);
  });
}

absl::StatusOr<v1::Model> RecordsClient::Get(const std::string& key) {
  v1::GetModelRequest request;
  request.set_key(key);
  return Unary<v1::Model>([&](grpc::ClientContext* context, v1::Model* out) {
    return stub_->GetModel(context, request, out);
  });
}

absl::StatusOr<std::optional<v1::Model>> RecordsClient::FindByHash(
    const std::string& hash) {
  v1::ListModelsRequest request;
  request.set_hash(hash);
  request.set_page_size(1);
  ASSIGN_OR_RETURN(
      v1::ListModelsResponse response,
      Unary<v1::ListModelsResponse>(
          [&](grpc::ClientContext* context, v1::ListModelsResponse* out) {
            return stub_->ListModels(context, request, out);
          }));
  if (response.models().empty()) return std::nullopt;
  return response.models(0);
}

absl::Status RecordsClient::Delete(const std::string& key) {
  v1::DeleteModelRequest request;
  request.set_key(key);
  return Unary<v1::DeleteModelResponse>(
             [&](grpc::ClientContext* context, v1::DeleteModelResponse* out) {
               return stub_->DeleteModel(context, request, out);
             })
      .status();
}

absl::StatusOr<std::vector<v1::Model>> RecordsClient::ListAll() {
  std::vector<v1::Model> models;
  v1::ListModelsRequest request;
  request.set_page_size(1000);
  while (true) {
    ASSIGN_OR_RETURN(
        v1::ListModelsResponse response,
        Unary<v1::ListModelsResponse>(
            [&](grpc::ClientContext* context, v1::ListModelsResponse* out) {
              return stub_->ListModels(context, request, out);
            }));
    for (v1::Model& model : *response.mutable_models()) {
      models.push_back(std::move(model));
    }
    if (response.next_page_token().empty()) return models;
    request.set_page_token(response.next_page_token());
  }
}

DownloaderClient::DownloaderClient(std::shared_ptr<grpc::Channel> channel)
    : stub_(v1::Downloader::NewStub(std::move(channel))) {}

absl::StatusOr<v1::DownloadJob> DownloaderClient::Create(
    const v1::CreateDownloadRequest& request) {
  return Unary<v1::DownloadJob>(
      [&](grpc::ClientContext* context, v1::DownloadJob* out) {
        return stub_->CreateDownload(context, request, out);
      });
}

absl::StatusOr<v1::DownloadJob> DownloaderClient::Get(const std::string& id) {
  v1::GetDownloadRequest request;
  request.set_id(id);
  return Unary<v1::DownloadJob>(
      [&](grpc::ClientContext* context, v1::DownloadJob* out) {
        return stub_->GetDownload(context, request, out);
      });
}

absl::StatusOr<v1::DownloadJob> DownloaderClient::Pause(const std::string& id) {
  v1::DownloadJobRequest request;
  request.set_id(id);
  return Unary<v1::DownloadJob>(
      [&](grpc::ClientContext* context, v1::DownloadJob* out) {
        return stub_->PauseDownload(context, request, out);
      });
}

absl::StatusOr<v1::DownloadJob> DownloaderClient::Resume(
    const std::string& id, const std::string& token) {
  v1::ResumeDownloadRequest request;
  request.set_id(id);
  request.set_access_token(token);
  return Unary<v1::DownloadJob>(
      [&](grpc::ClientContext* context, v1::DownloadJob* out) {
        return stub_->ResumeDownload(context, request, out);
      });
}

absl::StatusOr<v1::DownloadJob> DownloaderClient::Cancel(
    const std::string& id) {
  v1::DownloadJobRequest request;
  request.set_id(id);
  return Unary<v1::DownloadJob>(
      [&](grpc::ClientContext* context, v1::DownloadJob* out) {
        return stub_->CancelDownload(context, request, out);
      });
}

absl::Status DownloaderClient::Watch(
    const std::string& id, int64_t since_revision, absl::Duration timeout,
    const std::function<bool(const v1::DownloadJob&)>& on_change) {
  grpc::ClientContext context;
  SetDeadline(context, timeout);
  v1::WatchDownloadRequest request;
  request.set_id(id);
  request.set_since_revision(since_revision);
  std::unique_ptr<grpc::ClientReader<v1::DownloadJob>> reader =
      stub_->WatchDownload(&context, request);
  v1::DownloadJob job;
  while (reader->Read(&job)) {
    if (!on_change(job)) {
      context.TryCancel();
      reader->Finish();
      return absl::CancelledError("stopped watching");
    }
    if (job.done()) break;
  }
  return FromGrpcStatus(reader->Finish());
}

}  // namespace mm::installer
