// Spec §4.1 rule by rule, on in-memory state dicts (no files).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/probe_matchers.h"
#include "model/tensor_index.h"
#include "tests/testing/status_matchers.h"

namespace mm::model {
namespace {

using ::mm::testing::StatusIs;
using ::testing::HasSubstr;
using json = nlohmann::json;

using Shapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;

TensorIndex Index(const Shapes& shapes, json scalars = json::object(),
                  WeightsFormat format = WeightsFormat::kSafetensors) {
  TensorIndex index;
  index.format = format;
  uint64_t offset = 0;
  for (const auto& [name, shape] : shapes) {
    TensorInfo tensor;
    tensor.name = name;
    tensor.dtype = "F16";
    tensor.shape = shape;
    tensor.offset = offset;
    tensor.byte_size = 2;
    for (int64_t dim : shape) tensor.byte_size *= static_cast<uint64_t>(dim);
    offset += tensor.byte_size;
    index.tensors.push_back(std::move(tensor));
  }
  index.scalars = std::move(scalars);
  return index;
}

absl::StatusOr<json> Match(const TensorIndex& index,
                           const std::string& file = "model.safetensors",
                           json overrides = json::object()) {
  return MatchStateDict(index, overrides, file);
}

// The triple of a match. Tests that read more fields take them with
// ASSERT_OK_AND_ASSIGN first, so a failed match ends the test instead of
// dereferencing an error.
void ExpectTriple(const json& fields, const std::string& type,
                  const std::string& format, const std::string& base) {
  EXPECT_EQ(fields.value("type", json()), type) << fields.dump();
  EXPECT_EQ(fields.value("format", json()), format) << fields.dump();
  EXPECT_EQ(fields.value("base", json()), base) << fields.dump();
}
void ExpectTriple(const absl::StatusOr<json>& fields, const std::string& type,
                  const std::string& format, const std::string& base) {
  ASSERT_OK(fields);
  ExpectTriple(*fields, type, format, base);
}

// ---------------------------------------------------------------------------
// Main SD.

constexpr char kSd12ToK[] =
    "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k."
    "weight";
constexpr char kSdxlToK[] =
    "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k."
    "weight";
constexpr char kInput[] = "model.diffusion_model.input_blocks.0.0.weight";

Shapes Sd12(int64_t width, int64_t channels) {
  return {{"cond_stage_model.transformer.embeddings.weight", {49408, width}},
          {kInput, {320, channels, 3, 3}},
          {kSd12ToK, {320, width}}};
}

Shapes Sdxl(int64_t width, int64_t channels) {
  return {{"conditioner.embedders.0.x", {1}},
          {kInput, {320, channels, 3, 3}},
          {kSdxlToK, {640, width}}};
}

TEST(MainCheckpoint, Sd1Normal) {
  ASSERT_OK_AND_ASSIGN(json fields, Match(Index(Sd12(768, 4))));
  ExpectTriple(fields, "main", "checkpoint", "sd-1");
  EXPECT_EQ(fields["variant"], "normal");
  EXPECT_EQ(fields["prediction_type"], "epsilon");
}

TEST(MainCheckpoint, Sd1Inpaint) {
  ASSERT_OK_AND_ASSIGN(json fields, Match(Index(Sd12(768, 9))));
  ExpectTriple(fields, "main", "checkpoint", "sd-1");
  EXPECT_EQ(fields["variant"], "inpaint");
}

TEST(MainCheckpoint, Sd2IsVPredictionByDefault) {
  ASSERT_OK_AND_ASSIGN(json fields, Match(Index(Sd12(1024, 4))));
  ExpectTriple(fields, "main", "checkpoint", "sd-2");
  EXPECT_EQ(fields["prediction_type"], "v_prediction");
}

TEST(MainCheckpoint, Sd2AtGlobalStep220000IsEpsilon) {
  ASSERT_OK_AND_ASSIGN(
      json fields, Match(Index(Sd12(1024, 4), json{{"global_step", 220000}})));
  ExpectTriple(fields, "main", "checkpoint", "sd-2");
  EXPECT_EQ(fields["prediction_type"], "epsilon");
}

TEST(MainCheckpoint, Sd2AtAnotherGlobalStepIsVPrediction) {
  ASSERT_OK_AND_ASSIGN(
      json fields, Match(Index(Sd12(1024, 4), json{{"global_step", 875000}})));
  EXPECT_EQ(fields["prediction_type"], "v_prediction");
}

TEST(MainCheckpoint, Sd1GlobalStepDoesNotMatter) {
  ASSERT_OK_AND_ASSIGN(json fields,
                       Match(Index(Sd12(768, 4), json{{"global_step", 100}})));
  EXPECT_EQ(fields["prediction_type"], "epsilon");
}

TEST(MainCheckpoint, Sd2Depth) {
  ASSERT_OK_AND_ASSIGN(json fields, Match(Index(Sd12(1024, 5))));
  ExpectTriple(fields, "main", "checkpoint", "sd-2");
  EXPECT_EQ(fields["variant"], "depth");
}

TEST(MainCheckpoint, DepthIsSd2Only) {
  EXPECT_THAT(Match(Index(Sd12(768, 5))),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("5 input channels")));
}

TEST(MainCheckpoint, SevenInputChannelsIsNotAModel) {
  EXPECT_THAT(Match(Index(Sd12(768, 7))),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("7 input channels")));
}

