// The downloader end to end inside one process: real sockets to a loopback
// HTTP server with fault injection, a real SQLite job store, the engine and
// the gRPC service.
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/sql/database.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "model/hashing.h"
#include "tests/downloader/harness.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/http_test_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::downloader {
namespace {

namespace v1 = modelmanager::v1;
namespace fs = std::filesystem;
using ::mm::testing::HttpBehavior;
using ::mm::testing::HttpTestFile;
using ::mm::testing::HttpTestServer;
using ::mm::testing::RandomBody;
using ::mm::testing::ReadFile;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Sha256Hex(const std::string& data) {
  TempDir dir;
  fs::path path = dir.path() / "x";
  std::ofstream(path, std::ios::binary) << data;
  model::HashOptions options;
  options.algorithm = model::HashAlgorithm::kSha256;
  std::string hash = *model::HashFile(path, options);
  return hash.substr(hash.find(':') + 1);
}

class DownloaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = tmp_.path() / "models";
    fs::create_directories(root_);
    ASSERT_OK_AND_ASSIGN(server_, HttpTestServer::Start());
  }

  void StartHarness(HarnessOptions options = {}) {
    options.db_url = absl::StrCat("sqlite:", (tmp_.path() / "dl.db").string());
    options.root = root_.string();
    ASSERT_OK_AND_ASSIGN(harness_, Harness::Start(options));
  }

  v1::CreateDownloadRequest Request(const std::string& path) {
    v1::CreateDownloadRequest request;
    request.set_url(server_->Url(path));
    request.set_dest_dir(root_.string());
    return request;
  }

  // Creates the download and waits for it to end.
  v1::DownloadJob Run(const v1::CreateDownloadRequest& request) {
    absl::StatusOr<v1::DownloadJob> created = harness_->Create(request);
    EXPECT_OK(created.status());
    if (!created.ok()) return {};
    absl::StatusOr<v1::DownloadJob> done = harness_->Wait(created->id());
    EXPECT_OK(done.status());
    return done.value_or(v1::DownloadJob{});
  }

  std::vector<std::string> FilesUnderRoot() {
    std::vector<std::string> out;
    for (const auto& entry : fs::recursive_directory_iterator(root_)) {
      if (entry.is_regular_file()) {
        out.push_back(fs::relative(entry.path(), root_).string());
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  TempDir tmp_;
  fs::path root_;
  std::unique_ptr<HttpTestServer> server_;
  std::unique_ptr<Harness> harness_;
};

TEST_F(DownloaderTest, DownloadsOneFileNamedAfterTheUrl) {
  StartHarness();
  std::string body = RandomBody(300 * 1024, 1);
  server_->SetFile("/files/model.safetensors",
                   {.body = body, .etag = "\"v1\""});
  v1::CreateDownloadRequest request = Request("/files/model.safetensors");
  request.set_expected_sha256(Sha256Hex(body));
  v1::DownloadJob job = Run(request);
  EXPECT_EQ(job.state(), v1::DOWNLOAD_STATE_SUCCEEDED) << job.DebugString();
  EXPECT_TRUE(job.done());
  EXPECT_EQ(job.final_path(), (root_ / "model.safetensors").string());
  EXPECT_EQ(job.bytes(), static_cast<int64_t>(body.size()));
  EXPECT_EQ(job.total_bytes(), static_cast<int64_t>(body.size()));
  EXPECT_EQ(ReadFile(root_ / "model.safetensors"), body);
  EXPECT_EQ(FilesUnderRoot(), std::vector<std::string>{"model.safetensors"});
  EXPECT_TRUE(job.times().has_start_time());
  EXPECT_TRUE(job.times().has_end_time());
}

TEST_F(DownloaderTest, MetricsCountJobsBytesAndRate) {
  metrics::Registry registry;
  testing::FakeClock clock;
  HarnessOptions options;
  options.metrics = &registry;
  options.clock = &clock;
  StartHarness(options);
  // Every state from the first scrape, the queue empty.
  std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("mm_jobs{state=\"queued\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("mm_jobs{state=\"succeeded\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("mm_job_queue_depth 0\n"));
  EXPECT_THAT(text, HasSubstr("mm_download_bytes_total 0\n"));

  std::string body = RandomBody(200 * 1024, 3);
  server_->SetFile("/files/a.bin", {.body = body});
  v1::DownloadJob job = Run(Request("/files/a.bin"));
  ASSERT_EQ(job.state(), v1::DOWNLOAD_STATE_SUCCEEDED) << job.DebugString();

  // A paused job is not in the queue; a queued one is (the engine's
  // workers are stopped so that it stays queued).
  harness_->downloader().StopEngine();
  server_->SetFile("/files/b.bin", {.body = body});
  ASSERT_OK(harness_->Create(Request("/files/b.bin")).status());

  clock.Advance(absl::Seconds(4));
  text = registry.Render();
  EXPECT_THAT(text, HasSubstr("mm_jobs{state=\"succeeded\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("mm_jobs{state=\"queued\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("mm_job_queue_depth 1\n"));
  EXPECT_THAT(text, HasSubstr(absl::StrCat("mm_download_bytes_total ",
                                           body.size(), "\n")));
  // The bytes since the first scrape, over the 4 s the fake clock moved.
  EXPECT_THAT(text, HasSubstr(absl::StrCat("mm_download_bytes_per_second ",
                                           body.size() / 4, "\n")));
  EXPECT_THAT(text, HasSubstr("mm_download_active_transfers 0\n"));
  harness_.reset();  // before the registry and the clock it uses
}

TEST_F(DownloaderTest, LargeFileIsSplitIntoSegmentsOnSeparateConnections) {
  StartHarness();
  std::string body = RandomBody(1 << 20, 2);
  server_->SetFile("/big.bin", {.body = body, .etag = "\"big\""});
  v1::CreateDownloadRequest request = Request("/big.bin");
  request.set_expected_sha256(Sha256Hex(body));
  v1::DownloadJob job = Run(request);
  ASSERT_EQ(job.state(), v1::DOWNLOAD_STATE_SUCCEEDED) << job.DebugString();
  EXPECT_EQ(ReadFile(root_ / "big.bin"), body);
  std::vector<mm::testing::HttpRequestRecord> requests =
      server_->RequestsFor("/big.bin");
  ASSERT_EQ(requests.size(), 4u);
  std::set<int> connections;
  std::set<std::string> ranges;
  for (const auto& r : requests) {
    connections.insert(r.connection_id);
    ranges.insert(r.headers.at("range"));
  }
  EXPECT_EQ(connections.size(), 4u);
  EXPECT_TRUE(ranges.count("bytes=0-"));
  EXPECT_TRUE(ranges.count("bytes=786432-1048575"));
}

TEST_F(DownloaderTest, ServerWithoutRangesGetsOneStream) {
  StartHarness();
  std::string body = RandomBody(1 << 20, 3);
  server_->SetFile("/plain.bin", {.body = body});
  server_->SetBehavior("/plain.bin", {.accept_ranges = false});
  v1::DownloadJob job = Run(Request("/plain.bin"));
  ASSERT_EQ(job.state(), v1::DOWNLOAD_STATE_SUCCEEDED) << job.DebugString();
  EXPECT_EQ(ReadFile(root_ / "plain.bin"), body);
  EXPECT_EQ(server_->RequestsFor("/plain.bin").size(), 1u);
}

TEST_F(DownloaderTest, MissingContentLengthCompletesWithUnknownTotal) {
  StartHarness();
  std::string body = RandomBody(200 * 1024, 4);
  server_->SetFile("/stream.bin", {.body = body});
  server_->SetBehavior("/stream.bin",
                       {.accept_ranges = false, .omit_content_length = true});
  v1::DownloadJob job = Run(Request("/stream.bin"));
  ASSERT_EQ(job.state(), v1::DOWNLOAD_STATE_SUCCEEDED) << job.DebugString();
  EXPECT_EQ(ReadFile(root_ / "stream.bin"), body);
  EXPECT_EQ(job.total_bytes(), static_cast<int64_t>(body.size()));
}

TEST_F(DownloaderTest, ContentDispositionNamesTheFile) {
  StartHarness();
  server_->SetFile("/resolve", {.body = "weights",
                                .content_disposition =
                                    "attachment; filename=\"plain.bin\"; "
                                    "filename*=UTF-8''caf%C3%A9.safetensors"});
  v1::DownloadJob job = Run(Request("/resolve?id=1"));
  ASSERT_EQ(job.state(), v1::DOWNLOAD_STATE_SUCCEEDED) << job.DebugString();
  EXPECT_EQ(job.final_path(), (root_ / "café.safetensors").string());
  EXPECT_EQ(ReadFile(root_ / "café.safetensors"), "weights");
}

TEST_F(DownloaderTest, HostileContentDispositionFailsAndWritesNothing) {
  StartHarness();
  for (std::string name :
       {"../../etc/passwd", "/etc/passwd", "..", "a\\\\b", "C:evil"}) {
    SCOPED_TRACE(name);
    server_->SetFile("/evil", {.body = "x",
                               .content_disposition = absl::StrCat(
                                   "attachment; filename=\"", name, "\"")});
    v1::DownloadJob job = Run(Request("/evil"));
    EXPECT_EQ(job.state(), v1::DOWNLOAD_STATE_FAILED);
    EXPECT_EQ(job.error().type(), "UnsafeFileName") << job.DebugString();
    EXPECT_EQ(job.error().code(), "INVALID_ARGUMENT");
  }
  EXPECT_TRUE(FilesUnderRoot().empty());
  EXPECT_FALSE(fs::exists(tmp_.path() / "etc"));
}

TEST_F(DownloaderTest, NotFoundFailsWithTheReferenceErrorType) {
  StartHarness();
  v1::DownloadJob job = Run(Request("/nothing-here.bin"));
  EXPECT_EQ(job.state(), v1::DOWNLOAD_STATE_FAILED);
  EXPECT_EQ(job.error().type(), "HTTPError(NOT FOUND)");
  EXPECT_EQ(job.error().code(), "NOT_FOUND");
  EXPECT_THAT(job.error().message(), HasSubstr("404"));
  EXPECT_TRUE(FilesUnderRoot().empty());
}

TEST_F(DownloaderTest, TransientErrorsAreRetriedHonouringRetryAfter) {
  StartHarness();
  std::string body = RandomBody(100 * 1024, 5);
  server_->SetFile("/flaky.bin", {.body = body});
  server_->SetBehavior("/flaky.bin",
                       {.fail_statuses = {503, 500, 429}, .retry_after = "1"});
  absl::Time start = absl::Now();
  v1::DownloadJob job = Run(Request("/flaky.bin"));
  ASSERT_EQ(job.state(), v1::DOWNLOAD_STATE_SUCCEEDED) << job.DebugString();
  EXPECT_EQ(job.retries(), 3);
  // Two answers carried Retry-After: 1.
  EXPECT_GE(absl::Now() - start, absl::Seconds(2));
  EXPECT_EQ(ReadFile(root_ / "flaky.bin"), body);
}

TEST_F(DownloaderTest, PersistentServerErrorsFailAfterTheAttemptLimit) {
  StartHarness();
  server_->SetFile("/down.bin", {.body = "x"});
  server_->SetBehavior("/down.bin", {.status_override = 503});
  v1::DownloadJob job = Run(Request("/down.bin"));
  EXPECT_EQ(job.state(), v1::DOWNLOAD_STATE_FAILED);
  EXPECT_EQ(job.error().type(), "HTTPError(SERVICE UNAVAILABLE)");
  EXPECT_EQ(job.error().code(), "UNAVAILABLE");
  EXPECT_THAT(job.error().message(), HasSubstr("gave up after 4 attempts"));
  EXPECT_EQ(server_->RequestsFor("/down.bin").size(), 4u);
}

TEST_F(DownloaderTest, DroppedConnectionResumesWithARangeRequest) {
  StartHarness();
  std::string body = RandomBody(100 * 1024, 6);
  server_->SetFile("/drop.bin", {.body = body, .etag = "\"d\""});
  server_->SetBehavior("/drop.bin",
                       {.drop_after_bytes = 30000, .drop_count = 1});
  v1::DownloadJob job = Run(Request("/drop.bin"));
  ASSERT_EQ(job.state(), v1::DOWNLOAD_STATE_SUCCEEDED) << job.DebugString();
  EXPECT_EQ(ReadFile(root_ / "drop.bin"), body);
  std::vector<mm::testing::HttpRequestRecord> requests =
      server_->RequestsFor("/drop.bin");
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[1].headers.at("range"), "bytes=30000-102399");
  EXPECT_EQ(requests[1].headers.at("if-range"), "\"d\"");
}

TEST_F(DownloaderTest, StalledConnectionIsDroppedAndRetried) {
  StartHarness();
  std::string body = RandomBody(50 * 1024, 7);
  server_->SetFile("/stall.bin", {.body = body, .etag = "\"s\""});
  server_->SetBehavior("/stall.bin", {.stall_after_bytes = 1000,
                                      .stall_for = absl::InfiniteDuration(),
                                      .stall_count = 1});
  v1::DownloadJob job = Run(Request("/stall.bin"));
  ASSERT_EQ(job.state(), v1::DOWNLOAD_STATE_SUCCEEDED) << job.DebugString();
  EXPECT_EQ(job.retries(), 1);
  EXPECT_EQ(ReadFile(root_ / "stall.bin"), body);
}

TEST_F(DownloaderTest, ShortBodyWithoutRangesFailsAfterRetriesAndCleansUp) {
  StartHarness();
  server_->SetFile("/short.bin", {.body = RandomBody(10000, 8)});
  server_->SetBehavior("/short.bin",
                       {.accept_ranges = false, .length_delta = -100});
  v1::DownloadJob job = Run(Request("/short.bin"));
  EXPECT_EQ(job.state(), v1::DOWNLOAD_STATE_FAILED);
  EXPECT_EQ(job.error().type(), "ConnectionError") << job.DebugString();
  EXPECT_TRUE(FilesUnderRoot().empty());
}

TEST_F(DownloaderTest, ChecksumMismatchFailsAndRemovesThePartialFile) {
  StartHarness();
  server_->SetFile("/sum.bin", {.body = RandomBody(100 * 1024, 9)});
  v1::CreateDownloadRequest request = Request("/sum.bin");
  request.set_expected_sha256(std::string(64, 'a'));
  v1::DownloadJob job = Run(request);
  EXPECT_EQ(job.state(), v1::DOWNLOAD_STATE_FAILED);
  EXPECT_EQ(job.error().type(), "ChecksumMismatch") << job.DebugString();
  EXPECT_EQ(job.error().code(), "DATA_LOSS");
  EXPECT_TRUE(FilesUnderRoot().empty());
}

TEST_F(DownloaderTest, KeepPartialOnErrorKeepsThePartialFile) {
  StartHarness();
  server_->SetFile("/keep.bin", {.body = RandomBody(1000, 10)});
  v1::CreateDownloadRequest request = Request("/keep.bin");
  request.set_expected_sha256(std::string(64, 'b'));
  request.set_keep_partial_on_error(true);
  v1::DownloadJob job = Run(request);
  EXPECT_EQ(job.state(), v1::DOWNLOAD_STATE_FAILED);
  EXPECT_EQ(FilesUnderRoot(), std::vector<std::string>{"keep.bin.downloading"});
}

TEST_F(DownloaderTest, SizeDifferentFromTheExpectedOneFails) {
  StartHarness();
  server_->SetFile("/size.bin", {.body = RandomBody(1000, 11)});
  v1::CreateDownloadRequest request = Request("/size.bin");
  request.set_expected_size(999);
  v1::DownloadJob job = Run(request);
  EXPECT_EQ(job.state(), v1::DOWNLOAD_STATE_FAILED);
  EXPECT_EQ(job.error().type(), "SizeMismatch") << job.DebugString();
  EXPECT_TRUE(FilesUnderRoot().empty());
}

TEST_F(DownloaderTest, MoreBytesThanExpectedFailTheJob) {
  StartHarness();
  server_->SetFile("/long.bin", {.body = RandomBody(5000, 14)});
  server_->SetBehavior("/long.bin",
                       {.accept_ranges = false, .omit_content_length = true});
  v1::CreateDownloadRequest request = Request("/long.bin");
  request.set_expected_size(4000);
  v1::DownloadJob job = Run(request);
  EXPECT_EQ(job.state(), v1::DOWNLOAD_STATE_FAILED);
  EXPECT_EQ(job.error().type(), "SizeMismatch") << job.DebugString();
  EXPECT_THAT(job.error().message(), HasSubstr("more than the expected"));
  EXPECT_TRUE(FilesUnderRoot().empty());
}

// ENOSPC in the middle of a transfer: a 1 MiB tmpfs inside the root and a
// 2 MiB body without Content-Length, so no check can see it coming.
TEST_F(DownloaderTest, DiskFullDuringTheTransferFailsAtOnceAndCleansUp) {
  fs::path small = root_ / "small";
  fs::create_directories(small);
  if (geteuid() != 0 ||
      mount("tmpfs", small.c_str(), "tmpfs", 0, "size=1m") != 0) {
    GTEST_SKIP() << "needs root to mount a small tmpfs";
  }
  struct Unmount {
    fs::path path;
    ~Unmount() { umount2(path.c_str(), MNT_DETACH); }
  } unmount{small};
  StartHarness();
  server_->SetFile("/huge.bin", {.body = RandomBody(2 << 20, 15)});
  server_->SetBehavior("/huge.bin",
                       {.accept_ranges = false, .omit_content_length = true});
  v1::CreateDownloadRequest request = Request("/huge.bin");
  request.set_dest_dir(small.string());
  v1::DownloadJob job = Run(request);
  EXPECT_EQ(job.state(), v1::DOWNLOAD_STATE_FAILED);
  EXPECT_EQ(job.error().type(), "DiskFull") << job.DebugString();
  EXPECT_EQ(job.error().code(), "RESOURCE_EXHAUSTED");
  EXPECT_EQ(job.retries(), 0);
  EXPECT_TRUE(fs::is_empty(small));
  harness_.reset();
}

TEST_F(DownloaderTest, HtmlInsteadOfAModelFailsMentioningATokenMayBeNeeded) {
  StartHarness();
  server_->SetFile("/gated.safetensors",
                   {.body = "<html>log in</html>",
                    .content_type = "text/html; charset=utf-8"});
  v1::DownloadJob job = Run(Request("/gated.safetensors"));
  EXPECT_EQ(job.state(), v1::DOWNLOAD_STATE_FAILED);
  EXPECT_THAT(job.error().message(), HasSubstr("may need an access token"));
  EXPECT_TRUE(FilesUnderRoot().empty());
}

TEST_F(DownloaderTest, ExistingFileWithTheExpectedSizeCompletesAtOnce) {
  StartHarness();
  std::string body = RandomBody(4096, 12);
  std::ofstream(root_ / "have.bin", std::ios::binary) << body;
  server_->SetFile("/have.bin", {.body = body});
  v1::CreateDownloadRequest request = Request("/have.bin");
  request.set_file_name("have.bin");
  request.set_expected_size(4096);
  request.set_expected_sha256(Sha256Hex(body));
  v1::DownloadJob job = Run(request);
  EXPECT_EQ(job.state(), v1::DOWNLOAD_STATE_SUCCEEDED) << job.DebugString();
  EXPECT_TRUE(server_->RequestsFor("/have.bin").empty());
}

TEST_F(DownloaderTest, TokenIsSentOnlyToItsHostAndNeverStoredOrReturned) {
  StartHarness();
  const std::string token = "hf_secret_token_4242";
  HttpTestServer::Options other_host;
  other_host.bind_address = "127.0.0.2";
  ASSERT_OK_AND_ASSIGN(auto cdn, HttpTestServer::Start(other_host));
  std::string body = RandomBody(5000, 13);
  cdn->SetFile("/blob", {.body = body});
  server_->SetBehavior("/gated.bin", {.redirect_to = cdn->Url("/blob"),
                                      .require_bearer = token});
  server_->SetFile("/same-host.bin", {.body = body});
  server_->SetBehavior("/redirect-here", {.redirect_to = "/same-host.bin"});

  v1::CreateDownloadRequest request = Request("/gated.bin");
  request.set_access_token(token);
  request.set_file_name("gated.bin");
  v1::DownloadJob job = Run(request);
  ASSERT_EQ(job.state(), v1::DOWNLOAD_STATE_SUCCEEDED) << job.DebugString();
  EXPECT_TRUE(job.has_access_token());
  EXPECT_THAT(job.DebugString(), Not(HasSubstr(token)));
  ASSERT_EQ(server_->RequestsFor("/gated.bin").size(), 1u);
  EXPECT_EQ(server_->RequestsFor("/gated.bin")[0].headers.at("authorization"),
            "Bearer " + token);
  ASSERT_FALSE(cdn->RequestsFor("/blob").empty());
  EXPECT_EQ(cdn->RequestsFor("/blob")[0].headers.count("authorization"), 0u);

  v1::CreateDownloadRequest same = Request("/redirect-here");
  same.set_access_token(token);
  same.set_file_name("same.bin");
  ASSERT_EQ(Run(same).state(), v1::DOWNLOAD_STATE_SUCCEEDED);
  ASSERT_FALSE(server_->RequestsFor("/same-host.bin").empty());
  EXPECT_EQ(
      server_->RequestsFor("/same-host.bin")[0].headers.at("authorization"),
      "Bearer " + token);

  // Nowhere on disk: not in the database, not in its WAL.
  for (const auto& entry : fs::directory_iterator(tmp_.path())) {
    if (!entry.is_regular_file()) continue;
    EXPECT_THAT(ReadFile(entry.path()), Not(HasSubstr(token))) << entry.path();
  }
}

TEST_F(DownloaderTest, UnauthorizedWithoutTokenSaysATokenMayBeNeeded) {
  StartHarness();
  server_->SetFile("/private.bin", {.body = "x"});
  server_->SetBehavior("/private.bin", {.require_bearer = "t"});
  v1::DownloadJob job = Run(Request("/private.bin"));
  EXPECT_EQ(job.state(), v1::DOWNLOAD_STATE_FAILED);
  EXPECT_EQ(job.error().type(), "HTTPError(UNAUTHORIZED)");
  EXPECT_THAT(job.error().message(), HasSubstr("may need an access token"));
}

TEST_F(DownloaderTest, ServerSideTokenRuleSuppliesTheToken) {
  setenv("MM_TEST_DL_TOKEN", "rule-token", 1);
  HarnessOptions options;
  options.token_rules = {
      "^http://127\\.0\\.0\\.1:[0-9]+/rule/=env:MM_TEST_DL_TOKEN"};
  StartHarness(options);
  server_->SetFile("/rule/a.bin", {.body = "abc"});
  server_->SetBehavior("/rule/a.bin", {.require_bearer = "rule-token"});
  v1::DownloadJob job = Run(Request("/rule/a.bin"));
  EXPECT_EQ(job.state(), v1::DOWNLOAD_STATE_SUCCEEDED) << job.DebugString();
  EXPECT_FALSE(job.has_access_token());
}

TEST_F(DownloaderTest, TokenRuleCanReadTheTokenFromAFile) {
  fs::path token_file = tmp_.path() / "hf-token";
  std::ofstream(token_file) << "file-token\n";
  HarnessOptions options;
  options.token_rules = {"/secret/=file:" + token_file.string()};
  StartHarness(options);
  server_->SetFile("/secret/a.bin", {.body = "abc"});
  server_->SetBehavior("/secret/a.bin", {.require_bearer = "file-token"});
  server_->SetFile("/public/a.bin", {.body = "abc"});
  EXPECT_EQ(Run(Request("/secret/a.bin")).state(),
            v1::DOWNLOAD_STATE_SUCCEEDED);
  v1::CreateDownloadRequest other = Request("/public/a.bin");
  other.set_file_name("b.bin");
  EXPECT_EQ(Run(other).state(), v1::DOWNLOAD_STATE_SUCCEEDED);
  ASSERT_EQ(server_->RequestsFor("/public/a.bin").size(), 1u);
  EXPECT_EQ(
      server_->RequestsFor("/public/a.bin")[0].headers.count("authorization"),
      0u);
}

// Spec §7: a 416 whose Content-Range total equals what the partial file
// holds means the file is already complete.
TEST_F(DownloaderTest, RangeNotSatisfiableForACompletePartialFileCompletes) {
  StartHarness();
  std::string body = RandomBody(5000, 16);
  server_->SetFile("/done.bin", {.body = body, .etag = "\"d\""});
  v1::CreateDownloadRequest request = Request("/done.bin");
  request.set_start(false);
  request.set_file_name("done.bin");
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob job, harness_->Create(request));
  // As a stream of unknown length leaves it when interrupted after the
  // last byte: one open-ended segment that holds everything.
  std::ofstream(root_ / "done.bin.downloading", std::ios::binary) << body;
  ASSERT_OK(harness_->store()
                .Update(job.id(),
                        [&](Job& j) {
                          j.parts[0].segments = {Segment{0, -1, 5000}};
                          j.parts[0].validator = "\"d\"";
                          return absl::OkStatus();
                        })
                .status());
  ASSERT_OK(harness_->manager()
                .Apply(job.id(), DownloadManager::Action::kStart)
                .status());
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob done, harness_->Wait(job.id()));
  ASSERT_EQ(done.state(), v1::DOWNLOAD_STATE_SUCCEEDED) << done.DebugString();
  EXPECT_EQ(ReadFile(root_ / "done.bin"), body);
  ASSERT_EQ(server_->RequestsFor("/done.bin").size(), 1u);
  EXPECT_EQ(server_->RequestsFor("/done.bin")[0].status, 416);
  EXPECT_EQ(server_->RequestsFor("/done.bin")[0].headers.at("range"),
            "bytes=5000-");
}

TEST_F(DownloaderTest, PrivateAddressesAreRefusedUnlessAllowed) {
  HarnessOptions options;
  options.allow_private = false;
  options.allow_cidrs = {"127.0.0.1/32"};
  StartHarness(options);
  v1::CreateDownloadRequest request = Request("/x");
  request.set_url("http://127.0.0.2:1/x");
  EXPECT_THAT(
      harness_->Create(request).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("loopback")));
  request.set_url("http://169.254.169.254/latest/meta-data/");
  EXPECT_THAT(
      harness_->Create(request).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("link-local")));
  request.set_url("http://[::ffff:10.0.0.1]/x");
  EXPECT_THAT(harness_->Create(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("10.0.0.1 (private address)")));
  request.set_url("file:///etc/passwd");
  EXPECT_THAT(harness_->Create(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("only http and https")));

  // Allowed host, but a redirect to a refused one fails the job.
  HttpTestServer::Options other_host;
  other_host.bind_address = "127.0.0.2";
  ASSERT_OK_AND_ASSIGN(auto internal, HttpTestServer::Start(other_host));
  internal->SetFile("/secret", {.body = "secret"});
  server_->SetBehavior("/hop", {.redirect_to = internal->Url("/secret")});
  v1::CreateDownloadRequest hop = Request("/hop");
  v1::DownloadJob job = Run(hop);
  EXPECT_EQ(job.state(), v1::DOWNLOAD_STATE_FAILED);
  EXPECT_EQ(job.error().type(), "UnsafeURL") << job.DebugString();
  EXPECT_TRUE(internal->Requests().empty());
}

TEST_F(DownloaderTest, DestinationsMustStayInsideTheDownloadRoots) {
  StartHarness();
  fs::create_directories(tmp_.path() / "outside");
  fs::create_symlink(tmp_.path() / "outside", root_ / "escape");
  v1::CreateDownloadRequest request = Request("/x");
  for (const std::string& dest :
       {(tmp_.path() / "outside").string(), (root_ / ".." / "outside").string(),
        (root_ / "escape").string(), std::string("relative/dir"),
        (root_ / "missing").string()}) {
    SCOPED_TRACE(dest);
    request.set_dest_dir(dest);
    EXPECT_THAT(
        harness_->Create(request).status(),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dest_dir")));
  }
  request.set_dest_dir("");
  request.set_output_path((root_ / "escape" / "f.bin").string());
  EXPECT_THAT(harness_->Create(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("outside the download roots")));
  request.set_output_path((root_ / "..").string());
  EXPECT_THAT(harness_->Create(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a safe file name")));
  request.set_output_path("");
  request.set_file_name("../x");
  EXPECT_THAT(
      harness_->Create(request).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("file_name")));
}

TEST_F(DownloaderTest, OutputPathWritesExactlyThatFile) {
  StartHarness();
  server_->SetFile("/o.bin", {.body = "output"});
  v1::CreateDownloadRequest request = Request("/o.bin");
  request.set_dest_dir("");
  request.set_output_path((root_ / "chosen.name").string());
  v1::DownloadJob job = Run(request);
  ASSERT_EQ(job.state(), v1::DOWNLOAD_STATE_SUCCEEDED) << job.DebugString();
  EXPECT_EQ(ReadFile(root_ / "chosen.name"), "output");
}

TEST_F(DownloaderTest, NotEnoughFreeSpaceIsRefusedWithTheNumbers) {
  StartHarness();
  v1::CreateDownloadRequest request = Request("/x");
  request.set_expected_size(int64_t{1} << 60);
  EXPECT_THAT(harness_->Create(request).status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("bytes needed")));
}

TEST_F(DownloaderTest, MultiFileJobDownloadsEveryPartInParallel) {
  StartHarness();
  v1::CreateDownloadRequest request;
  request.set_dest_dir(root_.string());
  std::map<std::string, std::string> bodies;
  for (int i = 0; i < 20; ++i) {
    std::string rel = absl::StrCat(i % 2 ? "unet/" : "vae/", "f", i, ".bin");
    std::string body = RandomBody(3000 + i, 100 + i);
    server_->SetFile(absl::StrCat("/repo/", rel), {.body = body});
    v1::DownloadFile* file = request.add_files();
    file->set_url(server_->Url(absl::StrCat("/repo/", rel)));
    file->set_relative_path(rel);
    file->set_size(static_cast<int64_t>(body.size()));
    file->set_sha256(Sha256Hex(body));
    bodies[rel] = body;
  }
  v1::DownloadJob job = Run(request);
  ASSERT_EQ(job.state(), v1::DOWNLOAD_STATE_SUCCEEDED) << job.DebugString();
  EXPECT_EQ(job.parts_size(), 20);
  int64_t total = 0;
  for (const auto& [rel, body] : bodies) {
    EXPECT_EQ(ReadFile(root_ / rel), body) << rel;
    total += static_cast<int64_t>(body.size());
  }
  EXPECT_EQ(job.bytes(), total);
  EXPECT_EQ(job.total_bytes(), total);
  EXPECT_EQ(job.final_path(), root_.string());
}

TEST_F(DownloaderTest, OneFailedPartFailsTheJobAndCancelsTheRest) {
  StartHarness();
  v1::CreateDownloadRequest request;
  request.set_dest_dir(root_.string());
  server_->SetFile("/r/slow.bin", {.body = RandomBody(200000, 1)});
  server_->SetBehavior("/r/slow.bin", {.bytes_per_second = 20000});
  for (std::string name : {"slow.bin", "missing.bin"}) {
    v1::DownloadFile* file = request.add_files();
    file->set_url(server_->Url("/r/" + name));
    file->set_relative_path(name);
  }
  v1::DownloadJob job = Run(request);
  EXPECT_EQ(job.state(), v1::DOWNLOAD_STATE_FAILED);
  EXPECT_EQ(job.error().type(), "HTTPError(NOT FOUND)");
  EXPECT_TRUE(FilesUnderRoot().empty());
  EXPECT_TRUE(server_->WaitForActiveConnectionsAtMost(0, absl::Seconds(5)));
}

TEST_F(DownloaderTest, MultiFilePathsMustStayInsideTheDestination) {
  StartHarness();
  for (std::string rel :
       {"../x.bin", "/abs.bin", "a/../../x.bin", "a\\b.bin", "", "a//b"}) {
    SCOPED_TRACE(rel);
    v1::CreateDownloadRequest request;
    request.set_dest_dir(root_.string());
    v1::DownloadFile* file = request.add_files();
    file->set_url(server_->Url("/f"));
    file->set_relative_path(rel);
    EXPECT_THAT(harness_->Create(request).status(),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("relative_path")));
  }
}

TEST_F(DownloaderTest, SymlinksPlantedInsideTheRootAreNotFollowed) {
  StartHarness();
  fs::path outside = tmp_.path() / "outside";
  fs::create_directories(outside);
  std::ofstream(outside / "victim") << "precious";
  fs::create_symlink(outside, root_ / "link");
  fs::create_symlink(outside / "victim", root_ / "planted.bin.downloading");
  server_->SetFile("/f.bin", {.body = "payload"});

  v1::CreateDownloadRequest multi;
  multi.set_dest_dir(root_.string());
  v1::DownloadFile* file = multi.add_files();
  file->set_url(server_->Url("/f.bin"));
  file->set_relative_path("link/sub/f.bin");
  v1::DownloadJob job = Run(multi);
  EXPECT_EQ(job.state(), v1::DOWNLOAD_STATE_FAILED);
  EXPECT_EQ(job.error().type(), "UnsafePath") << job.DebugString();
  EXPECT_FALSE(fs::exists(outside / "sub"));

  v1::CreateDownloadRequest single = Request("/f.bin");
  single.set_file_name("planted.bin");
  job = Run(single);
  EXPECT_EQ(job.state(), v1::DOWNLOAD_STATE_FAILED);
  EXPECT_EQ(job.error().type(), "UnsafePath") << job.DebugString();
  EXPECT_THAT(job.error().message(), HasSubstr("is a symbolic link"));
  EXPECT_EQ(ReadFile(outside / "victim"), "precious");
  EXPECT_FALSE(fs::exists(root_ / "planted.bin"));
}

TEST_F(DownloaderTest, PriorityOrderWithOneJobAtATime) {
  HarnessOptions options;
  options.engine.max_parallel = 1;
  StartHarness(options);
  server_->SetFile("/blocker", {.body = RandomBody(40000, 1)});
  server_->SetBehavior("/blocker", {.bytes_per_second = 100000});
  v1::CreateDownloadRequest blocker = Request("/blocker");
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob first, harness_->Create(blocker));
  ASSERT_OK(harness_->WaitForState(first.id(), v1::DOWNLOAD_STATE_RUNNING));
  std::vector<std::pair<int, std::string>> created;
  for (int priority : {20, 5, 10, 5}) {
    std::string path = absl::StrCat("/p", created.size());
    server_->SetFile(path, {.body = "p"});
    v1::CreateDownloadRequest request = Request(path);
    request.set_priority(priority);
    ASSERT_OK_AND_ASSIGN(v1::DownloadJob job, harness_->Create(request));
    created.emplace_back(priority, path);
  }
  ASSERT_OK(harness_->Wait(first.id()).status());
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(
        server_->WaitForRequests(absl::StrCat("/p", i), 1, absl::Seconds(10)));
  }
  std::vector<std::string> order;
  for (const auto& r : server_->Requests()) {
    if (r.target.rfind("/p", 0) == 0) order.push_back(r.target);
  }
  // Priority 5 (in submission order), then 10, then 20.
  EXPECT_EQ(order, (std::vector<std::string>{"/p1", "/p3", "/p2", "/p0"}));
}

