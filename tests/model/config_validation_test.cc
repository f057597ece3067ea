#include "model/config_validation.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/taxonomy.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"

namespace mm::model {
namespace {

using ::mm::testing::StatusIs;
using ::nlohmann::json;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

const char kBlake3[] =
    "blake3:ce3f0c5f3c05d119f4a5dcaf209b50d3149046a0d3a9adee9fed4c83cad6b4d0";

// The common fields every record needs, with the given triple.
json Common(const std::string& type, const std::string& format,
            const std::string& base) {
  return {{"key", "0123456789abcdef0123456789abcdef"},
          {"hash", kBlake3},
          {"path", "sd-1/main/model.safetensors"},
          {"file_size", 1234},
          {"name", "My model"},
          {"source", "/downloads/model.safetensors"},
          {"source_type", "path"},
          {"type", type},
          {"format", format},
          {"base", base}};
}

// The smallest valid config of `family`: common fields plus its required
// extras.
json MinimalConfig(const FamilySpec& family) {
  json config = Common(family.type, family.format, family.base);
  for (const FieldSpec& field : family.fields) {
    if (field.presence != Presence::kRequired) continue;
    if (field.name == "variant") {
      config["variant"] =
          family.variant.empty() ? field.allowed->front() : family.variant;
    } else if (field.name == "image_encoder_model_id") {
      config[field.name] = "InvokeAI/ip_adapter_sd_image_encoder";
    } else {
      ADD_FAILURE() << family.tag << ": no test value for " << field.name;
    }
  }
  return config;
}

json SdMain() { return Common("main", "diffusers", "sd-1"); }

TEST(ValidateConfigTest, EveryFamilyAcceptsAMinimalConfig) {
  for (const FamilySpec& family : Families()) {
    SCOPED_TRACE(family.tag);
    ASSERT_OK_AND_ASSIGN(json normalized,
                         ValidateConfig(MinimalConfig(family)));
    EXPECT_EQ(ConfigTag(normalized), family.tag);
    for (const FieldSpec& field : CommonFields()) {
      EXPECT_TRUE(normalized.contains(field.name)) << field.name;
    }
    for (const FieldSpec& field : family.fields) {
      EXPECT_TRUE(normalized.contains(field.name)) << field.name;
    }
    EXPECT_EQ(normalized.size(), CommonFields().size() + family.fields.size());
    // Normalizing is idempotent.
    ASSERT_OK_AND_ASSIGN(json again, ValidateConfig(normalized));
    EXPECT_EQ(again, normalized);
  }
}

TEST(ValidateConfigTest, FillsDefaultsAndNulls) {
  ASSERT_OK_AND_ASSIGN(json config, ValidateConfig(SdMain()));
  EXPECT_EQ(config["repo_variant"], "");
  EXPECT_EQ(config["prediction_type"], "epsilon");
  EXPECT_EQ(config["variant"], "normal");
  EXPECT_TRUE(config["description"].is_null());
  EXPECT_TRUE(config["trigger_phrases"].is_null());
  EXPECT_TRUE(config["default_settings"].is_null());
  EXPECT_TRUE(config["tags"].is_null());
  EXPECT_TRUE(config["compatible_bases"].is_null());
  EXPECT_TRUE(config["cover_image"].is_null());
  EXPECT_TRUE(config["source_api_response"].is_null());
  EXPECT_EQ(config["file_size"], 1234);
}

TEST(ValidateConfigTest, NullDefaultedFieldGetsItsDefault) {
  json input = SdMain();
  input["prediction_type"] = nullptr;
  input["variant"] = "inpaint";
  ASSERT_OK_AND_ASSIGN(json config, ValidateConfig(input));
  EXPECT_EQ(config["prediction_type"], "epsilon");
  EXPECT_EQ(config["variant"], "inpaint");
}

TEST(ValidateConfigTest, KeepsGivenOptionalValues) {
  json input = Common("lora", "lycoris", "sdxl");
  input["description"] = "";
  input["tags"] = {"anime", "style"};
  input["trigger_phrases"] = {"by artist"};
  input["compatible_bases"] = {"sdxl-refiner", "sdxl"};
  input["cover_image"] = "covers/lora.png";
  input["default_settings"] = {{"weight", 0.75}};
  ASSERT_OK_AND_ASSIGN(json config, ValidateConfig(input));
  EXPECT_EQ(config["description"], "");
  EXPECT_EQ(config["tags"], json({"anime", "style"}));
  EXPECT_EQ(config["compatible_bases"], json({"sdxl-refiner", "sdxl"}));
  EXPECT_EQ(config["default_settings"], json({{"weight", 0.75},
                                              {"weight_min", nullptr},
                                              {"weight_max", nullptr}}));
}

TEST(ValidateConfigTest, MainDefaultSettingsAreFilled) {
  json input = SdMain();
  input["default_settings"] = {
      {"steps", 30},          {"cfg_scale", 7.5},
      {"width", 512},         {"height", 768},
      {"vae", "my-vae"},      {"vae_precision", "fp16"},
      {"guidance", 3.5},      {"cfg_rescale_multiplier", 0},
      {"scheduler", "euler"}, {"cpu_only", false},
      {"fp8_storage", true}};
  ASSERT_OK_AND_ASSIGN(json config, ValidateConfig(input));
  EXPECT_EQ(config["default_settings"], input["default_settings"]);

  input["default_settings"] = {{"steps", 20}};
  ASSERT_OK_AND_ASSIGN(config, ValidateConfig(input));
  EXPECT_EQ(config["default_settings"]["steps"], 20);
  EXPECT_TRUE(config["default_settings"]["width"].is_null());
  EXPECT_EQ(config["default_settings"].size(), 11u);
}

TEST(ValidateConfigTest, Sd3Submodels) {
  json input = Common("main", "diffusers", "sd-3");
  input["submodels"] = {
      {"text_encoder_3",
       {{"path_or_prefix", "text_encoder_3"}, {"model_type", "t5_encoder"}}},
      {"vae", {{"path_or_prefix", "vae"}, {"model_type", "vae"}}}};
  ASSERT_OK_AND_ASSIGN(json config, ValidateConfig(input));
  EXPECT_TRUE(config["submodels"]["vae"]["variant"].is_null());
  EXPECT_EQ(config["submodels"]["text_encoder_3"]["model_type"], "t5_encoder");

  input["submodels"]["text_encoder_9"] = input["submodels"]["vae"];
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, AllOf(HasSubstr("submodels.text_encoder_9"),
                                       HasSubstr("unknown submodel"))));
  input["submodels"].erase("text_encoder_9");
  input["submodels"]["vae"].erase("model_type");
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, HasSubstr("submodels.vae.model_type")));
  input["submodels"]["vae"]["model_type"] = "vae";
  input["submodels"]["vae"]["variant"] = "huge";
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, AllOf(HasSubstr("submodels.vae.variant"),
                                       HasSubstr("huge"))));
}

