// Spec §4.2 (diffusers folders) and the folder rules of §4.1, on generated
// folders of JSON files and placeholder weight files. The weight files
// inside LoRA/IP-Adapter/embedding folders are read through a fake reader.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/probe_matchers.h"
#include "model/tensor_index.h"
#include "tests/testing/message_checks.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::model {
namespace {

namespace fs = std::filesystem;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::mm::testing::WriteFile;
using ::testing::HasSubstr;
using json = nlohmann::json;

using Shapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;

TensorIndex Index(const Shapes& shapes) {
  TensorIndex index;
  for (const auto& [name, shape] : shapes) {
    TensorInfo tensor;
    tensor.name = name;
    tensor.dtype = "F16";
    tensor.shape = shape;
    index.tensors.push_back(std::move(tensor));
  }
  return index;
}

class FolderTest : public ::testing::Test {
 protected:
  // Writes `value` as JSON at `relative` under the model folder.
  void Json(const std::string& relative, const json& value) {
    WriteFile(model_ / relative, value.dump());
  }
  // A placeholder weight file (the diffusers matchers never read them).
  void Weights(const std::string& relative) {
    WriteFile(model_ / relative, "weights");
  }
  // A weight file the fake reader answers with `shapes`.
  void Tensors(const std::string& relative, const Shapes& shapes) {
    Weights(relative);
    indexes_[(model_ / relative).string()] = Index(shapes);
  }

  absl::StatusOr<json> Match(json overrides = json::object()) {
    TensorIndexReader reader =
        [this](const fs::path& path) -> absl::StatusOr<TensorIndex> {
      auto it = indexes_.find(path.string());
      if (it == indexes_.end()) {
        return absl::DataLossError("fake reader: no such index " +
                                   path.string());
      }
      return it->second;
    };
    return MatchFolder(model_, overrides, reader);
  }

  void SdPipeline(const std::string& class_name, int64_t width,
                  int64_t channels) {
    Json("model_index.json", {{"_class_name", class_name},
                              {"unet", {"diffusers", "UNet2DConditionModel"}}});
    Json("unet/config.json",
         {{"cross_attention_dim", width}, {"in_channels", channels}});
    Weights("unet/diffusion_pytorch_model.safetensors");
  }

  TempDir dir_;
  fs::path model_ = dir_.path() / "my-model";
  std::map<std::string, TensorIndex> indexes_;
};

void ExpectTriple(const absl::StatusOr<json>& fields, const std::string& type,
                  const std::string& format, const std::string& base) {
  ASSERT_TRUE(fields.ok()) << fields.status();
  EXPECT_EQ((*fields)["type"], type) << fields->dump();
  EXPECT_EQ((*fields)["format"], format) << fields->dump();
  EXPECT_EQ((*fields)["base"], base) << fields->dump();
}

// ---------------------------------------------------------------------------
// Stable Diffusion pipelines.

TEST_F(FolderTest, EverySdPipelineClassIsMain) {
  for (const char* class_name :
       {"StableDiffusionPipeline", "StableDiffusionInpaintPipeline",
        "StableDiffusionXLPipeline", "StableDiffusionXLInpaintPipeline",
        "StableDiffusionXLImg2ImgPipeline", "LatentConsistencyModelPipeline"}) {
    SdPipeline(class_name, 768, 4);
    ExpectTriple(Match(), "main", "diffusers", "sd-1");
  }
}

TEST_F(FolderTest, SdPipelineBaseFromCrossAttentionDim) {
  const std::vector<std::pair<int64_t, std::string>> cases = {
      {768, "sd-1"}, {1024, "sd-2"}, {1280, "sdxl-refiner"}, {2048, "sdxl"}};
  for (const auto& [width, base] : cases) {
    SdPipeline("StableDiffusionXLPipeline", width, 4);
    ExpectTriple(Match(), "main", "diffusers", base);
  }
}

TEST_F(FolderTest, SdPipelineVariantFromInChannels) {
  const std::vector<std::pair<int64_t, std::string>> cases = {
      {4, "normal"}, {5, "depth"}, {9, "inpaint"}};
  for (const auto& [channels, variant] : cases) {
    SdPipeline("StableDiffusionPipeline", 1024, channels);
    absl::StatusOr<json> fields = Match();
    ASSERT_OK(fields);
    EXPECT_EQ((*fields)["variant"], variant);
  }
}

TEST_F(FolderTest, SdPipelineSevenChannelsIsUnusable) {
  SdPipeline("StableDiffusionPipeline", 768, 7);
  EXPECT_THAT(Match(), StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr("in_channels 7")));
}

