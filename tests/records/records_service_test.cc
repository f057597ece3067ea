// The records service through a real gRPC stub on an in-process server
// (unix socket), over a real SQLite file.
#include "services/records/records_service.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/client.h"
#include "common/grpc_status.h"
#include "common/server.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/record_json.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::records {
namespace {

using ::mm::testing::StatusIs;
using modelmanager::v1::ModelEvent;
using nlohmann::json;
using ::testing::HasSubstr;

// Every call and stream of these tests ends within this, so a bug fails the
// test instead of hanging it until CTest's timeout.
constexpr absl::Duration kCallTimeout = absl::Seconds(30);
void Bound(grpc::ClientContext& context) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
}

json LoraJson(const std::string& name, const std::string& path) {
  return {{"hash", "md5:a0cd925fc063f98dbf029eee315060c3"},
          {"path", path},
          {"file_size", 10},
          {"name", name},
          {"source", path},
          {"source_type", "path"},
          {"type", "lora"},
          {"format", "lycoris"},
          {"base", "sdxl"},
          {"trigger_phrases", {"pixel art"}},
          {"default_settings", {{"weight", 0.75}}}};
}

class RecordsServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(
        store_, OpenRecordStore("sqlite:" + (dir_.path() / "r.db").string()));
    registry_ = std::make_unique<ModelRegistry>(store_.get());
    service_ = std::make_unique<RecordsService>(registry_.get());
    ServerOptions options;
    options.listen = "unix:" + (dir_.path() / "records.sock").string();
    ASSERT_OK_AND_ASSIGN(host_, ServiceHost::Start(options, {service_.get()},
                                                   {kRecordsServiceName}));
    host_->AddShutdownHook([this] { service_->Shutdown(); });
    host_->SetServing(true);
    ASSERT_OK_AND_ASSIGN(auto channel, MakeChannel(host_->address(), {}));
    stub_ = modelmanager::v1::ModelRecords::NewStub(channel);
  }

  void TearDown() override {
    if (host_) host_->Shutdown(absl::Seconds(5));
  }

  absl::StatusOr<modelmanager::v1::Model> Create(const json& config) {
    grpc::ClientContext context;
    Bound(context);
    modelmanager::v1::CreateModelRequest request;
    request.set_config_json(config.dump());
    modelmanager::v1::Model response;
    RETURN_IF_ERROR(
        FromGrpcStatus(stub_->CreateModel(&context, request, &response)));
    return response;
  }

  testing::TempDir dir_;
  std::unique_ptr<RecordStore> store_;
  std::unique_ptr<ModelRegistry> registry_;
  std::unique_ptr<RecordsService> service_;
  std::unique_ptr<ServiceHost> host_;
  std::unique_ptr<modelmanager::v1::ModelRecords::Stub> stub_;
};

TEST_F(RecordsServiceTest, CreateFromJsonReturnsTheReferenceShape) {
  ASSERT_OK_AND_ASSIGN(auto model,
                       Create(LoraJson("pixel", "/m/p.safetensors")));
  EXPECT_EQ(model.key().size(), 32u);
  EXPECT_EQ(model.base(), "sdxl");
  EXPECT_EQ(model.trigger_phrases(0), "pixel art");
  EXPECT_DOUBLE_EQ(model.lora_default_settings().weight(), 0.75);
  EXPECT_EQ(model.etag(), std::to_string(model.revision()));
  EXPECT_GT(model.create_time().seconds(), 1700000000);
  json as_json = ModelToConfigJson(model);
  EXPECT_EQ(as_json["default_settings"], json({{"weight", 0.75}}));
  EXPECT_EQ(as_json["type"], "lora");
}

