// VerifyFile on its own: each failure comes back as data (code, type,
// message naming the final path), and a streamed digest spares reading the
// file back.
#include "services/downloader/verifier.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/hashing.h"
#include "tests/testing/temp_dir.h"

namespace mm::downloader {
namespace {

using ::mm::testing::ReadFile;
using ::mm::testing::TempDir;
using ::mm::testing::WriteFile;
using ::testing::Eq;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::Optional;
using ::testing::StartsWith;
namespace fs = std::filesystem;

// sha256("hello\n").
constexpr char kHelloSha256[] =
    "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

MATCHER_P3(IsJobError, code, type, message_matcher, "") {
  return arg.code == code && arg.type == type &&
         ::testing::ExplainMatchResult(message_matcher, arg.message,
                                       result_listener);
}

class VerifierTest : public ::testing::Test {
 protected:
  FileCheck Check(const std::string& contents) {
    path_ = tmp_.path() / "model.bin.downloading";
    WriteFile(path_, contents);
    FileCheck check;
    check.path = path_.string();
    check.display_path = (tmp_.path() / "model.bin").string();
    return check;
  }

  TempDir tmp_;
  fs::path path_;
};

TEST_F(VerifierTest, NoExpectationsPass) {
  EXPECT_EQ(VerifyFile(Check("anything")), std::nullopt);
}

TEST_F(VerifierTest, RightSizeAndDigestPass) {
  FileCheck check = Check("hello\n");
  check.expected_size = 6;
  check.expected_sha256 = kHelloSha256;
  EXPECT_EQ(VerifyFile(check), std::nullopt);
}

TEST_F(VerifierTest, WrongSizeIsSizeMismatch) {
  FileCheck check = Check("hello\n");
  check.expected_size = 7;
  EXPECT_THAT(VerifyFile(check),
              Optional(IsJobError(
                  absl::StatusCode::kDataLoss, "SizeMismatch",
                  Eq(check.display_path + ": received 6 bytes, expected 7"))));
}

TEST_F(VerifierTest, WrongDigestReadBackIsChecksumMismatch) {
  FileCheck check = Check("hello!\n");
  check.expected_sha256 = kHelloSha256;
  EXPECT_THAT(
      VerifyFile(check),
      Optional(IsJobError(
          absl::StatusCode::kDataLoss, "ChecksumMismatch",
          AllOf(StartsWith(check.display_path + ": sha256 of the download is "),
                HasSubstr(std::string(", expected ") + kHelloSha256)))));
}

// The streamed digest is trusted: the file is not read back (here it holds
// other bytes, which reading back would catch).
TEST_F(VerifierTest, StreamedDigestIsUsedInsteadOfReadingBack) {
  FileCheck check = Check("other bytes");
  check.expected_sha256 = kHelloSha256;
  check.streamed_sha256 = kHelloSha256;
  EXPECT_FALSE(VerifyIsSlow(check));
  EXPECT_EQ(VerifyFile(check), std::nullopt);
  check.streamed_sha256 = std::string(64, '0');
  EXPECT_THAT(VerifyFile(check),
              Optional(Field(&JobError::type, "ChecksumMismatch")));
}

TEST_F(VerifierTest, MissingFileIsAVerificationError) {
  FileCheck check = Check("");
  check.path = (tmp_.path() / "gone").string();
  EXPECT_THAT(
      VerifyFile(check),
      Optional(IsJobError(absl::StatusCode::kInternal, "VerificationError",
                          StartsWith(check.display_path + ": cannot stat "))));
}

// A partial file pre-allocated larger than what arrived (the server's size
// was wrong) is cut to the bytes received before it is checked.
TEST_F(VerifierTest, PartialFileIsCutToTheTotalAndSynced) {
  FileCheck check = Check("hello\nXXXX");
  const int fd = open(check.path.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  check.fd = fd;
  check.total_bytes = 6;
  check.expected_sha256 = kHelloSha256;
  check.sync = true;
  EXPECT_TRUE(VerifyIsSlow(check));
  EXPECT_EQ(VerifyFile(check), std::nullopt);
  EXPECT_EQ(ReadFile(path_), "hello\n");
  close(fd);
}

TEST_F(VerifierTest, OnlySyncOrReadingBackIsSlow) {
  FileCheck check = Check("x");
  EXPECT_FALSE(VerifyIsSlow(check));
  check.expected_size = 1;
  EXPECT_FALSE(VerifyIsSlow(check));
  check.expected_sha256 = kHelloSha256;
  EXPECT_TRUE(VerifyIsSlow(check));
  check.streamed_sha256 = kHelloSha256;
  EXPECT_FALSE(VerifyIsSlow(check));
  check.sync = true;
  EXPECT_TRUE(VerifyIsSlow(check));
}

}  // namespace
}  // namespace mm::downloader
