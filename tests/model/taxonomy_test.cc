#include "model/taxonomy.h"

#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace mm::model {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAreArray;

TEST(WireValuesTest, ListsHoldTheSpecValues) {
  EXPECT_EQ(KnownBases().size(), 13u);
  EXPECT_THAT(KnownBases(), Contains("sdxl-refiner"));
  EXPECT_THAT(KnownBases(), Contains("qwen-image"));
  EXPECT_EQ(KnownTypes().size(), 17u);
  EXPECT_THAT(KnownTypes(), Contains("spandrel_image_to_image"));
  EXPECT_EQ(KnownFormats().size(), 14u);
  EXPECT_THAT(KnownFormats(), Contains("bnb_quantized_nf4b"));
  EXPECT_EQ(KnownSubmodelTypes().size(), 13u);
  EXPECT_THAT(KnownSdVariants(), ElementsAre("normal", "inpaint", "depth"));
  EXPECT_THAT(KnownClipVariants(), ElementsAre("large", "gigantic"));
  EXPECT_THAT(KnownFluxVariants(), ElementsAre("schnell", "dev", "dev_fill"));
  EXPECT_THAT(KnownPredictionTypes(),
              ElementsAre("epsilon", "v_prediction", "sample"));
  EXPECT_THAT(KnownRepoVariants(),
              ElementsAre("", "fp16", "fp32", "onnx", "openvino", "flax"));
  EXPECT_THAT(KnownSourceTypes(), ElementsAre("path", "url", "hf_repo_id"));
}

TEST(WireValuesTest, LookupsMatchExactStrings) {
  EXPECT_TRUE(IsKnownBase("sd-1"));
  EXPECT_FALSE(IsKnownBase("SD-1"));
  EXPECT_FALSE(IsKnownBase("sd1"));
  EXPECT_TRUE(IsKnownType("clip_embed"));
  EXPECT_FALSE(IsKnownType("clip"));
  EXPECT_TRUE(IsKnownFormat("gguf_quantized"));
  EXPECT_FALSE(IsKnownFormat("gguf"));
  EXPECT_TRUE(IsKnownSubmodelType("text_encoder_3"));
  EXPECT_FALSE(IsKnownSubmodelType("text_encoder_4"));
  EXPECT_TRUE(IsKnownSdVariant("inpaint"));
  EXPECT_FALSE(IsKnownSdVariant("dev"));
  EXPECT_TRUE(IsKnownClipVariant("gigantic"));
  EXPECT_TRUE(IsKnownFluxVariant("dev_fill"));
  EXPECT_TRUE(IsKnownVariant("dev"));
  EXPECT_TRUE(IsKnownVariant("large"));
  EXPECT_TRUE(IsKnownVariant("depth"));
  EXPECT_FALSE(IsKnownVariant(""));
  EXPECT_TRUE(IsKnownPredictionType("v_prediction"));
  EXPECT_TRUE(IsKnownRepoVariant(""));
  EXPECT_FALSE(IsKnownRepoVariant("bf16"));
  EXPECT_TRUE(IsKnownSourceType("hf_repo_id"));
  EXPECT_FALSE(IsKnownSourceType("hf"));
  EXPECT_TRUE(IsKnownHashAlgorithm("imohash"));
  EXPECT_FALSE(IsKnownHashAlgorithm("blake3_multi"));
}

TEST(WireValuesTest, HashHexLengths) {
  EXPECT_EQ(HashHexLength("blake3"), 64);
  EXPECT_EQ(HashHexLength("random"), 64);
  EXPECT_EQ(HashHexLength("md5"), 32);
  EXPECT_EQ(HashHexLength("sha1"), 40);
  EXPECT_EQ(HashHexLength("sha256"), 64);
  EXPECT_EQ(HashHexLength("sha512"), 128);
  EXPECT_EQ(HashHexLength("imohash"), 32);
  EXPECT_EQ(HashHexLength("crc32"), 0);
}

