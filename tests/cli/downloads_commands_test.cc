#include "cli/downloads_commands.h"

#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/server.h"
#include "gmock/gmock.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/fake_downloader_service.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::cli {
namespace {

namespace v1 = modelmanager::v1;
using ::mm::testing::FakeDownloaderService;
using ::mm::testing::FakeWatchSession;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::mm::testing::WriteFile;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr char kToken[] = "hf_secret_token_1234";

ParsedArgs Args(const std::vector<std::string>& args) {
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return parsed.value_or(ParsedArgs{});
}

// The fake's jobs: FakeDownloadJob describes what each state carries.
v1::DownloadJob Job(const std::string& id, v1::DownloadState state,
                    int64_t revision = 1, int64_t bytes = 0,
                    int64_t total = 0) {
  return ::mm::testing::FakeDownloadJob(id, state, revision, bytes, total);
}

v1::DownloadJob Running(const std::string& id, int64_t revision, int64_t bytes,
                        int64_t total) {
  v1::DownloadJob job =
      Job(id, v1::DOWNLOAD_STATE_RUNNING, revision, bytes, total);
  job.set_bytes_per_second(1024 * 1024);
  return job;
}

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

class DownloadsCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake_.set_max_page_size(2);
    grpc::ServerBuilder builder;
    builder.RegisterService(&fake_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::Downloader::NewStub(
        server_->InProcessChannel(grpc::ChannelArguments()));
    WriteFile(temp_.path() / "token", absl::StrCat(kToken, "\n"));
  }

  void TearDown() override { server_->Shutdown(); }

  absl::Status Run(const std::vector<std::string>& args, bool json = false,
                   bool terminal = false) {
    out_.str("");
    CommandIo io;
    io.out = &out_;
    io.json = json;
    io.terminal = terminal;
    io.timeout = absl::Seconds(10);
    io.working_dir = "/work/dir";
    io.reconnect_attempts = 3;
    io.reconnect_backoff = absl::Milliseconds(1);
    return RunDownloadsCommand(Args(args), *stub_, io);
  }

  std::string TokenFile() const { return (temp_.path() / "token").string(); }

  TempDir temp_;
  FakeDownloaderService fake_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Downloader::Stub> stub_;
  std::ostringstream out_;
};

TEST_F(DownloadsCommandTest, DownloadSendsTokenButNeverPrintsIt) {
  for (bool json : {false, true}) {
    EXPECT_OK(Run({"download", "https://h/m", "--dest", "sub", "--token-file",
                   TokenFile()},
                  json));
    EXPECT_THAT(out_.str(), Not(HasSubstr(kToken)));
    EXPECT_THAT(out_.str(), HasSubstr("new1"));
  }
  std::vector<v1::CreateDownloadRequest> requests = fake_.create_requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].access_token(), kToken);
  EXPECT_EQ(requests[0].dest_dir(), "/work/dir/sub");
}

TEST_F(DownloadsCommandTest, DownloadPrintsTheJobIdFirst) {
  EXPECT_OK(Run({"download", "https://h/m", "--no-start"}));
  std::vector<std::string> lines = Lines(out_.str());
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines[0], "id:           new1");
  EXPECT_THAT(out_.str(), HasSubstr("state:        waiting"));
  EXPECT_THAT(out_.str(), HasSubstr("source:       https://h/m"));

  EXPECT_OK(Run({"download", "https://h/m"}, /*json=*/true));
  nlohmann::json job = nlohmann::json::parse(out_.str());
  EXPECT_EQ(job["id"], "new1");
  EXPECT_EQ(job["state"], "DOWNLOAD_STATE_QUEUED");
  EXPECT_EQ(job["final_path"], "");
  EXPECT_EQ(job["has_access_token"], false);
}

