#include "services/records/records_service.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "google/protobuf/util/time_util.h"
#include "proto/record_json.h"

namespace mm::records {
namespace {

using modelmanager::v1::ModelEvent;
using nlohmann::json;

// How long a Watch waits for a change before re-checking for cancellation
// (and, on SQLite, for commits made by another process).
constexpr absl::Duration kWatchPoll = absl::Seconds(1);
// Changes sent per read of the change log.
constexpr int kWatchBatch = 256;

absl::StatusOr<int64_t> ParseEtag(const std::string& etag) {
  if (etag.empty()) return 0;
  int64_t revision = 0;
  if (!absl::SimpleAtoi(etag, &revision) || revision <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("etag '", etag,
                     "' is not one this service issued; pass the etag of "
                     "a record you read"));
  }
  return revision;
}

absl::StatusOr<json> ParseJsonField(const std::string& text,
                                    const char* field) {
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is not valid JSON"));
  }
  if (!value.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be a JSON object"));
  }
  return value;
}

google::protobuf::Timestamp MicrosToTimestamp(int64_t micros) {
  return google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(micros);
}

ModelOrder OrderFromProto(modelmanager::v1::ModelOrder order) {
  switch (order) {
    case modelmanager::v1::MODEL_ORDER_NAME:
      return ModelOrder::kName;
    case modelmanager::v1::MODEL_ORDER_BASE:
      return ModelOrder::kBase;
    case modelmanager::v1::MODEL_ORDER_TYPE:
      return ModelOrder::kType;
    case modelmanager::v1::MODEL_ORDER_FORMAT:
      return ModelOrder::kFormat;
    case modelmanager::v1::MODEL_ORDER_SIZE:
      return ModelOrder::kSize;
    case modelmanager::v1::MODEL_ORDER_CREATED_AT:
      return ModelOrder::kCreatedAt;
    case modelmanager::v1::MODEL_ORDER_UPDATED_AT:
      return ModelOrder::kUpdatedAt;
    case modelmanager::v1::MODEL_ORDER_PATH:
      return ModelOrder::kPath;
    default:
      return ModelOrder::kDefault;
  }
}

ModelEvent::Type EventType(ChangeType type) {
  switch (type) {
    case ChangeType::kAdded:
      return ModelEvent::ADDED;
    case ChangeType::kModified:
      return ModelEvent::MODIFIED;
    case ChangeType::kDeleted:
      return ModelEvent::DELETED;
  }
  return ModelEvent::MODIFIED;
}

// Runs `body` and converts its status, so each handler is one expression.
template <typename Body>
grpc::Status Handle(Body&& body) {
  return ToGrpcStatus(body());
}

}  // namespace

absl::StatusOr<modelmanager::v1::Model> ToProto(const StoredModel& model) {
  absl::StatusOr<modelmanager::v1::Model> out = ConfigJsonToModel(model.config);
  if (!out.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("stored record '", model.config.value("key", "?"),
                     "' cannot be represented: ", out.status().message(),
                     "; replace or delete it"));
  }
  out->set_revision(model.revision);
  out->set_etag(absl::StrCat(model.revision));
  *out->mutable_create_time() = MicrosToTimestamp(model.created_at_us);
  *out->mutable_update_time() = MicrosToTimestamp(model.updated_at_us);
  return out;
}

void RecordsService::Shutdown() {
  shutting_down_ = true;
  registry_->store()->Interrupt();
}

grpc::Status RecordsService::CreateModel(
    grpc::ServerContext*, const modelmanager::v1::CreateModelRequest* request,
    modelmanager::v1::Model* response) {
  return Handle([&]() -> absl::Status {
    json config;
    if (!request->config_json().empty()) {
      if (request->has_model()) {
        return absl::InvalidArgumentError(
            "set either model or config_json, not both");
      }
      ASSIGN_OR_RETURN(config,
                       ParseJsonField(request->config_json(), "config_json"));
    } else {
      config = ModelToConfigJson(request->model());
    }
    ASSIGN_OR_RETURN(
        StoredModel stored,
        registry_->Create(std::move(config), request->request_id()));
    ASSIGN_OR_RETURN(*response, ToProto(stored));
    return absl::OkStatus();
  });
}

grpc::Status RecordsService::GetModel(
    grpc::ServerContext*, const modelmanager::v1::GetModelRequest* request,
    modelmanager::v1::Model* response) {
  return Handle([&]() -> absl::Status {
    ASSIGN_OR_RETURN(StoredModel stored, registry_->Get(request->key()));
    ASSIGN_OR_RETURN(*response, ToProto(stored));
    return absl::OkStatus();
  });
}

grpc::Status RecordsService::UpdateModel(
    grpc::ServerContext*, const modelmanager::v1::UpdateModelRequest* request,
    modelmanager::v1::Model* response) {
  return Handle([&]() -> absl::Status {
    ASSIGN_OR_RETURN(int64_t expected, ParseEtag(request->etag()));
    json changes;
    if (!request->changes_json().empty()) {
      if (request->has_model() || request->has_update_mask()) {
        return absl::InvalidArgumentError(
            "set either changes_json or model/update_mask, not both");
      }
      ASSIGN_OR_RETURN(changes,
                       ParseJsonField(request->changes_json(), "changes_json"));
    } else {
      ASSIGN_OR_RETURN(changes, ChangesFromFieldMask(request->model(),
                                                     request->update_mask()));
    }
    ASSIGN_OR_RETURN(
        StoredModel stored,
        registry_->Update(request->key(), changes,
                          request->allow_class_change(), expected));
    ASSIGN_OR_RETURN(*response, ToProto(stored));
    return absl::OkStatus();
  });
}