TEST(ValidateConfigTest, RejectsNonObject) {
  EXPECT_THAT(
      ValidateConfig(json::array()),
      StatusIs(kInvalid, HasSubstr("must be a JSON object, got array")));
}

TEST(ValidateConfigTest, RejectsFieldNotAllowedForFamily) {
  json input = Common("lora", "lycoris", "sdxl");
  input["prediction_type"] = "epsilon";
  EXPECT_THAT(
      ValidateConfig(input),
      StatusIs(kInvalid,
               AllOf(HasSubstr("field 'prediction_type' is not allowed for "
                               "lora.lycoris.sdxl"),
                     HasSubstr("trigger_phrases"))));
}

TEST(ValidateConfigTest, RejectsUnknownFieldOnFamilyWithoutExtras) {
  json input = Common("embedding", "embedding_file", "sd-1");
  input["repo_variant"] = "";
  EXPECT_THAT(
      ValidateConfig(input),
      StatusIs(kInvalid, AllOf(HasSubstr("'repo_variant' is not allowed for "
                                         "embedding.embedding_file.sd-1"),
                               HasSubstr("only the common fields"))));
}

TEST(ValidateConfigTest, RejectsServiceManagedFields) {
  for (const char* field : {"revision", "created_at", "updated_at"}) {
    json input = SdMain();
    input[field] = 3;
    EXPECT_THAT(ValidateConfig(input),
                StatusIs(kInvalid, AllOf(HasSubstr(field),
                                         HasSubstr("records service"))));
  }
}

TEST(ValidateConfigTest, RejectsBadEnumValues) {
  json input = SdMain();
  input["variant"] = "weird";
  EXPECT_THAT(
      ValidateConfig(input),
      StatusIs(kInvalid, AllOf(HasSubstr("'variant'"), HasSubstr("weird"),
                               HasSubstr("'inpaint'"))));
  input = SdMain();
  input["variant"] = "dev";  // A FLUX variant on an SD model.
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, HasSubstr("'variant'")));
  input = SdMain();
  input["source_type"] = "ftp";
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, AllOf(HasSubstr("'source_type'"),
                                       HasSubstr("'hf_repo_id'"))));
  input = SdMain();
  input["repo_variant"] = "bf16";
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, HasSubstr("'repo_variant'")));
  input = SdMain();
  input["base"] = "sd-9";
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, AllOf(HasSubstr("'base'"), HasSubstr("sd-9"),
                                       HasSubstr("'sdxl-refiner'"))));
}

TEST(ValidateConfigTest, RejectsMissingRequiredFields) {
  for (const char* field :
       {"key", "hash", "path", "file_size", "name", "source", "source_type",
        "type", "format", "base"}) {
    json input = SdMain();
    input.erase(field);
    EXPECT_THAT(ValidateConfig(input),
                StatusIs(kInvalid, HasSubstr(std::string("field '") + field +
                                             "' is missing")));
    // Null stands for "unset" only where a field may be unset.
    input[field] = nullptr;
    EXPECT_THAT(ValidateConfig(input),
                StatusIs(kInvalid, HasSubstr(std::string("field '") + field +
                                             "' is null, but it is "
                                             "required")));
  }
  json input = SdMain();
  input["name"] = nullptr;
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid,
                       "field 'name' is null, but it is required for "
                       "main.diffusers.sd-1; set it to a non-empty string of "
                       "at most 1024 bytes"));
  input = Common("main", "checkpoint", "flux");
  input["variant"] = nullptr;
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid,
                       "field 'variant' is null, but it is required for "
                       "main.checkpoint.flux; set it to one of 'schnell', "
                       "'dev', 'dev_fill'"));
  input = Common("clip_embed", "diffusers", "any");
  input["variant"] = nullptr;
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid,
                       "field 'variant' is null, but it is required for "
                       "clip_embed.diffusers.any; set it to one of 'large', "
                       "'gigantic'"));
  input = Common("main", "diffusers", "sd-3");
  input["submodels"] = {
      {"vae", {{"path_or_prefix", nullptr}, {"model_type", "vae"}}}};
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid,
                       "field 'submodels.vae.path_or_prefix': is null; every "
                       "submodel needs path_or_prefix and model_type"));
}

