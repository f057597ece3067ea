// The job's stored JSON body: errors kept as data (code and type apart from
// the message), and rows written by earlier builds still read.
#include "services/downloader/job.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace mm::downloader {
namespace {

using ::mm::testing::StatusIs;
using ::testing::HasSubstr;

Job FailedJob() {
  Job job;
  job.id = "dl-1";
  job.destination = "/models";
  job.parts.push_back(Part{.url = "http://host/model.bin"});
  job.state = JobState::kFailed;
  job.error = JobError{absl::StatusCode::kDataLoss, "SizeMismatch",
                       "/models/model.bin: received 10 bytes, expected 12"};
  return job;
}

TEST(JobBodyTest, ErrorRoundTripsAsData) {
  const Job job = FailedJob();
  nlohmann::json body = JobBodyJson(job);
  // Stored by name, as rows have always held it.
  EXPECT_EQ(body["error"]["code"], "DATA_LOSS");
  EXPECT_EQ(body["error"]["type"], "SizeMismatch");
  Job read;
  ASSERT_OK(JobBodyFromJson(body, read));
  ASSERT_TRUE(read.error.has_value());
  EXPECT_EQ(*read.error, *job.error);
}

// A body as an earlier build wrote it, with every gRPC code name it used.
TEST(JobBodyTest, OldRowsCodeNamesMapToStatusCodes) {
  const std::pair<const char*, absl::StatusCode> names[] = {
      {"NOT_FOUND", absl::StatusCode::kNotFound},
      {"UNAUTHENTICATED", absl::StatusCode::kUnauthenticated},
      {"PERMISSION_DENIED", absl::StatusCode::kPermissionDenied},
      {"FAILED_PRECONDITION", absl::StatusCode::kFailedPrecondition},
      {"UNAVAILABLE", absl::StatusCode::kUnavailable},
      {"DATA_LOSS", absl::StatusCode::kDataLoss},
      {"ABORTED", absl::StatusCode::kAborted},
      {"INVALID_ARGUMENT", absl::StatusCode::kInvalidArgument},
      {"RESOURCE_EXHAUSTED", absl::StatusCode::kResourceExhausted},
      {"INTERNAL", absl::StatusCode::kInternal},
  };
  for (const auto& [name, code] : names) {
    nlohmann::json body = {
        {"destination", "/models"},
        {"dest_is_dir", true},
        {"keep_partial", false},
        {"has_token", false},
        {"parts", {{{"url", "http://host/a"}, {"segments", {}}}}},
        {"error",
         {{"code", name},
          {"type", "HTTPError(NOT FOUND)"},
          {"message", "http://host/a answered 404 Not Found"}}},
    };
    Job job;
    ASSERT_OK(JobBodyFromJson(body, job));
    ASSERT_TRUE(job.error.has_value()) << name;
    EXPECT_EQ(job.error->code, code) << name;
    EXPECT_EQ(job.error->type, "HTTPError(NOT FOUND)");
    EXPECT_EQ(job.error->message, "http://host/a answered 404 Not Found");
  }
}

TEST(JobBodyTest, UnknownOrMissingCodeReadsAsUnknown) {
  for (const char* error : {R"({"code": "NO_SUCH_CODE", "type": "X"})",
                            R"({"type": "X", "message": "m"})"}) {
    nlohmann::json body = nlohmann::json::parse(R"({
      "destination": "/models", "dest_is_dir": true, "keep_partial": false,
      "has_token": false, "parts": []})");
    body["error"] = nlohmann::json::parse(error);
    Job job;
    ASSERT_OK(JobBodyFromJson(body, job));
    ASSERT_TRUE(job.error.has_value()) << error;
    EXPECT_EQ(job.error->code, absl::StatusCode::kUnknown) << error;
    EXPECT_EQ(job.error->type, "X");
  }
}

TEST(JobBodyTest, NoErrorStaysNoError) {
  Job job = FailedJob();
  job.error.reset();
  Job read;
  read.error = JobError{absl::StatusCode::kInternal, "Stale", "from before"};
  ASSERT_OK(JobBodyFromJson(JobBodyJson(job), read));
  EXPECT_FALSE(read.error.has_value());
}

TEST(JobBodyTest, MalformedBodyIsDataLoss) {
  Job job;
  job.id = "dl-2";
  EXPECT_THAT(JobBodyFromJson(nlohmann::json::parse(R"({"parts": 3})"), job),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("job dl-2 has a malformed body")));
}

}  // namespace
}  // namespace mm::downloader