TEST_F(DownloaderTest, PauseAndResumeMidFileGiveTheSameBytes) {
  StartHarness();
  std::string body = RandomBody(400 * 1024, 20);
  server_->SetFile("/pr.bin", {.body = body, .etag = "\"pr\""});
  // Four segments of 100 KiB at 100 KiB/s each: a second to pause in.
  server_->SetBehavior("/pr.bin", {.bytes_per_second = 100 * 1024});
  v1::CreateDownloadRequest request = Request("/pr.bin");
  request.set_expected_sha256(Sha256Hex(body));
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob job, harness_->Create(request));
  ASSERT_OK(harness_->WaitForBytes(job.id(), 50 * 1024));
  {
    grpc::ClientContext context;
    SetDeadline(context);
    v1::DownloadJobRequest pause;
    pause.set_id(job.id());
    v1::DownloadJob paused;
    ASSERT_TRUE(harness_->stub().PauseDownload(&context, pause, &paused).ok());
  }
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob paused, harness_->Wait(job.id()));
  EXPECT_EQ(paused.state(), v1::DOWNLOAD_STATE_PAUSED);
  EXPECT_TRUE(server_->WaitForActiveConnectionsAtMost(0, absl::Seconds(5)));
  EXPECT_TRUE(fs::exists(root_ / "pr.bin.downloading"));
  absl::StatusOr<v1::DownloadJob> after = harness_->Get(job.id());
  ASSERT_OK(after.status());
  EXPECT_GT(after->bytes(), 0);
  size_t requests_before = server_->RequestsFor("/pr.bin").size();

  server_->SetBehavior("/pr.bin", {});
  {
    grpc::ClientContext context;
    SetDeadline(context);
    v1::ResumeDownloadRequest resume;
    resume.set_id(job.id());
    v1::DownloadJob resumed;
    ASSERT_TRUE(
        harness_->stub().ResumeDownload(&context, resume, &resumed).ok());
  }
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob done, harness_->Wait(job.id()));
  ASSERT_EQ(done.state(), v1::DOWNLOAD_STATE_SUCCEEDED) << done.DebugString();
  EXPECT_EQ(ReadFile(root_ / "pr.bin"), body);
  std::vector<mm::testing::HttpRequestRecord> requests =
      server_->RequestsFor("/pr.bin");
  ASSERT_GT(requests.size(), requests_before);
  for (size_t i = requests_before; i < requests.size(); ++i) {
    EXPECT_EQ(requests[i].headers.at("if-range"), "\"pr\"");
    EXPECT_NE(requests[i].headers.at("range").rfind("bytes=0-", 0), 0u)
        << "resumed from zero: " << requests[i].headers.at("range");
  }
}