TEST(MainCheckpoint, Sdxl) {
  ASSERT_OK_AND_ASSIGN(json fields, Match(Index(Sdxl(2048, 4))));
  ExpectTriple(fields, "main", "checkpoint", "sdxl");
  EXPECT_EQ(fields["variant"], "normal");
  EXPECT_EQ(fields["prediction_type"], "epsilon");
}

TEST(MainCheckpoint, SdxlRefiner) {
  ASSERT_OK_AND_ASSIGN(json fields, Match(Index(Sdxl(1280, 4))));
  ExpectTriple(fields, "main", "checkpoint", "sdxl-refiner");
}

TEST(MainCheckpoint, SdxlInpaint) {
  ASSERT_OK_AND_ASSIGN(json fields, Match(Index(Sdxl(2048, 9))));
  EXPECT_EQ(fields["variant"], "inpaint");
}

TEST(MainCheckpoint, UnknownWidthIsNotMine) {
  Shapes shapes = Sd12(640, 4);
  EXPECT_THAT(Match(Index(shapes)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("not a recognised model"),
                             HasSubstr("cross-attention width"))));
}

TEST(MainCheckpoint, EachMainPrefixCounts) {
  for (const char* prefix :
       {"cond_stage_model.", "first_stage_model.", "model.diffusion_model."}) {
    Shapes shapes = {{std::string(prefix) + "x", {1}},
                     {kInput, {320, 4, 3, 3}},
                     {kSd12ToK, {320, 768}}};
    ExpectTriple(Match(Index(shapes)), "main", "checkpoint", "sd-1");
  }
}

