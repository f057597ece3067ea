// The requests built from the command line, without a server.
#include "cli/download_requests.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::cli {
namespace {

namespace v1 = modelmanager::v1;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::mm::testing::WriteFile;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

ParsedArgs Args(const std::vector<std::string>& args) {
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return parsed.value_or(ParsedArgs{});
}

// The fake's jobs: FakeDownloadJob describes what each state carries.
TEST(BuildCreateDownloadRequestTest, MapsEveryFlag) {
  TempDir temp;
  WriteFile(temp.path() / "token", "  tok  \n");
  std::string sha(64, 'A');
  ASSERT_OK_AND_ASSIGN(
      v1::CreateDownloadRequest request,
      BuildCreateDownloadRequest(
          Args({"download", "https://h/m.safetensors", "--dest", "models/sd",
                "--name", "m.safetensors", "--priority", "3", "--sha256", sha,
                "--size", "1234", "--token-file",
                (temp.path() / "token").string(), "--keep-partial",
                "--no-start", "--request-id", "r1"}),
          "/work/dir"));
  EXPECT_EQ(request.url(), "https://h/m.safetensors");
  EXPECT_EQ(request.dest_dir(), "/work/dir/models/sd");
  EXPECT_EQ(request.output_path(), "");
  EXPECT_EQ(request.file_name(), "m.safetensors");
  ASSERT_TRUE(request.has_priority());
  EXPECT_EQ(request.priority(), 3);
  EXPECT_EQ(request.expected_sha256(), std::string(64, 'a'));
  EXPECT_EQ(request.expected_size(), 1234);
  // Only trailing whitespace is trimmed (ReadTokenFile).
  EXPECT_EQ(request.access_token(), "  tok");
  EXPECT_TRUE(request.keep_partial_on_error());
  ASSERT_TRUE(request.has_start());
  EXPECT_FALSE(request.start());
  EXPECT_EQ(request.request_id(), "r1");
}

TEST(BuildCreateDownloadRequestTest, DefaultsLeaveTheServerToChoose) {
  ASSERT_OK_AND_ASSIGN(
      v1::CreateDownloadRequest request,
      BuildCreateDownloadRequest(Args({"download", "https://h/m"}), "/w"));
  EXPECT_EQ(request.dest_dir(), "");
  EXPECT_EQ(request.output_path(), "");
  EXPECT_FALSE(request.has_priority());
  EXPECT_FALSE(request.has_start());
  EXPECT_EQ(request.access_token(), "");
  EXPECT_FALSE(request.keep_partial_on_error());
  EXPECT_EQ(request.expected_sha256(), "");
}

TEST(BuildCreateDownloadRequestTest, OutputIsMadeAbsoluteAndAbsoluteKept) {
  ASSERT_OK_AND_ASSIGN(
      v1::CreateDownloadRequest relative,
      BuildCreateDownloadRequest(
          Args({"download", "https://h/m", "--output", "../x/./m.bin"}),
          "/work/dir"));
  EXPECT_EQ(relative.output_path(), "/work/x/m.bin");
  ASSERT_OK_AND_ASSIGN(
      v1::CreateDownloadRequest absolute,
      BuildCreateDownloadRequest(
          Args({"download", "https://h/m", "--dest", "/srv/models"}),
          "/work/dir"));
  EXPECT_EQ(absolute.dest_dir(), "/srv/models");
}

TEST(BuildCreateDownloadRequestTest, BadValuesAreUsageErrors) {
  auto build = [](std::vector<std::string> extra) {
    std::vector<std::string> args = {"download", "https://h/m"};
    args.insert(args.end(), extra.begin(), extra.end());
    return BuildCreateDownloadRequest(Args(args), "/w");
  };
  struct Case {
    std::vector<std::string> extra;
    std::string message;
  };
  const Case cases[] = {
      {{"--sha256", "abc"}, "--sha256 must be 64 hexadecimal characters"},
      {{"--sha256", std::string(63, 'a') + "g"},
       "--sha256 must be 64 hexadecimal characters"},
      {{"--priority", "high"}, "--priority must be a whole number"},
      {{"--priority", "99999999999"}, "--priority must be a whole number"},
      {{"--size", "-1"}, "--size must be the expected size in bytes"},
      {{"--size", "1GB"}, "--size must be the expected size in bytes"},
      {{"--dest", "a", "--output", "b"}, "give one"},
      {{"--output", "b", "--name", "n"}, "--name sets the file name"},
      {{"extra-url"}, "mm download takes one URL, got also 'extra-url'"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<v1::CreateDownloadRequest> request = build(c.extra);
    EXPECT_THAT(request, StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr(c.message)))
        << c.extra[0];
    EXPECT_TRUE(IsUsageError(request.status())) << c.extra[0];
  }
  EXPECT_THAT(BuildCreateDownloadRequest(Args({"download"}), "/w"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("mm download needs a URL or --files LIST")));
}

TEST(BuildCreateDownloadRequestTest, UnreadableTokenFileIsNotFound) {
  absl::StatusOr<v1::CreateDownloadRequest> request =
      BuildCreateDownloadRequest(
          Args({"download", "https://h/m", "--token-file", "/nonexistent/t"}),
          "/w");
  EXPECT_THAT(request, StatusIs(absl::StatusCode::kNotFound,
                                HasSubstr("/nonexistent/t")));
  EXPECT_FALSE(IsUsageError(request.status()));
}

TEST(BuildCreateDownloadRequestTest, FilesListIsOneMultiFileJob) {
  TempDir temp;
  std::string sha(64, 'B');
  WriteFile(temp.path() / "list",
            absl::StrCat("# model and its config\n"
                         "\n"
                         "https://h/unet.bin\tunet/model.bin\t1024\t",
                         sha,
                         "\r\n"
                         "   https://h/a.json    cfg/a.json   0  \n"
                         "  # an indented comment\n"
                         "https://h/b.txt b.txt"));
  ASSERT_OK_AND_ASSIGN(
      v1::CreateDownloadRequest request,
      BuildCreateDownloadRequest(
          Args({"download", "--files", (temp.path() / "list").string(),
                "--dest", "models/x", "--priority", "2", "--request-id", "r2"}),
          "/work/dir"));
  EXPECT_EQ(request.url(), "");
  EXPECT_EQ(request.dest_dir(), "/work/dir/models/x");
  EXPECT_EQ(request.priority(), 2);
  EXPECT_EQ(request.request_id(), "r2");
  EXPECT_EQ(request.expected_size(), 0);
  EXPECT_EQ(request.expected_sha256(), "");
  ASSERT_EQ(request.files_size(), 3);
  EXPECT_EQ(request.files(0).url(), "https://h/unet.bin");
  EXPECT_EQ(request.files(0).relative_path(), "unet/model.bin");
  EXPECT_EQ(request.files(0).size(), 1024);
  EXPECT_EQ(request.files(0).sha256(), std::string(64, 'b'));
  EXPECT_EQ(request.files(1).url(), "https://h/a.json");
  EXPECT_EQ(request.files(1).relative_path(), "cfg/a.json");
  EXPECT_EQ(request.files(1).size(), 0);
  EXPECT_EQ(request.files(1).sha256(), "");
  EXPECT_EQ(request.files(2).url(), "https://h/b.txt");
  EXPECT_EQ(request.files(2).relative_path(), "b.txt");

  // Without --dest the server's first download root is the directory.
  ASSERT_OK_AND_ASSIGN(
      v1::CreateDownloadRequest no_dest,
      BuildCreateDownloadRequest(
          Args({"download", "--files", (temp.path() / "list").string()}),
          "/work/dir"));
  EXPECT_EQ(no_dest.dest_dir(), "");
  EXPECT_EQ(no_dest.files_size(), 3);
}

TEST(BuildCreateDownloadRequestTest, FilesListExcludesSingleFileArguments) {
  TempDir temp;
  std::string list = (temp.path() / "list").string();
  WriteFile(list, "https://h/a a\n");
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const Case cases[] = {
      {{"download", "https://h/m", "--files", list},
       "takes a URL or --files LIST, not both (got URL 'https://h/m')"},
      {{"download", "--files", list, "--output", "o"},
       "--output is for a single URL"},
      {{"download", "--files", list, "--name", "n"},
       "--name is for a single URL"},
      {{"download", "--files", list, "--sha256", std::string(64, 'a')},
       "--sha256 is for a single URL"},
      {{"download", "--files", list, "--size", "5"},
       "--size is for a single URL"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<v1::CreateDownloadRequest> request =
        BuildCreateDownloadRequest(Args(c.args), "/w");
    EXPECT_THAT(request, StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr(c.message)))
        << c.message;
    EXPECT_TRUE(IsUsageError(request.status())) << c.message;
  }
}

TEST(BuildCreateDownloadRequestTest, BadFilesLinesNameTheirLineNumber) {
  TempDir temp;
  std::string list = (temp.path() / "list").string();
  struct Case {
    std::string text;
    std::string message;
  };
  const Case cases[] = {
      {"# header\nhttps://h/a\n", "line 2: no relative path after the URL"},
      {"https://h/a a\n\nhttps://h/b b 12kB\n",
       "line 3: size '12kB' is not a number of bytes >= 0"},
      {"https://h/a a -1\n", "line 1: size '-1' is not a number"},
      {"https://h/a a 1 abc\n",
       "line 1: SHA-256 'abc' is not 64 hexadecimal characters"},
      {absl::StrCat("https://h/a a 1 ", std::string(64, 'a'), " extra\n"),
       "line 1: unexpected 'extra' after the SHA-256"},
      {"# nothing\n\n   \n", "lists no files"},
  };
  for (const Case& c : cases) {
    WriteFile(list, c.text);
    absl::StatusOr<v1::CreateDownloadRequest> request =
        BuildCreateDownloadRequest(Args({"download", "--files", list}), "/w");
    EXPECT_THAT(request, StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr(c.message)))
        << c.text;
    EXPECT_THAT(request,
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(list)))
        << c.text;
    EXPECT_TRUE(IsUsageError(request.status())) << c.text;
  }
  absl::StatusOr<v1::CreateDownloadRequest> missing =
      BuildCreateDownloadRequest(
          Args({"download", "--files", "/nonexistent/list"}), "/w");
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kNotFound,
                                HasSubstr("/nonexistent/list")));
  EXPECT_FALSE(IsUsageError(missing.status()));
}

