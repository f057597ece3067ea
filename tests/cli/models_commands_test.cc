#include "cli/models_commands.h"

#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "proto/record_json.h"
#include "tests/testing/fake_records_service.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::cli {
namespace {

namespace v1 = modelmanager::v1;
using ::mm::testing::FakeRecordsService;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

ParsedArgs Args(const std::vector<std::string>& args) {
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return parsed.value_or(ParsedArgs{});
}

class ModelsCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake_.Add("k1", "alpha");
    fake_.Add("k2", "beta");
    fake_.Add("k3", "gamma");
    grpc::ServerBuilder builder;
    builder.RegisterService(&fake_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::ModelRecords::NewStub(
        server_->InProcessChannel(grpc::ChannelArguments()));
  }

  void TearDown() override { server_->Shutdown(); }

  absl::Status Run(const std::vector<std::string>& args, bool json = false) {
    out_.str("");
    CommandIo io;
    io.in = &in_;
    io.out = &out_;
    io.json = json;
    io.timeout = absl::Seconds(10);
    ParsedArgs parsed = Args(args);
    return RunModelsCommand(parsed, *stub_, io);
  }

  FakeRecordsService fake_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::ModelRecords::Stub> stub_;
  std::istringstream in_;
  std::ostringstream out_;
};

