// An in-memory ModelRecords service for tests of its clients (the `mm`
// commands, and the installer, which registers models through it): enough
// of the contract (records.proto) to drive a client, and a record of the
// requests so a test can check what its client sent.
//
// What it answers: List pages through the added models (`max_page_size` a
// page, the token is an index); Get finds by key or NOT_FOUND; Create
// parses the config JSON as the real service does (INVALID_ARGUMENT when it
// is not a valid config), ALREADY_EXISTS for the name "taken", and gives a
// model without a key the key "generatedkey"; Update answers the key with
// the name "updated"; Delete is ABORTED for the etag "stale", else revision
// 42; Watch sends a BOOKMARK at since+1 and the first model ADDED at
// since+2, or OUT_OF_RANGE for since 99.
//
//   FakeRecordsService fake;
//   fake.Add("k1", "alpha");
//   grpc::ServerBuilder builder;
//   builder.RegisterService(&fake);
//
// Thread-safety: every method may be called concurrently.
#ifndef MM_TESTS_TESTING_FAKE_RECORDS_SERVICE_H_
#define MM_TESTS_TESTING_FAKE_RECORDS_SERVICE_H_

#include <string>
#include <vector>

#include "common/mutex.h"
#include "modelmanager/v1/records.grpc.pb.h"

namespace mm::testing {

class FakeRecordsService final
    : public modelmanager::v1::ModelRecords::Service {
 public:
  // Adds a main sd-1 checkpoint `key` named `name` at NAME.safetensors,
  // 1 KiB, with the next revision.
  void Add(const std::string& key, const std::string& name)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The most records one ListModels page carries (default 1000, the real
  // service's cap; a small one makes clients page).
  void set_max_page_size(int size) ABSL_LOCKS_EXCLUDED(mu_);

  grpc::Status ListModels(
      grpc::ServerContext* context,
      const modelmanager::v1::ListModelsRequest* request,
      modelmanager::v1::ListModelsResponse* response) override;
  grpc::Status GetModel(grpc::ServerContext* context,
                        const modelmanager::v1::GetModelRequest* request,
                        modelmanager::v1::Model* response) override;
  grpc::Status CreateModel(grpc::ServerContext* context,
                           const modelmanager::v1::CreateModelRequest* request,
                           modelmanager::v1::Model* response) override;
  grpc::Status UpdateModel(grpc::ServerContext* context,
                           const modelmanager::v1::UpdateModelRequest* request,
                           modelmanager::v1::Model* response) override;
  grpc::Status DeleteModel(
      grpc::ServerContext* context,
      const modelmanager::v1::DeleteModelRequest* request,
      modelmanager::v1::DeleteModelResponse* response) override;
  grpc::Status WatchModels(
      grpc::ServerContext* context,
      const modelmanager::v1::WatchModelsRequest* request,
      grpc::ServerWriter<modelmanager::v1::ModelEvent>* writer) override;

  // What the clients sent, in order.
  std::vector<modelmanager::v1::ListModelsRequest> list_requests()
      ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<modelmanager::v1::CreateModelRequest> create_requests()
      ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<modelmanager::v1::UpdateModelRequest> update_requests()
      ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<modelmanager::v1::DeleteModelRequest> delete_requests()
      ABSL_LOCKS_EXCLUDED(mu_);
  // Forgets the recorded requests (the models stay).
  void ClearRequests() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  Mutex mu_;
  int max_page_size_ ABSL_GUARDED_BY(mu_) = 1000;
  std::vector<modelmanager::v1::Model> models_ ABSL_GUARDED_BY(mu_);
  std::vector<modelmanager::v1::ListModelsRequest> list_requests_
      ABSL_GUARDED_BY(mu_);
  std::vector<modelmanager::v1::CreateModelRequest> create_requests_
      ABSL_GUARDED_BY(mu_);
  std::vector<modelmanager::v1::UpdateModelRequest> update_requests_
      ABSL_GUARDED_BY(mu_);
  std::vector<modelmanager::v1::DeleteModelRequest> delete_requests_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace mm::testing

#endif  // MM_TESTS_TESTING_FAKE_RECORDS_SERVICE_H_