TEST_F(RecordsServiceTest, CurrentReleaseFieldsTravelTyped) {
  // Fields of InvokeAI 6.x records (spec §2) have a place in the typed
  // message, so a record carrying them can be read back at all.
  json vae = LoraJson("vae", "/m/vae.safetensors");
  vae["type"] = "vae";
  vae["format"] = "checkpoint";
  vae.erase("trigger_phrases");
  vae.erase("default_settings");
  vae["cpu_only"] = true;
  vae["source_url"] = "https://civitai.com/models/276";
  ASSERT_OK_AND_ASSIGN(auto typed_vae, Create(vae));
  EXPECT_TRUE(typed_vae.cpu_only());
  EXPECT_EQ(typed_vae.source_url(), "https://civitai.com/models/276");

  json main = LoraJson("main", "/m/main.safetensors");
  main["type"] = "main";
  main["format"] = "checkpoint";
  main.erase("trigger_phrases");
  main["default_settings"] = {{"cpu_only", false}, {"fp8_storage", true}};
  ASSERT_OK_AND_ASSIGN(auto typed_main, Create(main));
  EXPECT_FALSE(typed_main.main_default_settings().cpu_only());
  EXPECT_TRUE(typed_main.main_default_settings().fp8_storage());
  EXPECT_EQ(ModelToConfigJson(typed_main)["default_settings"],
            json({{"cpu_only", false}, {"fp8_storage", true}}));

  for (const char* type : {"controlnet", "control_lora"}) {
    json control = LoraJson(type, absl::StrCat("/m/", type, ".safetensors"));
    control["type"] = type;
    control["format"] =
        std::string(type) == "controlnet" ? "checkpoint" : "lycoris";
    control["base"] = "flux";
    if (std::string(type) == "controlnet") control.erase("trigger_phrases");
    control["default_settings"] = {{"preprocessor", "canny_image_processor"},
                                   {"fp8_storage", true}};
    ASSERT_OK_AND_ASSIGN(auto typed_control, Create(control));
    EXPECT_EQ(typed_control.control_adapter_default_settings().preprocessor(),
              "canny_image_processor")
        << type;
    EXPECT_TRUE(typed_control.control_adapter_default_settings().fp8_storage())
        << type;
    // To JSON and back: nothing is lost on the way.
    auto stored = typed_control;
    stored.clear_revision();
    stored.clear_etag();
    stored.clear_create_time();
    stored.clear_update_time();
    ASSERT_OK_AND_ASSIGN(auto back,
                         ConfigJsonToModel(ModelToConfigJson(typed_control)));
    EXPECT_TRUE(
        google::protobuf::util::MessageDifferencer::Equals(back, stored))
        << type;
  }
}

TEST_F(RecordsServiceTest, CreateFromTypedMessage) {
  ASSERT_OK_AND_ASSIGN(
      auto typed, ConfigJsonToModel(LoraJson("typed", "/m/t.safetensors")));
  grpc::ClientContext context;
  Bound(context);
  modelmanager::v1::CreateModelRequest request;
  *request.mutable_model() = typed;
  modelmanager::v1::Model response;
  ASSERT_TRUE(stub_->CreateModel(&context, request, &response).ok());
  EXPECT_EQ(response.name(), "typed");
  EXPECT_EQ(response.key().size(), 32u);
}

TEST_F(RecordsServiceTest, ErrorsTravelAsStatusCodes) {
  EXPECT_THAT(Create(json::object()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK(Create(LoraJson("a", "/m/a.safetensors")).status());
  EXPECT_THAT(Create(LoraJson("b", "/m/a.safetensors")),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("path")));
  grpc::ClientContext context;
  Bound(context);
  modelmanager::v1::GetModelRequest get;
  get.set_key("missing");
  modelmanager::v1::Model out;
  EXPECT_THAT(FromGrpcStatus(stub_->GetModel(&context, get, &out)),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
  grpc::ClientContext bad_json_context;
  Bound(bad_json_context);
  modelmanager::v1::CreateModelRequest bad_json;
  bad_json.set_config_json("{not json");
  EXPECT_THAT(
      FromGrpcStatus(stub_->CreateModel(&bad_json_context, bad_json, &out)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("config_json")));
}

TEST_F(RecordsServiceTest, UpdateWithMaskAndStaleEtag) {
  ASSERT_OK_AND_ASSIGN(auto model, Create(LoraJson("old", "/m/u.safetensors")));
  {
    grpc::ClientContext context;
    Bound(context);
    modelmanager::v1::UpdateModelRequest request;
    request.set_key(model.key());
    request.mutable_model()->set_name("new");
    request.mutable_update_mask()->add_paths("name");
    request.set_etag(model.etag());
    modelmanager::v1::Model updated;
    ASSERT_TRUE(stub_->UpdateModel(&context, request, &updated).ok());
    EXPECT_EQ(updated.name(), "new");
    EXPECT_EQ(updated.trigger_phrases(0), "pixel art");
  }
  grpc::ClientContext context;
  Bound(context);
  modelmanager::v1::UpdateModelRequest stale;
  stale.set_key(model.key());
  stale.set_changes_json(R"({"name": "newer"})");
  stale.set_etag(model.etag());
  modelmanager::v1::Model out;
  EXPECT_THAT(FromGrpcStatus(stub_->UpdateModel(&context, stale, &out)),
              StatusIs(absl::StatusCode::kAborted));
  grpc::ClientContext mask_context;
  Bound(mask_context);
  modelmanager::v1::UpdateModelRequest bad_mask;
  bad_mask.set_key(model.key());
  bad_mask.mutable_update_mask()->add_paths("colour");
  EXPECT_THAT(
      FromGrpcStatus(stub_->UpdateModel(&mask_context, bad_mask, &out)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("colour")));
}

TEST_F(RecordsServiceTest, WatchStreamsBookmarkThenChanges) {
  grpc::ClientContext context;
  Bound(context);
  modelmanager::v1::WatchModelsRequest request;
  auto reader = stub_->WatchModels(&context, request);
  ModelEvent event;
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.type(), ModelEvent::BOOKMARK);
  int64_t bookmark = event.revision();

  ASSERT_OK_AND_ASSIGN(auto model, Create(LoraJson("w", "/m/w.safetensors")));
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.type(), ModelEvent::ADDED);
  EXPECT_EQ(event.model().key(), model.key());
  EXPECT_GT(event.revision(), bookmark);

  grpc::ClientContext delete_context;
  Bound(delete_context);
  modelmanager::v1::DeleteModelRequest del;
  del.set_key(model.key());
  modelmanager::v1::DeleteModelResponse deleted;
  ASSERT_TRUE(stub_->DeleteModel(&delete_context, del, &deleted).ok());
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.type(), ModelEvent::DELETED);
  EXPECT_EQ(event.revision(), deleted.revision());
  context.TryCancel();
  while (reader->Read(&event)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);

  // Resuming from the bookmark replays both changes before the new bookmark.
  grpc::ClientContext resume_context;
  Bound(resume_context);
  request.set_since_revision(bookmark);
  auto resumed = stub_->WatchModels(&resume_context, request);
  std::vector<ModelEvent::Type> types;
  while (resumed->Read(&event)) {
    types.push_back(event.type());
    if (event.type() == ModelEvent::BOOKMARK) break;
  }
  EXPECT_THAT(types,
              ::testing::ElementsAre(ModelEvent::ADDED, ModelEvent::DELETED,
                                     ModelEvent::BOOKMARK));
  resume_context.TryCancel();
  while (resumed->Read(&event)) {
  }
  resumed->Finish();
}