TEST(MainCheckpoint, IpAdapterKeysDoNotLookLikeMain) {
  // Only the width keys have the main prefix... and they name ip_adapter.
  Shapes shapes;
  for (int i = 0; i < 12; ++i) {
    shapes.push_back(
        {"model.diffusion_model.ip_adapter." + std::to_string(i), {3}});
  }
  EXPECT_THAT(Match(Index(shapes)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a recognised model")));
}

TEST(MainCheckpoint, BeatsLoraKeysInTheSameFile) {
  Shapes shapes = Sd12(768, 4);
  shapes.push_back(
      {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k."
       "lora_down.weight",
       {4, 1024}});
  ExpectTriple(Match(Index(shapes)), "main", "checkpoint", "sd-1");
}

// ---------------------------------------------------------------------------
// FLUX main.

constexpr char kFluxKey[] = "double_blocks.0.img_attn.norm.key_norm.scale";

TEST(FluxMain, SchnellWithoutGuidance) {
  ASSERT_OK_AND_ASSIGN(
      json fields,
      Match(Index({{kFluxKey, {128}}, {"img_in.weight", {3072, 64}}})));
  ExpectTriple(fields, "main", "checkpoint", "flux");
  EXPECT_EQ(fields["variant"], "schnell");
  EXPECT_FALSE(fields.contains("prediction_type"));
}

TEST(FluxMain, DevWithGuidanceAndPrefix) {
  const std::string p = "model.diffusion_model.";
  ASSERT_OK_AND_ASSIGN(
      json fields,
      Match(Index({{p + kFluxKey, {128}},
                   {p + "guidance_in.out_layer.weight", {3072, 3072}},
                   {p + "img_in.weight", {3072, 64}}})));
  ExpectTriple(fields, "main", "checkpoint", "flux");
  EXPECT_EQ(fields["variant"], "dev");
}

TEST(FluxMain, DevFillHas384InputChannels) {
  ASSERT_OK_AND_ASSIGN(
      json fields, Match(Index({{kFluxKey, {128}},
                                {"guidance_in.out_layer.weight", {3072, 3072}},
                                {"img_in.weight", {3072, 384}}})));
  EXPECT_EQ(fields["variant"], "dev_fill");
}

TEST(FluxMain, Nf4Quantized) {
  ASSERT_OK_AND_ASSIGN(json fields,
                       Match(Index({{kFluxKey, {128}},
                                    {"double_blocks.0.img_attn.proj.weight."
                                     "quant_state.bitsandbytes__nf4",
                                     {1}}})));
  ExpectTriple(fields, "main", "bnb_quantized_nf4b", "flux");
  EXPECT_EQ(fields["variant"], "schnell");
}

TEST(FluxMain, GgufFileIsGgufQuantized) {
  ASSERT_OK_AND_ASSIGN(
      json fields, Match(Index({{kFluxKey, {128}},
                                {"guidance_in.out_layer.weight", {3072, 256}}},
                               json::object(), WeightsFormat::kGguf),
                         "flux1-dev-Q4_0.gguf"));
  ExpectTriple(fields, "main", "gguf_quantized", "flux");
  EXPECT_EQ(fields["variant"], "dev");
}

// ---------------------------------------------------------------------------
// VAE.

Shapes Vae(int64_t latent) {
  return {{"encoder.conv_in.weight", {128, 3, 3, 3}},
          {"decoder.conv_in.weight", {512, latent, 3, 3}}};
}

TEST(VaeCheckpoint, SixteenLatentChannelsIsFlux) {
  ExpectTriple(Match(Index(Vae(16)), "ae.safetensors"), "vae", "checkpoint",
               "flux");
}

TEST(VaeCheckpoint, FileNameDecidesFourChannelBase) {
  ExpectTriple(Match(Index(Vae(4)), "sdxl_vae.safetensors"), "vae",
               "checkpoint", "sdxl");
  ExpectTriple(Match(Index(Vae(4)), "MY-XL-VAE.SAFETENSORS"), "vae",
               "checkpoint", "sdxl");
  ExpectTriple(Match(Index(Vae(4)), "SD2-ema.ckpt"), "vae", "checkpoint",
               "sd-2");
  ExpectTriple(Match(Index(Vae(4)), "vae-ft-mse.pt"), "vae", "checkpoint",
               "sd-1");
  ExpectTriple(Match(Index(Vae(4)), "anything.safetensors"), "vae",
               "checkpoint", "sd-1");
}

TEST(VaeCheckpoint, FirstNameHitWins) {
  // Contains both "sd2" and "xl": "xl" is checked first.
  ExpectTriple(Match(Index(Vae(4)), "sd2_xl.safetensors"), "vae", "checkpoint",
               "sdxl");
}

TEST(VaeCheckpoint, EncoderOnlyKeysAreEnough) {
  ExpectTriple(Match(Index({{"encoder.conv_in.weight", {128, 3, 3, 3}},
                            {"encoder.conv_out.weight", {8, 512, 3, 3}}}),
                     "taesd.safetensors"),
               "vae", "checkpoint", "sd-1");
}

TEST(VaeCheckpoint, BaseOverrideReplacesTheNameGuess) {
  ExpectTriple(Match(Index(Vae(4)), "vae.safetensors", json{{"base", "sd-2"}}),
               "vae", "checkpoint", "sd-2");
}

TEST(VaeCheckpoint, OtherLatentWidthIsUnusable) {
  EXPECT_THAT(Match(Index(Vae(32))),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("32 latent channels")));
}

// ---------------------------------------------------------------------------
// LoRA.

constexpr char kUnetK[] =
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k";

TEST(Lora, UnetAttn2WidthDecidesBase) {
  const std::vector<std::pair<int64_t, std::string>> cases = {
      {768, "sd-1"}, {1024, "sd-2"}, {1280, "sdxl"}, {2048, "sdxl"}};
  for (const auto& [width, base] : cases) {
    ExpectTriple(
        Match(Index({{std::string(kUnetK) + ".lora_down.weight", {4, width}},
                     {std::string(kUnetK) + ".lora_up.weight", {320, 4}}})),
        "lora", "lycoris", base);
  }
}

TEST(Lora, Attn2ToVCounts) {
  ExpectTriple(Match(Index({{"lora_unet_mid_block_attentions_0_transformer_"
                             "blocks_0_attn2_to_v.lora_down.weight",
                             {4, 1024}}})),
               "lora", "lycoris", "sd-2");
}

TEST(Lora, TimeEmbProjCounts) {
  ExpectTriple(
      Match(Index({{"lora_unet_down_blocks_0_resnets_0_time_emb_proj.lora_down."
                    "weight",
                    {4, 1280}}})),
      "lora", "lycoris", "sdxl");
}

TEST(Lora, TextEncoderSelfAttn) {
  ExpectTriple(Match(Index({{"lora_te_text_model_encoder_layers_0_self_attn_k_"
                             "proj.lora_down.weight",
                             {4, 768}}})),
               "lora", "lycoris", "sd-1");
}

TEST(Lora, TwoTextEncoderLengthsAddUp) {
  // 768 + 1280 = 2048: SDXL, though neither alone says so.
  ExpectTriple(Match(Index({{"lora_te1_text_model_encoder_layers_0_self_attn_k_"
                             "proj.lora_down.weight",
                             {4, 768}},
                            {"lora_te2_text_model_encoder_layers_0_self_attn_k_"
                             "proj.lora_down.weight",
                             {4, 1280}}})),
               "lora", "lycoris", "sdxl");
}

TEST(Lora, LohaUsesHadaB) {
  ExpectTriple(Match(Index({{std::string(kUnetK) + ".hada_w1_a", {320, 4}},
                            {std::string(kUnetK) + ".hada_w1_b", {4, 768}}})),
               "lora", "lycoris", "sd-1");
}

TEST(Lora, LokrMultipliesW1AndW2) {
  // 16 * 64 = 1024.
  ExpectTriple(Match(Index({{std::string(kUnetK) + ".lokr_w1", {8, 16}},
                            {std::string(kUnetK) + ".lokr_w2", {40, 64}}})),
               "lora", "lycoris", "sd-2");
}

TEST(Lora, DiffUsesShape1) {
  ExpectTriple(Match(Index({{std::string(kUnetK) + ".diff", {320, 768}}})),
               "lora", "lycoris", "sd-1");
}

TEST(Lora, SliderWithDeepTransformerBlockIsSdxl) {
  ExpectTriple(Match(Index({{"lora_unet_output_blocks_1_1_transformer_blocks_3_"
                             "attn1_to_q.lora_down.weight",
                             {4, 640}}})),
               "lora", "lycoris", "sdxl");
}

TEST(Lora, SliderWithShallowBlocksIsUnusable) {
  EXPECT_THAT(
      Match(Index({{"lora_unet_output_blocks_1_1_transformer_blocks_1_attn1_to_"
                    "q.lora_down.weight",
                    {4, 640}}})),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("lora: cannot tell the base")));
}

