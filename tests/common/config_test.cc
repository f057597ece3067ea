#include "common/config.h"

#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm {
namespace {

using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::mm::testing::WriteFile;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<OptionSpec> Specs() {
  return {{"listen", "unix:default.sock", "address"},
          {"db", "sqlite:records.db", "database"},
          {"download-root", "", "roots"},
          {"detach", "", "background", /*is_bool=*/true},
          {"shutdown-grace", "10s", "grace"}};
}

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(ConfigTest, DefaultsApplyWhenNothingIsSet) {
  ASSERT_OK_AND_ASSIGN(Config config, Config::Load(Specs(), {}, FakeEnv({})));
  EXPECT_EQ(config.GetString("listen"), "unix:default.sock");
  EXPECT_FALSE(config.IsSet("listen"));
  ASSERT_OK_AND_ASSIGN(bool detach, config.GetBool("detach"));
  EXPECT_FALSE(detach);
  ASSERT_OK_AND_ASSIGN(absl::Duration grace,
                       config.GetDuration("shutdown-grace"));
  EXPECT_EQ(grace, absl::Seconds(10));
}

TEST(ConfigTest, FileThenFlagsThenEnvironment) {
  TempDir dir;
  WriteFile(dir.path() / "c.yaml",
            "listen: unix:from-file.sock\n"
            "db: sqlite:file.db\n"
            "download_root: [/a, /b]\n"
            "shutdown-grace: 3s\n");
  std::vector<std::string> args = {"--config", (dir.path() / "c.yaml").string(),
                                   "--db=sqlite:flag.db", "positional",
                                   "--detach"};
  ASSERT_OK_AND_ASSIGN(Config config,
                       Config::Load(Specs(), args,
                                    FakeEnv({{"MM_DB", "postgresql:///env"},
                                             {"MM_SHUTDOWN_GRACE", "250ms"}})));
  EXPECT_EQ(config.GetString("listen"), "unix:from-file.sock");  // file
  EXPECT_EQ(config.GetString("db"), "postgresql:///env");        // env wins
  EXPECT_THAT(config.GetList("download-root"), ElementsAre("/a", "/b"));
  ASSERT_OK_AND_ASSIGN(absl::Duration grace,
                       config.GetDuration("shutdown-grace"));
  EXPECT_EQ(grace, absl::Milliseconds(250));
  ASSERT_OK_AND_ASSIGN(bool detach, config.GetBool("detach"));
  EXPECT_TRUE(detach);
  EXPECT_THAT(config.positional(), ElementsAre("positional"));
}

TEST(ConfigTest, RepeatedFlagsMakeAList) {
  ASSERT_OK_AND_ASSIGN(
      Config config,
      Config::Load(Specs(), {"--download-root", "/x", "--download-root=/y"},
                   FakeEnv({})));
  EXPECT_THAT(config.GetList("download-root"), ElementsAre("/x", "/y"));
  EXPECT_EQ(config.GetString("download-root"), "/y");
}

TEST(ConfigTest, MistakesAreNamed) {
  EXPECT_THAT(
      Config::Load(Specs(), {"--colour", "red"}, FakeEnv({})),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--colour")));
  EXPECT_THAT(
      Config::Load(Specs(), {"--db"}, FakeEnv({})),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs a value")));
  TempDir dir;
  WriteFile(dir.path() / "bad.yaml", "colour: red\n");
  EXPECT_THAT(
      Config::Load(Specs(), {"--config", (dir.path() / "bad.yaml").string()},
                   FakeEnv({})),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("unknown option 'colour'")));
  WriteFile(dir.path() / "list.yaml", "- a\n- b\n");
  EXPECT_THAT(
      Config::Load(Specs(), {"--config", (dir.path() / "list.yaml").string()},
                   FakeEnv({})),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("mapping")));
  EXPECT_THAT(
      Config::Load(Specs(), {"--config", "/nonexistent/x.yaml"}, FakeEnv({})),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/x.yaml")));
  ASSERT_OK_AND_ASSIGN(
      Config config,
      Config::Load(Specs(), {"--shutdown-grace", "soon"}, FakeEnv({})));
  EXPECT_THAT(config.GetDuration("shutdown-grace"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("soon")));
}

TEST(ConfigTest, UsageListsDefaultsAndEnvironmentNames) {
  std::string usage = Config::Usage(Specs());
  EXPECT_THAT(usage, HasSubstr("--shutdown-grace VALUE"));
  EXPECT_THAT(usage, HasSubstr("(default: 10s)"));
  EXPECT_THAT(usage, HasSubstr("MM_DOWNLOAD_ROOT"));
}

}  // namespace
}  // namespace mm
