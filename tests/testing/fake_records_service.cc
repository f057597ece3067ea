#include "tests/testing/fake_records_service.h"

#include <algorithm>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "proto/record_json.h"

namespace mm::testing {

namespace v1 = modelmanager::v1;

// The watch revision the fake refuses, as a server whose history no longer
// reaches that far back does.
constexpr int64_t kCompactedRevision = 99;

void FakeRecordsService::Add(const std::string& key, const std::string& name) {
  MutexLock lock(&mu_);
  v1::Model model;
  model.set_key(key);
  model.set_name(name);
  model.set_base("sd-1");
  model.set_type("main");
  model.set_format("checkpoint");
  model.set_path(name + ".safetensors");
  model.set_file_size(1024);
  model.set_revision(static_cast<int64_t>(models_.size()) + 1);
  models_.push_back(model);
}

void FakeRecordsService::set_max_page_size(int size) {
  MutexLock lock(&mu_);
  max_page_size_ = size;
}

grpc::Status FakeRecordsService::ListModels(
    grpc::ServerContext*, const v1::ListModelsRequest* request,
    v1::ListModelsResponse* response) {
  MutexLock lock(&mu_);
  list_requests_.push_back(*request);
  size_t start = 0;
  if (!request->page_token().empty() &&
      !absl::SimpleAtoi(request->page_token(), &start)) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad token");
  }
  int size = request->page_size() == 0 ? 100 : request->page_size();
  size = std::min(size, max_page_size_);
  size_t end = std::min(models_.size(), start + size);
  for (size_t i = start; i < end; ++i) *response->add_models() = models_[i];
  if (end < models_.size()) response->set_next_page_token(absl::StrCat(end));
  return grpc::Status::OK;
}

grpc::Status FakeRecordsService::GetModel(grpc::ServerContext*,
                                          const v1::GetModelRequest* request,
                                          v1::Model* response) {
  MutexLock lock(&mu_);
  for (const v1::Model& model : models_) {
    if (model.key() == request->key()) {
      *response = model;
      return grpc::Status::OK;
    }
  }
  return grpc::Status(grpc::StatusCode::NOT_FOUND,
                      absl::StrCat("unknown model key '", request->key(), "'"));
}

grpc::Status FakeRecordsService::CreateModel(
    grpc::ServerContext*, const v1::CreateModelRequest* request,
    v1::Model* response) {
  MutexLock lock(&mu_);
  create_requests_.push_back(*request);
  nlohmann::json config = nlohmann::json::parse(
      request->config_json(), /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "config_json is not JSON");
  }
  absl::StatusOr<v1::Model> model = ConfigJsonToModel(config);
  if (!model.ok()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        std::string(model.status().message()));
  }
  if (model->name() == "taken") {
    return grpc::Status(grpc::StatusCode::ALREADY_EXISTS, "path taken");
  }
  if (model->key().empty()) model->set_key("generatedkey");
  *response = *model;
  return grpc::Status::OK;
}

grpc::Status FakeRecordsService::UpdateModel(
    grpc::ServerContext*, const v1::UpdateModelRequest* request,
    v1::Model* response) {
  MutexLock lock(&mu_);
  update_requests_.push_back(*request);
  response->set_key(request->key());
  response->set_name("updated");
  return grpc::Status::OK;
}

grpc::Status FakeRecordsService::DeleteModel(
    grpc::ServerContext*, const v1::DeleteModelRequest* request,
    v1::DeleteModelResponse* response) {
  MutexLock lock(&mu_);
  delete_requests_.push_back(*request);
  if (request->etag() == "stale") {
    return grpc::Status(grpc::StatusCode::ABORTED, "etag 'stale' is stale");
  }
  response->set_revision(42);
  return grpc::Status::OK;
}

grpc::Status FakeRecordsService::WatchModels(
    grpc::ServerContext*, const v1::WatchModelsRequest* request,
    grpc::ServerWriter<v1::ModelEvent>* writer) {
  if (request->since_revision() == kCompactedRevision) {
    return grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                        absl::StrCat("revision ", kCompactedRevision,
                                     " is older than the history"));
  }
  v1::Model first;
  {
    MutexLock lock(&mu_);
    if (models_.empty()) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "the fake's watch needs one added model");
    }
    first = models_.front();
  }
  v1::ModelEvent bookmark;
  bookmark.set_type(v1::ModelEvent::BOOKMARK);
  bookmark.set_revision(request->since_revision() + 1);
  writer->Write(bookmark);
  v1::ModelEvent added;
  added.set_type(v1::ModelEvent::ADDED);
  added.set_revision(request->since_revision() + 2);
  *added.mutable_model() = first;
  writer->Write(added);
  return grpc::Status::OK;
}

std::vector<v1::ListModelsRequest> FakeRecordsService::list_requests() {
  MutexLock lock(&mu_);
  return list_requests_;
}

std::vector<v1::CreateModelRequest> FakeRecordsService::create_requests() {
  MutexLock lock(&mu_);
  return create_requests_;
}

std::vector<v1::UpdateModelRequest> FakeRecordsService::update_requests() {
  MutexLock lock(&mu_);
  return update_requests_;
}

std::vector<v1::DeleteModelRequest> FakeRecordsService::delete_requests() {
  MutexLock lock(&mu_);
  return delete_requests_;
}

void FakeRecordsService::ClearRequests() {
  MutexLock lock(&mu_);
  list_requests_.clear();
  create_requests_.clear();
  update_requests_.clear();
  delete_requests_.clear();
}

}  // namespace mm::testing
