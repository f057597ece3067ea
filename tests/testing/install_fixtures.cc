#include "tests/testing/install_fixtures.h"

#include <cstdint>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/testing/model_fixtures.h"
#include "tests/testing/temp_dir.h"

namespace mm::testing {
namespace {

using json = nlohmann::json;

// The keys spec §4.1 reads to tell SD checkpoints apart.
constexpr char kInput[] = "model.diffusion_model.input_blocks.0.0.weight";
constexpr char kSd12ToK[] =
    "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k."
    "weight";
constexpr char kSdxlToK[] =
    "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k."
    "weight";

// Pretty-printed like the files on the hub, so they read well in a failure.
std::string Json(const json& value) { return value.dump(2) + "\n"; }

// One small weights file of a diffusers component: F32, or F16 for the
// fp16 variant, so the two variants' bytes differ.
std::string ComponentWeights(const std::string& tensor_name,
                             std::vector<int64_t> shape, bool fp16) {
  return SafetensorsBytes({{.name = tensor_name,
                            .dtype = fp16 ? "F16" : "F32",
                            .shape = std::move(shape)}},
                          {{"format", "pt"}});
}

void AddTokenizer(const std::string& folder, std::vector<FixtureFile>& files) {
  files.push_back({folder + "/merges.txt", "#version: 0.2\na b\n"});
  files.push_back({folder + "/special_tokens_map.json",
                   Json({{"bos_token", "<|startoftext|>"},
                         {"eos_token", "<|endoftext|>"}})});
  files.push_back(
      {folder + "/tokenizer_config.json",
       Json({{"model_max_length", 77}, {"tokenizer_class", "CLIPTokenizer"}})});
  files.push_back({folder + "/vocab.json", Json({{"a", 0}, {"b", 1}})});
}

// An ONNX export's file: not parsed by model/, so any bytes do; the text
// says what it stands for.
std::string OnnxPlaceholder(const std::string& what) {
  return "fixture onnx graph: " + what + "\n";
}

}  // namespace

std::string Sd1CheckpointBytes() {
  return SafetensorsBytes(
      {{.name = "cond_stage_model.transformer.text_model.final_layer_norm."
                "weight",
        .dtype = "F16",
        .shape = {768}},
       {.name = kInput, .dtype = "F16", .shape = {8, 4, 3, 3}},
       {.name = kSd12ToK, .dtype = "F16", .shape = {8, 768}}});
}

std::string SdxlCheckpointBytes() {
  return SafetensorsBytes(
      {{.name = "conditioner.embedders.1.model.ln_final.weight",
        .dtype = "F16",
        .shape = {1280}},
       {.name = kInput, .dtype = "F16", .shape = {8, 4, 3, 3}},
       {.name = kSdxlToK, .dtype = "F16", .shape = {8, 2048}}});
}

std::string LoraSd1Bytes() {
  constexpr char kUnet[] =
      "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k";
  constexpr char kTextEncoder[] =
      "lora_te_text_model_encoder_layers_0_self_attn_k_proj";
  return SafetensorsBytes(
      {{.name = std::string(kUnet) + ".lora_down.weight",
        .dtype = "F16",
        .shape = {4, 768}},
       {.name = std::string(kUnet) + ".lora_up.weight",
        .dtype = "F16",
        .shape = {320, 4}},
       {.name = std::string(kUnet) + ".alpha", .dtype = "F16", .shape = {}},
       {.name = std::string(kTextEncoder) + ".lora_down.weight",
        .dtype = "F16",
        .shape = {4, 768}},
       {.name = std::string(kTextEncoder) + ".lora_up.weight",
        .dtype = "F16",
        .shape = {768, 4}}},
      {{"ss_network_module", "networks.lora"}});
}

std::string EmbeddingSd1Bytes() {
  return SafetensorsBytes(
      {{.name = "emb_params", .dtype = "F32", .shape = {2, 768}}});
}

std::string EmbeddingSdxlBytes() {
  return SafetensorsBytes(
      {{.name = "clip_g", .dtype = "F32", .shape = {2, 1280}},
       {.name = "clip_l", .dtype = "F32", .shape = {2, 768}}});
}

std::string LearnedEmbedsBinBytes() {
  return TorchCheckpointBytes(
      {{.name = "<fixture-concept>", .dtype = "F32", .shape = {768}}},
      {.archive_name = "learned_embeds"});
}

std::string NonModelSafetensorsBytes() {
  // Ten or more keys: fewer tensors than ten would read as a textual
  // inversion embedding (spec §4.1).
  std::vector<FixtureTensor> tensors;
  for (int i = 0; i < 12; ++i) {
    tensors.push_back(
        {.name = "classifier.layers." + std::to_string(i) + ".weight",
         .dtype = "F32",
         .shape = {4, 4}});
  }
  return SafetensorsBytes(tensors);
}

std::string HostilePickleCheckpointBytes(const std::string& marker) {
  // {"state": os.system("touch <marker>")}: loading it with pickle would run
  // the command.
  PickleWriter pickle;
  pickle.Proto(2).EmptyDict().Mark();
  pickle.Unicode("state").Global("os", "system");
  pickle.Mark().Unicode("touch " + marker).Tuple().Reduce();
  pickle.SetItems().Stop();
  return ZipBytes({{.name = "archive/data.pkl", .data = pickle.bytes()},
                   {.name = "archive/version", .data = "3\n"}});
}

std::string HtmlPageBytes() {
  return "<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n"
         "<body><form action=\"/login\">You must sign in to download this "
         "model.</form></body></html>\n";
}

std::vector<FixtureFile> VaeFolderFiles(const VaeFolderOptions& options) {
  json config = {{"_class_name", "AutoencoderKL"},
                 {"_diffusers_version", "0.21.0"},
                 {"latent_channels", 4},
                 {"scaling_factor", options.sdxl ? 0.13025 : 0.18215},
                 {"sample_size", options.sdxl ? 1024 : 512}};
  const std::string dtype = options.fp16_weights ? "F16" : "F32";
  return {{"config.json", Json(config)},
          {"diffusion_pytorch_model.safetensors",
           SafetensorsBytes({{.name = "decoder.conv_in.weight",
                              .dtype = dtype,
                              .shape = {8, 4, 3, 3}},
                             {.name = "encoder.conv_in.weight",
                              .dtype = dtype,
                              .shape = {8, 3, 3, 3}}},
                            {{"format", "pt"}})}};
}

std::vector<FixtureFile> DiffusersSdxlFiles(
    const DiffusersSdxlOptions& options) {
  std::vector<FixtureFile> files;
  files.push_back({"model_index.json",
                   Json({{"_class_name", "StableDiffusionXLPipeline"},
                         {"_diffusers_version", "0.19.0"},
                         {"force_zeros_for_empty_prompt", true},
                         {"scheduler", {"diffusers", "EulerDiscreteScheduler"}},
                         {"text_encoder", {"transformers", "CLIPTextModel"}},
                         {"text_encoder_2",
                          {"transformers", "CLIPTextModelWithProjection"}},
                         {"tokenizer", {"transformers", "CLIPTokenizer"}},
                         {"tokenizer_2", {"transformers", "CLIPTokenizer"}},
                         {"unet", {"diffusers", "UNet2DConditionModel"}},
                         {"vae", {"diffusers", "AutoencoderKL"}}})});
  files.push_back({"scheduler/scheduler_config.json",
                   Json({{"_class_name", "EulerDiscreteScheduler"},
                         {"num_train_timesteps", 1000},
                         {"prediction_type", "epsilon"}})});

  // Each weights-bearing component: its config, fp32 weights, and the
  // optional fp16 and ONNX files.
  struct Component {
    std::string folder;
    json config;
    std::string weights_name;  // without the variant label and suffix
    std::string tensor;
    std::vector<int64_t> shape;
    bool onnx_data;  // an external-data file beside model.onnx
  };
  const std::vector<Component> components = {
      {"text_encoder",
       {{"architectures", {"CLIPTextModel"}},
        {"hidden_size", 768},
        {"model_type", "clip_text_model"}},
       "model",
       "text_model.embeddings.token_embedding.weight",
       {16, 768},
       false},
      {"text_encoder_2",
       {{"architectures", {"CLIPTextModelWithProjection"}},
        {"hidden_size", 1280},
        {"model_type", "clip_text_model"}},
       "model",
       "text_model.embeddings.token_embedding.weight",
       {16, 1280},
       true},
      {"unet",
       {{"_class_name", "UNet2DConditionModel"},
        {"cross_attention_dim", 2048},
        {"in_channels", 4},
        {"sample_size", 128}},
       "diffusion_pytorch_model",
       "conv_in.weight",
       {8, 4, 3, 3},
       true},
      {"vae",
       {{"_class_name", "AutoencoderKL"},
        {"latent_channels", 4},
        {"sample_size", 1024},
        {"scaling_factor", 0.13025}},
       "diffusion_pytorch_model",
       "decoder.conv_in.weight",
       {8, 4, 3, 3},
       false},
  };
  for (const Component& component : components) {
    const std::string& folder = component.folder;
    files.push_back({folder + "/config.json", Json(component.config)});
    files.push_back(
        {folder + "/" + component.weights_name + ".safetensors",
         ComponentWeights(component.tensor, component.shape, false)});
    if (options.fp16) {
      files.push_back(
          {folder + "/" + component.weights_name + ".fp16.safetensors",
           ComponentWeights(component.tensor, component.shape, true)});
    }
    if (options.onnx) {
      files.push_back({folder + "/model.onnx", OnnxPlaceholder(folder)});
      if (component.onnx_data) {
        files.push_back({folder + "/model.onnx_data",
                         OnnxPlaceholder(folder + " external data")});
      }
    }
  }
  AddTokenizer("tokenizer", files);
  AddTokenizer("tokenizer_2", files);
  if (options.onnx) {
    for (const char* folder : {"vae_decoder", "vae_encoder"}) {
      files.push_back({std::string(folder) + "/config.json",
                       Json({{"_class_name", "AutoencoderKL"}})});
      files.push_back(
          {std::string(folder) + "/model.onnx", OnnxPlaceholder(folder)});
    }
  }
  if (options.repo_extras) {
    files.push_back({"sd_xl_base_1.0.safetensors", SdxlCheckpointBytes()});
    files.push_back(
        {"README.md", "---\nlicense: openrail++\n---\n# SDXL fixture\n"});
    files.push_back({"01.png", "\x89PNG\r\n\x1a\nfixture image\n"});
    files.push_back({".gitattributes",
                     "*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
                     "*.onnx filter=lfs diff=lfs merge=lfs -text\n"
                     "*.onnx_data filter=lfs diff=lfs merge=lfs -text\n"
                     "*.png filter=lfs diff=lfs merge=lfs -text\n"});
  }
  return files;
}

void WriteSd1Checkpoint(const std::filesystem::path& path) {
  WriteFile(path, Sd1CheckpointBytes());
}

void WriteSdxlCheckpoint(const std::filesystem::path& path) {
  WriteFile(path, SdxlCheckpointBytes());
}

void WriteLoraSd1(const std::filesystem::path& path) {
  WriteFile(path, LoraSd1Bytes());
}

void WriteEmbeddingSd1(const std::filesystem::path& path) {
  WriteFile(path, EmbeddingSd1Bytes());
}

void WriteNonModelSafetensors(const std::filesystem::path& path) {
  WriteFile(path, NonModelSafetensorsBytes());
}

void WriteHostilePickleCheckpoint(const std::filesystem::path& path,
                                  const std::string& marker) {
  WriteFile(path, HostilePickleCheckpointBytes(marker));
}

void WriteFixtureFiles(const std::filesystem::path& folder,
                       const std::vector<FixtureFile>& files) {
  for (const FixtureFile& file : files) {
    WriteFile(folder / file.path, file.contents);
  }
}

}  // namespace mm::testing
