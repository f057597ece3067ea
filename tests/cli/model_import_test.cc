// Import planning from a legacy v3 models.yaml and from an InvokeAI SQLite
// database, both made here; the sources must come out byte-identical.
#include "cli/model_import.h"

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
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
  // Imported into a system whose models folder is the one the yaml's
  // models are in: paths stay relative to it.
  ASSERT_OK_AND_ASSIGN(
      ImportPlan plan,
      PlanImport(yaml_, {.models_dir = models_, .target_models_dir = models_}));
  EXPECT_EQ(plan.source_kind, "legacy-yaml");
  EXPECT_EQ(plan.models_dir, models_);
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
  // Each skip names the model and the kind of reason, for the report.
  std::map<std::string, std::pair<std::string, SkipReason>> details;
  for (const ImportSkip& skip : plan.skipped) {
    details[skip.entry] = {skip.name, skip.code};
  }
  EXPECT_EQ(details["sd-1/lora/gone"],
            std::make_pair(std::string("gone"), SkipReason::kFileNotFound));
  EXPECT_EQ(details["sd-9/main/odd"],
            std::make_pair(std::string("odd"), SkipReason::kUnknownFamily));
  EXPECT_EQ(details["justaname"],
            std::make_pair(std::string(), SkipReason::kInvalidEntry));
  EXPECT_EQ(details["sd-1/main/again"],
            std::make_pair(std::string("again"), SkipReason::kDuplicatePath));
  EXPECT_THAT(plan.notes, IsEmpty());
  EXPECT_THAT(plan.config_entries,
              ElementsAre("sd-1/main/good", "sdxl/main/pipe", "sd-1/vae/absvae",
                          "sdxl/lora/style"));
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

TEST_F(LegacyYamlImportTest, RelativePathsDefaultToTheRootsModelsFolder) {
  // <root>/configs/models.yaml: its paths are relative to <root>/models, as
  // InvokeAI 3 laid out its root.
  ASSERT_OK_AND_ASSIGN(ImportPlan plan, PlanImport(yaml_, {}));
  EXPECT_EQ(plan.models_dir, models_);
  std::map<std::string, json> configs = ByName(plan);
  ASSERT_EQ(configs.size(), 4u) << json(plan.configs).dump(2);
  // No target models folder: every path is stored absolute.
  EXPECT_EQ(configs["good"]["path"],
            (models_ / "sd-1/main/good.safetensors").string());
  EXPECT_EQ(configs["absvae"]["path"], (models_ / "vae.safetensors").string());
}

TEST_F(LegacyYamlImportTest, AYamlElsewhereReadsPathsFromItsFolder) {
  const fs::path loose = dir_.path() / "backup" / "models.yaml";
  fs::create_directories(loose.parent_path());
  fs::copy_file(yaml_, loose);
  ASSERT_OK_AND_ASSIGN(ImportPlan plan, PlanImport(loose, {}));
  EXPECT_EQ(plan.models_dir, loose.parent_path());
  std::map<std::string, std::string> skipped = SkipReasons(plan);
  EXPECT_EQ(skipped["sd-1/main/good"],
            "file not found: " +
                (dir_.path() / "backup/sd-1/main/good.safetensors").string() +
                " (the yaml's relative paths are read from " +
                (dir_.path() / "backup").string() +
                "; pass --models-dir if its models are elsewhere)");
  // An absolute path does not depend on it.
  EXPECT_TRUE(ByName(plan).contains("absvae"));
}