TEST_F(FolderTest, SdPipelineUnknownWidthIsUnusable) {
  SdPipeline("StableDiffusionPipeline", 512, 4);
  EXPECT_THAT(Match(), StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr("cross_attention_dim 512")));
}

TEST_F(FolderTest, SdPipelineWithoutUnetConfigIsUnusable) {
  Json("model_index.json", {{"_class_name", "StableDiffusionPipeline"}});
  Weights("unet/diffusion_pytorch_model.bin");
  EXPECT_THAT(Match(), StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr("unet/config.json is missing")));
}

TEST_F(FolderTest, PredictionTypeFromSchedulerDefaultEpsilon) {
  SdPipeline("StableDiffusionPipeline", 1024, 4);
  ASSERT_OK_AND_ASSIGN(json plain, Match());
  EXPECT_EQ(plain["prediction_type"], "epsilon");
  Json("scheduler/scheduler_config.json",
       {{"prediction_type", "v_prediction"}});
  ASSERT_OK_AND_ASSIGN(json v, Match());
  EXPECT_EQ(v["prediction_type"], "v_prediction");
}

TEST_F(FolderTest, UnknownPredictionTypeIsShownEscaped) {
  SdPipeline("StableDiffusionPipeline", 1024, 4);
  // A config is file content: its text reaches the message escaped.
  Json("scheduler/scheduler_config.json",
       {{"prediction_type", "eps\x1b[2J\n"}});
  const absl::StatusOr<json> fields = Match();
  EXPECT_THAT(fields, StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr(R"(prediction_type 'eps\x1b[2J\n' is )"
                                         "none of epsilon")));
  EXPECT_TRUE(
      mm::testing::IsPrintableUtf8(std::string(fields.status().message())));
}

// ---------------------------------------------------------------------------
// repo_variant.

TEST_F(FolderTest, RepoVariantDefaultIsEmpty) {
  SdPipeline("StableDiffusionPipeline", 768, 4);
  ASSERT_OK_AND_ASSIGN(json fields, Match());
  EXPECT_EQ(fields["repo_variant"], "");
}

TEST_F(FolderTest, RepoVariantFp16) {
  SdPipeline("StableDiffusionPipeline", 768, 4);
  Weights("vae/diffusion_pytorch_model.fp16.safetensors");
  ASSERT_OK_AND_ASSIGN(json fields, Match());
  EXPECT_EQ(fields["repo_variant"], "fp16");
}

TEST_F(FolderTest, RepoVariantOpenvinoFlaxOnnx) {
  EXPECT_EQ(RepoVariantOfFolder(model_), "");
  WriteFile(model_ / "a" / "model.onnx", "x");
  EXPECT_EQ(RepoVariantOfFolder(model_), "onnx");
  WriteFile(model_ / "b" / "flax_model.msgpack", "x");
  EXPECT_EQ(RepoVariantOfFolder(model_), "flax");
  WriteFile(model_ / "c" / "openvino_model.bin", "x");
  EXPECT_EQ(RepoVariantOfFolder(model_), "openvino");
  WriteFile(model_ / "d" / "model.fp16.bin", "x");
  EXPECT_EQ(RepoVariantOfFolder(model_), "fp16");
}

TEST_F(FolderTest, Fp16MustBeASuffixNotPartOfTheStem) {
  WriteFile(model_ / "unet" / "fp16_model.safetensors", "x");
  WriteFile(model_ / "unet" / "model-fp16.safetensors", "x");
  EXPECT_EQ(RepoVariantOfFolder(model_), "");
}

// ---------------------------------------------------------------------------
// SD-3, FLUX.

TEST_F(FolderTest, Sd3WithSubmodels) {
  Json("model_index.json",
       {{"_class_name", "StableDiffusion3Pipeline"},
        {"text_encoder", {"transformers", "CLIPTextModelWithProjection"}},
        {"text_encoder_2", {"transformers", "CLIPTextModelWithProjection"}},
        {"text_encoder_3", {"transformers", "T5EncoderModel"}},
        {"tokenizer", {"transformers", "CLIPTokenizer"}},
        {"transformer", {"diffusers", "SD3Transformer2DModel"}},
        {"vae", {"diffusers", "AutoencoderKL"}},
        {"safety_checker", {nullptr, nullptr}}});
  Json("text_encoder/config.json", {{"hidden_size", 768}});
  Json("text_encoder_2/config.json", {{"hidden_size", 1280}});
  Weights("transformer/diffusion_pytorch_model.safetensors");
  ASSERT_OK_AND_ASSIGN(json fields, Match());
  ExpectTriple(fields, "main", "diffusers", "sd-3");
  const json& submodels = fields["submodels"];
  EXPECT_EQ(submodels["text_encoder"]["model_type"], "clip_embed");
  EXPECT_EQ(submodels["text_encoder"]["variant"], "large");
  EXPECT_EQ(submodels["text_encoder_2"]["variant"], "gigantic");
  EXPECT_EQ(submodels["text_encoder"]["path_or_prefix"],
            (model_ / "text_encoder").string());
  EXPECT_EQ(submodels["text_encoder_3"]["model_type"], "t5_encoder");
  EXPECT_EQ(submodels["vae"]["model_type"], "vae");
  EXPECT_EQ(submodels["transformer"]["model_type"], "main");
  EXPECT_FALSE(submodels.contains("tokenizer"));
  EXPECT_FALSE(submodels.contains("safety_checker"));
}

