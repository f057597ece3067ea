// End to end: the README's first command. Runs scripts/up.sh exactly as a
// user would (setup check, build of `mm-system`, `mm up`), detached on a
// temporary state directory and on this test's own build folder, then checks
// that `mm status` shows every service this build makes as SERVING, and
// stops the system with `mm down`.
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace mm {
namespace {

namespace fs = std::filesystem;
using ::mm::testing::CommandResult;
using ::mm::testing::RunCommand;
using ::mm::testing::TempDir;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;

constexpr const char* kServices[] = {"records", "downloader", "installer",
                                     "loader"};

// Whether this build folder holds the service's executable.
bool Built(const std::string& service) {
  std::error_code error;
  return fs::exists(
      fs::path(MM_BINARY_DIR) / "services" / service / ("mm-" + service),
      error);
}

class UpE2eTest : public ::testing::Test {
 protected:
  void TearDown() override {
    // Stops a system left running by a failed assertion.
    (void)RunCommand({MM_BIN, "--home", home(), "down"}, absl::Seconds(60));
  }

  std::string home() const { return (dir_.path() / "state").string(); }

  CommandResult Run(const std::vector<std::string>& argv,
                    absl::Duration timeout) {
    absl::StatusOr<CommandResult> result =
        RunCommand(argv, timeout, {{"MM_BUILD_DIR", MM_BINARY_DIR}});
    EXPECT_OK(result.status());
    return result.ok() ? *result : CommandResult{};
  }

  TempDir dir_;
};

TEST_F(UpE2eTest, UpScriptStartsEveryBuiltServiceAndDownStopsThem) {
  ASSERT_TRUE(Built("records"));
  ASSERT_TRUE(Built("downloader"));
  // On a fresh machine nothing is built before up.sh: the target it builds
  // must include every service executable the build makes, and `mm`.
  CommandResult target =
      Run({"/usr/bin/ninja", "-C", MM_BINARY_DIR, "-t", "query", "mm-system"},
          absl::Seconds(60));
  ASSERT_EQ(target.exit_code, 0) << target.out << target.err;
  EXPECT_THAT(target.out, HasSubstr("    cli/mm\n"));
  for (const char* service : kServices) {
    if (!Built(service)) continue;
    EXPECT_THAT(target.out, HasSubstr(absl::StrCat("    services/", service,
                                                   "/mm-", service, "\n")))
        << target.out;
  }
  CommandResult up =
      Run({"/bin/bash", std::string(MM_SOURCE_DIR) + "/scripts/up.sh", "--home",
           home(), "--detach"},
          absl::Minutes(10));
  ASSERT_EQ(up.exit_code, 0) << up.out << up.err;
  for (const char* service : kServices) {
    if (Built(service)) {
      EXPECT_THAT(up.out, ContainsRegex(absl::StrCat(service, " +SERVING")))
          << up.out;
    } else {
      // Named, in one line, with the reason it was not started.
      EXPECT_THAT(up.out, ContainsRegex(absl::StrCat(
                              "mm-", service, ": not started: [^\n]{10,}\n")))
          << up.out;
    }
  }

  CommandResult status =
      Run({MM_BIN, "--home", home(), "status"}, absl::Seconds(60));
  EXPECT_EQ(status.exit_code, 0) << status.out << status.err;
  EXPECT_THAT(status.out, HasSubstr("mm up: running"));
  int serving = 0;
  for (const char* service : kServices) {
    if (!Built(service)) continue;
    EXPECT_THAT(status.out,
                ContainsRegex(absl::StrCat("\n", service, " +SERVING +unix:")))
        << status.out;
    ++serving;
  }
  EXPECT_GE(serving, 2);

  CommandResult down =
      Run({MM_BIN, "--home", home(), "down"}, absl::Seconds(90));
  EXPECT_EQ(down.exit_code, 0) << down.out << down.err;
  EXPECT_THAT(down.out, HasSubstr("Stopped."));
  CommandResult after =
      Run({MM_BIN, "--home", home(), "status"}, absl::Seconds(60));
  EXPECT_NE(after.exit_code, 0) << after.out;
  EXPECT_THAT(after.out, HasSubstr("mm up: not running"));
}

}  // namespace
}  // namespace mm