TEST_F(LegacyYamlImportTest, EveryStoredPathOpensTheFile) {
  // The system imported into keeps its models somewhere else entirely, so
  // each record must point at the yaml's files by an absolute path.
  const fs::path target = dir_.path() / "mm-state" / "models";
  fs::create_directories(target);
  ASSERT_OK_AND_ASSIGN(ImportPlan plan,
                       PlanImport(yaml_, {.target_models_dir = target}));
  ASSERT_EQ(plan.configs.size(), 4u);
  for (const json& config : plan.configs) {
    const fs::path path(config["path"].get<std::string>());
    SCOPED_TRACE(path.string());
    EXPECT_TRUE(path.is_absolute());
    EXPECT_TRUE(fs::exists(path));
    if (config["name"] == "good") {
      EXPECT_EQ(ReadFile(path), "model data");
    }
  }

  // Into a system whose models folder holds them: relative to it, and
  // resolving against it finds the same files (a trailing slash is fine).
  ASSERT_OK_AND_ASSIGN(
      plan, PlanImport(yaml_, {.target_models_dir = models_.string() + "/"}));
  ASSERT_EQ(plan.configs.size(), 4u);
  for (const json& config : plan.configs) {
    const fs::path path(config["path"].get<std::string>());
    SCOPED_TRACE(path.string());
    EXPECT_TRUE(path.is_relative());
    EXPECT_TRUE(fs::exists(models_ / path));
  }
  EXPECT_EQ(ReadFile(models_ / ByName(plan)["good"]["path"].get<std::string>()),
            "model data");
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

// The rows below were written the way InvokeAI 6.x writes them: every
// field of the record's class present, unset ones null.
json ReleaseRecord(const std::string& type, const std::string& format,
                   const std::string& base, const std::string& name,
                   const std::string& path) {
  return {{"key", "overwritten-by-the-row-id"},
          {"hash", "blake3:" + std::string(64, 'b')},
          {"path", path},
          {"file_size", 4096},
          {"name", name},
          {"description", nullptr},
          {"source", "https://example.invalid/" + name},
          {"source_type", "url"},
          {"source_api_response", nullptr},
          {"source_url", nullptr},
          {"cover_image", nullptr},
          {"type", type},
          {"format", format},
          {"base", base}};
}

json NullMainSettings() {
  return {{"vae", nullptr},        {"vae_precision", nullptr},
          {"scheduler", nullptr},  {"steps", nullptr},
          {"cfg_scale", nullptr},  {"cfg_rescale_multiplier", nullptr},
          {"width", 1024},         {"height", 1024},
          {"guidance", nullptr},   {"cpu_only", nullptr},
          {"fp8_storage", nullptr}};
}

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
  // databases/invokeai.db: relative paths are read from <root>/models.
  EXPECT_EQ(plan.models_dir, dir_.path() / "models");
  ASSERT_EQ(plan.configs.size(), 1u);
  EXPECT_THAT(plan.config_entries, ElementsAre("a-good"));
  const json& vae = plan.configs[0];
  EXPECT_EQ(vae["key"], "a-good");
  EXPECT_EQ(vae["name"], "sd-vae-ft-mse");
  EXPECT_EQ(vae["file_size"], 334643238);
  EXPECT_EQ(vae["path"],
            (dir_.path() / "models/sd-1/vae/vae.safetensors").string());
  EXPECT_FALSE(vae.contains("converted_at"));
  EXPECT_FALSE(vae.contains("usage_info"));
  // The file is not there; the record is kept and the user told.
  ASSERT_EQ(plan.notes.size(), 1u);
  EXPECT_EQ(plan.notes[0].entry, "a-good");
  EXPECT_EQ(plan.notes[0].name, "sd-vae-ft-mse");
  EXPECT_EQ(plan.notes[0].message,
            "file not found: " +
                (dir_.path() / "models/sd-1/vae/vae.safetensors").string() +
                "; the record is kept (relative paths are read from " +
                (dir_.path() / "models").string() +
                "; pass --models-dir if InvokeAI's models folder is "
                "elsewhere)");

  std::map<std::string, std::string> skipped = SkipReasons(plan);
  ASSERT_EQ(skipped.size(), 3u);
  EXPECT_THAT(skipped["b-bad-format"], HasSubstr("bogus"));
  EXPECT_EQ(skipped["c-not-json"], "the row's config is not valid JSON");
  EXPECT_EQ(skipped["d-array"],
            "the row's config is a JSON array, not an "
            "object");
  for (const ImportSkip& skip : plan.skipped) {
    if (skip.entry == "b-bad-format") {
      EXPECT_EQ(skip.name, "sd-vae-ft-mse");
      EXPECT_EQ(skip.code, SkipReason::kUnknownFamily);
    } else {
      EXPECT_EQ(skip.name, "");
      EXPECT_EQ(skip.code, SkipReason::kInvalidEntry);
    }
  }

  EXPECT_EQ(FileNames(dir), files_before);
  for (const auto& [name, bytes] : bytes_before) {
    EXPECT_EQ(ReadFile(dir / name), bytes) << name;
  }
}

