#include "common/server.h"

#include <sys/stat.h>

#include <thread>

#include "absl/synchronization/notification.h"
#include "common/client.h"
#include "common/grpc_status.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "modelmanager/v1/records.grpc.pb.h"
#include "tests/testing/http_get.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace mm {
namespace {

using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::mm::testing::WriteFile;
using ::testing::HasSubstr;
using ::testing::Not;

// A service with one working rpc, enough to see what reaches handlers.
class VersionOnlyService final
    : public modelmanager::v1::ModelRecords::Service {
 public:
  grpc::Status GetVersion(
      grpc::ServerContext*, const modelmanager::v1::GetVersionRequest*,
      modelmanager::v1::GetVersionResponse* response) override {
    ++calls;
    response->set_server_version("test");
    return grpc::Status::OK;
  }
  std::atomic<int> calls{0};
};

absl::Status CallVersion(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = modelmanager::v1::ModelRecords::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  modelmanager::v1::GetVersionResponse response;
  return FromGrpcStatus(stub->GetVersion(&context, {}, &response));
}

TEST(ServiceHostTest, UnixSocketIsPrivateAndHealthFollowsSetServing) {
  TempDir dir;
  VersionOnlyService service;
  ServerOptions options;
  options.listen = "unix:" + (dir.path() / "s.sock").string();
  ASSERT_OK_AND_ASSIGN(auto host,
                       ServiceHost::Start(options, {&service}, {"svc.A"}));
  struct stat st;
  ASSERT_EQ(::stat((dir.path() / "s.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);

  ASSERT_OK_AND_ASSIGN(auto channel, MakeChannel(host->address(), {}));
  EXPECT_THAT(CheckHealth(*channel, "", absl::Seconds(10)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("NOT_SERVING")));
  host->SetServing(true);
  EXPECT_OK(CheckHealth(*channel, "", absl::Seconds(10)));
  EXPECT_OK(CheckHealth(*channel, "svc.A", absl::Seconds(10)));
  EXPECT_OK(CallVersion(channel));
  host->Shutdown(absl::Seconds(1));
  EXPECT_THAT(CheckHealth(*channel, "", absl::Seconds(2)),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST(WaitForServingTest, FollowsTheHealthWatchUntilServing) {
  TempDir dir;
  VersionOnlyService service;
  ServerOptions options;
  options.listen = "unix:" + (dir.path() / "s.sock").string();
  ASSERT_OK_AND_ASSIGN(auto host,
                       ServiceHost::Start(options, {&service}, {"svc.A"}));
  ASSERT_OK_AND_ASSIGN(auto channel, MakeChannel(host->address(), {}));
  // Not serving yet: the wait ends at its deadline, saying what it saw.
  EXPECT_THAT(WaitForServing(*channel, "svc.A", absl::Milliseconds(300)),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       HasSubstr("last: NOT_SERVING")));
  // Turned SERVING while a wait is on: the wait returns at once.
  absl::Notification waiting;
  std::thread turn_on([&] {
    waiting.WaitForNotification();
    host->SetServing(true);
  });
  waiting.Notify();
  EXPECT_OK(WaitForServing(*channel, "svc.A", absl::Seconds(30)));
  turn_on.join();
}

TEST(WaitForServingTest, WaitsForAServerThatIsNotListeningYet) {
  TempDir dir;
  std::string address = "unix:" + (dir.path() / "late.sock").string();
  ASSERT_OK_AND_ASSIGN(auto channel, MakeChannel(address, {}));
  EXPECT_THAT(WaitForServing(*channel, "", absl::Milliseconds(300)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  VersionOnlyService service;
  ServerOptions options;
  options.listen = address;
  std::unique_ptr<ServiceHost> host;
  std::thread start([&] {
    absl::StatusOr<std::unique_ptr<ServiceHost>> started =
        ServiceHost::Start(options, {&service}, {});
    ASSERT_OK(started.status());
    host = std::move(*started);
    host->SetServing(true);
  });
  EXPECT_OK(WaitForServing(*channel, "", absl::Seconds(30)));
  start.join();
}

TEST(ServiceHostTest, RefusesToReplaceANonSocketFile) {
  TempDir dir;
  WriteFile(dir.path() / "important.txt", "data");
  ServerOptions options;
  options.listen = "unix:" + (dir.path() / "important.txt").string();
  EXPECT_THAT(ServiceHost::Start(options, {}, {}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("is not a socket")));
  EXPECT_EQ(testing::ReadFile(dir.path() / "important.txt"), "data");
}

class TokenAuthTest : public ::testing::TestWithParam<bool> {};

TEST_P(TokenAuthTest, RpcsNeedTheTokenButHealthChecksDoNot) {
  bool use_unix = GetParam();
  TempDir dir;
  WriteFile(dir.path() / "token", "s3cret-token\n");
  WriteFile(dir.path() / "wrong", "guess");
  VersionOnlyService service;
  ServerOptions options;
  options.listen =
      use_unix ? "unix:" + (dir.path() / "s.sock").string() : "127.0.0.1:0";
  options.auth_token_file = (dir.path() / "token").string();
  ASSERT_OK_AND_ASSIGN(auto host, ServiceHost::Start(options, {&service}, {}));
  host->SetServing(true);

  ASSERT_OK_AND_ASSIGN(auto anonymous, MakeChannel(host->address(), {}));
  EXPECT_OK(CheckHealth(*anonymous, "", absl::Seconds(10)));

  ClientOptions good;
  good.token_file = (dir.path() / "token").string();
  ASSERT_OK_AND_ASSIGN(auto with_token, MakeChannel(host->address(), good));
  EXPECT_OK(CallVersion(with_token));
  EXPECT_OK(CheckHealth(*with_token, "", absl::Seconds(10)));

  ClientOptions bad;
  bad.token_file = (dir.path() / "wrong").string();
  ASSERT_OK_AND_ASSIGN(auto wrong_token, MakeChannel(host->address(), bad));
  EXPECT_THAT(
      CallVersion(wrong_token),
      StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("bearer token")));
  EXPECT_EQ(service.calls.load(), 1);
}

INSTANTIATE_TEST_SUITE_P(UnixAndTcp, TokenAuthTest, ::testing::Bool(),
                         [](const auto& info) {
                           return info.param ? "Unix" : "Tcp";
                         });

TEST(ServiceHostTest, TcpPortZeroPicksAFreePort) {
  ServerOptions options;
  options.listen = "127.0.0.1:0";
  ASSERT_OK_AND_ASSIGN(auto host, ServiceHost::Start(options, {}, {}));
  EXPECT_GT(host->port(), 0);
  host->SetServing(true);
  ASSERT_OK_AND_ASSIGN(auto channel, MakeChannel(host->address(), {}));
  EXPECT_OK(CheckHealth(*channel, "", absl::Seconds(10)));
}

// A self-signed certificate for localhost/127.0.0.1, made with the openssl
// command so the test carries no key material.
absl::Status MakeCertificate(const std::filesystem::path& dir,
                             const std::string& name) {
  auto result = testing::RunCommand(
      {"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
       "-keyout", (dir / (name + ".key")).string(), "-out",
       (dir / (name + ".pem")).string(), "-days", "1", "-subj", "/CN=localhost",
       "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"},
      absl::Seconds(60));
  if (!result.ok()) return result.status();
  if (result->exit_code != 0) {
    return absl::InternalError("openssl req failed: " + result->err);
  }
  return absl::OkStatus();
}

TEST(ServiceHostTest, MutualTlsRequiresAClientCertificate) {
  TempDir dir;
  ASSERT_OK(MakeCertificate(dir.path(), "server"));
  ASSERT_OK(MakeCertificate(dir.path(), "client"));
  VersionOnlyService service;
  ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.tls_cert = (dir.path() / "server.pem").string();
  options.tls_key = (dir.path() / "server.key").string();
  options.tls_client_ca = (dir.path() / "client.pem").string();
  ASSERT_OK_AND_ASSIGN(auto host, ServiceHost::Start(options, {&service}, {}));
  host->SetServing(true);

  ClientOptions with_cert;
  with_cert.tls_ca = (dir.path() / "server.pem").string();
  with_cert.tls_cert = (dir.path() / "client.pem").string();
  with_cert.tls_key = (dir.path() / "client.key").string();
  ASSERT_OK_AND_ASSIGN(auto good, MakeChannel(host->address(), with_cert));
  EXPECT_OK(CallVersion(good));

  ClientOptions without_cert;
  without_cert.tls_ca = (dir.path() / "server.pem").string();
  ASSERT_OK_AND_ASSIGN(auto bad, MakeChannel(host->address(), without_cert));
  EXPECT_THAT(CallVersion(bad), StatusIs(absl::StatusCode::kUnavailable));

  ASSERT_OK_AND_ASSIGN(auto plain, MakeChannel(host->address(), {}));
  EXPECT_THAT(CallVersion(plain), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(service.calls.load(), 1);
}

absl::Status CallGetModel(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = modelmanager::v1::ModelRecords::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  modelmanager::v1::Model response;
  return FromGrpcStatus(stub->GetModel(&context, {}, &response));
}

TEST(ServiceHostMetricsTest, CountsEveryRpcByMethodAndCode) {
  TempDir dir;
  VersionOnlyService service;
  ServerOptions options;
  options.listen = "unix:" + (dir.path() / "s.sock").string();
  ASSERT_OK_AND_ASSIGN(auto host, ServiceHost::Start(options, {&service}, {}));
  EXPECT_EQ(host->metrics_address(), "");  // no --metrics-listen: no HTTP
  ASSERT_OK_AND_ASSIGN(auto channel, MakeChannel(host->address(), {}));
  EXPECT_OK(CallVersion(channel));
  EXPECT_OK(CallVersion(channel));
  EXPECT_THAT(CallGetModel(channel),
              StatusIs(absl::StatusCode::kUnimplemented));

  // Counted before the status was sent, so already visible here.
  std::string text = host->metrics()->Render();
  EXPECT_THAT(text, HasSubstr("mm_rpc_requests_total{method=\"modelmanager."
                              "v1.ModelRecords/GetVersion\",code=\"OK\"} 2\n"));
  EXPECT_THAT(text,
              HasSubstr("mm_rpc_requests_total{method=\"modelmanager."
                        "v1.ModelRecords/GetModel\",code=\"UNIMPLEMENTED\"} "
                        "1\n"));
  EXPECT_THAT(text, HasSubstr("mm_rpc_duration_seconds_count{method=\""
                              "modelmanager.v1.ModelRecords/GetVersion\",code="
                              "\"OK\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("mm_rpc_duration_seconds_bucket{method=\""
                              "modelmanager.v1.ModelRecords/GetVersion\",code="
                              "\"OK\",le=\"+Inf\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("mm_serving 0\n"));
  host->SetServing(true);
  EXPECT_THAT(host->metrics()->Render(), HasSubstr("mm_serving 1\n"));
}

TEST(ServiceHostMetricsTest, ServesMetricsAndHealthzUntilShutdown) {
  TempDir dir;
  VersionOnlyService service;
  ServerOptions options;
  options.listen = "unix:" + (dir.path() / "s.sock").string();
  options.metrics_listen = "127.0.0.1:0";
  ASSERT_OK_AND_ASSIGN(auto host, ServiceHost::Start(options, {&service}, {}));
  std::string address = host->metrics_address();
  ASSERT_THAT(address, ::testing::StartsWith("127.0.0.1:"));

  ASSERT_OK_AND_ASSIGN(
      auto health, testing::HttpGet(address, "/healthz", absl::Seconds(10)));
  EXPECT_EQ(health.status, 503);
  host->SetServing(true);
  ASSERT_OK_AND_ASSIGN(
      health, testing::HttpGet(address, "/healthz", absl::Seconds(10)));
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "SERVING\n");

  ASSERT_OK_AND_ASSIGN(auto channel, MakeChannel(host->address(), {}));
  EXPECT_OK(CallVersion(channel));
  ASSERT_OK_AND_ASSIGN(
      auto scrape, testing::HttpGet(address, "/metrics", absl::Seconds(10)));
  EXPECT_EQ(scrape.status, 200);
  EXPECT_THAT(scrape.body,
              HasSubstr("mm_rpc_requests_total{method=\"modelmanager.v1."
                        "ModelRecords/GetVersion\",code=\"OK\"} 1\n"));
  EXPECT_THAT(scrape.body, HasSubstr("mm_rpc_in_flight{method=\"modelmanager."
                                     "v1.ModelRecords/GetVersion\"} 0\n"));

  host->Shutdown(absl::Seconds(1));
  EXPECT_THAT(testing::HttpGet(address, "/healthz", absl::Seconds(10)),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST(ServiceHostMetricsTest, ABusyMetricsPortFailsStart) {
  TempDir dir;
  ServerOptions options;
  options.listen = "unix:" + (dir.path() / "a.sock").string();
  options.metrics_listen = "127.0.0.1:0";
  ASSERT_OK_AND_ASSIGN(auto first, ServiceHost::Start(options, {}, {}));
  options.listen = "unix:" + (dir.path() / "b.sock").string();
  options.metrics_listen = first->metrics_address();
  EXPECT_THAT(ServiceHost::Start(options, {}, {}).status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("--metrics-listen " + options.metrics_listen +
                                 ": cannot bind")));
}

TEST(ServerOptionsTest, MetricsListenIsAFlagAndAnEnvironmentVariable) {
  ASSERT_OK_AND_ASSIGN(
      Config defaults,
      Config::Load(ServerOptionSpecs("unix:x.sock"), {},
                   [](const std::string&) { return std::nullopt; }));
  ASSERT_OK_AND_ASSIGN(ServerOptions off, ServerOptionsFromConfig(defaults));
  EXPECT_EQ(off.metrics_listen, "");
  ASSERT_OK_AND_ASSIGN(
      Config from_env,
      Config::Load(ServerOptionSpecs("unix:x.sock"), {},
                   [](const std::string& name) -> std::optional<std::string> {
                     if (name == "MM_METRICS_LISTEN") return "0.0.0.0:9090";
                     return std::nullopt;
                   }));
  ASSERT_OK_AND_ASSIGN(ServerOptions on, ServerOptionsFromConfig(from_env));
  EXPECT_EQ(on.metrics_listen, "0.0.0.0:9090");
  ASSERT_OK_AND_ASSIGN(
      Config from_flag,
      Config::Load(ServerOptionSpecs("unix:x.sock"),
                   {"--metrics-listen", "127.0.0.1:9091"},
                   [](const std::string&) { return std::nullopt; }));
  ASSERT_OK_AND_ASSIGN(on, ServerOptionsFromConfig(from_flag));
  EXPECT_EQ(on.metrics_listen, "127.0.0.1:9091");
}

// Replicas behind one "ipv4:A,B" target (how the installer and the loader
// reach several records or downloader replicas): with TLS and a token, the
// calls are spread over both, and they go on through the survivor when one
// replica stops.
TEST(MakeChannelTest, AMultiAddressTargetSpreadsCallsAndSurvivesAReplica) {
  TempDir dir;
  ASSERT_OK(MakeCertificate(dir.path(), "server"));
  WriteFile(dir.path() / "token", "s3cret\n");
  ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.tls_cert = (dir.path() / "server.pem").string();
  options.tls_key = (dir.path() / "server.key").string();
  options.auth_token_file = (dir.path() / "token").string();
  VersionOnlyService first_service;
  VersionOnlyService second_service;
  ASSERT_OK_AND_ASSIGN(auto first,
                       ServiceHost::Start(options, {&first_service}, {}));
  ASSERT_OK_AND_ASSIGN(auto second,
                       ServiceHost::Start(options, {&second_service}, {}));
  first->SetServing(true);
  second->SetServing(true);
  const std::string target =
      "ipv4:" + first->address() + "," + second->address();
  EXPECT_TRUE(IsMultiAddressTarget(target));
  EXPECT_FALSE(IsMultiAddressTarget("ipv4:" + first->address()));
  EXPECT_FALSE(IsMultiAddressTarget(first->address()));

  ClientOptions client;
  client.tls_ca = (dir.path() / "server.pem").string();
  client.token_file = (dir.path() / "token").string();
  ASSERT_OK_AND_ASSIGN(auto channel, MakeChannel(target, client));
  for (int i = 0; i < 20; ++i) ASSERT_OK(CallVersion(channel));
  // round_robin takes turns over the connected addresses; pick_first would
  // have sent all 20 to one of them.
  EXPECT_GT(first_service.calls.load(), 0);
  EXPECT_GT(second_service.calls.load(), 0);
  EXPECT_EQ(first_service.calls.load() + second_service.calls.load(), 20);

  first->Shutdown(absl::ZeroDuration());
  const int second_before = second_service.calls.load();
  // A call that raced the shutdown may fail; the following ones find the
  // survivor.
  int ok = 0;
  for (int i = 0; i < 20; ++i) ok += CallVersion(channel).ok() ? 1 : 0;
  EXPECT_GE(ok, 19);
  EXPECT_EQ(second_service.calls.load() - second_before, ok);
}

TEST(ServerOptionsTest, TlsFlagsMustComeTogether) {
  ASSERT_OK_AND_ASSIGN(
      Config config,
      Config::Load(ServerOptionSpecs("unix:x.sock"), {"--tls-cert", "c.pem"},
                   [](const std::string&) { return std::nullopt; }));
  EXPECT_THAT(
      ServerOptionsFromConfig(config),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--tls-key")));
}

}  // namespace
}  // namespace mm
