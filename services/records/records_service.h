// The gRPC face of the records service: converts modelmanager.v1 messages
// to and from the registry's JSON configs and absl statuses. No logic of
// its own beyond that, and the Watch loop.
//
//   RecordsService service(&registry);
//   host->AddShutdownHook([&] { service.Shutdown(); });
//
// Thread-safe; handlers run on gRPC's threads.
#ifndef MM_SERVICES_RECORDS_RECORDS_SERVICE_H_
#define MM_SERVICES_RECORDS_RECORDS_SERVICE_H_

#include <atomic>
#include <string>

#include "modelmanager/v1/records.grpc.pb.h"
#include "services/records/model_registry.h"

namespace mm::records {

inline constexpr char kRecordsServiceName[] = "modelmanager.v1.ModelRecords";

// A stored record as the typed message, with revision, etag and times.
absl::StatusOr<modelmanager::v1::Model> ToProto(const StoredModel& model);

class RecordsService final : public modelmanager::v1::ModelRecords::Service {
 public:
  // `registry` must outlive the service.
  explicit RecordsService(ModelRegistry* registry) : registry_(registry) {}

  // Ends every open Watch stream promptly (called before draining).
  void Shutdown();

  grpc::Status CreateModel(grpc::ServerContext* context,
                           const modelmanager::v1::CreateModelRequest* request,
                           modelmanager::v1::Model* response) override;
  grpc::Status GetModel(grpc::ServerContext* context,
                        const modelmanager::v1::GetModelRequest* request,
                        modelmanager::v1::Model* response) override;
  grpc::Status UpdateModel(grpc::ServerContext* context,
                           const modelmanager::v1::UpdateModelRequest* request,
                           modelmanager::v1::Model* response) override;
  grpc::Status ReplaceModel(
      grpc::ServerContext* context,
      const modelmanager::v1::ReplaceModelRequest* request,
      modelmanager::v1::Model* response) override;
  grpc::Status DeleteModel(
      grpc::ServerContext* context,
      const modelmanager::v1::DeleteModelRequest* request,
      modelmanager::v1::DeleteModelResponse* response) override;
  grpc::Status ListModels(
      grpc::ServerContext* context,
      const modelmanager::v1::ListModelsRequest* request,
      modelmanager::v1::ListModelsResponse* response) override;
  grpc::Status FindModelByName(
      grpc::ServerContext* context,
      const modelmanager::v1::FindModelByNameRequest* request,
      modelmanager::v1::Model* response) override;
  grpc::Status ModelExists(
      grpc::ServerContext* context,
      const modelmanager::v1::ModelExistsRequest* request,
      modelmanager::v1::ModelExistsResponse* response) override;
  grpc::Status GetVersion(
      grpc::ServerContext* context,
      const modelmanager::v1::GetVersionRequest* request,
      modelmanager::v1::GetVersionResponse* response) override;
  grpc::Status WatchModels(
      grpc::ServerContext* context,
      const modelmanager::v1::WatchModelsRequest* request,
      grpc::ServerWriter<modelmanager::v1::ModelEvent>* writer) override;

 private:
  ModelRegistry* registry_;
  std::atomic<bool> shutting_down_{false};
};

}  // namespace mm::records

#endif  // MM_SERVICES_RECORDS_RECORDS_SERVICE_H_