TEST_F(InvokeAiImportTest, KeepsEveryRecordTheCurrentReleaseWrites) {
  // Eight ordinary records of a 6.x installation, including the three the
  // import used to lose (a main checkpoint, a main diffusers model and a
  // ControlNet, whose default_settings carry cpu_only and fp8_storage).
  ASSERT_OK(db_->Execute("DELETE FROM models").status());
  const fs::path models = dir_.path() / "models";
  std::vector<json> rows;
  json checkpoint = ReleaseRecord("main", "checkpoint", "sdxl", "juggernaut",
                                  "sdxl/main/juggernaut.safetensors");
  checkpoint.update({{"config_path", nullptr},
                     {"prediction_type", "epsilon"},
                     {"variant", "normal"},
                     {"trigger_phrases", nullptr},
                     {"default_settings", NullMainSettings()}});
  rows.push_back(checkpoint);
  json diffusers = ReleaseRecord("main", "diffusers", "sd-1", "dreamshaper",
                                 "sd-1/main/dreamshaper");
  json settings = NullMainSettings();
  settings["cpu_only"] = false;
  settings["fp8_storage"] = true;
  diffusers.update({{"repo_variant", "fp16"},
                    {"prediction_type", "epsilon"},
                    {"variant", "normal"},
                    {"trigger_phrases", nullptr},
                    {"default_settings", settings},
                    {"source_url", "https://civitai.com/models/4384"}});
  rows.push_back(diffusers);
  json controlnet = ReleaseRecord("controlnet", "diffusers", "sdxl", "canny",
                                  "sdxl/controlnet/canny");
  controlnet.update({{"repo_variant", ""},
                     {"default_settings",
                      {{"preprocessor", "canny_image_processor"},
                       {"fp8_storage", nullptr}}}});
  rows.push_back(controlnet);
  json vae = ReleaseRecord("vae", "checkpoint", "flux", "ae",
                           "flux/vae/ae.safetensors");
  vae.update({{"config_path", nullptr}, {"cpu_only", nullptr}});
  rows.push_back(vae);
  json t5 = ReleaseRecord("t5_encoder", "bnb_quantized_int8b", "any",
                          "t5_bnb_int8_quantized_encoder",
                          "any/t5_encoder/t5_bnb_int8_quantized_encoder");
  t5.update({{"cpu_only", true}});
  rows.push_back(t5);
  json clip = ReleaseRecord("clip_embed", "diffusers", "any", "clip-vit-large",
                            "any/clip_embed/clip-vit-large");
  clip.update(
      {{"repo_variant", ""}, {"variant", "large"}, {"cpu_only", nullptr}});
  rows.push_back(clip);
  json lora = ReleaseRecord("lora", "lycoris", "flux", "pixel-art",
                            "flux/lora/pixel-art.safetensors");
  lora.update({{"trigger_phrases", {"pixel art"}},
               {"default_settings", {{"weight", 0.75}}}});
  rows.push_back(lora);
  json embedding =
      ReleaseRecord("embedding", "embedding_file", "sd-1", "easynegative",
                    "sd-1/embedding/easynegative.safetensors");
  // A field a newer release added that we do not know, left unset.
  embedding["usage_info"] = nullptr;
  rows.push_back(embedding);
  for (size_t i = 0; i < rows.size(); ++i) {
    const fs::path path = models / rows[i]["path"].get<std::string>();
    WriteFile(
        rows[i]["format"] == "diffusers" ? path / "model_index.json" : path,
        "{}");
    Insert(absl::StrCat("row-", i), rows[i].dump());
  }

  ASSERT_OK_AND_ASSIGN(ImportPlan plan, PlanImport(db_path_, {}));
  EXPECT_THAT(plan.skipped, IsEmpty())
      << plan.skipped[0].entry << ": " << plan.skipped[0].reason;
  EXPECT_THAT(plan.notes, IsEmpty());
  ASSERT_EQ(plan.configs.size(), rows.size());
  std::map<std::string, json> configs = ByName(plan);
  EXPECT_EQ(configs["juggernaut"]["default_settings"], NullMainSettings());
  EXPECT_EQ(configs["dreamshaper"]["default_settings"], settings);
  EXPECT_EQ(configs["dreamshaper"]["source_url"],
            "https://civitai.com/models/4384");
  EXPECT_EQ(configs["canny"]["default_settings"],
            json({{"preprocessor", "canny_image_processor"},
                  {"fp8_storage", nullptr}}));
  EXPECT_EQ(configs["t5_bnb_int8_quantized_encoder"]["cpu_only"], true);
  EXPECT_TRUE(configs["ae"]["cpu_only"].is_null());
  EXPECT_FALSE(configs["easynegative"].contains("usage_info"));
  // Every path resolves without knowing InvokeAI's root.
  for (const json& config : plan.configs) {
    const fs::path path(config["path"].get<std::string>());
    EXPECT_TRUE(path.is_absolute()) << path;
    EXPECT_TRUE(fs::exists(path)) << path;
  }

  // Imported into a system that uses the same models folder: relative.
  ASSERT_OK_AND_ASSIGN(plan,
                       PlanImport(db_path_, {.target_models_dir = models}));
  EXPECT_EQ(ByName(plan)["juggernaut"]["path"],
            "sdxl/main/juggernaut.safetensors");
}