TEST_F(DownloadsCommandTest, DownloadWaitFollowsToFailure) {
  fake_.ScriptWatch("new1", {{Job("new1", v1::DOWNLOAD_STATE_QUEUED, 1),
                              Running("new1", 2, 10, 100),
                              Job("new1", v1::DOWNLOAD_STATE_FAILED, 3)}});
  EXPECT_THAT(Run({"download", "https://h/m", "--wait"}),
              StatusIs(absl::StatusCode::kNotFound,
                       "download new1 failed: HTTPError(NOT FOUND): 404 from "
                       "example.com"));
  EXPECT_THAT(Lines(out_.str()),
              ElementsAre("new1 queued", "new1 running",
                          "new1 failed HTTPError(NOT FOUND): 404 from "
                          "example.com"));
}

TEST_F(DownloadsCommandTest, ListPagesFiltersAndPrintsATable) {
  fake_.AddJob(Running("j1", 1, 50, 100));
  fake_.AddJob(Job("j2", v1::DOWNLOAD_STATE_SUCCEEDED, 1, 100, 100));
  fake_.AddJob(Job("j3", v1::DOWNLOAD_STATE_QUEUED));
  fake_.AddJob(Running("j4", 1, 3000, 0));
  fake_.AddJob(Job("j5", v1::DOWNLOAD_STATE_FAILED));

  EXPECT_OK(Run({"downloads", "list"}));
  // Five jobs at two a page.
  EXPECT_EQ(fake_.list_requests().size(), 3u);
  std::vector<std::string> lines = Lines(out_.str());
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_EQ(
      lines[0],
      "ID  STATE      PROGRESS  BYTES/TOTAL  RATE       PRIORITY  SOURCE");
  EXPECT_EQ(lines[1],
            "j1  running    50%       50 B/100 B   1.0 MiB/s  10        "
            "https://example.com/j1.safetensors");
  EXPECT_THAT(lines[2],
              HasSubstr("j2  succeeded  100%      100 B/100 B  -    "));
  EXPECT_THAT(lines[4], HasSubstr("j4  running    -         2.9 KiB"));

  EXPECT_OK(Run({"downloads", "list", "--state", "running"}, /*json=*/true));
  EXPECT_THAT(fake_.list_requests().back().states(),
              ElementsAre(v1::DOWNLOAD_STATE_RUNNING));
  nlohmann::json list = nlohmann::json::parse(out_.str());
  ASSERT_TRUE(list.is_array());
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["id"], "j1");
  EXPECT_EQ(list[1]["id"], "j4");
  EXPECT_EQ(list[0]["state"], "DOWNLOAD_STATE_RUNNING");
  EXPECT_EQ(list[0]["total_bytes"], "100");

  EXPECT_OK(Run({"downloads", "list", "--state", "paused"}));
  EXPECT_EQ(out_.str(), "No downloads.\n");
}