TEST_F(DownloaderTest, ChangedEtagRestartsTheFileFromZero) {
  StartHarness();
  std::string old_body = RandomBody(300 * 1024, 30);
  std::string new_body = RandomBody(300 * 1024, 31);
  server_->SetFile("/ch.bin", {.body = old_body, .etag = "\"old\""});
  server_->SetBehavior("/ch.bin", {.bytes_per_second = 100 * 1024});
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob job,
                       harness_->Create(Request("/ch.bin")));
  ASSERT_OK(harness_->WaitForBytes(job.id(), 50 * 1024));
  ASSERT_OK(harness_->manager()
                .Apply(job.id(), DownloadManager::Action::kPause)
                .status());
  ASSERT_OK(harness_->Wait(job.id()).status());
  server_->SetFile("/ch.bin", {.body = new_body, .etag = "\"new\""});
  server_->SetBehavior("/ch.bin", {});
  ASSERT_OK(harness_->manager()
                .Apply(job.id(), DownloadManager::Action::kResume)
                .status());
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob done, harness_->Wait(job.id()));
  ASSERT_EQ(done.state(), v1::DOWNLOAD_STATE_SUCCEEDED) << done.DebugString();
  EXPECT_EQ(ReadFile(root_ / "ch.bin"), new_body);
}

