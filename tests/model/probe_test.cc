// Probe end to end over generated files: the record it builds (name, path,
// size, default settings, side-car, overrides, hash) and the error paths.
#include "model/probe.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/model_fixtures.h"
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

// A safetensors file with F16 tensors of `shapes`; the data is a hole, so
// multi-gigabyte shapes cost nothing on disk.
void WriteF16Safetensors(const fs::path& path, const Shapes& shapes) {
  std::vector<::mm::testing::FixtureTensor> tensors;
  for (const auto& [name, shape] : shapes) {
    tensors.push_back({.name = name, .dtype = "F16", .shape = shape});
  }
  ::mm::testing::WriteSafetensors(path, tensors);
}

constexpr char kSd12ToK[] =
    "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k."
    "weight";
constexpr char kSdxlToK[] =
    "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k."
    "weight";
constexpr char kInput[] = "model.diffusion_model.input_blocks.0.0.weight";

Shapes Sd1() {
  return {{"cond_stage_model.transformer.x", {4}},
          {kInput, {320, 4, 3, 3}},
          {kSd12ToK, {320, 768}}};
}

class ProbeTest : public ::testing::Test {
 protected:
  fs::path P(const std::string& relative) { return dir_.path() / relative; }
  TempDir dir_;
};

TEST_F(ProbeTest, Sd1CheckpointRecord) {
  const fs::path file = P("models/Dreamy v1.safetensors");
  WriteF16Safetensors(file, Sd1());
  ASSERT_OK_AND_ASSIGN(json config, Probe(file, {}));
  EXPECT_EQ(config["type"], "main");
  EXPECT_EQ(config["format"], "checkpoint");
  EXPECT_EQ(config["base"], "sd-1");
  EXPECT_EQ(config["variant"], "normal");
  EXPECT_EQ(config["prediction_type"], "epsilon");
  EXPECT_EQ(config["name"], "Dreamy v1");
  EXPECT_EQ(config["path"], file.string());
  EXPECT_EQ(config["source"], file.string());
  EXPECT_EQ(config["source_type"], "path");
  EXPECT_EQ(config["file_size"], fs::file_size(file));
  EXPECT_EQ(config["default_settings"],
            (json{{"width", 512}, {"height", 512}}));
  EXPECT_FALSE(config.contains("hash"));
  EXPECT_FALSE(config.contains("description"));
  EXPECT_FALSE(config.contains("key"));
}

TEST_F(ProbeTest, DefaultImageSizePerBase) {
  WriteF16Safetensors(P("sd2.safetensors"),
                      {{kInput, {320, 4, 3, 3}}, {kSd12ToK, {320, 1024}}});
  ASSERT_OK_AND_ASSIGN(json sd2, Probe(P("sd2.safetensors"), {}));
  EXPECT_EQ(sd2["default_settings"], (json{{"width", 768}, {"height", 768}}));
  EXPECT_EQ(sd2["prediction_type"], "v_prediction");

  WriteF16Safetensors(P("refiner.safetensors"),
                      {{kInput, {384, 4, 3, 3}}, {kSdxlToK, {768, 1280}}});
  ASSERT_OK_AND_ASSIGN(json refiner, Probe(P("refiner.safetensors"), {}));
  EXPECT_EQ(refiner["base"], "sdxl-refiner");
  EXPECT_FALSE(refiner.contains("default_settings"));
}

// An SDXL-shaped checkpoint: ~2,500 tensors, ~7 GB, all a hole on disk.
Shapes SdxlShaped() {
  Shapes shapes = {{kInput, {320, 4, 3, 3}}, {kSdxlToK, {640, 2048}}};
  for (int i = 0; shapes.size() < 2500; ++i) {
    shapes.push_back(
        {"model.diffusion_model.block." + std::to_string(i) + ".weight",
         {1280, 1100}});
  }
  return shapes;
}

