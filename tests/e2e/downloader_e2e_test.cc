// End to end: the real mm-downloader executable. Killed with SIGKILL in the
// middle of a download and started again, it finishes the file from the
// saved segments; two replicas on one PostgreSQL share the queue and one
// takes over the job of the other when it is killed; tokens stay out of
// logs and the database; `mm download --wait` drives it from the CLI.
#include <signal.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/sql/database.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "model/hashing.h"
#include "modelmanager/v1/downloader.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/testing/child_service.h"
#include "tests/testing/http_test_server.h"
#include "tests/testing/postgres_cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace mm {
namespace {

namespace v1 = modelmanager::v1;
namespace fs = std::filesystem;
using ::mm::testing::HttpBehavior;
using ::mm::testing::HttpTestServer;
using ::mm::testing::PostgresCluster;
using ::mm::testing::RandomBody;
using ::mm::testing::ReadFile;
using ::mm::testing::Subprocess;
using ::mm::testing::TempDir;
using ::mm::testing::WaitForChildServing;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Sha256Hex(const fs::path& path) {
  model::HashOptions options;
  options.algorithm = model::HashAlgorithm::kSha256;
  absl::StatusOr<std::string> hash = model::HashFile(path, options);
  if (!hash.ok()) return hash.status().ToString();
  return hash->substr(hash->find(':') + 1);
}

// A running mm-downloader and a stub on its unix socket.
class Downloader {
 public:
  static absl::StatusOr<std::unique_ptr<Downloader>> Start(
      const fs::path& dir, const std::string& name, const std::string& db,
      const fs::path& root, std::vector<std::string> extra = {}) {
    auto d = std::make_unique<Downloader>();
    d->address_ = "unix:" + (dir / (name + ".sock")).string();
    d->log_ = dir / (name + ".log");
    std::vector<std::string> argv = {MM_DOWNLOADER_BIN,
                                     "--listen",
                                     d->address_,
                                     "--db",
                                     db,
                                     "--download-root",
                                     root.string(),
                                     "--allow-private-urls",
                                     "--health-interval",
                                     "200ms",
                                     "--retry-delay",
                                     "50ms",
                                     "--stall-timeout",
                                     "2s",
                                     "--min-segment-size",
                                     "65536",
                                     "--segments",
                                     "4",
                                     "--lease",
                                     "2s"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    ASSIGN_OR_RETURN(d->process_, Subprocess::Start(argv, d->log_));
    // The socket appears a moment after the start: reconnect quickly (the
    // default backoff waits seconds after a failed connect).
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
    d->channel_ = grpc::CreateCustomChannel(
        d->address_, grpc::InsecureChannelCredentials(), args);
    d->stub_ = v1::Downloader::NewStub(d->channel_);
    RETURN_IF_ERROR(d->WaitServing(absl::Seconds(60)));
    return d;
  }

  absl::Status WaitServing(absl::Duration timeout) {
    return WaitForChildServing(*process_, *channel_,
                               "modelmanager.v1.Downloader", log_, timeout);
  }

  absl::StatusOr<v1::DownloadJob> Create(const v1::CreateDownloadRequest& r) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(20));
    v1::DownloadJob job;
    RETURN_IF_ERROR(FromGrpcStatus(stub_->CreateDownload(&context, r, &job)));
    return job;
  }