TEST_F(FolderTest, FluxPipelineVariants) {
  for (const char* class_name : {"FluxPipeline", "FluxFillPipeline"}) {
    Json("model_index.json", {{"_class_name", class_name}});
    Weights("transformer/diffusion_pytorch_model.safetensors");
    Json("transformer/config.json",
         {{"in_channels", 64}, {"guidance_embeds", false}});
    ASSERT_OK_AND_ASSIGN(json schnell, Match());
    ExpectTriple(schnell, "main", "diffusers", "flux");
    EXPECT_EQ(schnell["variant"], "schnell");
    Json("transformer/config.json",
         {{"in_channels", 64}, {"guidance_embeds", true}});
    ASSERT_OK_AND_ASSIGN(json dev, Match());
    EXPECT_EQ(dev["variant"], "dev");
    Json("transformer/config.json",
         {{"in_channels", 384}, {"guidance_embeds", true}});
    ASSERT_OK_AND_ASSIGN(json fill, Match());
    EXPECT_EQ(fill["variant"], "dev_fill");
  }
}

TEST_F(FolderTest, FluxTransformerFolderReadsItsOwnConfig) {
  Json("config.json", {{"_class_name", "FluxTransformer2DModel"},
                       {"in_channels", 64},
                       {"guidance_embeds", true}});
  Weights("diffusion_pytorch_model.safetensors");
  ASSERT_OK_AND_ASSIGN(json fields, Match());
  ExpectTriple(fields, "main", "diffusers", "flux");
  EXPECT_EQ(fields["variant"], "dev");
}

// ---------------------------------------------------------------------------
// VAE.

TEST_F(FolderTest, VaeSdxlByScalingFactorAndSampleSize) {
  for (int size : {512, 1024}) {
    Json("config.json", {{"_class_name", "AutoencoderKL"},
                         {"scaling_factor", 0.13025},
                         {"sample_size", size}});
    Weights("diffusion_pytorch_model.safetensors");
    ExpectTriple(Match(), "vae", "diffusers", "sdxl");
  }
}

TEST_F(FolderTest, VaeScalingFactorAloneIsNotEnough) {
  Json("config.json", {{"_class_name", "AutoencoderKL"},
                       {"scaling_factor", 0.13025},
                       {"sample_size", 768}});
  Weights("diffusion_pytorch_model.safetensors");
  ExpectTriple(Match(), "vae", "diffusers", "sd-1");
}

TEST_F(FolderTest, VaeSdxlByName) {
  model_ = dir_.path() / "madebyollin-sdxl-vae-fp16-fix-XL";
  Json("config.json", {{"_class_name", "AutoencoderTiny"}});
  Weights("diffusion_pytorch_model.safetensors");
  ExpectTriple(Match(), "vae", "diffusers", "sdxl");
}

TEST_F(FolderTest, VaeNameNeedsXlAtAWordEnd) {
  model_ = dir_.path() / "xlarge-vae";
  Json("config.json", {{"_class_name", "AutoencoderKL"},
                       {"scaling_factor", 0.18215},
                       {"sample_size", 512}});
  Weights("diffusion_pytorch_model.safetensors");
  ExpectTriple(Match(), "vae", "diffusers", "sd-1");
}

// ---------------------------------------------------------------------------
// ControlNet, T2I.

TEST_F(FolderTest, ControlNetBaseFromCrossAttentionDim) {
  const std::vector<std::pair<int64_t, std::string>> cases = {
      {768, "sd-1"}, {1024, "sd-2"}, {2048, "sdxl"}};
  for (const auto& [width, base] : cases) {
    Json("config.json",
         {{"_class_name", "ControlNetModel"}, {"cross_attention_dim", width}});
    Weights("diffusion_pytorch_model.fp16.safetensors");
    ASSERT_OK_AND_ASSIGN(json fields, Match());
    ExpectTriple(fields, "controlnet", "diffusers", base);
    EXPECT_EQ(fields["repo_variant"], "fp16");
  }
  Json("config.json",
       {{"_class_name", "ControlNetModel"}, {"cross_attention_dim", 1280}});
  EXPECT_THAT(Match(), StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr("cross_attention_dim 1280")));
}