TEST_F(ProbeTest, LargeSdxlCheckpointReadsHeadersOnly) {
  const fs::path file = P("sdxl.safetensors");
  WriteF16Safetensors(file, SdxlShaped());
  ASSERT_GT(fs::file_size(file), 7'000'000'000u);
  const auto start = std::chrono::steady_clock::now();
  ASSERT_OK_AND_ASSIGN(json config, Probe(file, {}));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(config["base"], "sdxl");
  EXPECT_EQ(config["default_settings"],
            (json{{"width", 1024}, {"height", 1024}}));
  // Informational (benchmarks, not tests, judge speed).
  RecordProperty(
      "probe_ms",
      std::to_string(
          std::chrono::duration<double, std::milli>(elapsed).count()));
}

TEST_F(ProbeTest, RelativePathBecomesAbsolute) {
  WriteF16Safetensors(P("rel/model.safetensors"), Sd1());
  const fs::path before = fs::current_path();
  fs::current_path(P("rel"));
  absl::StatusOr<json> config = Probe("model.safetensors", {});
  fs::current_path(before);
  ASSERT_OK(config);
  EXPECT_EQ((*config)["path"], P("rel/model.safetensors").string());
}

TEST_F(ProbeTest, NameRule) {
  EXPECT_EQ(ModelNameFromPath("/m/a.safetensors"), "a");
  EXPECT_EQ(ModelNameFromPath("/m/a.bin"), "a");
  EXPECT_EQ(ModelNameFromPath("/m/a.pt"), "a");
  EXPECT_EQ(ModelNameFromPath("/m/a.ckpt"), "a");
  EXPECT_EQ(ModelNameFromPath("/m/a.pth"), "a.pth");
  EXPECT_EQ(ModelNameFromPath("/m/a.gguf"), "a.gguf");
  EXPECT_EQ(ModelNameFromPath("/m/a.onnx"), "a.onnx");
  EXPECT_EQ(ModelNameFromPath("/m/folder.v2"), "folder.v2");
  EXPECT_EQ(ModelNameFromPath("/m/folder/"), "folder");
}

TEST_F(ProbeTest, LoraSidecar) {
  const fs::path lora = P("loras/pixel.safetensors");
  WriteF16Safetensors(
      lora, {{"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_"
              "to_k.lora_down.weight",
              {4, 2048}}});
  WriteFile(P("loras/pixel.json"),
            json{{"description", "Pixel art"},
                 {"notes", "use at 0.8"},
                 {"activation text", " pixel art,  8bit ,,pixel art"}}
                .dump());
  ASSERT_OK_AND_ASSIGN(json config, Probe(lora, {}));
  EXPECT_EQ(config["type"], "lora");
  EXPECT_EQ(config["format"], "lycoris");
  EXPECT_EQ(config["base"], "sdxl");
  EXPECT_EQ(config["description"], "Pixel art | use at 0.8");
  EXPECT_EQ(config["trigger_phrases"], (json{"pixel art", "8bit"}));
  EXPECT_FALSE(config.contains("default_settings"));
}

TEST_F(ProbeTest, SidecarWithoutNotes) {
  const fs::path lora = P("l.safetensors");
  WriteF16Safetensors(
      lora, {{"lora_te_text_model_encoder_layers_0_self_attn_k_proj.lora_down."
              "weight",
              {4, 768}}});
  WriteFile(P("l.json"), json{{"description", "Just this"}}.dump());
  ASSERT_OK_AND_ASSIGN(json config, Probe(lora, {}));
  EXPECT_EQ(config["description"], "Just this");
  EXPECT_FALSE(config.contains("trigger_phrases"));
}

TEST_F(ProbeTest, MalformedSidecarIsIgnored) {
  const fs::path lora = P("l.safetensors");
  WriteF16Safetensors(
      lora, {{"lora_te_text_model_encoder_layers_0_self_attn_k_proj.lora_down."
              "weight",
              {4, 768}}});
  WriteFile(P("l.json"), "{not json");
  ASSERT_OK_AND_ASSIGN(json config, Probe(lora, {}));
  EXPECT_FALSE(config.contains("description"));
}

TEST_F(ProbeTest, OverridesReplaceProbedValues) {
  WriteF16Safetensors(P("m.safetensors"), Sd1());
  ProbeOptions options;
  options.overrides = {{"name", "My model"},
                       {"description", "given"},
                       {"prediction_type", "v_prediction"},
                       {"type", "main"},
                       {"default_settings", nullptr}};
  ASSERT_OK_AND_ASSIGN(json config, Probe(P("m.safetensors"), options));
  EXPECT_EQ(config["name"], "My model");
  EXPECT_EQ(config["description"], "given");
  EXPECT_EQ(config["prediction_type"], "v_prediction");
  EXPECT_FALSE(config.contains("default_settings"));
}

TEST_F(ProbeTest, ContradictingTypeOverrideIsAnError) {
  WriteF16Safetensors(P("tok.safetensors"), {{"emb_params", {2, 768}}});
  ProbeOptions options;
  options.overrides = {{"type", "lora"}};
  EXPECT_THAT(Probe(P("tok.safetensors"), options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("override type=\"lora\"")));
  options.allow_unknown = true;  // still an error: the user said otherwise
  EXPECT_THAT(Probe(P("tok.safetensors"), options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("override type=\"lora\"")));
}

TEST_F(ProbeTest, InvalidOverrideValueNamesTheField) {
  WriteF16Safetensors(P("m.safetensors"), Sd1());
  ProbeOptions options;
  options.overrides = {{"prediction_type", "sideways"}};
  EXPECT_THAT(Probe(P("m.safetensors"), options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("prediction_type")));
}

TEST_F(ProbeTest, OverridesMustBeAnObject) {
  WriteF16Safetensors(P("m.safetensors"), Sd1());
  ProbeOptions options;
  options.overrides = json::array();
  EXPECT_THAT(
      Probe(P("m.safetensors"), options),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("overrides")));
}