TEST_F(DownloaderTest, CancelRemovesThePartialFile) {
  StartHarness();
  server_->SetFile("/c.bin", {.body = RandomBody(300 * 1024, 40)});
  server_->SetBehavior("/c.bin", {.bytes_per_second = 100 * 1024});
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob job,
                       harness_->Create(Request("/c.bin")));
  ASSERT_OK(harness_->WaitForBytes(job.id(), 10 * 1024));
  ASSERT_OK_AND_ASSIGN(
      Job cancelled,
      harness_->manager().Apply(job.id(), DownloadManager::Action::kCancel));
  EXPECT_EQ(cancelled.state, JobState::kCancelled);
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob done, harness_->Wait(job.id()));
  EXPECT_EQ(done.state(), v1::DOWNLOAD_STATE_CANCELLED);
  EXPECT_TRUE(server_->WaitForActiveConnectionsAtMost(0, absl::Seconds(5)));
  EXPECT_TRUE(FilesUnderRoot().empty());
  EXPECT_THAT(harness_->manager()
                  .Apply(job.id(), DownloadManager::Action::kResume)
                  .status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(DownloaderTest, StartFalseWaitsForStart) {
  StartHarness();
  server_->SetFile("/w.bin", {.body = "w"});
  v1::CreateDownloadRequest request = Request("/w.bin");
  request.set_start(false);
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob job, harness_->Create(request));
  EXPECT_EQ(job.state(), v1::DOWNLOAD_STATE_WAITING);
  EXPECT_THAT(harness_->Wait(job.id(), absl::Milliseconds(300)).status(),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_TRUE(server_->Requests().empty());
  ASSERT_OK(harness_->manager()
                .Apply(job.id(), DownloadManager::Action::kStart)
                .status());
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob done, harness_->Wait(job.id()));
  EXPECT_EQ(done.state(), v1::DOWNLOAD_STATE_SUCCEEDED);
}

