// End to end: the real `mm` command against the real mm-records, on SQLite
// and on PostgreSQL.
#include <signal.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/child_service.h"
#include "tests/testing/postgres_cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace mm {
namespace {

using ::mm::testing::CommandResult;
using ::mm::testing::PostgresCluster;
using ::mm::testing::RunCommand;
using ::mm::testing::Subprocess;
using ::mm::testing::TempDir;
using ::mm::testing::WriteFile;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::StartsWith;

enum class Backend { kSqlite, kPostgres };

class CliE2eTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    std::string db = "sqlite:" + (dir_.path() / "records.db").string();
    if (GetParam() == Backend::kPostgres) {
      absl::StatusOr<std::unique_ptr<PostgresCluster>> cluster =
          PostgresCluster::Start();
      if (!cluster.ok()) MM_SKIP_OR_FAIL_WITHOUT_POSTGRES(cluster.status());
      cluster_ = std::move(*cluster);
      ASSERT_OK_AND_ASSIGN(db, cluster_->CreateDatabase("cli"));
    }
    address_ = "unix:" + (dir_.path() / "records.sock").string();
    ASSERT_OK_AND_ASSIGN(
        server_,
        Subprocess::Start({MM_RECORDS_BIN, "--listen", address_, "--db", db},
                          dir_.path() / "records.log"));
    ASSERT_OK_AND_ASSIGN(auto channel, MakeChannel(address_, {}));
    ASSERT_OK(testing::WaitForChildServing(*server_, *channel, "",
                                           dir_.path() / "records.log",
                                           absl::Seconds(60)));
  }

  void TearDown() override {
    if (server_) {
      server_->Signal(SIGTERM);
      absl::StatusOr<int> code = server_->Wait(absl::Seconds(30));
      EXPECT_TRUE(code.ok() && *code == 0);
    }
  }

  CommandResult Mm(std::vector<std::string> args,
                   const std::string& stdin_text = "") {
    std::vector<std::string> argv = {MM_BIN, "--records", address_};
    argv.insert(argv.end(), args.begin(), args.end());
    absl::StatusOr<CommandResult> result =
        RunCommand(argv, absl::Seconds(60),
                   {{"MM_HOME", (dir_.path() / "home").string()}}, stdin_text);
    EXPECT_OK(result.status());
    return result.ok() ? *result : CommandResult{};
  }

  json VaeJson(const std::string& name, const std::string& path) {
    return {{"hash", "md5:a0cd925fc063f98dbf029eee315060c3"},
            {"path", path},
            {"file_size", 10},
            {"name", name},
            {"source", path},
            {"source_type", "path"},
            {"type", "vae"},
            {"format", "checkpoint"},
            {"base", "sd-1"}};
  }

  TempDir dir_;
  std::unique_ptr<PostgresCluster> cluster_;
  std::string address_;
  std::unique_ptr<Subprocess> server_;
};

TEST_P(CliE2eTest, AddListGetUpdateRemove) {
  WriteFile(
      dir_.path() / "vae.json",
      VaeJson("Robert'); DROP TABLE models;--", "/m/v.safetensors").dump());
  CommandResult added =
      Mm({"models", "add", (dir_.path() / "vae.json").string(), "--json"});
  ASSERT_EQ(added.exit_code, 0) << added.err;
  json record = json::parse(added.out);
  std::string key = record["key"];
  EXPECT_EQ(record["base"], "sd-1");
  EXPECT_EQ(record["name"], "Robert'); DROP TABLE models;--");

  // From standard input too.
  CommandResult from_stdin = Mm({"models", "add", "-", "--json"},
                                VaeJson("second", "/m/w.safetensors").dump());
  ASSERT_EQ(from_stdin.exit_code, 0) << from_stdin.err;

  CommandResult listed = Mm({"models", "list", "--base", "sd-1", "--json"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  json list = json::parse(listed.out);
  ASSERT_TRUE(list.is_array());
  EXPECT_EQ(list.size(), 2u);

  CommandResult table = Mm({"models", "list"});
  ASSERT_EQ(table.exit_code, 0);
  EXPECT_THAT(table.out, HasSubstr("KEY"));
  EXPECT_THAT(table.out, HasSubstr(key));

  CommandResult updated = Mm({"models", "update", key, "--set", "name=renamed",
                              "--set", "description=\"d\"", "--json"});
  ASSERT_EQ(updated.exit_code, 0) << updated.err;
  json after = json::parse(updated.out);
  EXPECT_EQ(after["name"], "renamed");
  EXPECT_EQ(after["description"], "d");
  EXPECT_EQ(after["path"], "/m/v.safetensors");

  CommandResult class_change = Mm({"models", "update", key, "--set",
                                   "type=lora", "--set", "format=lycoris"});
  EXPECT_EQ(class_change.exit_code, 1);
  EXPECT_THAT(class_change.err, StartsWith("mm: INVALID_ARGUMENT: "));
  EXPECT_THAT(class_change.err, HasSubstr("allow_class_change"));
  EXPECT_EQ(std::count(class_change.err.begin(), class_change.err.end(), '\n'),
            1);

  CommandResult got = Mm({"models", "get", key, "--json"});
  ASSERT_EQ(got.exit_code, 0);
  EXPECT_EQ(json::parse(got.out)["name"], "renamed");

  ASSERT_EQ(Mm({"models", "rm", key}).exit_code, 0);
  CommandResult missing = Mm({"models", "get", key});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, StartsWith("mm: NOT_FOUND: "));
  EXPECT_THAT(missing.err, HasSubstr(key));
}

TEST_P(CliE2eTest, DuplicatePathIsAlreadyExists) {
  std::string config = VaeJson("a", "/m/same.safetensors").dump();
  ASSERT_EQ(Mm({"models", "add", "-"}, config).exit_code, 0);
  CommandResult again = Mm({"models", "add", "-"}, config);
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, StartsWith("mm: ALREADY_EXISTS: "));
  EXPECT_THAT(again.err, HasSubstr("/m/same.safetensors"));
}