TEST(FamiliesTest, RegistersExactlyTheDocumentedTags) {
  std::vector<std::string> expected;
  auto add = [&expected](const std::string& type_format,
                         const std::vector<std::string>& bases) {
    for (const std::string& base : bases) {
      expected.push_back(type_format + "." + base);
    }
  };
  const std::vector<std::string> sd = {"sd-1", "sd-2", "sdxl", "sdxl-refiner"};
  const std::vector<std::string> sd3 = {"sd-1", "sd-2", "sdxl"};
  const std::vector<std::string> sd_flux = {"sd-1", "sd-2", "sdxl", "flux"};
  add("main.checkpoint", sd);
  add("main.diffusers", sd);
  add("main.diffusers", {"sd-3"});
  add("main.checkpoint", {"flux"});
  add("main.diffusers", {"flux"});
  add("main.bnb_quantized_nf4b", {"flux"});
  add("main.gguf_quantized", {"flux"});
  add("main.onnx", sd3);
  add("main.olive", sd3);
  add("vae.checkpoint", sd_flux);
  add("vae.diffusers", sd3);
  add("controlnet.checkpoint", sd_flux);
  add("controlnet.diffusers", sd_flux);
  add("lora.lycoris", sd_flux);
  add("lora.omi", sd_flux);
  add("lora.diffusers", sd_flux);
  add("control_lora.lycoris", {"flux"});
  add("embedding.embedding_file", sd3);
  add("embedding.embedding_folder", sd3);
  add("ip_adapter.checkpoint", sd_flux);
  add("ip_adapter.invokeai", sd3);
  add("t2i_adapter.diffusers", {"sd-1", "sdxl"});
  add("clip_vision.diffusers", {"any"});
  add("clip_embed.diffusers.any", {"large", "gigantic"});
  add("siglip.diffusers", {"any"});
  add("t5_encoder.t5_encoder", {"any"});
  add("t5_encoder.bnb_quantized_int8b", {"any"});
  add("spandrel_image_to_image.checkpoint", {"any"});
  add("flux_redux.checkpoint", {"flux"});
  add("llava_onevision.diffusers", {"any"});
  add("unknown.unknown", {"unknown"});

  std::vector<std::string> tags;
  for (const FamilySpec& family : Families()) tags.push_back(family.tag);
  EXPECT_THAT(tags, UnorderedElementsAreArray(expected));
}

TEST(FamiliesTest, SpecExampleTagsAreRegistered) {
  for (const char* tag : {"main.checkpoint.sd-1",
                          "main.diffusers.sdxl",
                          "main.checkpoint.flux",
                          "vae.checkpoint.sd-1",
                          "vae.diffusers.sdxl",
                          "lora.lycoris.sdxl",
                          "lora.diffusers.sd-1",
                          "controlnet.checkpoint.sd-2",
                          "controlnet.diffusers.sdxl",
                          "embedding.embedding_file.sd-1",
                          "embedding.embedding_folder.sdxl",
                          "ip_adapter.checkpoint.sd-1",
                          "ip_adapter.invokeai.sdxl",
                          "t2i_adapter.diffusers.sdxl",
                          "clip_vision.diffusers.any",
                          "t5_encoder.t5_encoder.any",
                          "spandrel_image_to_image.checkpoint.any",
                          "flux_redux.checkpoint.flux",
                          "unknown.unknown.unknown",
                          "clip_embed.diffusers.any.large"}) {
    const FamilySpec* family = FindFamily(tag);
    ASSERT_NE(family, nullptr) << tag;
    EXPECT_EQ(family->tag, tag);
  }
}

TEST(FamiliesTest, EveryFamilyIsConsistent) {
  std::set<std::string> tags;
  for (const FamilySpec& family : Families()) {
    SCOPED_TRACE(family.tag);
    EXPECT_TRUE(tags.insert(family.tag).second) << "duplicate tag";
    EXPECT_TRUE(IsKnownType(family.type));
    EXPECT_TRUE(IsKnownFormat(family.format));
    EXPECT_TRUE(IsKnownBase(family.base));
    std::string tag = family.type + "." + family.format + "." + family.base;
    if (!family.variant.empty()) tag += "." + family.variant;
    EXPECT_EQ(family.tag, tag);
    EXPECT_EQ(FindFamily(family.tag), &family);
    std::set<std::string> names;
    for (const FieldSpec& field : family.fields) {
      EXPECT_TRUE(names.insert(field.name).second) << field.name;
      for (const FieldSpec& common : CommonFields()) {
        EXPECT_NE(field.name, common.name) << "shadows a common field";
      }
      if (field.kind == FieldKind::kEnum) {
        ASSERT_NE(field.allowed, nullptr) << field.name;
      }
      if (field.presence == Presence::kDefaulted) {
        ASSERT_EQ(field.kind, FieldKind::kEnum) << field.name;
        EXPECT_THAT(*field.allowed,
                    Contains(field.default_value.get<std::string>()))
            << field.name;
      }
    }
  }
}

