// The engine's waits on its injected clock: retry backoff, Retry-After and
// progress-save throttling, tested on a FakeClock that the test advances,
// so a two-minute Retry-After takes no real time. Transfers still run on
// real sockets to a loopback server, in real time.
//
// The clock stands still unless a test moves it, and the job store's
// leases run on real time, so every test gives its engine a lease far
// longer than it runs (progress saves, which renew it, wait for the fake
// clock).
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/downloader/harness.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/http_test_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::downloader {
namespace {

namespace v1 = modelmanager::v1;
namespace fs = std::filesystem;
using ::mm::testing::FakeClock;
using ::mm::testing::HttpTestServer;
using ::mm::testing::RandomBody;
using ::mm::testing::ReadFile;
using ::mm::testing::TempDir;

class EngineClockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = tmp_.path() / "models";
    fs::create_directories(root_);
    ASSERT_OK_AND_ASSIGN(server_, HttpTestServer::Start());
  }

  // FastEngineOptions on the fake clock, with a lease no test outlives.
  EngineOptions Options() {
    EngineOptions options = FastEngineOptions();
    options.clock = &clock_;
    options.lease = absl::Minutes(10);
    return options;
  }

  void StartHarness(EngineOptions engine) {
    HarnessOptions options;
    options.db_url = absl::StrCat("sqlite:", (tmp_.path() / "dl.db").string());
    options.root = root_.string();
    options.engine = engine;
    ASSERT_OK_AND_ASSIGN(harness_, Harness::Start(options));
  }

  std::string Create(const std::string& path) {
    v1::CreateDownloadRequest request;
    request.set_url(server_->Url(path));
    request.set_dest_dir(root_.string());
    absl::StatusOr<v1::DownloadJob> created = harness_->Create(request);
    EXPECT_OK(created.status());
    return created.ok() ? created->id() : "";
  }

  // Waits until the job's first retry is saved. The clock stands still,
  // and saves are at least 50 ms of it apart: nudge it by `nudge`, which
  // must be shorter than the delay under test.
  void AwaitFirstRetrySaved(const std::string& id, absl::Duration nudge) {
    clock_.Advance(nudge);
    EXPECT_OK(
        harness_
            ->WatchUntil(
                id,
                [](const v1::DownloadJob& job) { return job.retries() >= 1; },
                kActTimeout)
            .status());
  }

  FakeClock clock_;
  TempDir tmp_;
  fs::path root_;
  std::unique_ptr<HttpTestServer> server_;
  std::unique_ptr<Harness> harness_;
};

TEST_F(EngineClockTest, RetryAfterIsHonouredOnTheEnginesClock) {
  StartHarness(Options());
  const std::string body = RandomBody(100 * 1024, 21);
  server_->SetFile("/busy.bin", {.body = body});
  // One 503 asking for two minutes; the backoff alone would be 50 ms.
  server_->SetBehavior("/busy.bin",
                       {.fail_statuses = {503}, .retry_after = "120"});
  const absl::Time real_start = absl::Now();
  const std::string id = Create("/busy.bin");
  ASSERT_TRUE(server_->WaitForDoneRequests("/busy.bin", 1, kActTimeout));
  AwaitFirstRetrySaved(id, absl::Seconds(1));

  // The retry was scheduled 120 s after a time within the first second.
  clock_.Advance(absl::Seconds(110));
  EXPECT_FALSE(server_->WaitForRequests("/busy.bin", 2, kQuietPeriod))
      << "retried before the Retry-After had passed";

  clock_.Advance(absl::Seconds(11));
  ASSERT_TRUE(server_->WaitForRequests("/busy.bin", 2, kActTimeout));
  absl::StatusOr<v1::DownloadJob> done = harness_->Wait(id);
  ASSERT_OK(done.status());
  EXPECT_EQ(done->state(), v1::DOWNLOAD_STATE_SUCCEEDED) << done->DebugString();
  EXPECT_EQ(done->retries(), 1);
  EXPECT_EQ(ReadFile(root_ / "busy.bin"), body);
  // Two fake minutes, not two real ones.
  EXPECT_LT(absl::Now() - real_start, absl::Seconds(60));
}