TEST_F(DownloadsCommandTest, GetPrintsFieldsOrJson) {
  v1::DownloadJob job = Job("j5", v1::DOWNLOAD_STATE_FAILED, 7, 10, 40);
  job.mutable_times()->mutable_create_time()->set_seconds(1767225600);
  job.set_destination("/models");
  v1::PartProgress* part = job.add_parts();
  part->set_name("unet/model.safetensors");
  part->set_bytes(10);
  part->set_total_bytes(20);
  part->set_done(true);
  job.add_parts()->set_name("vae/model.safetensors");
  fake_.AddJob(job);

  EXPECT_OK(Run({"downloads", "get", "j5"}));
  std::string text = out_.str();
  EXPECT_THAT(Lines(text)[0], "id:           j5");
  EXPECT_THAT(text, HasSubstr("state:        failed\n"));
  EXPECT_THAT(text, HasSubstr("final_path:   -\n"));
  EXPECT_THAT(text, HasSubstr("progress:     10 B/40 B (25%)\n"));
  EXPECT_THAT(text,
              HasSubstr("error:        NOT_FOUND: HTTPError(NOT FOUND): 404 "
                        "from example.com\n"));
  EXPECT_THAT(text, HasSubstr("created:      2026-01-01T00:00:00Z\n"));
  EXPECT_THAT(text, HasSubstr("ended:        -\n"));
  EXPECT_THAT(text, HasSubstr("parts:        1/2 done\n"));
  EXPECT_THAT(
      text, HasSubstr("part 1:       unet/model.safetensors 10 B/20 B done\n"));
  EXPECT_THAT(text, HasSubstr("part 2:       vae/model.safetensors 0 B\n"));

  EXPECT_OK(Run({"downloads", "get", "j5"}, /*json=*/true));
  nlohmann::json object = nlohmann::json::parse(out_.str());
  EXPECT_EQ(object["id"], "j5");
  EXPECT_EQ(object["error"]["type"], "HTTPError(NOT FOUND)");
  EXPECT_EQ(object["parts"].size(), 2u);
  EXPECT_EQ(object["times"]["create_time"], "2026-01-01T00:00:00Z");

  EXPECT_THAT(Run({"downloads", "get", "nope"}),
              StatusIs(absl::StatusCode::kNotFound, "no download 'nope'"));
  EXPECT_THAT(Run({"downloads", "get"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "mm downloads get needs a job ID"));
}

TEST_F(DownloadsCommandTest, GetSeveralIsAJsonArray) {
  fake_.AddJob(Job("a", v1::DOWNLOAD_STATE_QUEUED));
  fake_.AddJob(Job("b", v1::DOWNLOAD_STATE_QUEUED));
  EXPECT_OK(Run({"downloads", "get", "a", "b"}, /*json=*/true));
  nlohmann::json list = nlohmann::json::parse(out_.str());
  ASSERT_TRUE(list.is_array());
  EXPECT_EQ(list.size(), 2u);
}

TEST_F(DownloadsCommandTest, WaitReturnsTheFailedJobsCode) {
  fake_.AddJob(Job("ok", v1::DOWNLOAD_STATE_SUCCEEDED));
  fake_.AddJob(Job("bad", v1::DOWNLOAD_STATE_FAILED));
  EXPECT_THAT(Run({"downloads", "wait", "ok", "bad"}),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("download bad failed: HTTPError(NOT FOUND)")));
  EXPECT_THAT(Lines(out_.str()),
              ElementsAre("ok succeeded /models/ok.safetensors",
                          "bad failed HTTPError(NOT FOUND): 404 from "
                          "example.com"));
  EXPECT_OK(Run({"downloads", "wait", "ok"}));
}

TEST_F(DownloadsCommandTest, WaitHasADeadlineOnlyWithTimeout) {
  fake_.AddJob(Job("ok", v1::DOWNLOAD_STATE_SUCCEEDED));
  auto now = std::chrono::system_clock::now();
  EXPECT_OK(Run({"downloads", "wait", "ok", "--timeout", "5s"}));
  EXPECT_OK(Run({"downloads", "wait", "ok"}));
  std::vector<std::chrono::system_clock::time_point> deadlines =
      fake_.wait_deadlines();
  ASSERT_EQ(deadlines.size(), 2u);
  // With --timeout the io's resolved timeout (10 s in Run) is the deadline;
  // without, there is none (gRPC reports the infinite future).
  EXPECT_LT(deadlines[0], now + std::chrono::seconds(60));
  EXPECT_GT(deadlines[1], now + std::chrono::hours(24 * 365));
}

TEST_F(DownloadsCommandTest, ActionsById) {
  fake_.AddJob(Job("a", v1::DOWNLOAD_STATE_WAITING));
  fake_.AddJob(Running("b", 1, 0, 0));
  EXPECT_OK(Run({"downloads", "start", "a"}));
  EXPECT_EQ(out_.str(), "a queued\n");
  EXPECT_OK(Run({"downloads", "pause", "a", "b"}));
  EXPECT_EQ(out_.str(), "a paused\nb paused\n");
  EXPECT_OK(Run({"downloads", "resume", "b", "--token-file", TokenFile()}));
  EXPECT_EQ(out_.str(), "b queued\n");
  EXPECT_OK(Run({"downloads", "cancel", "a"}, /*json=*/true));
  nlohmann::json list = nlohmann::json::parse(out_.str());
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["state"], "DOWNLOAD_STATE_CANCELLED");
  EXPECT_THAT(fake_.actions(), ElementsAre("start a", "pause a", "pause b",
                                           "resume b", "cancel a"));
  EXPECT_THAT(fake_.resume_tokens(), ElementsAre(kToken));
}

