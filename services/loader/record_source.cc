#include "services/loader/record_source.h"

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/status.h"

namespace mm::loader {

absl::StatusOr<std::unique_ptr<RecordsServiceSource>>
RecordsServiceSource::Create(const std::string& address,
                             const ClientOptions& options,
                             absl::Duration timeout) {
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                   MakeChannel(address, options));
  return std::unique_ptr<RecordsServiceSource>(new RecordsServiceSource(
      address, modelmanager::v1::ModelRecords::NewStub(channel), timeout));
}

absl::StatusOr<modelmanager::v1::Model> RecordsServiceSource::Get(
    const std::string& key) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
  modelmanager::v1::GetModelRequest request;
  request.set_key(key);
  modelmanager::v1::Model record;
  grpc::Status status = stub_->GetModel(&context, request, &record);
  if (status.ok()) return record;
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::UnavailableError(absl::StrCat(
          "the records service at ", address_, " cannot be reached (",
          status.error_message(), "); start it (mm up) and load again"));
    default:
      return FromGrpcStatus(status);
  }
}

}  // namespace mm::loader
