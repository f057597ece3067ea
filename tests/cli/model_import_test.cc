// Import planning from a legacy v3 models.yaml and from an InvokeAI SQLite
// database, both made here; the sources must come out byte-identical.
#include "cli/model_import.h"

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/sql/database.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::cli {
namespace {

namespace fs = std::filesystem;
using ::mm::testing::ReadFile;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::mm::testing::WriteFile;
using ::nlohmann::json;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

// BLAKE3 of the 10 bytes "model data" (spec §5).
constexpr char kModelDataBlake3[] =
    "blake3:ce3f0c5f3c05d119f4a5dcaf209b50d3149046a0d3a9adee9fed4c83cad6b4d0";

std::map<std::string, json> ByName(const ImportPlan& plan) {
  std::map<std::string, json> out;
  for (const json& config : plan.configs) {
    out[config["name"].get<std::string>()] = config;
  }
  return out;
}

std::map<std::string, std::string> SkipReasons(const ImportPlan& plan) {
  std::map<std::string, std::string> out;
  for (const ImportSkip& skip : plan.skipped) out[skip.entry] = skip.reason;
  return out;
}

std::vector<std::string> FileNames(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

class LegacyYamlImportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    models_ = dir_.path() / "models";
    WriteFile(models_ / "sd-1/main/good.safetensors", "model data");
    WriteFile(models_ /
                  "sdxl/main/pipe/unet/diffusion_pytorch_model"
                  ".safetensors",
              "abc");
    WriteFile(models_ / "sdxl/main/pipe/model_index.json", "{}");
    WriteFile(models_ / "vae.safetensors", "vae!");
    WriteFile(models_ / "loras/style.safetensors", "lora");
    WriteFile(models_ / "sd-9/odd.safetensors", "odd");
    yaml_ = dir_.path() / "configs" / "models.yaml";
    WriteFile(yaml_, absl::StrCat(R"(# InvokeAI 3 model configuration
__metadata__:
  version: 3.0.0
sd-1/main/good:
  path: sd-1/main/good.safetensors
  description: Good one
  format: checkpoint
  config: configs/stable-diffusion/v1-inference.yaml
  variant: normal
  vae: sd-1/vae/some-vae
sdxl/main/pipe:
  path: sdxl/main/pipe
  description: 1.5
  format: diffusers
  variant: normal
sd-1/vae/absvae:
  path: )",
                                  (models_ / "vae.safetensors").string(),
                                  R"(
  format: checkpoint
sdxl/lora/style:
  path: loras/style.safetensors
sd-1/lora/gone:
  path: /nonexistent/mm-import-test/gone.safetensors
  format: lycoris
sd-9/main/odd:
  path: sd-9/odd.safetensors
  format: checkpoint
justaname:
  path: sd-1/main/good.safetensors
sd-1/main/again:
  path: sd-1/main/good.safetensors
  format: checkpoint
)"));
  }

  TempDir dir_;
  fs::path models_;
  fs::path yaml_;
};

TEST_F(LegacyYamlImportTest, PlansGoodEntriesAndSkipsTheRest) {
  const std::string before = ReadFile(yaml_);
  ASSERT_OK_AND_ASSIGN(ImportPlan plan,
                       PlanImport(yaml_, {.models_dir = models_}));
  EXPECT_EQ(plan.source_kind, "legacy-yaml");
  EXPECT_EQ(ReadFile(yaml_), before);

  std::map<std::string, json> configs = ByName(plan);
  ASSERT_EQ(configs.size(), 4u) << json(plan.configs).dump(2);

  const json& good = configs["good"];
  EXPECT_THAT(good["key"].get<std::string>(), MatchesRegex("[0-9a-f]{32}"));
  EXPECT_EQ(good["base"], "sd-1");
  EXPECT_EQ(good["type"], "main");
  EXPECT_EQ(good["format"], "checkpoint");
  EXPECT_EQ(good["path"], "sd-1/main/good.safetensors");
  EXPECT_EQ(good["description"], "Good one");
  EXPECT_EQ(good["config_path"], "configs/stable-diffusion/v1-inference.yaml");
  EXPECT_EQ(good["variant"], "normal");
  EXPECT_EQ(good["file_size"], 10);
  EXPECT_EQ(good["hash"], kModelDataBlake3);
  EXPECT_EQ(good["source"], (models_ / "sd-1/main/good.safetensors").string());
  EXPECT_EQ(good["source_type"], "path");

  // A folder: the size of every file below it; a plain "1.5" stays text.
  const json& pipe = configs["pipe"];
  EXPECT_EQ(pipe["format"], "diffusers");
  EXPECT_EQ(pipe["file_size"], 5);
  EXPECT_EQ(pipe["description"], "1.5");
  EXPECT_THAT(pipe["hash"].get<std::string>(), StartsWith("blake3:"));

  // An absolute path inside models_dir is stored relative to it.
  EXPECT_EQ(configs["absvae"]["path"], "vae.safetensors");
  EXPECT_EQ(configs["absvae"]["type"], "vae");
  // A missing format is inferred as InvokeAI 3 did.
  EXPECT_EQ(configs["style"]["format"], "lycoris");
  EXPECT_EQ(configs["style"]["base"], "sdxl");

  // Keys are fresh and distinct.
  std::vector<std::string> keys;
  for (const json& config : plan.configs) keys.push_back(config["key"]);
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(std::unique(keys.begin(), keys.end()), keys.end());

  std::map<std::string, std::string> skipped = SkipReasons(plan);
  ASSERT_EQ(skipped.size(), 4u);
  EXPECT_EQ(skipped["sd-1/lora/gone"],
            "file not found: /nonexistent/mm-import-test/gone.safetensors");
  EXPECT_THAT(skipped["sd-9/main/odd"], HasSubstr("sd-9"));
  EXPECT_THAT(skipped["justaname"], HasSubstr("<base>/<type>/<name>"));
  EXPECT_THAT(skipped["sd-1/main/again"],
              HasSubstr("already imported by entry sd-1/main/good"));
}

TEST_F(LegacyYamlImportTest, WithoutHashingWritesAPlaceholderHash) {
  ASSERT_OK_AND_ASSIGN(
      ImportPlan plan,
      PlanImport(yaml_, {.models_dir = models_, .hash_files = false}));
  std::map<std::string, json> configs = ByName(plan);
  ASSERT_TRUE(configs.contains("good"));
  EXPECT_THAT(configs["good"]["hash"].get<std::string>(),
              StartsWith("random:"));
  EXPECT_EQ(configs["good"]["file_size"], 10);
}

TEST_F(LegacyYamlImportTest, RelativePathsDefaultToTheFilesFolder) {
  // Without models_dir, paths are relative to the folder of the yaml file
  // (configs/), where none of the models are.
  ASSERT_OK_AND_ASSIGN(ImportPlan plan, PlanImport(yaml_, {}));
  std::map<std::string, std::string> skipped = SkipReasons(plan);
  EXPECT_EQ(skipped["sd-1/main/good"],
            "file not found: " +
                (dir_.path() / "configs/sd-1/main/good.safetensors").string());
}

TEST_F(LegacyYamlImportTest, RecognizesTheFileByContentNotName) {
  const fs::path renamed = dir_.path() / "backup.txt";
  fs::copy_file(yaml_, renamed);
  ASSERT_OK_AND_ASSIGN(ImportPlan plan,
                       PlanImport(renamed, {.models_dir = models_}));
  EXPECT_EQ(plan.source_kind, "legacy-yaml");
  EXPECT_EQ(plan.configs.size(), 4u);
}

// An InvokeAI-like database: the `models` table keeps each config as JSON.
class InvokeAiImportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_path_ = dir_.path() / "databases" / "invokeai.db";
    fs::create_directories(db_path_.parent_path());
    ASSERT_OK_AND_ASSIGN(db_,
                         sql::Database::Open("sqlite:" + db_path_.string()));
    ASSERT_OK(db_->Execute("CREATE TABLE models (id TEXT NOT NULL PRIMARY KEY, "
                           "config TEXT NOT NULL, created_at DATETIME NOT NULL "
                           "DEFAULT CURRENT_TIMESTAMP)")
                  .status());
    json good = {{"key", "ignored-key"},
                 {"hash", "blake3:" + std::string(64, 'a')},
                 {"path", "sd-1/vae/vae.safetensors"},
                 {"file_size", 334643238},
                 {"name", "sd-vae-ft-mse"},
                 {"description", nullptr},
                 {"source", "https://example.invalid/vae.safetensors"},
                 {"source_type", "url"},
                 {"source_api_response", nullptr},
                 {"cover_image", nullptr},
                 {"type", "vae"},
                 {"format", "checkpoint"},
                 {"base", "sd-1"},
                 {"config_path", nullptr},
                 {"converted_at", 1717000000.5},
                 {"usage_info", nullptr}};
    json bad_format = good;
    bad_format["format"] = "bogus";
    bad_format["path"] = "elsewhere.safetensors";
    Insert("a-good", good.dump());
    Insert("b-bad-format", bad_format.dump());
    Insert("c-not-json", "{\"key\": ");
    Insert("d-array", "[1, 2]");
  }

  void Insert(const std::string& id, const std::string& config) {
    ASSERT_OK(db_->Execute("INSERT INTO models (id, config) VALUES (?, ?)",
                           {id, config})
                  .status());
  }

  TempDir dir_;
  fs::path db_path_;
  std::unique_ptr<sql::Database> db_;
};