TEST(Lora, UnknownTokenLengthIsUnusable) {
  EXPECT_THAT(
      Match(Index({{std::string(kUnetK) + ".lora_down.weight", {4, 999}}})),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("token vector length 999")));
}

TEST(Lora, KohyaFluxIsFlux) {
  ExpectTriple(
      Match(Index({{"lora_unet_double_blocks_0_img_attn_proj.lora_down.weight",
                    {16, 3072}},
                   {"lora_unet_double_blocks_0_img_attn_proj.alpha", {}},
                   {"lora_unet_single_blocks_37_linear1.lora_up.weight",
                    {21504, 16}}})),
      "lora", "lycoris", "flux");
}

TEST(Lora, KohyaFluxNeedsEveryKeyToMatch) {
  EXPECT_THAT(
      Match(Index({{"lora_unet_double_blocks_0_img_attn_proj.lora_down.weight",
                    {16, 3072}},
                   {"lora_unet_other_thing.lora_down.weight", {16, 3072}}})),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("cannot tell the base")));
}

TEST(Lora, DiffusersPeftFluxIsFlux) {
  ExpectTriple(
      Match(Index(
          {{"transformer.single_transformer_blocks.0.attn.to_k.lora_A.weight",
            {16, 3072}},
           {"transformer.transformer_blocks.0.attn.to_q.lora_B.weight",
            {3072, 16}}})),
      "lora", "lycoris", "flux");
}