  absl::StatusOr<v1::DownloadJob> Get(const std::string& id) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(20));
    v1::GetDownloadRequest request;
    request.set_id(id);
    v1::DownloadJob job;
    RETURN_IF_ERROR(
        FromGrpcStatus(stub_->GetDownload(&context, request, &job)));
    return job;
  }

  absl::StatusOr<v1::DownloadJob> Wait(const std::string& id,
                                       absl::Duration timeout) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    v1::DownloadJobRequest request;
    request.set_id(id);
    v1::DownloadJob job;
    RETURN_IF_ERROR(
        FromGrpcStatus(stub_->WaitDownload(&context, request, &job)));
    return job;
  }

  // Follows the job with WatchDownload until it has at least `bytes`.
  absl::Status WaitForBytes(const std::string& id, int64_t bytes) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    v1::WatchDownloadRequest request;
    request.set_id(id);
    auto reader = stub_->WatchDownload(&context, request);
    v1::DownloadJob job;
    while (reader->Read(&job)) {
      if (job.bytes() >= bytes) {
        context.TryCancel();
        reader->Finish().IgnoreError();
        return absl::OkStatus();
      }
    }
    RETURN_IF_ERROR(FromGrpcStatus(reader->Finish()));
    return absl::FailedPreconditionError(
        absl::StrCat("download ", id, " ended with ", job.bytes(),
                     " bytes: ", job.ShortDebugString()));
  }

  void Kill() {
    process_->Signal(SIGKILL);
    (void)process_->Wait(absl::Seconds(30));
  }

  Subprocess& process() { return *process_; }
  v1::Downloader::Stub& stub() { return *stub_; }
  const fs::path& log() const { return log_; }
  const std::string& address() const { return address_; }

 private:
  std::string address_;
  fs::path log_;
  std::unique_ptr<Subprocess> process_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Downloader::Stub> stub_;
};

class DownloaderE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_.path() / "models";
    fs::create_directories(root_);
    ASSERT_OK_AND_ASSIGN(server_, HttpTestServer::Start());
  }

  TempDir dir_;
  fs::path root_;
  std::unique_ptr<HttpTestServer> server_;
};

TEST_F(DownloaderE2eTest, SigkillMidDownloadThenRestartFinishesTheFile) {
  std::string body = RandomBody(4 << 20, 1);
  const std::string token = "e2e-secret-token-77";
  server_->SetFile("/model.safetensors", {.body = body, .etag = "\"m1\""});
  server_->SetBehavior("/model.safetensors",
                       {.require_bearer = token, .bytes_per_second = 2 << 20});
  std::string db = "sqlite:" + (dir_.path() / "dl.db").string();
  std::string rule = "^http://127\\.0\\.0\\.1:[0-9]+/=env:MM_E2E_TOKEN";
  setenv("MM_E2E_TOKEN", token.c_str(), 1);
  ASSERT_OK_AND_ASSIGN(
      auto downloader,
      Downloader::Start(dir_.path(), "dl", db, root_, {"--token-rule", rule}));
  v1::CreateDownloadRequest request;
  request.set_url(server_->Url("/model.safetensors"));
  request.set_dest_dir(root_.string());
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob job, downloader->Create(request));
  ASSERT_OK(downloader->WaitForBytes(job.id(), 1 << 20));
  downloader->Kill();
  ASSERT_TRUE(fs::exists(root_ / "model.safetensors.downloading"));
  size_t requests_before = server_->RequestsFor("/model.safetensors").size();

  server_->SetBehavior("/model.safetensors", {.require_bearer = token});
  ASSERT_OK_AND_ASSIGN(
      downloader,
      Downloader::Start(dir_.path(), "dl2", db, root_, {"--token-rule", rule}));
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob done,
                       downloader->Wait(job.id(), absl::Seconds(60)));
  ASSERT_EQ(done.state(), v1::DOWNLOAD_STATE_SUCCEEDED) << done.DebugString();
  EXPECT_EQ(Sha256Hex(root_ / "model.safetensors"), Sha256Hex([&] {
              fs::path p = dir_.path() / "expected";
              std::ofstream(p, std::ios::binary) << body;
              return p;
            }()));
  EXPECT_FALSE(fs::exists(root_ / "model.safetensors.downloading"));
  // The second process continued the saved segments: nothing from zero.
  std::vector<mm::testing::HttpRequestRecord> requests =
      server_->RequestsFor("/model.safetensors");
  ASSERT_GT(requests.size(), requests_before);
  for (size_t i = requests_before; i < requests.size(); ++i) {
    EXPECT_EQ(requests[i].headers.at("if-range"), "\"m1\"");
  }
  for (std::string log : {"dl.log", "dl2.log"}) {
    EXPECT_THAT(ReadFile(dir_.path() / log), Not(HasSubstr(token))) << log;
  }
}

