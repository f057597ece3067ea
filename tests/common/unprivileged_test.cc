// tests/testing/unprivileged.h: file modes hold inside RunUnprivileged,
// whoever runs the tests.
#include "tests/testing/unprivileged.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::testing {
namespace {

absl::Status OpenForReading(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    return absl::Status(error == EACCES ? absl::StatusCode::kPermissionDenied
                                        : absl::StatusCode::kInternal,
                        absl::StrCat("open: ", std::strerror(error)));
  }
  ::close(fd);
  return absl::OkStatus();
}

TEST(RunUnprivilegedTest, FileModesAreEnforced) {
  TempDir dir;
  const std::filesystem::path locked = dir.path() / "locked";
  const std::filesystem::path open = dir.path() / "open";
  WriteFile(locked, "secret");
  WriteFile(open, "public");
  ASSERT_EQ(::chmod(locked.c_str(), 0), 0);
  EXPECT_THAT(
      RunUnprivileged([&] { return OpenForReading(locked); }),
      StatusIs(absl::StatusCode::kPermissionDenied, "open: Permission denied"));
  // The test's own files stay usable: only the mode bits now count.
  EXPECT_OK(RunUnprivileged([&] { return OpenForReading(open); }));
  EXPECT_OK(RunUnprivileged([] {
    return IsPrivileged() ? absl::InternalError("privileged")
                          : absl::OkStatus();
  }));
}

TEST(RunUnprivilegedTest, ReportsStatusAndTextExactly) {
  EXPECT_THAT(
      RunUnprivileged(
          [] { return absl::NotFoundError(std::string("gone \xFF\0x", 8)); }),
      StatusIs(absl::StatusCode::kNotFound, std::string("gone \xFF\0x", 8)));
  absl::StatusOr<std::string> text = RunUnprivilegedForText(
      []() -> absl::StatusOr<std::string> { return std::string(100000, 'z'); });
  ASSERT_OK(text);
  EXPECT_EQ(*text, std::string(100000, 'z'));
  EXPECT_THAT(RunUnprivilegedForText([]() -> absl::StatusOr<std::string> {
                return absl::DataLossError("bad");
              }),
              StatusIs(absl::StatusCode::kDataLoss, "bad"));
}

// Privileged, the operation runs in a child that a deadline can kill;
// otherwise it runs right here.
TEST(RunUnprivilegedTest, ForksOnlyWhenPrivileged) {
  const pid_t parent = ::getpid();
  absl::StatusOr<std::string> pid =
      RunUnprivilegedForText([]() -> absl::StatusOr<std::string> {
        return std::to_string(::getpid());
      });
  ASSERT_OK(pid);
  EXPECT_EQ(*pid == std::to_string(parent), !IsPrivileged());
  if (IsPrivileged()) {
    EXPECT_THAT(RunUnprivileged(
                    [] {
                      ::pause();  // never returns: only the deadline ends it
                      return absl::OkStatus();
                    },
                    absl::Milliseconds(200)),
                StatusIs(absl::StatusCode::kDeadlineExceeded,
                         "the unprivileged operation did not finish within "
                         "200ms"));
  }
}

}  // namespace
}  // namespace mm::testing