TEST_F(DownloadsCommandTest, ActionTriesEveryIdAndReportsTheFirstFailure) {
  fake_.AddJob(Job("done", v1::DOWNLOAD_STATE_SUCCEEDED));
  fake_.AddJob(Running("b", 1, 0, 0));
  EXPECT_THAT(Run({"downloads", "cancel", "missing", "done", "b"}),
              StatusIs(absl::StatusCode::kNotFound,
                       "cancel missing: no download 'missing' (and 1 more "
                       "failed)"));
  EXPECT_EQ(out_.str(), "b cancelled\n");
  EXPECT_THAT(fake_.actions(),
              ElementsAre("cancel missing", "cancel done", "cancel b"));
}

TEST_F(DownloadsCommandTest, AllIsOneBulkAction) {
  fake_.AddJob(Running("a", 1, 0, 0));
  fake_.AddJob(Job("b", v1::DOWNLOAD_STATE_QUEUED));
  EXPECT_OK(Run({"downloads", "pause", "--all"}));
  EXPECT_EQ(out_.str(), "a paused\n");
  EXPECT_OK(Run({"downloads", "resume", "--all"}));
  EXPECT_OK(Run({"downloads", "start", "--all"}));
  EXPECT_OK(Run({"downloads", "cancel", "--all"}));
  EXPECT_THAT(fake_.bulk_actions(),
              ElementsAre(v1::BulkDownloadActionRequest::PAUSE,
                          v1::BulkDownloadActionRequest::RESUME,
                          v1::BulkDownloadActionRequest::START,
                          v1::BulkDownloadActionRequest::CANCEL));
  EXPECT_THAT(fake_.actions(), IsEmpty());

  EXPECT_THAT(Run({"downloads", "pause", "a", "--all"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("IDs or --all, not both")));
  EXPECT_THAT(Run({"downloads", "pause"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("needs job IDs or --all")));
  EXPECT_THAT(
      Run({"downloads", "resume", "--all", "--token-file", TokenFile()}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("cannot carry a token")));
}

TEST_F(DownloadsCommandTest, Prune) {
  EXPECT_OK(Run({"downloads", "prune", "--before", "2026-01-02T03:04:05Z"}));
  EXPECT_EQ(out_.str(), "Pruned 3 finished downloads.\n");
  EXPECT_OK(Run({"downloads", "prune"}, /*json=*/true));
  EXPECT_EQ(nlohmann::json::parse(out_.str())["pruned"], "3");
  std::vector<v1::PruneDownloadsRequest> requests = fake_.prune_requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].ended_before().seconds(), 1767323045);
  EXPECT_FALSE(requests[1].has_ended_before());
}

TEST_F(DownloadsCommandTest, UnknownVerbIsAUsageError) {
  absl::Status status = Run({"downloads", "frob"});
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("unknown command 'mm downloads "
                                         "frob'")));
  EXPECT_TRUE(IsUsageError(status));
  EXPECT_THAT(Run({"downloads", "list", "x"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("takes no arguments, got 'x'")));
}

// The whole command through RunCli against a token-protected server on a
// unix socket: --token-file is the URL's token there, and the downloader's
// own bearer token comes from MM_TOKEN_FILE.
class DownloadsCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake_.set_max_page_size(2);
    WriteFile(temp_.path() / "service-token", "svc-token\n");
    WriteFile(temp_.path() / "hf-token", absl::StrCat(kToken, "\n"));
    ServerOptions options;
    options.listen = absl::StrCat("unix:", (temp_.path() / "d.sock").string());
    options.auth_token_file = (temp_.path() / "service-token").string();
    absl::StatusOr<std::unique_ptr<ServiceHost>> host =
        ServiceHost::Start(options, {&fake_}, {"modelmanager.v1.Downloader"});
    ASSERT_TRUE(host.ok()) << host.status();
    host_ = *std::move(host);
  }

  void TearDown() override { host_->Shutdown(absl::ZeroDuration()); }

  int RunMm(std::vector<std::string> args) {
    args.push_back("--downloader");
    args.push_back(host_->address());
    std::istringstream in;
    out_.str("");
    err_.str("");
    std::map<std::string, std::string> env = {
        {"MM_TOKEN_FILE", (temp_.path() / "service-token").string()},
        {"MM_HOME", temp_.path().string()}};
    CliIo io{&in, &out_, &err_,
             [env](const std::string& name) -> std::optional<std::string> {
               auto it = env.find(name);
               if (it == env.end()) return std::nullopt;
               return it->second;
             },
             "/nonexistent/bin/mm"};
    return RunCli(args, io);
  }

  TempDir temp_;
  FakeDownloaderService fake_;
  std::unique_ptr<ServiceHost> host_;
  std::ostringstream out_;
  std::ostringstream err_;
};