grpc::Status RecordsService::ReplaceModel(
    grpc::ServerContext*, const modelmanager::v1::ReplaceModelRequest* request,
    modelmanager::v1::Model* response) {
  return Handle([&]() -> absl::Status {
    ASSIGN_OR_RETURN(int64_t expected, ParseEtag(request->etag()));
    ASSIGN_OR_RETURN(
        StoredModel stored,
        registry_->Replace(request->key(), ModelToConfigJson(request->model()),
                           expected));
    ASSIGN_OR_RETURN(*response, ToProto(stored));
    return absl::OkStatus();
  });
}

grpc::Status RecordsService::DeleteModel(
    grpc::ServerContext*, const modelmanager::v1::DeleteModelRequest* request,
    modelmanager::v1::DeleteModelResponse* response) {
  return Handle([&]() -> absl::Status {
    ASSIGN_OR_RETURN(int64_t expected, ParseEtag(request->etag()));
    ASSIGN_OR_RETURN(int64_t revision,
                     registry_->Delete(request->key(), expected));
    response->set_revision(revision);
    return absl::OkStatus();
  });
}

grpc::Status RecordsService::ListModels(
    grpc::ServerContext*, const modelmanager::v1::ListModelsRequest* request,
    modelmanager::v1::ListModelsResponse* response) {
  return Handle([&]() -> absl::Status {
    ModelQuery query;
    if (request->has_name()) query.name = request->name();
    if (request->has_base()) query.base = request->base();
    if (request->has_type()) query.type = request->type();
    if (request->has_format()) query.format = request->format();
    if (request->has_path()) query.path = request->path();
    if (request->has_hash()) query.hash = request->hash();
    query.tags.assign(request->tags().begin(), request->tags().end());
    query.order = OrderFromProto(request->order_by());
    query.descending = request->descending();
    query.page_size = request->page_size();
    query.page_token = request->page_token();
    ASSIGN_OR_RETURN(ModelPage page, registry_->List(std::move(query)));
    for (const StoredModel& stored : page.models) {
      ASSIGN_OR_RETURN(*response->add_models(), ToProto(stored));
    }
    response->set_next_page_token(page.next_page_token);
    response->set_revision(page.revision);
    return absl::OkStatus();
  });
}

grpc::Status RecordsService::FindModelByName(
    grpc::ServerContext*,
    const modelmanager::v1::FindModelByNameRequest* request,
    modelmanager::v1::Model* response) {
  return Handle([&]() -> absl::Status {
    ASSIGN_OR_RETURN(StoredModel stored,
                     registry_->FindByName(request->name(), request->base(),
                                           request->type()));
    ASSIGN_OR_RETURN(*response, ToProto(stored));
    return absl::OkStatus();
  });
}

grpc::Status RecordsService::ModelExists(
    grpc::ServerContext*, const modelmanager::v1::ModelExistsRequest* request,
    modelmanager::v1::ModelExistsResponse* response) {
  return Handle([&]() -> absl::Status {
    absl::StatusOr<StoredModel> stored = registry_->Get(request->key());
    if (absl::IsNotFound(stored.status())) {
      response->set_exists(false);
      return absl::OkStatus();
    }
    RETURN_IF_ERROR(stored.status());
    response->set_exists(true);
    return absl::OkStatus();
  });
}

grpc::Status RecordsService::GetVersion(
    grpc::ServerContext*, const modelmanager::v1::GetVersionRequest*,
    modelmanager::v1::GetVersionResponse* response) {
  response->set_schema_version(registry_->store()->schema_version());
  response->set_server_version(MM_VERSION);
  response->set_backend(registry_->store()->backend());
  return grpc::Status::OK;
}

grpc::Status RecordsService::WatchModels(
    grpc::ServerContext* context,
    const modelmanager::v1::WatchModelsRequest* request,
    grpc::ServerWriter<ModelEvent>* writer) {
  RecordStore* store = registry_->store();
  int64_t last = request->since_revision();
  if (last < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "since_revision must be >= 0");
  }
  auto send_changes = [&]() -> absl::Status {
    while (true) {
      ASSIGN_OR_RETURN(std::vector<ModelChange> changes,
                       store->ChangesSince(last, kWatchBatch));
      for (const ModelChange& change : changes) {
        ModelEvent event;
        event.set_type(EventType(change.type));
        event.set_revision(change.revision);
        ASSIGN_OR_RETURN(*event.mutable_model(), ToProto(change.model));
        if (!writer->Write(event)) {
          return absl::CancelledError("the watcher went away");
        }
        last = change.revision;
      }
      if (static_cast<int>(changes.size()) < kWatchBatch) {
        return absl::OkStatus();
      }
    }
  };
  absl::Status status = [&]() -> absl::Status {
    if (!request->has_since_revision()) {
      ASSIGN_OR_RETURN(last, store->CurrentRevision());
    } else {
      RETURN_IF_ERROR(send_changes());
    }
    ModelEvent bookmark;
    bookmark.set_type(ModelEvent::BOOKMARK);
    bookmark.set_revision(last);
    if (!writer->Write(bookmark)) {
      return absl::CancelledError("the watcher went away");
    }
    while (!context->IsCancelled() && !shutting_down_.load()) {
      store->WaitForChange(last, absl::Now() + kWatchPoll);
      if (context->IsCancelled() || shutting_down_.load()) break;
      RETURN_IF_ERROR(send_changes());
    }
    return absl::OkStatus();
  }();
  if (absl::IsCancelled(status)) return grpc::Status::CANCELLED;
  if (shutting_down_.load() && status.ok()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the server is shutting down; watch again from the "
                        "last revision you saw");
  }
  return ToGrpcStatus(status);
}

}  // namespace mm::records