TEST_F(InvokeAiImportTest, PlansValidRowsAndSkipsInvalidOnes) {
  // Read while the writer is still open, so recent rows may be in the WAL.
  const fs::path dir = db_path_.parent_path();
  const std::vector<std::string> files_before = FileNames(dir);
  EXPECT_THAT(files_before, Contains("invokeai.db-wal"));
  std::map<std::string, std::string> bytes_before;
  for (const std::string& name : files_before) {
    if (!name.ends_with("-shm")) bytes_before[name] = ReadFile(dir / name);
  }

  ASSERT_OK_AND_ASSIGN(ImportPlan plan, PlanImport(db_path_, {}));
  EXPECT_EQ(plan.source_kind, "invokeai-sqlite");
  ASSERT_EQ(plan.configs.size(), 1u);
  const json& vae = plan.configs[0];
  EXPECT_EQ(vae["key"], "a-good");
  EXPECT_EQ(vae["name"], "sd-vae-ft-mse");
  EXPECT_EQ(vae["file_size"], 334643238);
  EXPECT_FALSE(vae.contains("converted_at"));
  EXPECT_FALSE(vae.contains("usage_info"));

  std::map<std::string, std::string> skipped = SkipReasons(plan);
  ASSERT_EQ(skipped.size(), 3u);
  EXPECT_THAT(skipped["b-bad-format"], HasSubstr("bogus"));
  EXPECT_EQ(skipped["c-not-json"], "the row's config is not valid JSON");
  EXPECT_EQ(skipped["d-array"],
            "the row's config is a JSON array, not an "
            "object");

  EXPECT_EQ(FileNames(dir), files_before);
  for (const auto& [name, bytes] : bytes_before) {
    EXPECT_EQ(ReadFile(dir / name), bytes) << name;
  }
}

