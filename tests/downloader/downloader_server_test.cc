// DownloaderOptionsFromConfig (mm-downloader's flags) and the one assembly
// of a downloader that main.cc and the test harness share.
#include "services/downloader/downloader_server.h"

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "common/server.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::downloader {
namespace {

using ::mm::testing::FakeClock;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

class DownloaderServerTest : public ::testing::Test {
 protected:
  void SetUp() override { std::filesystem::create_directories(root()); }
  std::string root() const { return (dir_.path() / "models").string(); }
  std::string db() const {
    return absl::StrCat("sqlite:", (dir_.path() / "dl.db").string());
  }

  absl::StatusOr<DownloaderOptions> FromFlags(std::vector<std::string> args) {
    std::vector<OptionSpec> specs = ServerOptionSpecs("unix:x.sock");
    for (OptionSpec& spec : DownloaderOptionSpecs()) specs.push_back(spec);
    ASSIGN_OR_RETURN(Config config,
                     Config::Load(specs, args, [](const std::string&) {
                       return std::optional<std::string>();
                     }));
    return DownloaderOptionsFromConfig(config);
  }

  TempDir dir_;
};

TEST_F(DownloaderServerTest, FlagsBecomeOptions) {
  ASSERT_OK_AND_ASSIGN(
      DownloaderOptions options,
      FromFlags({"--download-root", root(), "--db", db(), "--segments", "3",
                 "--lease", "20s", "--allow-private-urls",
                 "--max-host-connections", "0", "--sync-files=false"}));
  EXPECT_EQ(options.db, db());
  EXPECT_EQ(options.download_roots, std::vector<std::string>{root()});
  EXPECT_EQ(options.engine.max_segments, 3);
  EXPECT_EQ(options.engine.max_parallel, 5);
  EXPECT_EQ(options.engine.lease, absl::Seconds(20));
  EXPECT_TRUE(options.allow_private_urls);
  EXPECT_EQ(options.max_host_connections, 0);
  EXPECT_FALSE(options.engine.sync_files);
  EXPECT_EQ(options.health_interval, absl::Seconds(2));
  EXPECT_EQ(options.replica_id, "");
}

TEST_F(DownloaderServerTest, BadFlagsAreInvalidArgumentNamingTheFlag) {
  EXPECT_THAT(FromFlags({}), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("--download-root")));
  EXPECT_THAT(FromFlags({"--download-root", root(), "--segments", "0"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "--segments must be at least 1"));
  EXPECT_THAT(
      FromFlags({"--download-root", root(), "--max-bytes-per-second", "-1"}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               "--max-bytes-per-second must not be negative"));
  EXPECT_THAT(FromFlags({"--download-root", root(), "--lease", "500ms"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "--lease must be at least 1s"));
  EXPECT_THAT(FromFlags({"--download-root", root(), "--allow-cidr", "nope"}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(FromFlags({"--download-root", root(), "--token-rule", "x"}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(DownloaderServerTest, EachStartIsANewReplicaThatResumesSqliteJobs) {
  FakeClock clock;
  DownloaderOptions options;
  options.db = db();
  options.download_roots = {root()};
  options.clock = &clock;
  std::string job_id;
  std::string first_replica;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Downloader> first,
                         Downloader::Create(options));
    first_replica = first->store().replica_id();
    EXPECT_THAT(first_replica, MatchesRegex("[0-9a-f]{32}"));
    Job job;
    job.id = "left-running";
    job.destination = root();
    job.parts.push_back(Part{.url = "http://127.0.0.1:9/x"});
    ASSERT_OK(first->store().Create(job).status());
    // Claimed with a long lease, and the process "dies" holding it (the
    // engine never started, so nothing releases it).
    ASSERT_OK_AND_ASSIGN(
        std::optional<Job> claimed,
        first->store().ClaimNext(absl::Hours(1), absl::Hours(1)));
    ASSERT_TRUE(claimed.has_value());
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Downloader> second,
                       Downloader::Create(options));
  EXPECT_NE(second->store().replica_id(), first_replica);
  // One process owns a SQLite queue: the old lease is void at once, with
  // no time passing on the clock.
  ASSERT_OK_AND_ASSIGN(
      std::optional<Job> resumed,
      second->store().ClaimNext(absl::Hours(1), absl::Hours(1)));
  ASSERT_TRUE(resumed.has_value());
  EXPECT_EQ(resumed->id, "left-running");
  EXPECT_EQ(resumed->lease_owner, second->store().replica_id());
}

TEST_F(DownloaderServerTest, AStoreThatCannotOpenIsNamedInTheError) {
  DownloaderOptions options;
  options.db =
      absl::StrCat("sqlite:", (dir_.path() / "no such dir" / "dl.db").string());
  options.download_roots = {root()};
  absl::StatusOr<std::unique_ptr<Downloader>> downloader =
      Downloader::Create(options);
  ASSERT_FALSE(downloader.ok());
  EXPECT_THAT(downloader.status().message(),
              HasSubstr("cannot open job store sqlite:"));
}

}  // namespace
}  // namespace mm::downloader