TEST_P(CliE2eTest, ImportLegacyModelsYamlAddsWhatValidates) {
  WriteFile(dir_.path() / "models" / "vae.safetensors", "model data");
  std::string legacy =
      "__metadata__:\n"
      "  version: 3.0.0\n"
      "sd-1/vae/good-vae:\n"
      "  path: vae.safetensors\n"
      "  format: checkpoint\n"
      "  description: a vae\n"
      "sd-1/vae/missing-vae:\n"
      "  path: nowhere.safetensors\n"
      "  format: checkpoint\n";
  WriteFile(dir_.path() / "models.yaml", legacy);
  CommandResult imported =
      Mm({"models", "import", (dir_.path() / "models.yaml").string(),
          "--models-dir", (dir_.path() / "models").string()});
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_THAT(imported.out, HasSubstr("missing-vae"));
  EXPECT_EQ(testing::ReadFile(dir_.path() / "models.yaml"), legacy);
  CommandResult listed = Mm({"models", "list", "--json"});
  json list = json::parse(listed.out);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["name"], "good-vae");
  EXPECT_EQ(list[0]["hash"],
            "blake3:"
            "ce3f0c5f3c05d119f4a5dcaf209b50d3149046a0d3a9adee9fed4c83cad6b4d0");
}

TEST_P(CliE2eTest, UnreachableServiceIsUnavailable) {
  std::vector<std::string> argv = {
      MM_BIN,
      "--records",
      "unix:" + (dir_.path() / "nobody.sock").string(),
      "--timeout",
      "2s",
      "models",
      "list"};
  ASSERT_OK_AND_ASSIGN(CommandResult result,
                       RunCommand(argv, absl::Seconds(60)));
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, StartsWith("mm: UNAVAILABLE: "));
}

INSTANTIATE_TEST_SUITE_P(Backends, CliE2eTest,
                         ::testing::Values(Backend::kSqlite,
                                           Backend::kPostgres),
                         [](const auto& info) {
                           return info.param == Backend::kSqlite ? "Sqlite"
                                                                 : "Postgres";
                         });

// The shared libraries `mm` asks the dynamic loader for: every one costs
// start-up time on every command (cli/CMakeLists.txt, docs/sql.md).
std::vector<std::string> NeededLibraries() {
  absl::StatusOr<CommandResult> dynamic =
      RunCommand({"/usr/bin/readelf", "--dynamic", MM_BIN}, absl::Seconds(60));
  EXPECT_OK(dynamic.status());
  if (!dynamic.ok()) return {};
  EXPECT_EQ(dynamic->exit_code, 0) << dynamic->err;
  std::vector<std::string> needed;
  for (absl::string_view line : absl::StrSplit(dynamic->out, '\n')) {
    const size_t open = line.find("Shared library: [");
    if (open == absl::string_view::npos) continue;
    line.remove_prefix(open + 17);
    needed.emplace_back(line.substr(0, line.find(']')));
  }
  return needed;
}

TEST(MmBinaryTest, StartsWithoutLibpq) {
  const std::vector<std::string> needed = NeededLibraries();
  ASSERT_FALSE(needed.empty()) << "readelf listed no shared library";
  for (const std::string& library : needed) {
    EXPECT_THAT(library, ::testing::Not(StartsWith("libpq"))) << library;
  }
}

// MM_STATIC_CLI (on by default, off in the sanitizer presets) decides
// whether gRPC and what it needs come from static archives.
TEST(MmBinaryTest, LinksGrpcAsTheBuildSays) {
  const std::vector<std::string> needed = NeededLibraries();
  for (const char* prefix : {"libgrpc", "libgpr", "libprotobuf", "libabsl_",
                             "libre2", "libupb", "libcares"}) {
    const bool shared = std::any_of(
        needed.begin(), needed.end(),
        [&](const std::string& l) { return absl::StartsWith(l, prefix); });
    EXPECT_EQ(shared, !MM_STATIC_CLI) << prefix;
  }
}

}  // namespace
}  // namespace mm