TEST_F(InvokeAiImportTest, LeavesNoTemporaryCopyBehind) {
  TempDir tmp;
  const char* old = ::getenv("TMPDIR");
  const std::string saved = old != nullptr ? old : "";
  ::setenv("TMPDIR", tmp.path().c_str(), 1);
  absl::StatusOr<ImportPlan> plan = PlanImport(db_path_, {});
  if (old != nullptr) {
    ::setenv("TMPDIR", saved.c_str(), 1);
  } else {
    ::unsetenv("TMPDIR");
  }
  ASSERT_OK(plan.status());
  EXPECT_THAT(FileNames(tmp.path()), IsEmpty());
}

TEST_F(InvokeAiImportTest, ADatabaseWithoutModelsTableIsRefused) {
  const fs::path other = dir_.path() / "other.db";
  {
    ASSERT_OK_AND_ASSIGN(auto db,
                         sql::Database::Open("sqlite:" + other.string()));
    ASSERT_OK(db->Execute("CREATE TABLE things (id TEXT)").status());
  }
  EXPECT_THAT(PlanImport(other, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("not a legacy models.yaml or an "
                                       "InvokeAI database"),
                             HasSubstr("`models` table"))));
}

TEST(ModelImportTest, RefusesOtherFiles) {
  TempDir dir;
  const fs::path text = dir.path() / "notes.yaml";
  WriteFile(text, "hello: world\n");
  EXPECT_THAT(PlanImport(text, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a legacy models.yaml or an InvokeAI "
                                 "database")));
  const fs::path records = dir.path() / "records.yaml";
  WriteFile(records,
            "__metadata__: {version: \"3.2\", kind: modelmanager.records}\n");
  EXPECT_THAT(PlanImport(records, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no __metadata__.version 3.0.0")));
  const fs::path binary = dir.path() / "blob.db";
  WriteFile(binary, std::string("\x00\x01\x02 not sqlite", 15));
  EXPECT_THAT(PlanImport(binary, {}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(
      PlanImport(dir.path(), {}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("directory")));
  EXPECT_THAT(PlanImport(dir.path() / "missing.yaml", {}),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("missing.yaml does not exist")));
}

}  // namespace
}  // namespace mm::cli