TEST(FamiliesTest, ExtraFieldsFollowTheSpecTable) {
  const FamilySpec* sd_main = FindFamily("main.checkpoint.sd-1");
  ASSERT_NE(sd_main, nullptr);
  const FieldSpec* variant = sd_main->FindField("variant");
  ASSERT_NE(variant, nullptr);
  EXPECT_EQ(variant->allowed, &KnownSdVariants());
  EXPECT_EQ(variant->presence, Presence::kDefaulted);
  EXPECT_EQ(variant->default_value, "normal");
  EXPECT_EQ(sd_main->FindField("repo_variant"), nullptr);
  EXPECT_NE(sd_main->FindField("config_path"), nullptr);
  EXPECT_EQ(sd_main->probe_default_image_size, 512);

  const FamilySpec* flux = FindFamily("main.gguf_quantized.flux");
  ASSERT_NE(flux, nullptr);
  ASSERT_NE(flux->FindField("variant"), nullptr);
  EXPECT_EQ(flux->FindField("variant")->allowed, &KnownFluxVariants());
  EXPECT_EQ(flux->FindField("variant")->presence, Presence::kRequired);
  EXPECT_EQ(flux->FindField("prediction_type"), nullptr);

  const FamilySpec* sd3 = FindFamily("main.diffusers.sd-3");
  ASSERT_NE(sd3, nullptr);
  ASSERT_NE(sd3->FindField("submodels"), nullptr);
  EXPECT_EQ(sd3->FindField("submodels")->kind, FieldKind::kSubmodels);

  const FamilySpec* lora = FindFamily("lora.lycoris.sdxl");
  ASSERT_NE(lora, nullptr);
  EXPECT_EQ(lora->FindField("default_settings")->kind,
            FieldKind::kLoraSettings);
  EXPECT_EQ(lora->FindField("prediction_type"), nullptr);

  EXPECT_EQ(FindFamily("main.diffusers.sdxl")->probe_default_image_size, 1024);
  EXPECT_EQ(FindFamily("main.diffusers.sd-2")->probe_default_image_size, 768);
  EXPECT_EQ(FindFamily("main.diffusers.sdxl-refiner")->probe_default_image_size,
            0);

  const FamilySpec* invokeai = FindFamily("ip_adapter.invokeai.sd-1");
  ASSERT_NE(invokeai, nullptr);
  ASSERT_NE(invokeai->FindField("image_encoder_model_id"), nullptr);
  EXPECT_EQ(invokeai->FindField("image_encoder_model_id")->presence,
            Presence::kRequired);
  EXPECT_THAT(FindFamily("embedding.embedding_file.sd-1")->fields, IsEmpty());

  const FamilySpec* clip = FindFamily("clip_embed.diffusers.any.gigantic");
  ASSERT_NE(clip, nullptr);
  EXPECT_EQ(clip->variant, "gigantic");
  EXPECT_EQ(clip->FindField("variant")->allowed, &KnownClipVariants());
}