TEST(ValidateConfigTest, RejectsMissingFluxVariant) {
  json input = Common("main", "checkpoint", "flux");
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, AllOf(HasSubstr("'variant' is missing for "
                                                 "main.checkpoint.flux"),
                                       HasSubstr("'schnell'"))));
}

TEST(ValidateConfigTest, RejectsWrongJsonTypes) {
  json input = SdMain();
  input["file_size"] = "12";
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, AllOf(HasSubstr("'file_size'"),
                                       HasSubstr("\"12\" (string)"))));
  input["file_size"] = 12.5;
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, HasSubstr("'file_size'")));
  input["file_size"] = -1;
  EXPECT_THAT(
      ValidateConfig(input),
      StatusIs(kInvalid, AllOf(HasSubstr("'file_size'"), HasSubstr(">= 0"))));
  input = SdMain();
  input["name"] = 7;
  EXPECT_THAT(ValidateConfig(input), StatusIs(kInvalid, HasSubstr("'name'")));
  input = SdMain();
  input["tags"] = "anime";
  EXPECT_THAT(ValidateConfig(input), StatusIs(kInvalid, HasSubstr("'tags'")));
  input = SdMain();
  input["type"] = json::array({"main"});
  EXPECT_THAT(ValidateConfig(input), StatusIs(kInvalid, HasSubstr("'type'")));
  input = SdMain();
  input["default_settings"] = "fast";
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, HasSubstr("'default_settings'")));
}

TEST(ValidateConfigTest, AcceptsLargeFileSizes) {
  json input = SdMain();
  input["file_size"] = uint64_t{1} << 40;
  ASSERT_OK_AND_ASSIGN(json config, ValidateConfig(input));
  EXPECT_EQ(config["file_size"], uint64_t{1} << 40);
  input["file_size"] = 0;
  EXPECT_OK(ValidateConfig(input));
}

TEST(ValidateConfigTest, RejectsOverlongStrings) {
  json input = SdMain();
  input["name"] = std::string(kMaxNameBytes, 'n');
  EXPECT_OK(ValidateConfig(input));
  input["name"] = std::string(kMaxNameBytes + 1, 'n');
  EXPECT_THAT(
      ValidateConfig(input),
      StatusIs(kInvalid, AllOf(HasSubstr("'name'"), HasSubstr("1025 bytes"),
                               HasSubstr("1024"))));
  input = SdMain();
  input["name"] = "";
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, AllOf(HasSubstr("'name'"),
                                       HasSubstr("must not be empty"))));
  input = SdMain();
  input["description"] = std::string(kMaxDescriptionBytes + 1, 'd');
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, HasSubstr("'description'")));
  input = SdMain();
  input["path"] = std::string(kMaxPathBytes + 1, 'p');
  EXPECT_THAT(ValidateConfig(input), StatusIs(kInvalid, HasSubstr("'path'")));
  input["path"] = std::string("a\0b", 3);
  EXPECT_THAT(
      ValidateConfig(input),
      StatusIs(kInvalid, AllOf(HasSubstr("'path'"), HasSubstr("NUL byte"))));
  input = SdMain();
  input["source"] = "";
  EXPECT_THAT(ValidateConfig(input), StatusIs(kInvalid, HasSubstr("'source'")));
}

TEST(ValidateConfigTest, RejectsTooBigRecord) {
  json input = SdMain();
  input["source_api_response"] = std::string(kMaxRecordJsonBytes, 'x');
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, AllOf(HasSubstr("over the limit of 1048576"),
                                       HasSubstr("source_api_response"))));
  input["source_api_response"] = std::string(kMaxRecordJsonBytes / 2, 'x');
  EXPECT_OK(ValidateConfig(input));
}

TEST(ValidateConfigTest, RejectsInvalidUtf8) {
  json input = SdMain();
  input["name"] = std::string("bad \xff name");
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, AllOf(HasSubstr("'name'"),
                                       HasSubstr("not valid UTF-8"))));
}

TEST(ValidateConfigTest, RejectsUnregisteredCombination) {
  json input = Common("lora", "lycoris", "sd-3");
  EXPECT_THAT(
      ValidateConfig(input),
      StatusIs(kInvalid, AllOf(HasSubstr("'lora.lycoris.sd-3'"),
                               HasSubstr("'sdxl'"), Not(HasSubstr("main.")))));
  input = Common("t2i_adapter", "checkpoint", "sd-1");
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, AllOf(HasSubstr("t2i_adapter.checkpoint.sd-1"),
                                       HasSubstr("'diffusers'"))));
}