TEST_F(EngineClockTest, BackoffDelayIsHonouredOnTheEnginesClock) {
  EngineOptions options = Options();
  // The first retry waits 30 s jittered to 50-100 %: 15 s to 30 s.
  options.retry_base_delay = absl::Seconds(30);
  options.retry_max_delay = absl::Seconds(60);
  StartHarness(options);
  const std::string body = RandomBody(50 * 1024, 22);
  server_->SetFile("/flaky.bin", {.body = body});
  // A 500 carries no Retry-After: only the backoff applies.
  server_->SetBehavior("/flaky.bin", {.fail_statuses = {500}});
  const std::string id = Create("/flaky.bin");
  ASSERT_TRUE(server_->WaitForDoneRequests("/flaky.bin", 1, kActTimeout));
  AwaitFirstRetrySaved(id, absl::Seconds(1));

  // At most 14 s after the failure (scheduled within the first second):
  // below the shortest jittered delay.
  clock_.Advance(absl::Seconds(13));
  EXPECT_FALSE(server_->WaitForRequests("/flaky.bin", 2, kQuietPeriod))
      << "retried before the backoff delay had passed";

  // 31 s: past the longest one.
  clock_.Advance(absl::Seconds(17));
  ASSERT_TRUE(server_->WaitForRequests("/flaky.bin", 2, kActTimeout));
  absl::StatusOr<v1::DownloadJob> done = harness_->Wait(id);
  ASSERT_OK(done.status());
  EXPECT_EQ(done->state(), v1::DOWNLOAD_STATE_SUCCEEDED) << done->DebugString();
  EXPECT_EQ(ReadFile(root_ / "flaky.bin"), body);
}

// Bytes that arrive are saved when the clock says a save is due, not
// before: with the total unknown (no percent rule), that is
// progress_interval after the last save.
TEST_F(EngineClockTest, ProgressIsSavedWhenTheIntervalHasPassedOnTheClock) {
  EngineOptions options = Options();
  options.progress_interval = absl::Minutes(1);
  // The stalled connection below must not be dropped (in real time).
  options.stall_timeout = absl::Minutes(10);
  StartHarness(options);
  constexpr int64_t kSent = 512 * 1024;
  server_->SetFile("/slow.bin", {.body = RandomBody(1024 * 1024, 23)});
  server_->SetBehavior("/slow.bin", {.accept_ranges = false,
                                     .omit_content_length = true,
                                     .stall_after_bytes = kSent,
                                     .stall_for = absl::InfiniteDuration(),
                                     .stall_count = 1});
  const std::string id = Create("/slow.bin");
  ASSERT_OK(harness_->WaitForState(id, v1::DOWNLOAD_STATE_RUNNING));
  ASSERT_TRUE(server_->WaitForRequests("/slow.bin", 1, kActTimeout));
  // The server has sent its bytes (and stalls); the engine holds them.
  const absl::Time deadline = absl::Now() + kActTimeout;
  while (server_->RequestsFor("/slow.bin")[0].body_bytes_sent < kSent &&
         absl::Now() < deadline) {
    ASSERT_FALSE(
        server_->WaitForDoneRequests("/slow.bin", 1, absl::Milliseconds(20)))
        << "the answer ended instead of stalling";
  }
  EXPECT_FALSE(
      harness_
          ->WatchUntil(
              id, [](const v1::DownloadJob& job) { return job.bytes() > 0; },
              kQuietPeriod)
          .ok())
      << "progress was saved before the interval had passed on the clock";

  clock_.Advance(options.progress_interval);
  // Written in 256 KiB blocks: at least one is on disk and saved.
  EXPECT_OK(harness_->WaitForBytes(id, 256 * 1024, kActTimeout));
}

}  // namespace
}  // namespace mm::downloader