TEST(Lora, XlabsFluxIsFlux) {
  ExpectTriple(
      Match(Index(
          {{"double_blocks.0.processor.qkv_lora1.down.weight", {16, 3072}},
           {"double_blocks.0.processor.proj_lora2.up.weight", {3072, 16}},
           {"double_blocks.18.processor.qkv_lora2.up.weight", {9216, 16}}})),
      "lora", "lycoris", "flux");
}

// ---------------------------------------------------------------------------
// ControlNet.

TEST(ControlNetCheckpoint, ControlModelWidthDecidesBase) {
  const std::vector<std::pair<int64_t, std::string>> cases = {
      {768, "sd-1"}, {1024, "sd-2"}, {2048, "sdxl"}, {1280, "sdxl"}};
  for (const auto& [width, base] : cases) {
    ExpectTriple(Match(Index({{"control_model.input_blocks.2.1.transformer_"
                               "blocks.0.attn2.to_k.weight",
                               {320, width}},
                              {"control_model.zero_convs.0.0.weight", {1}}})),
                 "controlnet", "checkpoint", base);
  }
}

TEST(ControlNetCheckpoint, MidBlockBiasIsSecond) {
  ExpectTriple(Match(Index({{"controlnet_mid_block.bias", {1024}},
                            {"input_blocks.2.1.transformer_blocks.0.attn2.to_k."
                             "weight",
                             {320, 768}}})),
               "controlnet", "checkpoint", "sd-2");
}

TEST(ControlNetCheckpoint, BareInputBlocks) {
  ExpectTriple(Match(Index({{"input_blocks.2.1.transformer_blocks.0.attn2.to_k."
                             "weight",
                             {320, 768}}})),
               "controlnet", "checkpoint", "sd-1");
}

TEST(ControlNetCheckpoint, DiffusersKeysInOneFile) {
  ExpectTriple(Match(Index({{"controlnet_cond_embedding.conv_in.weight", {1}},
                            {"down_blocks.1.attentions.0.transformer_blocks.0."
                             "attn2.to_k.weight",
                             {640, 2048}}})),
               "controlnet", "checkpoint", "sdxl");
}

