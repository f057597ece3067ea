// How a download job prints: state names, lines, progress bars, outcome.
#include "cli/download_format.h"

#include <string>
#include <vector>

#include "cli/cli.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_downloader_service.h"
#include "tests/testing/status_matchers.h"

namespace mm::cli {
namespace {

namespace v1 = modelmanager::v1;
using ::mm::testing::StatusIs;
using ::testing::HasSubstr;

v1::DownloadJob Job(const std::string& id, v1::DownloadState state,
                    int64_t revision = 1, int64_t bytes = 0,
                    int64_t total = 0) {
  return ::mm::testing::FakeDownloadJob(id, state, revision, bytes, total);
}

// Running at 1 MiB/s.
v1::DownloadJob Running(const std::string& id, int64_t revision, int64_t bytes,
                        int64_t total) {
  v1::DownloadJob job =
      Job(id, v1::DOWNLOAD_STATE_RUNNING, revision, bytes, total);
  job.set_bytes_per_second(1024 * 1024);
  return job;
}

TEST(DownloadStateTest, NamesRoundTrip) {
  EXPECT_EQ(DownloadStateName(v1::DOWNLOAD_STATE_RUNNING), "running");
  EXPECT_EQ(DownloadStateName(v1::DOWNLOAD_STATE_CANCELLED), "cancelled");
  for (const char* name : {"waiting", "queued", "running", "paused",
                           "succeeded", "failed", "cancelled"}) {
    ASSERT_OK_AND_ASSIGN(v1::DownloadState state, ParseDownloadState(name));
    EXPECT_EQ(DownloadStateName(state), name);
  }
  EXPECT_EQ(ParseDownloadState("FAILED").value(), v1::DOWNLOAD_STATE_FAILED);
  absl::StatusOr<v1::DownloadState> bad = ParseDownloadState("done");
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kInvalidArgument,
                            HasSubstr("--state 'done' is not one of waiting, "
                                      "queued, running")));
  EXPECT_TRUE(IsUsageError(bad.status()));
  EXPECT_THAT(ParseDownloadState("unspecified"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(JobOutcomeTest, FailedCarriesTheJobsCode) {
  EXPECT_OK(JobOutcome(Job("a", v1::DOWNLOAD_STATE_SUCCEEDED)));
  EXPECT_OK(JobOutcome(Job("a", v1::DOWNLOAD_STATE_RUNNING)));
  EXPECT_THAT(JobOutcome(Job("a", v1::DOWNLOAD_STATE_FAILED)),
              StatusIs(absl::StatusCode::kNotFound,
                       "download a failed: HTTPError(NOT FOUND): 404 from "
                       "example.com"));
  v1::DownloadJob odd = Job("b", v1::DOWNLOAD_STATE_FAILED);
  odd.mutable_error()->set_code("SOMETHING_NEW");
  EXPECT_THAT(JobOutcome(odd), StatusIs(absl::StatusCode::kUnknown));
  EXPECT_THAT(
      JobOutcome(Job("c", v1::DOWNLOAD_STATE_CANCELLED)),
      StatusIs(absl::StatusCode::kCancelled, "download c was cancelled"));
  v1::DownloadJob paused = Job("d", v1::DOWNLOAD_STATE_PAUSED);
  paused.set_status_message("needs its access token again");
  EXPECT_THAT(JobOutcome(paused),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("paused: needs its access token again; "
                                 "continue it with `mm downloads resume d`")));
}

TEST(JobLinesTest, StateLines) {
  EXPECT_EQ(JobStateLine(Job("a", v1::DOWNLOAD_STATE_RUNNING)), "a running");
  EXPECT_EQ(JobStateLine(Job("a", v1::DOWNLOAD_STATE_SUCCEEDED)),
            "a succeeded /models/a.safetensors");
  EXPECT_EQ(JobStateLine(Job("a", v1::DOWNLOAD_STATE_FAILED)),
            "a failed HTTPError(NOT FOUND): 404 from example.com");
}

TEST(JobLinesTest, ProgressLineWithKnownTotal) {
  v1::DownloadJob job =
      Running("0123456789abcdef", 3, 512 * 1024 * 1024, 1024 * 1024 * 1024);
  std::string line = JobProgressLine(job);
  EXPECT_THAT(line, HasSubstr("01234567 running ["));
  EXPECT_THAT(line, Not(HasSubstr("89abcdef")));
  EXPECT_THAT(line, HasSubstr("############------------] 50%"));
  EXPECT_THAT(line, HasSubstr("512.0 MiB/1.0 GiB 1.0 MiB/s ETA 8m32s"));
  EXPECT_THAT(line, Not(HasSubstr("parts")));
  for (bool done : {true, false, false}) {
    v1::PartProgress* part = job.add_parts();
    part->set_done(done);
  }
  EXPECT_THAT(JobProgressLine(job), HasSubstr("parts 1/3"));
}

TEST(JobLinesTest, UnknownTotalShowsBytesAndRateOnly) {
  std::string line = JobProgressLine(Running("a", 1, 2048, 0));
  EXPECT_EQ(line, "a running 2.0 KiB 1.0 MiB/s");
}

}  // namespace
}  // namespace mm::cli