Shapes Unrecognisable() {
  Shapes shapes;
  for (int i = 0; i < 12; ++i) {
    shapes.push_back({"encoder.layer." + std::to_string(i) + ".weight", {8}});
  }
  return shapes;
}

TEST_F(ProbeTest, UnknownModelIsAnErrorUnlessAllowed) {
  WriteF16Safetensors(P("bert.safetensors"), Unrecognisable());
  EXPECT_THAT(Probe(P("bert.safetensors"), {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a recognised model: " +
                                 P("bert.safetensors").string())));
  ProbeOptions options;
  options.allow_unknown = true;
  options.overrides = {{"name", "bert"}, {"type", "main"}};
  ASSERT_OK_AND_ASSIGN(json config, Probe(P("bert.safetensors"), options));
  EXPECT_EQ(config["type"], "unknown");
  EXPECT_EQ(config["format"], "unknown");
  EXPECT_EQ(config["base"], "unknown");
  EXPECT_EQ(config["name"], "bert");
}

TEST_F(ProbeTest, UnsupportedSuffix) {
  WriteFile(P("notes.txt"), "hello");
  EXPECT_THAT(Probe(P("notes.txt"), {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'.txt' is not a model file suffix")));
  ProbeOptions options;
  options.allow_unknown = true;
  ASSERT_OK_AND_ASSIGN(json config, Probe(P("notes.txt"), options));
  EXPECT_EQ(config["type"], "unknown");
  EXPECT_EQ(config["name"], "notes.txt");
  EXPECT_EQ(config["file_size"], 5);
}

TEST_F(ProbeTest, MissingPathIsNotFound) {
  EXPECT_THAT(Probe(P("nope.safetensors"), {}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
}

TEST_F(ProbeTest, CorruptFileErrorPassesThrough) {
  WriteFile(P("bad.safetensors"),
            std::string("\xff\xff\xff\xff\xff\xff\xff\x7f{}", 10));
  absl::StatusOr<json> config = Probe(P("bad.safetensors"), {});
  EXPECT_THAT(config, StatusIs(absl::StatusCode::kDataLoss,
                               HasSubstr("bad.safetensors")));
}

TEST_F(ProbeTest, HashOnlyWhenAsked) {
  WriteF16Safetensors(P("m.safetensors"), Sd1());
  ProbeOptions options;
  options.hash = HashOptions{};
  ASSERT_OK_AND_ASSIGN(json config, Probe(P("m.safetensors"), options));
  ASSERT_TRUE(config["hash"].is_string());
  EXPECT_THAT(config["hash"].get<std::string>(),
              ::testing::StartsWith("blake3:"));
}

TEST_F(ProbeTest, EmbeddingFolderRecord) {
  const fs::path folder = P("cat-toy");
  WriteF16Safetensors(folder / "learned_embeds.safetensors",
                      {{"<cat-toy>", {768}}});
  WriteFile(folder / "README.md", "hello");
  ASSERT_OK_AND_ASSIGN(json config, Probe(folder.string() + "/", {}));
  EXPECT_EQ(config["type"], "embedding");
  EXPECT_EQ(config["format"], "embedding_folder");
  EXPECT_EQ(config["base"], "sd-1");
  EXPECT_EQ(config["name"], "cat-toy");
  EXPECT_EQ(config["path"], folder.string());
  EXPECT_EQ(config["file_size"],
            fs::file_size(folder / "learned_embeds.safetensors") + 5);
}

TEST_F(ProbeTest, DiffusersPipelineRecord) {
  const fs::path folder = P("sdxl-base");
  WriteFile(folder / "model_index.json",
            json{{"_class_name", "StableDiffusionXLPipeline"}}.dump());
  WriteFile(folder / "unet/config.json",
            json{{"cross_attention_dim", 2048}, {"in_channels", 4}}.dump());
  WriteFile(folder / "unet/diffusion_pytorch_model.fp16.safetensors", "w");
  ASSERT_OK_AND_ASSIGN(json config, Probe(folder, {}));
  EXPECT_EQ(config["type"], "main");
  EXPECT_EQ(config["format"], "diffusers");
  EXPECT_EQ(config["base"], "sdxl");
  EXPECT_EQ(config["repo_variant"], "fp16");
  EXPECT_EQ(config["name"], "sdxl-base");
  EXPECT_EQ(config["default_settings"],
            (json{{"width", 1024}, {"height", 1024}}));
}

// ---------------------------------------------------------------------------
// Other formats, through the real readers.

std::vector<::mm::testing::FixtureTensor> Sd2Tensors() {
  return {{.name = kInput, .dtype = "F16", .shape = {320, 4, 3, 3}},
          {.name = kSd12ToK, .dtype = "F16", .shape = {320, 1024}}};
}

TEST_F(ProbeTest, TorchCheckpointGlobalStepRule) {
  ::mm::testing::WriteTorchCheckpoint(
      P("sd2-base.ckpt"), Sd2Tensors(),
      {.scalars = {{"global_step", int64_t{220000}}},
       .wrap_in_state_dict = true});
  ASSERT_OK_AND_ASSIGN(json base, Probe(P("sd2-base.ckpt"), {}));
  EXPECT_EQ(base["base"], "sd-2");
  EXPECT_EQ(base["prediction_type"], "epsilon");
  EXPECT_EQ(base["name"], "sd2-base");

  ::mm::testing::WriteTorchCheckpoint(
      P("sd2-v.pth"), Sd2Tensors(),
      {.scalars = {{"global_step", int64_t{875000}}},
       .wrap_in_state_dict = true});
  ASSERT_OK_AND_ASSIGN(json v, Probe(P("sd2-v.pth"), {}));
  EXPECT_EQ(v["prediction_type"], "v_prediction");
  EXPECT_EQ(v["name"], "sd2-v.pth");
}

TEST_F(ProbeTest, GgufFluxDevFill) {
  using ::mm::testing::GgmlFixtureType;
  ::mm::testing::GgufFixture fixture;
  const uint32_t f16 = static_cast<uint32_t>(GgmlFixtureType::kF16);
  fixture.tensors = {
      {.name = "double_blocks.0.img_attn.norm.key_norm.scale",
       .type = f16,
       .shape = {128}},
      {.name = "guidance_in.out_layer.weight", .type = f16, .shape = {64, 64}},
      {.name = "img_in.weight", .type = f16, .shape = {64, 384}}};
  ::mm::testing::WriteGguf(P("flux1-fill-Q4.gguf"), fixture);
  ASSERT_OK_AND_ASSIGN(json config, Probe(P("flux1-fill-Q4.gguf"), {}));
  EXPECT_EQ(config["type"], "main");
  EXPECT_EQ(config["format"], "gguf_quantized");
  EXPECT_EQ(config["base"], "flux");
  EXPECT_EQ(config["variant"], "dev_fill");
  EXPECT_EQ(config["name"], "flux1-fill-Q4.gguf");
  EXPECT_FALSE(config.contains("default_settings"));
}

TEST_F(ProbeTest, TorchEmbedding) {
  ::mm::testing::WriteTorchCheckpoint(
      P("tok.pt"),
      {{.name = "string_to_param.*", .dtype = "F32", .shape = {2, 1024}}},
      {.scalars = {{"name", std::string("tok")}, {"step", int64_t{500}}}});
  ASSERT_OK_AND_ASSIGN(json config, Probe(P("tok.pt"), {}));
  EXPECT_EQ(config["type"], "embedding");
  EXPECT_EQ(config["format"], "embedding_file");
  EXPECT_EQ(config["base"], "sd-2");
}

}  // namespace
}  // namespace mm::model