TEST(FamiliesTest, CurrentReleaseFieldsAreRegistered) {
  // Spec §2, fields of the 6.x release: cpu_only on VAEs and the text and
  // image encoders, and nowhere else.
  std::vector<std::string> with_cpu_only;
  for (const FamilySpec& family : Families()) {
    const FieldSpec* field = family.FindField("cpu_only");
    if (field == nullptr) continue;
    with_cpu_only.push_back(family.tag);
    EXPECT_EQ(field->kind, FieldKind::kBool) << family.tag;
    EXPECT_EQ(field->presence, Presence::kOptional) << family.tag;
  }
  EXPECT_THAT(
      with_cpu_only,
      UnorderedElementsAreArray(std::vector<std::string>{
          "vae.checkpoint.sd-1", "vae.checkpoint.sd-2", "vae.checkpoint.sdxl",
          "vae.checkpoint.flux", "vae.diffusers.sd-1", "vae.diffusers.sd-2",
          "vae.diffusers.sdxl", "t5_encoder.t5_encoder.any",
          "t5_encoder.bnb_quantized_int8b.any",
          "clip_embed.diffusers.any.large", "clip_embed.diffusers.any.gigantic",
          "clip_vision.diffusers.any", "siglip.diffusers.any",
          "llava_onevision.diffusers.any"}));

  // source_url is a common field: every record may carry a model page.
  const FieldSpec* source_url = nullptr;
  for (const FieldSpec& field : CommonFields()) {
    if (field.name == "source_url") source_url = &field;
  }
  ASSERT_NE(source_url, nullptr);
  EXPECT_EQ(source_url->kind, FieldKind::kHttpUrl);
  EXPECT_EQ(source_url->presence, Presence::kOptional);

  // The settings kinds that gained fp8_storage (and cpu_only for main
  // models) are the ones of main models and control adapters.
  EXPECT_EQ(
      FindFamily("main.checkpoint.sdxl")->FindField("default_settings")->kind,
      FieldKind::kMainSettings);
  for (const char* tag :
       {"controlnet.checkpoint.sd-1", "controlnet.diffusers.flux",
        "t2i_adapter.diffusers.sdxl", "control_lora.lycoris.flux"}) {
    EXPECT_EQ(FindFamily(tag)->FindField("default_settings")->kind,
              FieldKind::kControlSettings)
        << tag;
  }
}

TEST(FamiliesTest, UnregisteredCombinationsAreNotFound) {
  EXPECT_EQ(FindFamily("lora.lycoris.sd-3"), nullptr);
  EXPECT_EQ(FindFamily("clip_embed.diffusers.any"), nullptr);
  EXPECT_EQ(FindFamily("main.checkpoint.sd-1.normal"), nullptr);
  EXPECT_EQ(FindFamily(""), nullptr);
}

TEST(ConfigTagTest, BuildsTypeFormatBase) {
  EXPECT_EQ(ConfigTag({{"type", "lora"},
                       {"format", "lycoris"},
                       {"base", "sdxl"},
                       {"variant", "normal"}}),
            "lora.lycoris.sdxl");
  EXPECT_EQ(ConfigTag({{"type", "main"},
                       {"format", "diffusers"},
                       {"base", "sd-1"},
                       {"variant", "inpaint"}}),
            "main.diffusers.sd-1");
}

TEST(ConfigTagTest, AppendsTheClipVariant) {
  EXPECT_TRUE(TagIncludesVariant("clip_embed", "diffusers", "any"));
  EXPECT_FALSE(TagIncludesVariant("clip_vision", "diffusers", "any"));
  EXPECT_EQ(ConfigTag({{"type", "clip_embed"},
                       {"format", "diffusers"},
                       {"base", "any"},
                       {"variant", "large"}}),
            "clip_embed.diffusers.any.large");
  EXPECT_EQ(
      ConfigTag(
          {{"type", "clip_embed"}, {"format", "diffusers"}, {"base", "any"}}),
      "clip_embed.diffusers.any");
}

TEST(ConfigTagTest, MissingOrWrongTypedPartsAreEmpty) {
  EXPECT_EQ(ConfigTag({{"type", "lora"}, {"base", "sdxl"}}), "lora..sdxl");
  EXPECT_EQ(ConfigTag({{"type", 3}, {"format", "lycoris"}, {"base", "sdxl"}}),
            ".lycoris.sdxl");
  EXPECT_EQ(ConfigTag(nlohmann::json::array()), "..");
  EXPECT_EQ(ConfigTag(nlohmann::json()), "..");
}

}  // namespace
}  // namespace mm::model