TEST(ParseModelOrderTest, EveryNameMaps) {
  EXPECT_EQ(ParseModelOrder("default").value(), v1::MODEL_ORDER_DEFAULT);
  EXPECT_EQ(ParseModelOrder("name").value(), v1::MODEL_ORDER_NAME);
  EXPECT_EQ(ParseModelOrder("size").value(), v1::MODEL_ORDER_SIZE);
  EXPECT_EQ(ParseModelOrder("created_at").value(), v1::MODEL_ORDER_CREATED_AT);
  EXPECT_EQ(ParseModelOrder("updated_at").value(), v1::MODEL_ORDER_UPDATED_AT);
  EXPECT_EQ(ParseModelOrder("path").value(), v1::MODEL_ORDER_PATH);
  EXPECT_THAT(ParseModelOrder("colour"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--order-by 'colour' is not one of default")));
}

TEST(ParseSetValueTest, JsonWhenItParsesElseText) {
  EXPECT_EQ(ParseSetValue("30"), nlohmann::json(30));
  EXPECT_EQ(ParseSetValue("1.5"), nlohmann::json(1.5));
  EXPECT_EQ(ParseSetValue("true"), nlohmann::json(true));
  EXPECT_EQ(ParseSetValue("null"), nlohmann::json(nullptr));
  EXPECT_EQ(ParseSetValue("[\"a\",\"b\"]"), nlohmann::json({"a", "b"}));
  EXPECT_EQ(ParseSetValue("{\"steps\": 30}"), nlohmann::json({{"steps", 30}}));
  EXPECT_EQ(ParseSetValue("\"30\""), nlohmann::json("30"));
  EXPECT_EQ(ParseSetValue("sd-1"), nlohmann::json("sd-1"));
  EXPECT_EQ(ParseSetValue("My model"), nlohmann::json("My model"));
  EXPECT_EQ(ParseSetValue(""), nlohmann::json(""));
  EXPECT_EQ(ParseSetValue("[broken"), nlohmann::json("[broken"));
}

TEST(ParseSetAssignmentsTest, BuildsOneObject) {
  ASSERT_OK_AND_ASSIGN(nlohmann::json changes,
                       ParseSetAssignments({"name=New name", "file_size=12",
                                            "description=a=b"}));
  EXPECT_EQ(changes, nlohmann::json({{"name", "New name"},
                                     {"file_size", 12},
                                     {"description", "a=b"}}));
}

TEST(ParseSetAssignmentsTest, RejectsBadAssignments) {
  EXPECT_THAT(ParseSetAssignments({"name"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--set needs FIELD=VALUE, got 'name'")));
  EXPECT_THAT(
      ParseSetAssignments({"=x"}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("FIELD=VALUE")));
  EXPECT_THAT(ParseSetAssignments({"name=a", "name=b"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("field 'name' twice")));
}

TEST(BuildListRequestTest, MapsFilters) {
  ASSERT_OK_AND_ASSIGN(
      v1::ListModelsRequest request,
      BuildListRequest(
          Args({"models", "list", "--name", "n", "--base", "sdxl", "--type",
                "lora", "--format", "lycoris", "--tag", "a", "--tag", "b",
                "--order-by", "size", "--desc"})));
  EXPECT_EQ(request.name(), "n");
  EXPECT_EQ(request.base(), "sdxl");
  EXPECT_EQ(request.type(), "lora");
  EXPECT_EQ(request.format(), "lycoris");
  EXPECT_THAT(request.tags(), ElementsAre("a", "b"));
  EXPECT_EQ(request.order_by(), v1::MODEL_ORDER_SIZE);
  EXPECT_TRUE(request.descending());
  EXPECT_EQ(request.page_size(), 1000);
  EXPECT_FALSE(request.has_path());
}

TEST(BuildListRequestTest, DefaultsAndLimit) {
  ASSERT_OK_AND_ASSIGN(
      v1::ListModelsRequest request,
      BuildListRequest(Args({"models", "list", "--limit", "5"})));
  EXPECT_FALSE(request.has_name());
  EXPECT_FALSE(request.has_base());
  EXPECT_EQ(request.order_by(), v1::MODEL_ORDER_DEFAULT);
  EXPECT_FALSE(request.descending());
  EXPECT_EQ(request.page_size(), 5);
  EXPECT_THAT(BuildListRequest(Args({"models", "list", "--limit", "0"})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--limit must be a number >= 1, got '0'")));
}

TEST(BuildUpdateRequestTest, ChangesJsonAndOptions) {
  ASSERT_OK_AND_ASSIGN(
      v1::UpdateModelRequest request,
      BuildUpdateRequest(Args({"models", "update", "k1", "--set", "base=sdxl",
                               "--set", "default_settings={\"steps\": 30}",
                               "--allow-class-change", "--etag", "7"})));
  EXPECT_EQ(request.key(), "k1");
  EXPECT_EQ(nlohmann::json::parse(request.changes_json()),
            nlohmann::json(
                {{"base", "sdxl"}, {"default_settings", {{"steps", 30}}}}));
  EXPECT_TRUE(request.allow_class_change());
  EXPECT_EQ(request.etag(), "7");
  EXPECT_FALSE(request.has_model());
}

TEST(BuildUpdateRequestTest, NeedsKeyAndSet) {
  EXPECT_THAT(BuildUpdateRequest(Args({"models", "update", "--set", "a=1"})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("needs a model KEY")));
  EXPECT_THAT(BuildUpdateRequest(Args({"models", "update", "k1"})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("at least one --set")));
}

TEST(BuildCreateRequestTest, AcceptsOnlyAnObject) {
  ASSERT_OK_AND_ASSIGN(
      v1::CreateModelRequest request,
      BuildCreateRequest("{\"name\": \"x\", \"base\": \"sd-1\"}", "m.json",
                         "req-1"));
  EXPECT_EQ(nlohmann::json::parse(request.config_json()),
            nlohmann::json({{"name", "x"}, {"base", "sd-1"}}));
  EXPECT_EQ(request.request_id(), "req-1");
  EXPECT_THAT(BuildCreateRequest("{oops", "m.json", ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.json is not valid JSON")));
  EXPECT_THAT(BuildCreateRequest("[1]", "m.json", ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.json holds JSON array, not an object")));
}

TEST_F(ModelsCommandTest, ListPrintsTable) {
  ASSERT_TRUE(Run({"models", "list"}).ok());
  EXPECT_THAT(out_.str(), HasSubstr("KEY  NAME   BASE  TYPE  FORMAT"));
  EXPECT_THAT(out_.str(), HasSubstr("k2   beta   sd-1  main  checkpoint  "
                                    "1.0 KiB  beta.safetensors\n"));
}

TEST_F(ModelsCommandTest, ListFollowsEveryPage) {
  fake_.set_max_page_size(2);
  ASSERT_TRUE(Run({"models", "list", "--json"}, /*json=*/true).ok());
  nlohmann::json list = nlohmann::json::parse(out_.str());
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[2]["key"], "k3");
  ASSERT_EQ(fake_.list_requests().size(), 2u);
  EXPECT_EQ(fake_.list_requests()[0].page_size(), 1000);
  EXPECT_EQ(fake_.list_requests()[1].page_token(), "2");
}

TEST_F(ModelsCommandTest, ListStopsAtLimit) {
  fake_.set_max_page_size(1);
  ASSERT_TRUE(Run({"models", "list", "--limit", "2"}, /*json=*/true).ok());
  EXPECT_EQ(nlohmann::json::parse(out_.str()).size(), 2u);
  EXPECT_EQ(fake_.list_requests().size(), 2u);
  EXPECT_EQ(fake_.list_requests()[1].page_size(), 1);
}

TEST_F(ModelsCommandTest, GetUnknownKeyIsNotFound) {
  EXPECT_THAT(Run({"models", "get", "nope"}),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("unknown model key 'nope'")));
}

TEST_F(ModelsCommandTest, GetJson) {
  ASSERT_TRUE(Run({"models", "get", "k1"}, /*json=*/true).ok());
  nlohmann::json config = nlohmann::json::parse(out_.str());
  EXPECT_EQ(config["name"], "alpha");
  EXPECT_EQ(config["base"], "sd-1");
}

TEST_F(ModelsCommandTest, AddFromFile) {
  TempDir temp;
  mm::testing::WriteFile(temp.path() / "m.json",
                         R"({"name": "new", "base": "sd-1", "type": "vae",
                             "format": "checkpoint", "path": "v.safetensors"})");
  ASSERT_TRUE(Run({"models", "add", (temp.path() / "m.json").string(),
                   "--request-id", "r1"})
                  .ok());
  ASSERT_EQ(fake_.create_requests().size(), 1u);
  EXPECT_EQ(fake_.create_requests()[0].request_id(), "r1");
  EXPECT_EQ(
      nlohmann::json::parse(fake_.create_requests()[0].config_json())["name"],
      "new");
  EXPECT_THAT(out_.str(), HasSubstr("key:"));
  EXPECT_THAT(out_.str(), HasSubstr("generatedkey"));
}

TEST_F(ModelsCommandTest, AddFromStdin) {
  in_.str(R"({"name": "piped", "base": "sdxl"})");
  ASSERT_TRUE(Run({"models", "add", "-"}, /*json=*/true).ok());
  EXPECT_EQ(nlohmann::json::parse(out_.str())["name"], "piped");
}

TEST_F(ModelsCommandTest, AddMissingFileIsNotFound) {
  EXPECT_THAT(
      Run({"models", "add", "/nonexistent/m.json"}),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/m.json")));
  EXPECT_TRUE(fake_.create_requests().empty());
}

TEST_F(ModelsCommandTest, AddServerErrorKeepsItsCode) {
  in_.str(R"({"name": "taken"})");
  EXPECT_THAT(Run({"models", "add", "-"}),
              StatusIs(absl::StatusCode::kAlreadyExists, "path taken"));
}

TEST_F(ModelsCommandTest, UpdateSendsChanges) {
  ASSERT_TRUE(Run({"models", "update", "k1", "--set", "name=Renamed"}).ok());
  ASSERT_EQ(fake_.update_requests().size(), 1u);
  EXPECT_EQ(fake_.update_requests()[0].changes_json(), R"({"name":"Renamed"})");
  EXPECT_FALSE(fake_.update_requests()[0].allow_class_change());
  EXPECT_THAT(out_.str(), HasSubstr("name:"));
}

TEST_F(ModelsCommandTest, RemovePrintsRevision) {
  ASSERT_TRUE(Run({"models", "rm", "k1"}).ok());
  EXPECT_EQ(out_.str(), "Removed k1 (revision 42).\n");
  ASSERT_TRUE(Run({"models", "rm", "k2"}, /*json=*/true).ok());
  EXPECT_EQ(nlohmann::json::parse(out_.str()),
            nlohmann::json({{"key", "k2"}, {"revision", 42}}));
}

TEST_F(ModelsCommandTest, RemoveWithStaleEtagIsAborted) {
  EXPECT_THAT(Run({"models", "rm", "k1", "--etag", "stale"}),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("stale")));
  EXPECT_EQ(fake_.delete_requests().back().etag(), "stale");
}

TEST_F(ModelsCommandTest, RemoveTakesOneKey) {
  EXPECT_THAT(Run({"models", "rm", "a", "b"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("takes only a model KEY, got also 'b'")));
}

TEST_F(ModelsCommandTest, WatchPrintsOneLinePerEvent) {
  ASSERT_TRUE(Run({"models", "watch", "--since", "5"}).ok());
  EXPECT_EQ(out_.str(),
            "BOOKMARK revision 6\n"
            "ADDED revision 7 k1 alpha (main.checkpoint.sd-1) "
            "alpha.safetensors\n");
}

TEST_F(ModelsCommandTest, WatchJsonLines) {
  ASSERT_TRUE(Run({"models", "watch"}, /*json=*/true).ok());
  std::istringstream lines(out_.str());
  std::string line;
  std::vector<nlohmann::json> events;
  while (std::getline(lines, line)) {
    events.push_back(nlohmann::json::parse(line));
  }
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0]["type"], "BOOKMARK");
  EXPECT_EQ(events[1]["model"]["name"], "alpha");
}

TEST_F(ModelsCommandTest, WatchErrorKeepsItsCode) {
  EXPECT_THAT(Run({"models", "watch", "--since", "99"}),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("99")));
  EXPECT_THAT(
      Run({"models", "watch", "--since", "-1"}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--since")));
}

TEST_F(ModelsCommandTest, ImportMissingFileIsNotFound) {
  EXPECT_THAT(Run({"models", "import", "/nonexistent/models.yaml"}),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(ModelsCommandTest, ImportReportsSkippedEntriesAndSucceeds) {
  TempDir temp;
  mm::testing::WriteFile(temp.path() / "models.yaml",
                         "__metadata__:\n"
                         "  version: 3.0.0\n"
                         "sd-1/main/ghost:\n"
                         "  path: ghost.safetensors\n"
                         "  format: checkpoint\n");
  ASSERT_TRUE(
      Run({"models", "import", (temp.path() / "models.yaml").string()}).ok());
  // A yaml outside a configs/ folder: its paths are read from its folder.
  EXPECT_EQ(out_.str(), "skipped 'ghost' (sd-1/main/ghost): file not found: " +
                            (temp.path() / "ghost.safetensors").string() +
                            " (the yaml's relative paths are read from " +
                            temp.path().string() +
                            "; pass --models-dir if its models are elsewhere)\n"
                            "Imported 0 of 1 entries from " +
                            (temp.path() / "models.yaml").string() +
                            " (legacy-yaml); 1 skipped.\n"
                            "Skipped by reason: file_not_found 1.\n");
  EXPECT_TRUE(fake_.create_requests().empty());
}

class ModelsImportTest : public ModelsCommandTest {
 protected:
  void SetUp() override {
    ModelsCommandTest::SetUp();
    // An InvokeAI 3 root: configs/models.yaml, models/ beside it.
    root_ = temp_.path() / "invokeai";
    mm::testing::WriteFile(root_ / "models/sd-1/vae/a.safetensors", "vae a");
    mm::testing::WriteFile(root_ / "models/sd-1/vae/taken.safetensors",
                           "vae b");
    yaml_ = root_ / "configs/models.yaml";
    mm::testing::WriteFile(yaml_,
                           "__metadata__:\n"
                           "  version: 3.0.0\n"
                           "sd-1/vae/a:\n"
                           "  path: sd-1/vae/a.safetensors\n"
                           "sd-1/vae/taken:\n"
                           "  path: sd-1/vae/taken.safetensors\n"
                           "sd-1/vae/ghost:\n"
                           "  path: sd-1/vae/ghost.safetensors\n"
                           "sdxl/vae/other-ghost:\n"
                           "  path: /nonexistent/other-ghost.safetensors\n"
                           "not-a-key:\n"
                           "  path: x.safetensors\n");
  }

  std::vector<std::string> CreatedPaths() {
    std::vector<std::string> paths;
    for (const v1::CreateModelRequest& request : fake_.create_requests()) {
      paths.push_back(nlohmann::json::parse(request.config_json())["path"]
                          .get<std::string>());
    }
    return paths;
  }

  TempDir temp_;
  std::filesystem::path root_;
  std::filesystem::path yaml_;
};

TEST_F(ModelsImportTest, ReportsEachSkipByNameAndCountsReasons) {
  ASSERT_OK(Run({"models", "import", yaml_.string(), "--no-hash"}));
  const std::string models = (root_ / "models").string();
  EXPECT_THAT(out_.str(), HasSubstr("skipped 'taken' (sd-1/vae/taken): "
                                    "ALREADY_EXISTS: path taken\n"));
  EXPECT_THAT(out_.str(),
              HasSubstr("skipped 'ghost' (sd-1/vae/ghost): file not found: " +
                        models + "/sd-1/vae/ghost.safetensors"));
  EXPECT_THAT(out_.str(),
              HasSubstr("skipped 'other-ghost' (sdxl/vae/other-ghost): file "
                        "not found: /nonexistent/other-ghost.safetensors\n"));
  EXPECT_THAT(out_.str(),
              HasSubstr("skipped not-a-key: the entry key is not of the form "
                        "<base>/<type>/<name>\n"));
  EXPECT_THAT(out_.str(),
              HasSubstr("Imported 1 of 5 entries from " + yaml_.string() +
                        " (legacy-yaml); 4 skipped.\nSkipped by reason: "
                        "already_exists 1, file_not_found 2, invalid_entry "
                        "1.\n"));
  // No target models folder given and none known: absolute paths.
  EXPECT_THAT(CreatedPaths(),
              ElementsAre(models + "/sd-1/vae/a.safetensors",
                          models + "/sd-1/vae/taken.safetensors"));
}

TEST_F(ModelsImportTest, JsonIsOneObjectWithTheSameReport) {
  ASSERT_OK(Run({"models", "import", yaml_.string(), "--no-hash"},
                /*json=*/true));
  nlohmann::json report = nlohmann::json::parse(out_.str());
  EXPECT_EQ(report["source"], yaml_.string());
  EXPECT_EQ(report["source_kind"], "legacy-yaml");
  EXPECT_EQ(report["models_dir"], (root_ / "models").string());
  EXPECT_EQ(report["dry_run"], false);
  EXPECT_EQ(report["entries"], 5);
  ASSERT_EQ(report["added"].size(), 1u);
  EXPECT_EQ(report["added"][0]["name"], "a");
  EXPECT_EQ(report["skipped_by_reason"],
            nlohmann::json({{"already_exists", 1},
                            {"file_not_found", 2},
                            {"invalid_entry", 1}}));
  ASSERT_EQ(report["skipped"].size(), 4u);
  EXPECT_EQ(report["skipped"][0],
            nlohmann::json({{"entry", "sd-1/vae/taken"},
                            {"name", "taken"},
                            {"code", "already_exists"},
                            {"reason", "ALREADY_EXISTS: path taken"}}));
  EXPECT_EQ(report["skipped"][3]["name"], "");
  EXPECT_EQ(report["skipped"][3]["code"], "invalid_entry");
  EXPECT_EQ(report["notes"], nlohmann::json::array());
}

TEST_F(ModelsImportTest, PathsInsideTheTargetModelsFolderStayRelative) {
  // The default target comes from the caller (cli.cc: <state>/models).
  CommandIo io;
  io.out = &out_;
  io.timeout = absl::Seconds(10);
  io.models_dir = root_ / "models";
  ASSERT_OK(RunModelsCommand(
      Args({"models", "import", yaml_.string(), "--no-hash"}), *stub_, io));
  EXPECT_THAT(CreatedPaths(), ElementsAre("sd-1/vae/a.safetensors",
                                          "sd-1/vae/taken.safetensors"));
  // --target-models-dir overrides it.
  fake_.ClearRequests();
  ASSERT_OK(RunModelsCommand(
      Args({"models", "import", yaml_.string(), "--no-hash",
            "--target-models-dir", (root_ / "models/sd-1").string()}),
      *stub_, io));
  EXPECT_THAT(CreatedPaths(),
              ElementsAre("vae/a.safetensors", "vae/taken.safetensors"));
  // --models-dir says where the yaml's relative paths are.
  fake_.ClearRequests();
  ASSERT_OK(RunModelsCommand(
      Args({"models", "import", yaml_.string(), "--no-hash", "--dry-run",
            "--models-dir", temp_.path().string()}),
      *stub_, io));
  EXPECT_THAT(out_.str(), HasSubstr("Would import 0 of 5 entries"));
  EXPECT_TRUE(fake_.create_requests().empty());
}

}  // namespace
}  // namespace mm::cli