TEST_F(DownloaderTest, RequestIdMakesCreateIdempotent) {
  StartHarness();
  server_->SetFile("/i.bin", {.body = "i"});
  v1::CreateDownloadRequest request = Request("/i.bin");
  request.set_request_id("req-1");
  request.set_start(false);
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob a, harness_->Create(request));
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob b, harness_->Create(request));
  EXPECT_EQ(a.id(), b.id());
}

TEST_F(DownloaderTest, WatchSendsSnapshotProgressAndAFinalDoneMessage) {
  StartHarness();
  std::string body = RandomBody(300 * 1024, 50);
  server_->SetFile("/watch.bin", {.body = body});
  server_->SetBehavior("/watch.bin", {.bytes_per_second = 600 * 1024});
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob job,
                       harness_->Create(Request("/watch.bin")));
  grpc::ClientContext context;
  SetDeadline(context);
  v1::WatchDownloadRequest request;
  request.set_id(job.id());
  auto reader = harness_->stub().WatchDownload(&context, request);
  std::vector<v1::DownloadJob> messages;
  v1::DownloadJob message;
  while (reader->Read(&message)) messages.push_back(message);
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_GE(messages.size(), 3u);
  EXPECT_TRUE(messages.back().done());
  EXPECT_EQ(messages.back().state(), v1::DOWNLOAD_STATE_SUCCEEDED);
  int progress = 0;
  for (size_t i = 1; i < messages.size(); ++i) {
    EXPECT_GT(messages[i].revision(), messages[i - 1].revision());
    EXPECT_FALSE(messages[i - 1].done());
    if (messages[i].bytes() > messages[i - 1].bytes()) ++progress;
  }
  EXPECT_GE(progress, 2);

  // Watching a finished job: the snapshot, which is final.
  grpc::ClientContext again;
  SetDeadline(again);
  auto replay = harness_->stub().WatchDownload(&again, request);
  ASSERT_TRUE(replay->Read(&message));
  EXPECT_TRUE(message.done());
  EXPECT_FALSE(replay->Read(&message));
  EXPECT_TRUE(replay->Finish().ok());

  grpc::ClientContext unknown;
  SetDeadline(unknown);
  request.set_id("nope");
  auto missing = harness_->stub().WatchDownload(&unknown, request);
  EXPECT_FALSE(missing->Read(&message));
  EXPECT_EQ(missing->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

// DESIGN §2: a watch ends with a final `done` message, or NOT_FOUND. A job
// that ends and is pruned between two looks of a watch leaves no final
// message to send; ending OK instead would look like a stream cut short.
TEST_F(DownloaderTest, WatchOfAJobPrunedWhileWatchedEndsWithNotFound) {
  StartHarness();
  v1::CreateDownloadRequest create = Request("/never.bin");
  create.set_start(false);
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob job, harness_->Create(create));
  // A connection of its own to the database, so that the job can end and
  // be pruned in one transaction: the watch cannot look in between.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<sql::Database> db,
                       sql::Database::Open(absl::StrCat(
                           "sqlite:", (tmp_.path() / "dl.db").string())));

  grpc::ClientContext context;
  SetDeadline(context);
  v1::WatchDownloadRequest request;
  request.set_id(job.id());
  auto reader = harness_->stub().WatchDownload(&context, request);
  v1::DownloadJob message;
  ASSERT_TRUE(reader->Read(&message));
  EXPECT_EQ(message.state(), v1::DOWNLOAD_STATE_WAITING);
  EXPECT_FALSE(message.done());

  ASSERT_OK(db->Transaction([&](sql::Session& session) -> absl::Status {
    ASSIGN_OR_RETURN(
        sql::Result cancelled,
        session.Execute("UPDATE download_jobs SET state = 'cancelled', "
                        "ended_ms = 1 WHERE id = ?",
                        {job.id()}));
    ASSIGN_OR_RETURN(
        sql::Result pruned,
        session.Execute("DELETE FROM download_jobs WHERE id = ? AND state = "
                        "'cancelled'",
                        {job.id()}));
    return absl::OkStatus();
  }));
  // Those writes bypassed the store's change signal: wake the watch now
  // rather than at its next periodic look.
  harness_->store().changes().Notify();

  std::vector<v1::DownloadJob> rest;
  while (reader->Read(&message)) rest.push_back(message);
  EXPECT_TRUE(rest.empty()) << rest.front().DebugString();
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND)
      << status.error_message();
  EXPECT_EQ(status.error_message(),
            absl::StrCat("download job ", job.id(),
                         " ended and was pruned before this watch could send "
                         "its final state"));
}

