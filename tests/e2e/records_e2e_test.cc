// End to end: the real mm-records executable on SQLite and PostgreSQL,
// driven over its unix socket; its shutdown on SIGTERM; and its survival
// of a PostgreSQL outage.
#include <signal.h>

#include "absl/strings/str_cat.h"
#include "common/client.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "modelmanager/v1/records.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/testing/child_service.h"
#include "tests/testing/http_get.h"
#include "tests/testing/postgres_cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace mm {
namespace {

using ::mm::testing::PostgresCluster;
using ::mm::testing::StatusIs;
using ::mm::testing::Subprocess;
using ::mm::testing::TempDir;
using nlohmann::json;
using ::testing::HasSubstr;

json VaeJson(int n) {
  return {{"hash", "md5:a0cd925fc063f98dbf029eee315060c3"},
          {"path", absl::StrCat("/models/vae", n, ".safetensors")},
          {"file_size", 10},
          {"name", absl::StrCat("vae ", n)},
          {"source", "/downloads/vae.safetensors"},
          {"source_type", "path"},
          {"type", "vae"},
          {"format", "checkpoint"},
          {"base", "sd-1"}};
}

// A running mm-records and a stub connected to it.
class RecordsServer {
 public:
  static absl::StatusOr<std::unique_ptr<RecordsServer>> Start(
      const std::filesystem::path& dir, const std::string& db,
      const std::vector<std::string>& extra_args = {}) {
    auto server = std::make_unique<RecordsServer>();
    server->address_ = "unix:" + (dir / "records.sock").string();
    server->log_ = dir / "records.log";
    std::vector<std::string> args = {
        MM_RECORDS_BIN,      "--listen", server->address_,   "--db", db,
        "--health-interval", "200ms",    "--shutdown-grace", "5s"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    auto process = Subprocess::Start(args, server->log_);
    if (!process.ok()) return process.status();
    server->process_ = std::move(*process);
    auto channel = MakeChannel(server->address_, {});
    if (!channel.ok()) return channel.status();
    server->channel_ = *channel;
    server->stub_ = modelmanager::v1::ModelRecords::NewStub(*channel);
    RETURN_IF_ERROR(server->WaitServing(absl::Seconds(60)));
    return server;
  }

  absl::Status WaitServing(absl::Duration timeout) {
    return testing::WaitForChildServing(
        *process_, *channel_, "modelmanager.v1.ModelRecords", log_, timeout);
  }

  absl::StatusOr<modelmanager::v1::Model> Create(const json& config) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(20));
    modelmanager::v1::CreateModelRequest request;
    request.set_config_json(config.dump());
    modelmanager::v1::Model response;
    absl::Status status =
        FromGrpcStatus(stub_->CreateModel(&context, request, &response));
    if (!status.ok()) return status;
    return response;
  }

  absl::StatusOr<modelmanager::v1::Model> Get(const std::string& key) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(20));
    modelmanager::v1::GetModelRequest request;
    request.set_key(key);
    modelmanager::v1::Model response;
    absl::Status status =
        FromGrpcStatus(stub_->GetModel(&context, request, &response));
    if (!status.ok()) return status;
    return response;
  }

  Subprocess& process() { return *process_; }
  grpc::Channel& channel() { return *channel_; }
  const std::filesystem::path& log() const { return log_; }

 private:
  std::string address_;
  std::filesystem::path log_;
  std::unique_ptr<Subprocess> process_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<modelmanager::v1::ModelRecords::Stub> stub_;
};

TEST(RecordsE2eTest, SqliteRecordsSurviveARestartAndSigtermExitsZero) {
  TempDir dir;
  std::string db = "sqlite:" + (dir.path() / "records.db").string();
  std::string key;
  {
    ASSERT_OK_AND_ASSIGN(auto server, RecordsServer::Start(dir.path(), db));
    ASSERT_OK_AND_ASSIGN(auto model, server->Create(VaeJson(1)));
    key = model.key();
    EXPECT_THAT(server->Create(VaeJson(1)),
                StatusIs(absl::StatusCode::kAlreadyExists));
    server->process().Signal(SIGTERM);
    ASSERT_OK_AND_ASSIGN(int code, server->process().Wait(absl::Seconds(30)));
    EXPECT_EQ(code, 0) << testing::ReadFile(server->log());
    EXPECT_FALSE(std::filesystem::exists(dir.path() / "records.sock"));
  }
  ASSERT_OK_AND_ASSIGN(auto server, RecordsServer::Start(dir.path(), db));
  ASSERT_OK_AND_ASSIGN(auto model, server->Get(key));
  EXPECT_EQ(model.name(), "vae 1");
  server->process().Signal(SIGINT);
  ASSERT_OK_AND_ASSIGN(int code, server->process().Wait(absl::Seconds(30)));
  EXPECT_EQ(code, 0);
}