TEST_F(RecordsServiceTest, ShutdownEndsWatchStreamsPromptly) {
  grpc::ClientContext context;
  Bound(context);
  auto reader = stub_->WatchModels(&context, {});
  ModelEvent event;
  ASSERT_TRUE(reader->Read(&event));
  absl::Time start = absl::Now();
  std::thread stopper([&] { host_->Shutdown(absl::Seconds(30)); });
  while (reader->Read(&event)) {
  }
  grpc::Status status = reader->Finish();
  stopper.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  // Well inside the 30 s grace: the stream was ended, not cancelled.
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
  host_.reset();
}

TEST_F(RecordsServiceTest, ListPagesAndExists) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_OK(Create(LoraJson("m" + std::to_string(i),
                              "/m/" + std::to_string(i) + ".safetensors"))
                  .status());
  }
  modelmanager::v1::ListModelsRequest request;
  request.set_page_size(2);
  request.set_order_by(modelmanager::v1::MODEL_ORDER_NAME);
  std::vector<std::string> names;
  while (true) {
    grpc::ClientContext context;
    Bound(context);
    modelmanager::v1::ListModelsResponse response;
    ASSERT_TRUE(stub_->ListModels(&context, request, &response).ok());
    for (const auto& m : response.models()) names.push_back(m.name());
    if (response.next_page_token().empty()) break;
    request.set_page_token(response.next_page_token());
  }
  EXPECT_THAT(names, ::testing::ElementsAre("m0", "m1", "m2", "m3", "m4"));
  grpc::ClientContext context;
  Bound(context);
  modelmanager::v1::ModelExistsRequest exists;
  exists.set_key("nope");
  modelmanager::v1::ModelExistsResponse answer;
  ASSERT_TRUE(stub_->ModelExists(&context, exists, &answer).ok());
  EXPECT_FALSE(answer.exists());
}

// The paging policy every List rpc shares (common/paging.h).
TEST_F(RecordsServiceTest, ListPageSizeIsCappedAndNegativeIsRefused) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK(Create(LoraJson("p" + std::to_string(i),
                              "/p/" + std::to_string(i) + ".safetensors"))
                  .status());
  }
  modelmanager::v1::ListModelsRequest request;
  request.set_page_size(1'000'000);
  {
    grpc::ClientContext context;
    Bound(context);
    modelmanager::v1::ListModelsResponse response;
    ASSERT_TRUE(stub_->ListModels(&context, request, &response).ok());
    EXPECT_EQ(response.models_size(), 3);
    EXPECT_TRUE(response.next_page_token().empty());
  }
  request.set_page_size(-1);
  grpc::ClientContext context;
  Bound(context);
  modelmanager::v1::ListModelsResponse response;
  grpc::Status status = stub_->ListModels(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              ::testing::HasSubstr("page_size must not be negative"));
}

}  // namespace
}  // namespace mm::records