TEST(ValidateConfigTest, RejectsBadHashes) {
  const std::string b3hex =
      "ce3f0c5f3c05d119f4a5dcaf209b50d3149046a0d3a9adee9fed4c83cad6b4d0";
  for (const std::string& good :
       {std::string(kBlake3), "random:" + b3hex,
        std::string("md5:a0cd925fc063f98dbf029eee315060c3"),
        std::string("sha1:9e362940e5603fdc60566ea100a288ba2fe48b8c"),
        "sha256:" + b3hex, "sha512:" + b3hex + b3hex,
        std::string("imohash:a0cd925fc063f98dbf029eee315060c3")}) {
    json input = SdMain();
    input["hash"] = good;
    EXPECT_OK(ValidateConfig(input)) << good;
  }
  struct Case {
    std::string hash;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {b3hex, "no '<algorithm>:' prefix"},
           {"crc32:0badf00d", "unknown hash algorithm 'crc32'"},
           {"blake3:" + std::string(64, 'A'), "not lowercase hex"},
           {"md5:abc", "32 hex digits"},
           {"sha256:" + b3hex + "00", "64 hex digits"},
           {"blake3:", "64 hex digits"}}) {
    json input = SdMain();
    input["hash"] = c.hash;
    EXPECT_THAT(
        ValidateConfig(input),
        StatusIs(kInvalid, AllOf(HasSubstr("'hash'"), HasSubstr(c.message))))
        << c.hash;
  }
}

TEST(ValidateConfigTest, RejectsBadKeys) {
  json input = SdMain();
  input["key"] = "my.model_v2-final";
  EXPECT_OK(ValidateConfig(input));
  input["key"] = "has space";
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, AllOf(HasSubstr("'key'"),
                                       HasSubstr("A-Z a-z 0-9 . _ -"))));
  input["key"] = "../etc";
  EXPECT_THAT(ValidateConfig(input), StatusIs(kInvalid, HasSubstr("'key'")));
  input["key"] = std::string(kMaxKeyBytes + 1, 'k');
  EXPECT_THAT(
      ValidateConfig(input),
      StatusIs(kInvalid, AllOf(HasSubstr("'key'"), HasSubstr("limit of 256"))));
  input["key"] = "";
  EXPECT_THAT(ValidateConfig(input), StatusIs(kInvalid, HasSubstr("'key'")));
}

TEST(ValidateConfigTest, RejectsBadLists) {
  json input = SdMain();
  input["tags"] = {"a", "b", "a"};
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid,
                       AllOf(HasSubstr("'tags'"), HasSubstr("appears twice"))));
  input["tags"] = {"a", ""};
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, HasSubstr("'tags[1]'")));
  input["tags"] = {std::string(kMaxTagBytes + 1, 't')};
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, HasSubstr("'tags[0]'")));
  input["tags"] = json::array();
  for (size_t i = 0; i <= kMaxListItems; ++i) {
    input["tags"].push_back("tag" + std::to_string(i));
  }
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid,
                       AllOf(HasSubstr("'tags'"), HasSubstr("limit of 1000"))));
  input = SdMain();
  input["trigger_phrases"] = {"x", 3};
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, HasSubstr("'trigger_phrases[1]'")));
}

TEST(ValidateConfigTest, CompatibleBases) {
  json input = Common("vae", "checkpoint", "sd-1");
  input["compatible_bases"] = {"sd-2"};
  EXPECT_OK(ValidateConfig(input));
  // The record's own base is allowed (redundant, harmless).
  input["compatible_bases"] = {"sd-1", "sd-2"};
  EXPECT_OK(ValidateConfig(input));
  input["compatible_bases"] = {"sd-2", "sd-2"};
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, AllOf(HasSubstr("'compatible_bases'"),
                                       HasSubstr("appears twice"))));
  input["compatible_bases"] = {"sd-7"};
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, AllOf(HasSubstr("'compatible_bases[0]'"),
                                       HasSubstr("sd-7"))));
}

TEST(ValidateConfigTest, RejectsBadMainDefaultSettings) {
  struct Case {
    json settings;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {{{"steps", 0}}, "'default_settings.steps'"},
           {{{"steps", 2.5}}, "'default_settings.steps'"},
           {{{"cfg_scale", 0.5}}, "'default_settings.cfg_scale'"},
           {{{"cfg_scale", "7"}}, "'default_settings.cfg_scale'"},
           {{{"width", 100}}, "'default_settings.width'"},
           {{{"height", 56}}, "'default_settings.height'"},
           {{{"cfg_rescale_multiplier", 1.0}},
            "'default_settings.cfg_rescale_multiplier'"},
           {{{"cfg_rescale_multiplier", -0.1}},
            "'default_settings.cfg_rescale_multiplier'"},
           {{{"vae_precision", "bf16"}}, "'default_settings.vae_precision'"},
           {{{"vae", ""}}, "'default_settings.vae'"},
           {{{"guidance", true}}, "'default_settings.guidance'"},
           {{{"sampler", "euler"}}, "'default_settings.sampler'"}}) {
    json input = SdMain();
    input["default_settings"] = c.settings;
    EXPECT_THAT(ValidateConfig(input), StatusIs(kInvalid, HasSubstr(c.message)))
        << c.settings;
  }
  json input = SdMain();
  input["default_settings"] = {{"width", 100}};
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, AllOf(HasSubstr("multiple of 8"),
                                       HasSubstr("got 100"))));
}