TEST(RecordsE2eTest, MetricsListenExposesRpcCountsAndHealth) {
  TempDir dir;
  std::string db = "sqlite:" + (dir.path() / "records.db").string();
  ASSERT_OK_AND_ASSIGN(
      auto server, RecordsServer::Start(dir.path(), db,
                                        {"--metrics-listen", "127.0.0.1:0"}));
  // Logged before the gRPC server started, so before SERVING.
  std::string address = testing::LoggedMetricsAddress(server->log());
  ASSERT_THAT(address, ::testing::StartsWith("127.0.0.1:"))
      << testing::ReadFile(server->log());
  ASSERT_OK_AND_ASSIGN(auto model, server->Create(VaeJson(1)));
  EXPECT_THAT(server->Get("no-such-key"),
              StatusIs(absl::StatusCode::kNotFound));

  ASSERT_OK_AND_ASSIGN(
      auto scrape, testing::HttpGet(address, "/metrics", absl::Seconds(20)));
  EXPECT_EQ(scrape.status, 200);
  EXPECT_THAT(scrape.body,
              HasSubstr("mm_rpc_requests_total{method=\"modelmanager.v1."
                        "ModelRecords/CreateModel\",code=\"OK\"} 1\n"));
  EXPECT_THAT(scrape.body,
              HasSubstr("mm_rpc_requests_total{method=\"modelmanager.v1."
                        "ModelRecords/GetModel\",code=\"NOT_FOUND\"} 1\n"));
  EXPECT_THAT(scrape.body, HasSubstr("mm_serving 1\n"));
  // The store's database counts its failures in the same registry.
  EXPECT_THAT(scrape.body, HasSubstr("# TYPE mm_db_errors_total counter\n"));
  ASSERT_OK_AND_ASSIGN(
      auto health, testing::HttpGet(address, "/healthz", absl::Seconds(20)));
  EXPECT_EQ(health.status, 200);

  server->process().Signal(SIGTERM);
  ASSERT_OK_AND_ASSIGN(int code, server->process().Wait(absl::Seconds(30)));
  EXPECT_EQ(code, 0) << testing::ReadFile(server->log());
}

TEST(RecordsE2eTest, PostgresOutageGivesUnavailableThenRecovers) {
  absl::StatusOr<std::unique_ptr<PostgresCluster>> cluster =
      PostgresCluster::Start();
  if (!cluster.ok()) MM_SKIP_OR_FAIL_WITHOUT_POSTGRES(cluster.status());
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(std::string url, (*cluster)->CreateDatabase("e2e"));
  ASSERT_OK_AND_ASSIGN(auto server, RecordsServer::Start(dir.path(), url));
  ASSERT_OK(server->Create(VaeJson(1)).status());

  ASSERT_OK((*cluster)->Stop());
  EXPECT_THAT(server->Create(VaeJson(2)),
              StatusIs(absl::StatusCode::kUnavailable));
  // Health follows the database.
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  absl::Status health;
  do {
    health = CheckHealth(server->channel(), "", absl::Seconds(2));
  } while (health.ok() && absl::Now() < deadline);
  EXPECT_THAT(health, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(server->process().Running());

  ASSERT_OK((*cluster)->Restart());
  absl::StatusOr<modelmanager::v1::Model> created;
  deadline = absl::Now() + absl::Seconds(60);
  do {
    created = server->Create(VaeJson(2));
  } while (absl::IsUnavailable(created.status()) && absl::Now() < deadline);
  ASSERT_OK(created.status());
  EXPECT_OK(server->WaitServing(absl::Seconds(30)));
  server->process().Signal(SIGTERM);
  ASSERT_OK_AND_ASSIGN(int code, server->process().Wait(absl::Seconds(30)));
  EXPECT_EQ(code, 0) << testing::ReadFile(server->log());
}

TEST(RecordsE2eTest, TwoReplicasOnOnePostgresSeeEachOthersChanges) {
  absl::StatusOr<std::unique_ptr<PostgresCluster>> cluster =
      PostgresCluster::Start();
  if (!cluster.ok()) MM_SKIP_OR_FAIL_WITHOUT_POSTGRES(cluster.status());
  TempDir dir_a;
  TempDir dir_b;
  ASSERT_OK_AND_ASSIGN(std::string url, (*cluster)->CreateDatabase("replicas"));
  ASSERT_OK_AND_ASSIGN(auto a, RecordsServer::Start(dir_a.path(), url));
  ASSERT_OK_AND_ASSIGN(auto b, RecordsServer::Start(dir_b.path(), url));

  // A watcher on replica B sees a record created through replica A.
  auto stub_b = modelmanager::v1::ModelRecords::NewStub(
      std::shared_ptr<grpc::Channel>(&b->channel(), [](grpc::Channel*) {}));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(60));
  auto reader = stub_b->WatchModels(&context, {});
  modelmanager::v1::ModelEvent event;
  ASSERT_TRUE(reader->Read(&event));
  ASSERT_EQ(event.type(), modelmanager::v1::ModelEvent::BOOKMARK);
  ASSERT_OK_AND_ASSIGN(auto model, a->Create(VaeJson(7)));
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.type(), modelmanager::v1::ModelEvent::ADDED);
  EXPECT_EQ(event.model().key(), model.key());
  context.TryCancel();
  while (reader->Read(&event)) {
  }
  reader->Finish();
  ASSERT_OK_AND_ASSIGN(auto through_b, b->Get(model.key()));
  EXPECT_EQ(through_b.name(), "vae 7");
}

}  // namespace
}  // namespace mm