TEST_F(DownloaderE2eTest, MmDownloadWaitDrivesTheRealService) {
  std::string body = RandomBody(300000, 2);
  server_->SetFile("/cli.bin", {.body = body});
  std::string db = "sqlite:" + (dir_.path() / "dl.db").string();
  ASSERT_OK_AND_ASSIGN(auto downloader,
                       Downloader::Start(dir_.path(), "dl", db, root_));
  ASSERT_OK_AND_ASSIGN(
      testing::CommandResult result,
      testing::RunCommand(
          {MM_BIN, "--downloader", downloader->address(), "download",
           server_->Url("/cli.bin"), "--dest", root_.string(), "--wait"},
          absl::Seconds(60)));
  EXPECT_EQ(result.exit_code, 0) << result.out + result.err;
  EXPECT_EQ(ReadFile(root_ / "cli.bin"), body);

  ASSERT_OK_AND_ASSIGN(
      testing::CommandResult missing,
      testing::RunCommand(
          {MM_BIN, "--downloader", downloader->address(), "download",
           server_->Url("/missing.bin"), "--dest", root_.string(), "--wait"},
          absl::Seconds(60)));
  EXPECT_EQ(missing.exit_code, 1) << missing.out + missing.err;

  ASSERT_OK_AND_ASSIGN(
      testing::CommandResult list,
      testing::RunCommand(
          {MM_BIN, "--downloader", downloader->address(), "downloads", "list"},
          absl::Seconds(60)));
  EXPECT_EQ(list.exit_code, 0);
  EXPECT_THAT(list.out, HasSubstr("succeeded"));
  EXPECT_THAT(list.out, HasSubstr("failed"));
}

TEST_F(DownloaderE2eTest, MmDownloadsControlsJobsOfTheRealService) {
  std::string body = RandomBody(1 << 20, 5);
  server_->SetFile("/ctl.bin", {.body = body, .etag = "\"c\""});
  server_->SetBehavior("/ctl.bin", {.bytes_per_second = 128 << 10});
  std::string db = "sqlite:" + (dir_.path() / "dl.db").string();
  ASSERT_OK_AND_ASSIGN(auto downloader,
                       Downloader::Start(dir_.path(), "dl", db, root_));
  auto mm = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {MM_BIN, "--downloader", downloader->address()});
    absl::StatusOr<testing::CommandResult> result =
        testing::RunCommand(args, absl::Seconds(60));
    EXPECT_OK(result.status());
    return result.value_or(testing::CommandResult{});
  };
  testing::CommandResult created = mm({"download", server_->Url("/ctl.bin"),
                                       "--dest", root_.string(), "--json"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  nlohmann::json job = nlohmann::json::parse(created.out);
  std::string id = job["id"];
  ASSERT_OK(downloader->WaitForBytes(id, 64 << 10));

  testing::CommandResult paused = mm({"downloads", "pause", id});
  EXPECT_EQ(paused.exit_code, 0) << paused.err;
  testing::CommandResult waited = mm({"downloads", "wait", id});
  EXPECT_EQ(waited.exit_code, 1);  // paused needs a person
  EXPECT_THAT(waited.out + waited.err, HasSubstr("paused"));
  EXPECT_TRUE(server_->WaitForActiveConnectionsAtMost(0, absl::Seconds(10)));

  server_->SetBehavior("/ctl.bin", {});
  EXPECT_EQ(mm({"downloads", "resume", id}).exit_code, 0);
  testing::CommandResult watched = mm({"downloads", "watch", id});
  EXPECT_EQ(watched.exit_code, 0) << watched.err;
  EXPECT_THAT(watched.out, HasSubstr("succeeded"));
  EXPECT_EQ(ReadFile(root_ / "ctl.bin"), body);

  testing::CommandResult listed =
      mm({"downloads", "list", "--state", "succeeded"});
  EXPECT_THAT(listed.out, HasSubstr(id.substr(0, 8)));
  EXPECT_EQ(mm({"downloads", "prune"}).exit_code, 0);
  testing::CommandResult gone = mm({"downloads", "get", id});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_THAT(gone.err, HasSubstr("NOT_FOUND"));
}

TEST_F(DownloaderE2eTest, SigtermWhileDownloadingExitsZeroAndKeepsProgress) {
  std::string body = RandomBody(2 << 20, 3);
  server_->SetFile("/t.bin", {.body = body, .etag = "\"t\""});
  server_->SetBehavior("/t.bin", {.bytes_per_second = 1 << 20});
  std::string db = "sqlite:" + (dir_.path() / "dl.db").string();
  ASSERT_OK_AND_ASSIGN(auto downloader,
                       Downloader::Start(dir_.path(), "dl", db, root_));
  v1::CreateDownloadRequest request;
  request.set_url(server_->Url("/t.bin"));
  request.set_dest_dir(root_.string());
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob job, downloader->Create(request));
  ASSERT_OK(downloader->WaitForBytes(job.id(), 256 * 1024));
  downloader->process().Signal(SIGTERM);
  ASSERT_OK_AND_ASSIGN(int code, downloader->process().Wait(absl::Seconds(30)));
  EXPECT_EQ(code, 0) << ReadFile(downloader->log());
  server_->SetBehavior("/t.bin", {});
  ASSERT_OK_AND_ASSIGN(downloader,
                       Downloader::Start(dir_.path(), "dl2", db, root_));
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob done,
                       downloader->Wait(job.id(), absl::Seconds(60)));
  ASSERT_EQ(done.state(), v1::DOWNLOAD_STATE_SUCCEEDED) << done.DebugString();
  EXPECT_EQ(ReadFile(root_ / "t.bin"), body);
}