TEST_F(DownloaderTest, ListPagesInSubmissionOrderAndPruneForgetsFinishedJobs) {
  StartHarness();
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    v1::CreateDownloadRequest request = Request("/l");
    request.set_start(false);
    ASSERT_OK_AND_ASSIGN(v1::DownloadJob job, harness_->Create(request));
    ids.push_back(job.id());
  }
  std::vector<std::string> listed;
  std::string token;
  do {
    grpc::ClientContext context;
    SetDeadline(context);
    v1::ListDownloadsRequest request;
    request.set_page_size(2);
    request.set_page_token(token);
    v1::ListDownloadsResponse response;
    ASSERT_TRUE(
        harness_->stub().ListDownloads(&context, request, &response).ok());
    for (const auto& job : response.jobs()) listed.push_back(job.id());
    token = response.next_page_token();
  } while (!token.empty());
  EXPECT_EQ(listed, ids);

  ASSERT_OK(harness_->manager()
                .Apply(ids[0], DownloadManager::Action::kCancel)
                .status());
  grpc::ClientContext context;
  SetDeadline(context);
  v1::PruneDownloadsRequest prune;
  v1::PruneDownloadsResponse pruned;
  ASSERT_TRUE(harness_->stub().PruneDownloads(&context, prune, &pruned).ok());
  EXPECT_EQ(pruned.pruned(), 1);
  EXPECT_THAT(harness_->Get(ids[0]).status(),
              StatusIs(absl::StatusCode::kNotFound));

  grpc::ClientContext bulk_context;
  SetDeadline(bulk_context);
  v1::BulkDownloadActionRequest bulk;
  bulk.set_action(v1::BulkDownloadActionRequest::CANCEL);
  v1::BulkDownloadActionResponse bulk_response;
  ASSERT_TRUE(harness_->stub()
                  .BulkDownloadAction(&bulk_context, bulk, &bulk_response)
                  .ok());
  EXPECT_EQ(bulk_response.jobs_size(), 4);
}