TEST(ValidateConfigTest, LoraAndControlDefaultSettings) {
  json lora = Common("lora", "diffusers", "flux");
  lora["default_settings"] = {{"weight_min", 1.0}, {"weight_max", 0.5}};
  EXPECT_THAT(ValidateConfig(lora),
              StatusIs(kInvalid, HasSubstr("'default_settings.weight_min'")));
  lora["default_settings"] = {
      {"weight", 2.0}, {"weight_min", 0}, {"weight_max", 1}};
  EXPECT_THAT(ValidateConfig(lora),
              StatusIs(kInvalid, HasSubstr("'default_settings.weight'")));
  lora["default_settings"] = {{"weight", "high"}};
  EXPECT_THAT(ValidateConfig(lora),
              StatusIs(kInvalid, HasSubstr("'default_settings.weight'")));
  lora["default_settings"] = {{"preprocessor", "canny"}};
  EXPECT_THAT(ValidateConfig(lora),
              StatusIs(kInvalid, HasSubstr("'default_settings.preprocessor'")));

  json control = Common("controlnet", "diffusers", "sdxl");
  control["default_settings"] = {{"preprocessor", "canny_image_processor"}};
  ASSERT_OK_AND_ASSIGN(json config, ValidateConfig(control));
  EXPECT_EQ(config["default_settings"]["preprocessor"],
            "canny_image_processor");
  control["default_settings"] = {{"steps", 3}};
  EXPECT_THAT(ValidateConfig(control),
              StatusIs(kInvalid, HasSubstr("'default_settings.steps'")));
}

// --- Fields of the current release (6.x), spec §2 --------------------------

// Every family that takes `cpu_only`, with a minimal config of it.
std::vector<json> CpuOnlyConfigs() {
  std::vector<json> configs;
  for (const FamilySpec& family : Families()) {
    if (family.FindField("cpu_only") != nullptr) {
      configs.push_back(MinimalConfig(family));
    }
  }
  return configs;
}

TEST(CurrentReleaseFieldsTest, CpuOnlyIsABoolean) {
  const std::vector<json> configs = CpuOnlyConfigs();
  ASSERT_EQ(configs.size(), 14u);
  for (json input : configs) {
    SCOPED_TRACE(ConfigTag(input));
    input["cpu_only"] = true;
    ASSERT_OK_AND_ASSIGN(json config, ValidateConfig(input));
    EXPECT_EQ(config["cpu_only"], true);
    input["cpu_only"] = false;
    ASSERT_OK_AND_ASSIGN(config, ValidateConfig(input));
    EXPECT_EQ(config["cpu_only"], false);
    input["cpu_only"] = nullptr;
    ASSERT_OK_AND_ASSIGN(config, ValidateConfig(input));
    EXPECT_TRUE(config["cpu_only"].is_null());
    input.erase("cpu_only");
    ASSERT_OK_AND_ASSIGN(json absent, ValidateConfig(input));
    EXPECT_EQ(absent, config);
    input["cpu_only"] = "yes";
    EXPECT_THAT(ValidateConfig(input),
                StatusIs(kInvalid,
                         "field 'cpu_only': expected true or false, got "
                         "\"yes\" (string)"));
    input["cpu_only"] = 1;
    EXPECT_THAT(ValidateConfig(input),
                StatusIs(kInvalid,
                         "field 'cpu_only': expected true or false, got 1 "
                         "(number)"));
  }
}

TEST(CurrentReleaseFieldsTest, CpuOnlyIsRefusedWhereTheReleaseHasNone) {
  json input = SdMain();
  input["cpu_only"] = true;
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, HasSubstr("field 'cpu_only' is not allowed "
                                           "for main.diffusers.sd-1")));
}

TEST(CurrentReleaseFieldsTest, MainSettingsTakeCpuOnlyAndFp8Storage) {
  for (const char* tag : {"main.checkpoint.sd-1", "main.diffusers.sdxl",
                          "main.checkpoint.flux", "main.diffusers.sd-3"}) {
    SCOPED_TRACE(tag);
    json input = MinimalConfig(*FindFamily(tag));
    input["default_settings"] = {{"cpu_only", true}, {"fp8_storage", false}};
    ASSERT_OK_AND_ASSIGN(json config, ValidateConfig(input));
    EXPECT_EQ(config["default_settings"]["cpu_only"], true);
    EXPECT_EQ(config["default_settings"]["fp8_storage"], false);
    EXPECT_EQ(config["default_settings"].size(), 11u);

    input["default_settings"] = {{"cpu_only", nullptr},
                                 {"fp8_storage", nullptr}};
    ASSERT_OK_AND_ASSIGN(config, ValidateConfig(input));
    EXPECT_TRUE(config["default_settings"]["cpu_only"].is_null());
    EXPECT_TRUE(config["default_settings"]["fp8_storage"].is_null());
    input["default_settings"] = json::object();
    ASSERT_OK_AND_ASSIGN(json empty, ValidateConfig(input));
    EXPECT_EQ(empty, config);

    input["default_settings"] = {{"cpu_only", "true"}};
    EXPECT_THAT(ValidateConfig(input),
                StatusIs(kInvalid,
                         "field 'default_settings.cpu_only': expected true or "
                         "false, got \"true\" (string)"));
    input["default_settings"] = {{"fp8_storage", 1}};
    EXPECT_THAT(ValidateConfig(input),
                StatusIs(kInvalid,
                         "field 'default_settings.fp8_storage': expected true "
                         "or false, got 1 (number)"));
  }
}