TEST_F(InvokeAiImportTest, ABadLinkIsDroppedAndANullRequiredFieldSkips) {
  ASSERT_OK(db_->Execute("DELETE FROM models").status());
  json linked = ReleaseRecord("embedding", "embedding_file", "sd-1", "linked",
                              "/abs/linked.safetensors");
  linked["source_url"] = "civitai.com/models/7808";
  Insert("a-linked", linked.dump());
  json unhashed = ReleaseRecord("embedding", "embedding_file", "sd-1",
                                "unhashed", "/abs/unhashed.safetensors");
  unhashed["hash"] = nullptr;
  Insert("b-unhashed", unhashed.dump());
  json unknown =
      ReleaseRecord("main", "diffusers", "z-image", "z-turbo", "/abs/z-turbo");
  Insert("c-unknown", unknown.dump());

  ASSERT_OK_AND_ASSIGN(ImportPlan plan, PlanImport(db_path_, {}));
  ASSERT_EQ(plan.configs.size(), 1u);
  EXPECT_EQ(plan.configs[0]["name"], "linked");
  EXPECT_TRUE(plan.configs[0]["source_url"].is_null());
  EXPECT_EQ(plan.configs[0]["path"], "/abs/linked.safetensors");
  ASSERT_EQ(plan.notes.size(), 2u);
  EXPECT_EQ(plan.notes[0].message,
            "source_url \"civitai.com/models/7808\" is not an http(s) URL "
            "and is left out");
  EXPECT_EQ(plan.notes[1].message,
            "file not found: /abs/linked.safetensors; the record is kept");

  ASSERT_EQ(plan.skipped.size(), 2u);
  EXPECT_EQ(plan.skipped[0].entry, "b-unhashed");
  EXPECT_EQ(plan.skipped[0].name, "unhashed");
  EXPECT_EQ(plan.skipped[0].code, SkipReason::kInvalidField);
  EXPECT_THAT(plan.skipped[0].reason,
              StartsWith("field 'hash' is null, but it is required for "
                         "embedding.embedding_file.sd-1"));
  EXPECT_EQ(plan.skipped[1].entry, "c-unknown");
  EXPECT_EQ(plan.skipped[1].name, "z-turbo");
  EXPECT_EQ(plan.skipped[1].code, SkipReason::kUnknownFamily);
  EXPECT_THAT(plan.skipped[1].reason,
              StartsWith("no model family is registered for "
                         "'main.diffusers.z-image'"));
}

TEST(SkipReasonTest, NamesAreStable) {
  EXPECT_EQ(SkipReasonName(SkipReason::kInvalidEntry), "invalid_entry");
  EXPECT_EQ(SkipReasonName(SkipReason::kFileNotFound), "file_not_found");
  EXPECT_EQ(SkipReasonName(SkipReason::kUnreadable), "unreadable");
  EXPECT_EQ(SkipReasonName(SkipReason::kUnknownFamily), "unknown_family");
  EXPECT_EQ(SkipReasonName(SkipReason::kInvalidField), "invalid_field");
  EXPECT_EQ(SkipReasonName(SkipReason::kDuplicatePath), "duplicate_path");
  EXPECT_EQ(SkipReasonName(SkipReason::kAlreadyExists), "already_exists");
  EXPECT_EQ(SkipReasonName(SkipReason::kRejected), "rejected");
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