TEST(BuildListDownloadsRequestTest, StatesRepeatOrComma) {
  ASSERT_OK_AND_ASSIGN(
      v1::ListDownloadsRequest request,
      BuildListDownloadsRequest(Args({"downloads", "list", "--state",
                                      "running,paused", "--state", "failed"})));
  EXPECT_THAT(request.states(),
              ElementsAre(v1::DOWNLOAD_STATE_RUNNING, v1::DOWNLOAD_STATE_PAUSED,
                          v1::DOWNLOAD_STATE_FAILED));
  EXPECT_THAT(BuildListDownloadsRequest(
                  Args({"downloads", "list", "--state", "sleeping"})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--state 'sleeping'")));
}

TEST(BuildPruneRequestTest, BeforeIsRfc3339) {
  ASSERT_OK_AND_ASSIGN(v1::PruneDownloadsRequest all,
                       BuildPruneRequest(Args({"downloads", "prune"})));
  EXPECT_FALSE(all.has_ended_before());
  ASSERT_OK_AND_ASSIGN(
      v1::PruneDownloadsRequest before,
      BuildPruneRequest(Args(
          {"downloads", "prune", "--before", "2026-01-02T03:04:05.5+01:00"})));
  EXPECT_EQ(before.ended_before().seconds(), 1767319445);
  EXPECT_EQ(before.ended_before().nanos(), 500000000);
  EXPECT_THAT(
      BuildPruneRequest(Args({"downloads", "prune", "--before", "yesterday"})),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("--before must be an RFC 3339 time")));
}

}  // namespace
}  // namespace mm::cli