TEST(CurrentReleaseFieldsTest, ControlSettingsTakeFp8Storage) {
  for (const char* tag :
       {"controlnet.checkpoint.sd-1", "controlnet.diffusers.sdxl",
        "t2i_adapter.diffusers.sd-1", "control_lora.lycoris.flux"}) {
    SCOPED_TRACE(tag);
    json input = MinimalConfig(*FindFamily(tag));
    input["default_settings"] = {{"preprocessor", "canny_image_processor"},
                                 {"fp8_storage", true}};
    ASSERT_OK_AND_ASSIGN(json config, ValidateConfig(input));
    EXPECT_EQ(config["default_settings"],
              json({{"preprocessor", "canny_image_processor"},
                    {"fp8_storage", true}}));

    input["default_settings"] = {{"preprocessor", nullptr},
                                 {"fp8_storage", nullptr}};
    ASSERT_OK_AND_ASSIGN(config, ValidateConfig(input));
    EXPECT_EQ(config["default_settings"],
              json({{"preprocessor", nullptr}, {"fp8_storage", nullptr}}));

    input["default_settings"] = {{"fp8_storage", "no"}};
    EXPECT_THAT(ValidateConfig(input),
                StatusIs(kInvalid,
                         "field 'default_settings.fp8_storage': expected true "
                         "or false, got \"no\" (string)"));
    input["default_settings"] = {{"cpu_only", true}};
    EXPECT_THAT(ValidateConfig(input),
                StatusIs(kInvalid,
                         "field 'default_settings.cpu_only': is not a known "
                         "setting; allowed: 'preprocessor', 'fp8_storage'"));
  }
}

TEST(CurrentReleaseFieldsTest, SourceUrlIsAnHttpUrlOnEveryFamily) {
  const std::string expectation =
      "an http:// or https:// URL with a host, of at most 4096 bytes, "
      "without spaces";
  for (const FamilySpec& family : Families()) {
    SCOPED_TRACE(family.tag);
    json input = MinimalConfig(family);
    input["source_url"] = "https://civitai.com/models/4384?modelVersionId=1";
    ASSERT_OK_AND_ASSIGN(json config, ValidateConfig(input));
    EXPECT_EQ(config["source_url"],
              "https://civitai.com/models/4384?modelVersionId=1");
    input["source_url"] = nullptr;
    ASSERT_OK_AND_ASSIGN(config, ValidateConfig(input));
    EXPECT_TRUE(config["source_url"].is_null());
    input["source_url"] = 42;
    EXPECT_THAT(ValidateConfig(input),
                StatusIs(kInvalid, "field 'source_url': expected " +
                                       expectation + ", got 42 (number)"));
  }
  json input = SdMain();
  for (const char* good : {"http://example.com", "HTTPS://Example.com/a#b",
                           "https://[::1]:8080/x", "https://user@host/path"}) {
    input["source_url"] = good;
    EXPECT_OK(ValidateConfig(input)) << good;
  }
  for (const char* bad :
       {"ftp://example.com/model", "file:///etc/passwd", "javascript:alert(1)",
        "civitai.com/models/4384", "https://", "https:///path", "https://:80/",
        "https://user@/x", "https://exa mple.com", "https://example.com/\n",
        "//example.com/x"}) {
    input["source_url"] = bad;
    EXPECT_THAT(ValidateConfig(input),
                StatusIs(kInvalid,
                         "field 'source_url': value " + json(bad).dump() +
                             " is not an http(s) URL; expected " + expectation))
        << bad;
  }
  input["source_url"] = "";
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid,
                       "field 'source_url': must not be empty; "
                       "expected " +
                           expectation));
  input["source_url"] =
      "https://example.com/" + std::string(kMaxSourceBytes, 'a');
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, HasSubstr("over the limit of 4096 bytes")));
}