TEST_F(DownloaderTest, RestartResumesFromTheSavedSegments) {
  std::string body = RandomBody(1 << 20, 60);
  server_->SetFile("/r.bin", {.body = body, .etag = "\"r\""});
  server_->SetBehavior("/r.bin", {.bytes_per_second = 1 << 20});
  StartHarness();
  v1::CreateDownloadRequest request = Request("/r.bin");
  request.set_expected_sha256(Sha256Hex(body));
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob job, harness_->Create(request));
  ASSERT_OK(harness_->WaitForBytes(job.id(), 300 * 1024));
  harness_->StopEngine();
  harness_.reset();
  size_t before = server_->RequestsFor("/r.bin").size();
  server_->SetBehavior("/r.bin", {});
  StartHarness();
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob done, harness_->Wait(job.id()));
  ASSERT_EQ(done.state(), v1::DOWNLOAD_STATE_SUCCEEDED) << done.DebugString();
  EXPECT_EQ(ReadFile(root_ / "r.bin"), body);
  int64_t resent = 0;
  std::vector<mm::testing::HttpRequestRecord> requests =
      server_->RequestsFor("/r.bin");
  for (size_t i = before; i < requests.size(); ++i) {
    EXPECT_EQ(requests[i].headers.at("if-range"), "\"r\"");
    resent += requests[i].body_bytes_sent;
  }
  EXPECT_LT(resent, static_cast<int64_t>(body.size()) - 200 * 1024);
}