TEST_F(FolderTest, FluxControlNet) {
  Json("config.json", {{"_class_name", "FluxControlNetModel"}});
  Weights("diffusion_pytorch_model.safetensors");
  ExpectTriple(Match(), "controlnet", "diffusers", "flux");
}

TEST_F(FolderTest, T2iAdapterTypes) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"full_adapter_xl", "sdxl"},
      {"full_adapter", "sd-1"},
      {"light_adapter", "sd-1"}};
  Weights("diffusion_pytorch_model.safetensors");
  for (const auto& [adapter, base] : cases) {
    Json("config.json",
         {{"_class_name", "T2IAdapter"}, {"adapter_type", adapter}});
    ExpectTriple(Match(), "t2i_adapter", "diffusers", base);
  }
  Json("config.json",
       {{"_class_name", "T2IAdapter"}, {"adapter_type", "mystery"}});
  EXPECT_THAT(Match(), StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr("adapter_type 'mystery'")));
  Json("config.json", {{"_class_name", "T2IAdapter"},
                       {"adapter_type", std::string(1000, '\a')}});
  EXPECT_THAT(Match(), StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr(R"(adapter_type '\x07\x07)")));
}

// ---------------------------------------------------------------------------
// Encoders.

TEST_F(FolderTest, ClipVisionWithProjection) {
  Json("config.json", {{"architectures", {"CLIPVisionModelWithProjection"}}});
  Weights("model.safetensors");
  ExpectTriple(Match(), "clip_vision", "diffusers", "any");
}

TEST_F(FolderTest, ClipModelWithVisionConfigButNoTextWidthIsClipVision) {
  Json("config.json", {{"architectures", {"CLIPModel"}},
                       {"vision_config", {{"hidden_size", 1024}}}});
  Weights("model.safetensors");
  ExpectTriple(Match(), "clip_vision", "diffusers", "any");
}

TEST_F(FolderTest, ClipTextEncodersAreClipEmbed) {
  const std::vector<std::pair<int64_t, std::string>> cases = {
      {768, "large"}, {1280, "gigantic"}};
  Weights("model.safetensors");
  for (const char* class_name :
       {"CLIPTextModel", "CLIPTextModelWithProjection"}) {
    for (const auto& [hidden, variant] : cases) {
      Json("config.json",
           {{"architectures", {class_name}}, {"hidden_size", hidden}});
      ASSERT_OK_AND_ASSIGN(json fields, Match());
      ExpectTriple(fields, "clip_embed", "diffusers", "any");
      EXPECT_EQ(fields["variant"], variant);
    }
  }
}

TEST_F(FolderTest, ClipModelPrefersClipEmbedOverClipVision) {
  // A full CLIPModel matches both; clip_embed has the higher priority.
  Json("config.json", {{"architectures", {"CLIPModel"}},
                       {"text_config", {{"hidden_size", 768}}},
                       {"vision_config", {{"hidden_size", 1024}}}});
  Weights("model.safetensors");
  ASSERT_OK_AND_ASSIGN(json fields, Match());
  ExpectTriple(fields, "clip_embed", "diffusers", "any");
  EXPECT_EQ(fields["variant"], "large");
}

TEST_F(FolderTest, ClipEmbedUnknownWidthIsUnusable) {
  Json("config.json",
       {{"architectures", {"CLIPTextModel"}}, {"hidden_size", 512}});
  Weights("model.safetensors");
  EXPECT_THAT(Match(), StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr("hidden_size is none of 768")));
}

TEST_F(FolderTest, T5EncoderInTextEncoder2) {
  Json("text_encoder_2/config.json", {{"architectures", {"T5EncoderModel"}}});
  Weights("text_encoder_2/model-00001-of-00002.safetensors");
  ExpectTriple(Match(), "t5_encoder", "t5_encoder", "any");
}

TEST_F(FolderTest, Siglip) {
  Json("config.json", {{"architectures", {"SiglipModel"}}});
  Weights("model.safetensors");
  ExpectTriple(Match(), "siglip", "diffusers", "any");
}

// ---------------------------------------------------------------------------
// Folder forms of §4.1.