// A main checkpoint as the 6.x release writes it to its database: every
// optional field present, most of them null.
json ReleaseMainCheckpoint() {
  return json::parse(R"({
    "key": "5b4a3c2d1e0f4a5b8c7d6e5f4a3b2c1d",
    "hash": "blake3:ce3f0c5f3c05d119f4a5dcaf209b50d3149046a0d3a9adee9fed4c83cad6b4d0",
    "path": "sd-1/main/dreamshaper_8.safetensors",
    "file_size": 2132625894,
    "name": "dreamshaper_8",
    "description": null,
    "source": "https://civitai.com/api/download/models/128713",
    "source_type": "url",
    "source_api_response": null,
    "source_url": null,
    "cover_image": null,
    "type": "main",
    "format": "checkpoint",
    "base": "sd-1",
    "config_path": null,
    "prediction_type": "epsilon",
    "variant": "normal",
    "trigger_phrases": null,
    "default_settings": {
      "vae": null, "vae_precision": null, "scheduler": null, "steps": null,
      "cfg_scale": null, "cfg_rescale_multiplier": null, "width": 512,
      "height": 512, "guidance": null, "cpu_only": null, "fp8_storage": null
    }
  })");
}

TEST(CurrentReleaseFieldsTest, AcceptsARecordAsTheReleaseWritesIt) {
  const json input = ReleaseMainCheckpoint();
  ASSERT_OK_AND_ASSIGN(json config, ValidateConfig(input));
  EXPECT_EQ(config["default_settings"], input["default_settings"]);
  EXPECT_TRUE(config["source_url"].is_null());
  EXPECT_TRUE(config["config_path"].is_null());
  // Every field of the record comes back with the value it had.
  for (const auto& [name, value] : input.items()) {
    EXPECT_EQ(config[name], value) << name;
  }
}

TEST(CurrentReleaseFieldsTest, IsHttpUrl) {
  EXPECT_TRUE(IsHttpUrl("https://huggingface.co/stabilityai/sdxl-vae"));
  EXPECT_TRUE(IsHttpUrl("http://localhost:8080"));
  EXPECT_FALSE(IsHttpUrl(""));
  EXPECT_FALSE(IsHttpUrl("https:/example.com"));
  EXPECT_FALSE(IsHttpUrl("httpx://example.com"));
  EXPECT_FALSE(IsHttpUrl("https://example.com/\x7f"));
  EXPECT_FALSE(IsHttpUrl("https://example.com/\tx"));
}

TEST(ValidateConfigTest, ClipEmbedNeedsItsVariant) {
  json input = Common("clip_embed", "diffusers", "any");
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, AllOf(HasSubstr("'variant' is missing"),
                                       HasSubstr("'gigantic'"))));
  input["variant"] = "normal";
  EXPECT_THAT(
      ValidateConfig(input),
      StatusIs(kInvalid, AllOf(HasSubstr("'variant'"), HasSubstr("normal"))));
  input["variant"] = "gigantic";
  ASSERT_OK_AND_ASSIGN(json config, ValidateConfig(input));
  EXPECT_EQ(ConfigTag(config), "clip_embed.diffusers.any.gigantic");
  EXPECT_EQ(config["repo_variant"], "");
}

TEST(ValidateConfigTest, IpAdapterInvokeAiNeedsImageEncoder) {
  json input = Common("ip_adapter", "invokeai", "sd-1");
  EXPECT_THAT(ValidateConfig(input),
              StatusIs(kInvalid, HasSubstr("'image_encoder_model_id' is "
                                           "missing for "
                                           "ip_adapter.invokeai.sd-1")));
}

// --- ApplyConfigChanges ----------------------------------------------------

json StoredSdMain() {
  json input = SdMain();
  input["description"] = "old description";
  input["trigger_phrases"] = {"photo"};
  input["prediction_type"] = "v_prediction";
  auto config = ValidateConfig(input);
  EXPECT_OK(config);
  return config.value_or(json());
}

TEST(ApplyConfigChangesTest, ChangesOnlyTheGivenFields) {
  const json current = StoredSdMain();
  ASSERT_OK_AND_ASSIGN(
      json updated,
      ApplyConfigChanges(current, {{"name", "Renamed"}, {"file_size", 99}},
                         false));
  json expected = current;
  expected["name"] = "Renamed";
  expected["file_size"] = 99;
  EXPECT_EQ(updated, expected);
}

TEST(ApplyConfigChangesTest, NullRemovesAField) {
  const json current = StoredSdMain();
  ASSERT_OK_AND_ASSIGN(
      json updated,
      ApplyConfigChanges(
          current, {{"description", nullptr}, {"prediction_type", nullptr}},
          false));
  EXPECT_TRUE(updated["description"].is_null());
  EXPECT_EQ(updated["prediction_type"], "epsilon");  // Back to the default.
  EXPECT_EQ(updated["trigger_phrases"], json({"photo"}));

  EXPECT_THAT(ApplyConfigChanges(current, {{"name", nullptr}}, false),
              StatusIs(kInvalid, HasSubstr("'name' is missing")));
}

TEST(ApplyConfigChangesTest, EmptyChangesKeepTheRecord) {
  const json current = StoredSdMain();
  ASSERT_OK_AND_ASSIGN(json updated,
                       ApplyConfigChanges(current, json::object(), false));
  EXPECT_EQ(updated, current);
}

TEST(ApplyConfigChangesTest, KeyCannotChange) {
  const json current = StoredSdMain();
  EXPECT_THAT(
      ApplyConfigChanges(current, {{"key", "other"}}, true),
      StatusIs(kInvalid, AllOf(HasSubstr("'key'"), HasSubstr("cannot change"),
                               HasSubstr("other"))));
  EXPECT_THAT(ApplyConfigChanges(current, {{"key", nullptr}}, true),
              StatusIs(kInvalid, HasSubstr("'key'")));
  // Restating the same key is not a change.
  EXPECT_OK(ApplyConfigChanges(current, {{"key", current["key"]}}, false));
}