TEST(ControlNetCheckpoint, XlabsFluxEvenWithDoubleBlocks) {
  ExpectTriple(Match(Index({{kFluxKey, {128}},
                            {"controlnet_blocks.0.weight", {3072, 3072}},
                            {"input_hint_block.0.weight", {16, 3, 3, 3}},
                            {"pos_embed_input.weight", {3072, 64}}})),
               "controlnet", "checkpoint", "flux");
}

TEST(ControlNetCheckpoint, InstantXFlux) {
  ExpectTriple(Match(Index({{"controlnet_blocks.0.weight", {3072, 3072}},
                            {"controlnet_x_embedder.weight", {3072, 64}}})),
               "controlnet", "checkpoint", "flux");
}

TEST(ControlNetCheckpoint, NoWidthKeyIsUnusable) {
  EXPECT_THAT(Match(Index({{"controlnet_cond_embedding.conv_in.weight", {1}},
                           {"controlnet_down_blocks.0.weight", {1}}})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("none of the keys that tell the base")));
}

// ---------------------------------------------------------------------------
// IP-Adapter.

TEST(IpAdapterCheckpoint, ToKIpWidthDecidesBase) {
  const std::vector<std::pair<int64_t, std::string>> cases = {
      {768, "sd-1"}, {1024, "sd-2"}, {2048, "sdxl"}};
  for (const auto& [width, base] : cases) {
    ExpectTriple(Match(Index({{"image_proj.proj.weight", {3072, 1024}},
                              {"ip_adapter.1.to_k_ip.weight", {320, width}}})),
                 "ip_adapter", "checkpoint", base);
  }
}

TEST(IpAdapterCheckpoint, XlabsFlux) {
  ExpectTriple(
      Match(Index({{"double_blocks.0.processor.ip_adapter_double_stream_k_proj."
                    "weight",
                    {3072, 4096}},
                   {"ip_adapter_proj_model.proj.weight", {16384, 768}}})),
      "ip_adapter", "checkpoint", "flux");
}

TEST(IpAdapterCheckpoint, OtherWidthIsUnusable) {
  EXPECT_THAT(Match(Index({{"image_proj.proj.weight", {3072, 1024}},
                           {"ip_adapter.1.to_k_ip.weight", {320, 640}}})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("to_k_ip.weight last dimension 640")));
}

// ---------------------------------------------------------------------------
// Textual inversion.

TEST(EmbeddingFile, StringToParam) {
  ExpectTriple(
      Match(Index({{"string_to_token.*", {}}, {"string_to_param.*", {2, 768}}},
                  json{{"name", "tok"}, {"step", 3000}}),
            "tok.pt"),
      "embedding", "embedding_file", "sd-1");
}

TEST(EmbeddingFile, EmbParams) {
  ExpectTriple(Match(Index({{"emb_params", {4, 1024}}})), "embedding",
               "embedding_file", "sd-2");
}

TEST(EmbeddingFile, ClipG) {
  ExpectTriple(Match(Index({{"clip_g", {2, 1280}}, {"clip_l", {2, 768}}})),
               "embedding", "embedding_file", "sdxl");
}

TEST(EmbeddingFile, FewTensorsUseFirstShape0) {
  ExpectTriple(Match(Index({{"<cat-toy>", {768}}})), "embedding",
               "embedding_file", "sd-1");
  ExpectTriple(Match(Index({{"<a>", {1024}}, {"<b>", {1024}}})), "embedding",
               "embedding_file", "sd-2");
}

TEST(EmbeddingFile, OtherWidthIsUnusable) {
  EXPECT_THAT(Match(Index({{"<tok>", {640}}})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("token width 640")));
}