TEST_F(DownloadsCliTest, TokenFileIsTheUrlsTokenNotOurs) {
  EXPECT_EQ(RunMm({"download", "https://h/m", "--token-file",
                   (temp_.path() / "hf-token").string()}),
            kExitOk)
      << err_.str();
  std::vector<v1::CreateDownloadRequest> requests = fake_.create_requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].access_token(), kToken);
  EXPECT_THAT(out_.str(), HasSubstr("new1"));
  EXPECT_THAT(out_.str() + err_.str(), Not(HasSubstr(kToken)));
  EXPECT_THAT(out_.str() + err_.str(), Not(HasSubstr("svc-token")));
  // Elsewhere --token-file keeps its global meaning, the bearer token.
  EXPECT_EQ(RunMm({"downloads", "list", "--token-file",
                   (temp_.path() / "hf-token").string()}),
            kExitFailure);
  EXPECT_THAT(err_.str(), ::testing::StartsWith("mm: UNAUTHENTICATED: "));
}

TEST_F(DownloadsCliTest, FilesFlagReachesTheServer) {
  WriteFile(temp_.path() / "list", "https://h/a a.bin 3\nhttps://h/b sub/b\n");
  EXPECT_EQ(RunMm({"download", "--files", (temp_.path() / "list").string(),
                   "--dest", "/srv/models"}),
            kExitOk)
      << err_.str();
  std::vector<v1::CreateDownloadRequest> requests = fake_.create_requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].url(), "");
  EXPECT_EQ(requests[0].dest_dir(), "/srv/models");
  ASSERT_EQ(requests[0].files_size(), 2);
  EXPECT_EQ(requests[0].files(0).size(), 3);
  EXPECT_EQ(requests[0].files(1).relative_path(), "sub/b");

  WriteFile(temp_.path() / "list", "https://h/a\n");
  EXPECT_EQ(RunMm({"download", "--files", (temp_.path() / "list").string()}),
            kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("line 1: no relative path"));
  EXPECT_EQ(fake_.create_requests().size(), 1u);
}

TEST_F(DownloadsCliTest, FailedJobExitsOneWithItsCode) {
  fake_.AddJob(Job("bad", v1::DOWNLOAD_STATE_FAILED));
  EXPECT_EQ(RunMm({"downloads", "wait", "bad"}), kExitFailure);
  EXPECT_EQ(err_.str(),
            "mm: NOT_FOUND: download bad failed: HTTPError(NOT FOUND): 404 "
            "from example.com\n");
  EXPECT_EQ(out_.str(),
            "bad failed HTTPError(NOT FOUND): 404 from example.com\n");
}

TEST_F(DownloadsCliTest, UsageErrorsExitTwo) {
  EXPECT_EQ(RunMm({"download", "https://h/m", "--sha256", "xyz"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--sha256 must be 64 hexadecimal"));
  EXPECT_THAT(err_.str(), HasSubstr("mm download --help"));
  EXPECT_EQ(RunMm({"downloads"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("mm downloads needs a command"));
  EXPECT_EQ(RunMm({"downloads", "get", "x", "--state", "running"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("mm downloads get does not take --state"));
  EXPECT_EQ(RunMm({"downloads", "--help"}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("mm downloads resume ID..."));
}

}  // namespace
}  // namespace mm::cli