TEST_F(DownloaderE2eTest, TwoReplicasOnPostgresTakeOverAKilledReplicasJob) {
  absl::StatusOr<std::unique_ptr<PostgresCluster>> cluster =
      PostgresCluster::Start();
  if (absl::IsFailedPrecondition(cluster.status())) {
    MM_SKIP_OR_FAIL_WITHOUT_POSTGRES(cluster.status());
  }
  ASSERT_OK(cluster.status());
  ASSERT_OK_AND_ASSIGN(std::string db, (*cluster)->CreateDatabase("dl"));
  std::string body = RandomBody(4 << 20, 4);
  const std::string token = "pg-per-job-token-31337";
  server_->SetFile("/shared.bin", {.body = body, .etag = "\"s\""});
  server_->SetBehavior("/shared.bin", {.bytes_per_second = 2 << 20});
  server_->SetFile("/gated.bin", {.body = "gated"});
  server_->SetBehavior("/gated.bin", {.require_bearer = token});

  ASSERT_OK_AND_ASSIGN(auto a, Downloader::Start(dir_.path(), "a", db, root_));
  ASSERT_OK_AND_ASSIGN(auto b, Downloader::Start(dir_.path(), "b", db, root_));
  v1::CreateDownloadRequest request;
  request.set_url(server_->Url("/shared.bin"));
  request.set_dest_dir(root_.string());
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob job, a->Create(request));
  ASSERT_OK(a->WaitForBytes(job.id(), 512 * 1024));
  // Both replicas see the job and its progress.
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob seen_by_b, b->Get(job.id()));
  EXPECT_EQ(seen_by_b.state(), v1::DOWNLOAD_STATE_RUNNING);

  // Kill whichever replica holds it; the other continues from the bytes on
  // the shared volume once the lease (2 s) has expired.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<sql::Database> sql,
                       sql::Database::Open(db));
  ASSERT_OK_AND_ASSIGN(
      sql::Result owner,
      sql->Execute("SELECT lease_owner FROM download_jobs WHERE id = ?",
                   {job.id()}));
  ASSERT_EQ(owner.rows.size(), 1u);
  bool a_owns = ReadFile(a->log()).find(absl::StrCat(
                    "replica ", owner.rows[0].Text(0))) != std::string::npos;
  Downloader* survivor = a_owns ? b.get() : a.get();
  (a_owns ? a : b)->Kill();
  size_t requests_before = server_->RequestsFor("/shared.bin").size();
  server_->SetBehavior("/shared.bin", {});
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob done,
                       survivor->Wait(job.id(), absl::Seconds(60)));
  ASSERT_EQ(done.state(), v1::DOWNLOAD_STATE_SUCCEEDED) << done.DebugString();
  EXPECT_EQ(ReadFile(root_ / "shared.bin"), body);
  std::vector<mm::testing::HttpRequestRecord> requests =
      server_->RequestsFor("/shared.bin");
  ASSERT_GT(requests.size(), requests_before);
  for (size_t i = requests_before; i < requests.size(); ++i) {
    EXPECT_EQ(requests[i].headers.at("if-range"), "\"s\"");
  }

  // Pause and cancel reach the worker whichever replica they go to.
  ASSERT_OK_AND_ASSIGN(auto c, Downloader::Start(dir_.path(), "c", db, root_));
  server_->SetFile("/slow.bin",
                   {.body = RandomBody(1 << 20, 5), .etag = "\"w\""});
  server_->SetBehavior("/slow.bin", {.bytes_per_second = 256 << 10});
  request.set_url(server_->Url("/slow.bin"));
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob slow, survivor->Create(request));
  ASSERT_OK(survivor->WaitForBytes(slow.id(), 64 << 10));
  for (Downloader* replica : {survivor, c.get()}) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    v1::DownloadJobRequest pause;
    pause.set_id(slow.id());
    v1::DownloadJob paused;
    ASSERT_TRUE(replica->stub().PauseDownload(&context, pause, &paused).ok());
    ASSERT_OK_AND_ASSIGN(v1::DownloadJob waited,
                         replica->Wait(slow.id(), absl::Seconds(30)));
    EXPECT_EQ(waited.state(), v1::DOWNLOAD_STATE_PAUSED);
    EXPECT_TRUE(server_->WaitForActiveConnectionsAtMost(0, absl::Seconds(10)));
    grpc::ClientContext resume_context;
    resume_context.set_deadline(
        absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    v1::ResumeDownloadRequest resume;
    resume.set_id(slow.id());
    // Counted before the resume: the resumed worker may ask the server
    // before ResumeDownload has even returned here.
    const int requests_before_resume =
        static_cast<int>(server_->RequestsFor("/slow.bin").size());
    ASSERT_TRUE(
        replica->stub().ResumeDownload(&resume_context, resume, &paused).ok());
    ASSERT_TRUE(server_->WaitForRequests(
        "/slow.bin", requests_before_resume + 1, absl::Seconds(30)));
  }
  {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    v1::DownloadJobRequest cancel;
    cancel.set_id(slow.id());
    v1::DownloadJob cancelled;
    ASSERT_TRUE(c->stub().CancelDownload(&context, cancel, &cancelled).ok());
    ASSERT_OK_AND_ASSIGN(v1::DownloadJob waited,
                         survivor->Wait(slow.id(), absl::Seconds(30)));
    EXPECT_EQ(waited.state(), v1::DOWNLOAD_STATE_CANCELLED);
    EXPECT_TRUE(server_->WaitForActiveConnectionsAtMost(0, absl::Seconds(10)));
    EXPECT_FALSE(fs::exists(root_ / "slow.bin.downloading"));
  }

  // A per-job token on a replica: used, never stored, never logged.
  v1::CreateDownloadRequest gated;
  gated.set_url(server_->Url("/gated.bin"));
  gated.set_dest_dir(root_.string());
  gated.set_access_token(token);
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob gated_job, survivor->Create(gated));
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob gated_done,
                       survivor->Wait(gated_job.id(), absl::Seconds(60)));
  EXPECT_EQ(gated_done.state(), v1::DOWNLOAD_STATE_SUCCEEDED)
      << gated_done.DebugString();
  ASSERT_OK_AND_ASSIGN(sql::Result rows,
                       sql->Execute("SELECT * FROM download_jobs"));
  for (const sql::Row& row : rows.rows) {
    for (int c = 0; c < row.size(); ++c) {
      EXPECT_THAT(row.Text(c), Not(HasSubstr(token)));
    }
  }
  EXPECT_THAT(ReadFile(a->log()), Not(HasSubstr(token)));
  EXPECT_THAT(ReadFile(b->log()), Not(HasSubstr(token)));
}

}  // namespace
}  // namespace mm