// A per-job token lives only in memory: after a restart the job pauses and
// asks for it, and a resume that brings it finishes the job. The worker may
// claim the resumed job the moment the resume is written, so the token must
// be in memory by then; it used to be put there just after, and about one
// run in ten the job paused again (issue 13).
TEST_F(DownloaderTest, JobThatLostItsTokenInARestartPausesUntilGivenOne) {
  const std::string token = "tok-restart";
  std::string body = RandomBody(200 * 1024, 70);
  server_->SetFile("/t.bin", {.body = body, .etag = "\"t\""});
  // The first process gets 20 KiB, then nothing more until it goes away:
  // it cannot finish before it is stopped, however slow the machine.
  server_->SetBehavior("/t.bin", {.require_bearer = token,
                                  .stall_after_bytes = 20 * 1024,
                                  .stall_for = absl::InfiniteDuration(),
                                  .stall_count = 1});
  HarnessOptions first;
  first.engine.stall_timeout = absl::Minutes(10);
  first.engine.max_segments = 1;  // one request to account for
  StartHarness(first);
  v1::CreateDownloadRequest request = Request("/t.bin");
  request.set_access_token(token);
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob job, harness_->Create(request));
  ASSERT_OK(harness_->WaitForBytes(job.id(), 1));
  harness_->StopEngine();
  harness_.reset();
  ASSERT_TRUE(server_->WaitForActiveConnectionsAtMost(0, absl::Seconds(10)));
  const size_t requests_before = server_->RequestsFor("/t.bin").size();
  ASSERT_EQ(requests_before, 1u);

  server_->SetBehavior("/t.bin", {.require_bearer = token});
  StartHarness();
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob paused, harness_->Wait(job.id()));
  ASSERT_EQ(paused.state(), v1::DOWNLOAD_STATE_PAUSED) << paused.DebugString();
  EXPECT_THAT(paused.status_message(),
              HasSubstr("needs its access token again"));
  EXPECT_TRUE(paused.has_access_token());
  // Paused before asking the server anything without the token.
  EXPECT_EQ(server_->RequestsFor("/t.bin").size(), requests_before);

  // Follow the job from the paused snapshot on, so that a second pause is
  // seen whenever it happens, then resume through the rpc.
  grpc::ClientContext watch_context;
  SetDeadline(watch_context);
  v1::WatchDownloadRequest watch;
  watch.set_id(job.id());
  auto reader = harness_->stub().WatchDownload(&watch_context, watch);
  v1::DownloadJob message;
  ASSERT_TRUE(reader->Read(&message));
  ASSERT_EQ(message.state(), v1::DOWNLOAD_STATE_PAUSED);
  const int64_t paused_revision = message.revision();
  {
    grpc::ClientContext context;
    SetDeadline(context);
    v1::ResumeDownloadRequest resume;
    resume.set_id(job.id());
    resume.set_access_token(token);
    v1::DownloadJob resumed;
    grpc::Status status =
        harness_->stub().ResumeDownload(&context, resume, &resumed);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(resumed.state(), v1::DOWNLOAD_STATE_QUEUED);
    EXPECT_TRUE(resumed.has_access_token());
  }
  // Every later message is the resumed job going to its end; a pause
  // among them is the bug.
  std::vector<v1::DownloadJob> after;
  while (reader->Read(&message)) {
    after.push_back(message);
    if (message.state() == v1::DOWNLOAD_STATE_PAUSED) {
      watch_context.TryCancel();  // it would wait for a resume forever
      break;
    }
  }
  grpc::Status watched = reader->Finish();
  ASSERT_FALSE(!after.empty() &&
               after.back().state() == v1::DOWNLOAD_STATE_PAUSED)
      << "the resumed job paused again: " << after.back().DebugString();
  ASSERT_TRUE(watched.ok()) << watched.error_message();
  ASSERT_FALSE(after.empty());
  EXPECT_GT(after.front().revision(), paused_revision);
  EXPECT_EQ(after.back().state(), v1::DOWNLOAD_STATE_SUCCEEDED)
      << after.back().DebugString();
  EXPECT_TRUE(after.back().done());
  EXPECT_EQ(ReadFile(root_ / "t.bin"), body);
  // The resumed worker sent the token with every request, and continued
  // the saved segment instead of starting over.
  std::vector<mm::testing::HttpRequestRecord> requests =
      server_->RequestsFor("/t.bin");
  ASSERT_GT(requests.size(), requests_before);
  for (size_t i = requests_before; i < requests.size(); ++i) {
    EXPECT_EQ(requests[i].status, 206);
    EXPECT_EQ(requests[i].headers.at("authorization"), "Bearer " + token);
    EXPECT_EQ(requests[i].headers.at("if-range"), "\"t\"");
  }
}

// The resume's token goes into memory only once the resume is allowed: a
// refused resume leaves the job's own token in place.
TEST_F(DownloaderTest, RefusedResumeKeepsTheJobsToken) {
  StartHarness();
  server_->SetFile("/own.bin", {.body = "own token"});
  server_->SetBehavior("/own.bin", {.require_bearer = "tok-own"});
  v1::CreateDownloadRequest request = Request("/own.bin");
  request.set_access_token("tok-own");
  request.set_start(false);
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob job, harness_->Create(request));
  EXPECT_THAT(
      harness_->manager()
          .Apply(job.id(), DownloadManager::Action::kResume, "tok-other")
          .status(),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               absl::StrCat("cannot resume download ", job.id(),
                            ": it is waiting")));
  ASSERT_OK(harness_->manager()
                .Apply(job.id(), DownloadManager::Action::kStart)
                .status());
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob done, harness_->Wait(job.id()));
  ASSERT_EQ(done.state(), v1::DOWNLOAD_STATE_SUCCEEDED) << done.DebugString();
  ASSERT_EQ(server_->RequestsFor("/own.bin").size(), 1u);
  EXPECT_EQ(server_->RequestsFor("/own.bin")[0].headers.at("authorization"),
            "Bearer tok-own");
}

TEST_F(DownloaderTest, BandwidthLimitIsSharedByAllTransfers) {
  HarnessOptions options;
  options.max_bytes_per_second = 512 * 1024;
  StartHarness(options);
  for (int i = 0; i < 2; ++i) {
    server_->SetFile(absl::StrCat("/bw", i),
                     {.body = RandomBody(256 * 1024, i)});
  }
  absl::Time start = absl::Now();
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob a, harness_->Create(Request("/bw0")));
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob b, harness_->Create(Request("/bw1")));
  ASSERT_OK(harness_->Wait(a.id()).status());
  ASSERT_OK(harness_->Wait(b.id()).status());
  // 512 KiB at 512 KiB/s (with a 64 KiB burst): about a second.
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(800));
}

}  // namespace
}  // namespace mm::downloader