TEST(ApplyConfigChangesTest, ClassChangeNeedsPermission) {
  const json current = StoredSdMain();
  EXPECT_THAT(ApplyConfigChanges(current, {{"base", "sdxl"}}, false),
              StatusIs(kInvalid, AllOf(HasSubstr("main.diffusers.sd-1"),
                                       HasSubstr("main.diffusers.sdxl"),
                                       HasSubstr("allow_class_change"))));
  ASSERT_OK_AND_ASSIGN(json updated,
                       ApplyConfigChanges(current, {{"base", "sdxl"}}, true));
  EXPECT_EQ(updated["base"], "sdxl");
  // Same family shape: every field survives.
  EXPECT_EQ(updated["prediction_type"], "v_prediction");
  EXPECT_EQ(updated["trigger_phrases"], json({"photo"}));
}

TEST(ApplyConfigChangesTest, ClassChangeDropsStaleFields) {
  const json current = StoredSdMain();
  // SD → FLUX: prediction_type is not a FLUX field, and the SD variant is
  // not a FLUX variant, so both go; the FLUX variant must then be given.
  EXPECT_THAT(ApplyConfigChanges(current, {{"base", "flux"}}, true),
              StatusIs(kInvalid, HasSubstr("'variant' is missing for "
                                           "main.diffusers.flux")));
  ASSERT_OK_AND_ASSIGN(
      json updated, ApplyConfigChanges(
                        current, {{"base", "flux"}, {"variant", "dev"}}, true));
  EXPECT_EQ(ConfigTag(updated), "main.diffusers.flux");
  EXPECT_FALSE(updated.contains("prediction_type"));
  EXPECT_EQ(updated["variant"], "dev");
  EXPECT_EQ(updated["trigger_phrases"], json({"photo"}));
  EXPECT_EQ(updated["description"], "old description");

  // main → vae: everything main-specific goes.
  ASSERT_OK_AND_ASSIGN(
      updated, ApplyConfigChanges(
                   current, {{"type", "vae"}, {"format", "checkpoint"}}, true));
  EXPECT_EQ(ConfigTag(updated), "vae.checkpoint.sd-1");
  for (const char* gone :
       {"prediction_type", "variant", "repo_variant", "trigger_phrases"}) {
    EXPECT_FALSE(updated.contains(gone)) << gone;
  }
  EXPECT_TRUE(updated["config_path"].is_null());

  // SD-1 → SD-3: neither prediction_type nor variant exists there.
  ASSERT_OK_AND_ASSIGN(updated,
                       ApplyConfigChanges(current, {{"base", "sd-3"}}, true));
  EXPECT_FALSE(updated.contains("variant"));
  EXPECT_FALSE(updated.contains("prediction_type"));
  EXPECT_TRUE(updated["submodels"].is_null());
  EXPECT_EQ(updated["repo_variant"], "");
}

TEST(ApplyConfigChangesTest, ExplicitFieldsAreNotDroppedSilently) {
  const json current = StoredSdMain();
  EXPECT_THAT(
      ApplyConfigChanges(current,
                         {{"type", "lora"},
                          {"format", "lycoris"},
                          {"prediction_type", "epsilon"}},
                         true),
      StatusIs(kInvalid, HasSubstr("'prediction_type' is not allowed for "
                                   "lora.lycoris.sd-1")));
}

TEST(ApplyConfigChangesTest, ClipVariantIsAClassChange) {
  json input = Common("clip_embed", "diffusers", "any");
  input["variant"] = "large";
  ASSERT_OK_AND_ASSIGN(json current, ValidateConfig(input));
  EXPECT_THAT(ApplyConfigChanges(current, {{"variant", "gigantic"}}, false),
              StatusIs(kInvalid, HasSubstr("allow_class_change")));
  ASSERT_OK_AND_ASSIGN(
      json updated,
      ApplyConfigChanges(current, {{"variant", "gigantic"}}, true));
  EXPECT_EQ(ConfigTag(updated), "clip_embed.diffusers.any.gigantic");
}

TEST(ApplyConfigChangesTest, ChangesAreValidated) {
  const json current = StoredSdMain();
  EXPECT_THAT(ApplyConfigChanges(current, {{"file_size", "big"}}, false),
              StatusIs(kInvalid, HasSubstr("'file_size'")));
  EXPECT_THAT(ApplyConfigChanges(current, {{"revision", 4}}, false),
              StatusIs(kInvalid, HasSubstr("'revision'")));
  EXPECT_THAT(
      ApplyConfigChanges(current, {{"type", "lora"}, {"base", "sd-3"}}, true),
      StatusIs(kInvalid, HasSubstr("no model family is registered for "
                                   "'lora.diffusers.sd-3'")));
  EXPECT_THAT(ApplyConfigChanges(current, json::array(), false),
              StatusIs(kInvalid, HasSubstr("must be a JSON object")));
}

}  // namespace
}  // namespace mm::model