TEST(EmbeddingFile, TenTensorsAreNotAnEmbedding) {
  Shapes shapes;
  for (int i = 0; i < 10; ++i)
    shapes.push_back({"t" + std::to_string(i), {768}});
  EXPECT_THAT(Match(Index(shapes)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no model family matched")));
}

TEST(EmbeddingFile, ANonTensorValueDisqualifiesTheSmallDictRule) {
  EXPECT_THAT(Match(Index({{"<tok>", {768}}}, json{{"step", 5}})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a recognised model")));
}

TEST(EmbeddingFile, MetadataIsNotAStateDictKey) {
  ExpectTriple(
      Match(Index({{"<tok>", {768}}}, json{{"metadata", {{"format", "pt"}}}})),
      "embedding", "embedding_file", "sd-1");
}

// ---------------------------------------------------------------------------
// FLUX Redux.

Shapes Redux() {
  return {{"redux_down.weight", {4096, 12288}},
          {"redux_down.bias", {4096}},
          {"redux_up.weight", {12288, 1152}},
          {"redux_up.bias", {12288}}};
}

TEST(FluxRedux, ExactKeySet) {
  ExpectTriple(Match(Index(Redux())), "flux_redux", "checkpoint", "flux");
}

TEST(FluxRedux, AnExtraKeyIsNotRedux) {
  Shapes shapes = Redux();
  shapes.push_back({"extra", {3}});
  EXPECT_THAT(Match(Index(shapes)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a recognised model")));
}

// ---------------------------------------------------------------------------
// Not models, overrides.

TEST(NotAModel, IntegerKeys) {
  EXPECT_THAT(Match(Index({{"0", {768}}, {"1", {768}}})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("keyed by integers")));
}

TEST(NotAModel, NothingMatches) {
  Shapes shapes;
  for (int i = 0; i < 20; ++i) {
    shapes.push_back({"layer" + std::to_string(i) + ".weight", {3, 3}});
  }
  EXPECT_THAT(Match(Index(shapes), "thing.safetensors"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("not a recognised model: "
                                       "thing.safetensors"),
                             HasSubstr("no model family matched"))));
}

TEST(NotAModel, NoTensors) {
  EXPECT_THAT(Match(Index({})), StatusIs(absl::StatusCode::kInvalidArgument,
                                         HasSubstr("holds no tensors")));
}

TEST(Overrides, TypeContradictionRefusesTheMatch) {
  EXPECT_THAT(Match(Index({{"emb_params", {4, 768}}}), "tok.safetensors",
                    json{{"type", "lora"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("override type=\"lora\""),
                             HasSubstr("textual inversion"))));
}

TEST(Overrides, AgreeingTypeIsFine) {
  ExpectTriple(Match(Index({{"emb_params", {4, 768}}}), "tok.safetensors",
                     json{{"type", "embedding"}}),
               "embedding", "embedding_file", "sd-1");
}

TEST(Overrides, BaseContradictionRefusesTheMatch) {
  EXPECT_THAT(
      Match(Index(Sd12(768, 4)), "m.safetensors", json{{"base", "sdxl"}}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("override base=\"sdxl\"")));
}

TEST(Overrides, TypeSelectsAmongSeveralMatches) {
  // A small VAE file also satisfies the "fewer than 10 tensors" embedding
  // rule when its first dimension is a token width; the override picks.
  const TensorIndex index = Index({{"decoder.conv_in.weight", {768, 4, 3, 3}}});
  ExpectTriple(Match(index, "x.safetensors", json{{"type", "embedding"}}),
               "embedding", "embedding_file", "sd-1");
  ExpectTriple(Match(index, "x.safetensors", json{{"type", "vae"}}), "vae",
               "checkpoint", "sd-1");
}

TEST(Priority, Order) {
  EXPECT_LT(MatchPriority("main"), MatchPriority("lora"));
  EXPECT_LT(MatchPriority("lora"), MatchPriority("clip_embed"));
  EXPECT_LT(MatchPriority("clip_embed"), MatchPriority("vae"));
  EXPECT_EQ(MatchPriority("vae"), MatchPriority("controlnet"));
}

}  // namespace
}  // namespace mm::model