TEST_F(FolderTest, LoraDiffusersFolder) {
  Tensors("pytorch_lora_weights.safetensors",
          {{"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_"
            "to_k.lora_down.weight",
            {4, 2048}}});
  ExpectTriple(Match(), "lora", "diffusers", "sdxl");
}

TEST_F(FolderTest, LoraDiffusersFolderBin) {
  Tensors(
      "pytorch_lora_weights.bin",
      {{"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor."
        "to_k_lora.up.weight",
        {320, 4}},
       {"lora_te_text_model_encoder_layers_0_self_attn_k_proj.lora_down."
        "weight",
        {4, 768}}});
  ExpectTriple(Match(), "lora", "diffusers", "sd-1");
}

TEST_F(FolderTest, IpAdapterInvokeaiFolder) {
  Tensors("ip_adapter.bin", {{"image_proj.proj.weight", {3072, 1024}},
                             {"ip_adapter.1.to_k_ip.weight", {640, 2048}}});
  WriteFile(model_ / "image_encoder.txt", "ip_adapter_sdxl_image_encoder\n");
  ASSERT_OK_AND_ASSIGN(json fields, Match());
  ExpectTriple(fields, "ip_adapter", "invokeai", "sdxl");
  EXPECT_EQ(fields["image_encoder_model_id"], "ip_adapter_sdxl_image_encoder");
}

TEST_F(FolderTest, IpAdapterFolderNeedsImageEncoderTxt) {
  Tensors("ip_adapter.bin", {{"image_proj.proj.weight", {3072, 1024}},
                             {"ip_adapter.1.to_k_ip.weight", {640, 2048}}});
  EXPECT_THAT(Match(), StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr("not a recognised model")));
}

TEST_F(FolderTest, EmbeddingFolder) {
  Tensors("learned_embeds.bin", {{"<cat-toy>", {768}}});
  ExpectTriple(Match(), "embedding", "embedding_folder", "sd-1");
}

TEST_F(FolderTest, UnreadableWeightFileIsReported) {
  Weights("learned_embeds.bin");  // not known to the fake reader
  EXPECT_THAT(Match(), StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr("fake reader: no such index")));
}

// ---------------------------------------------------------------------------
// Not models, overrides.

TEST_F(FolderTest, GenericConfigWithManyFilesIsNotAModel) {
  Json("config.json",
       {{"architectures", {"CLIPTextModel"}}, {"hidden_size", 768}});
  Weights("model.safetensors");
  for (int i = 0; i < 50; ++i) {
    WriteFile(model_ / "src" / ("file" + std::to_string(i) + ".py"), "x");
  }
  EXPECT_THAT(Match(), StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr("more than 50 files")));
}

TEST_F(FolderTest, FiftyFilesIsStillFine) {
  Json("config.json",
       {{"architectures", {"CLIPTextModel"}}, {"hidden_size", 768}});
  Weights("model.safetensors");
  for (int i = 0; i < 48; ++i) {
    WriteFile(model_ / "src" / ("file" + std::to_string(i) + ".py"), "x");
  }
  ExpectTriple(Match(), "clip_embed", "diffusers", "any");
}

TEST_F(FolderTest, ModelIndexFolderMayHaveManyFiles) {
  SdPipeline("StableDiffusionPipeline", 768, 4);
  Json("config.json", {{"unrelated", true}});
  for (int i = 0; i < 60; ++i) {
    WriteFile(model_ / "extra" / ("f" + std::to_string(i)), "x");
  }
  ExpectTriple(Match(), "main", "diffusers", "sd-1");
}

TEST_F(FolderTest, NoWeightFileWithinTwoLevelsIsNotAModel) {
  Json("config.json",
       {{"architectures", {"CLIPTextModel"}}, {"hidden_size", 768}});
  Weights("a/b/model.safetensors");  // three levels down
  EXPECT_THAT(Match(), StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr("no weight file")));
}

TEST_F(FolderTest, UnknownClassIsNotAModel) {
  Json("config.json", {{"architectures", {"BertModel"}}});
  Weights("model.safetensors");
  EXPECT_THAT(Match(), StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr("not a recognised model")));
}

TEST_F(FolderTest, MissingFolderIsNotFound) {
  EXPECT_THAT(Match(), StatusIs(absl::StatusCode::kNotFound,
                                HasSubstr("does not exist")));
}

TEST_F(FolderTest, OverrideContradictionRefusesFolderMatch) {
  SdPipeline("StableDiffusionPipeline", 768, 4);
  EXPECT_THAT(Match(json{{"type", "vae"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("override type=\"vae\"")));
}

}  // namespace
}  // namespace mm::model
