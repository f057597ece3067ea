// The folder matchers: diffusers layouts by class name (spec §4.2) and the
// folder forms of §4.1 (LoRA, IP-Adapter, textual inversion folders).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <regex>
#include <span>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/strings.h"
#include "model/probe_matchers.h"
#include "model/taxonomy.h"

namespace mm::model {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

json Fields(absl::string_view type, absl::string_view format,
            absl::string_view base) {
  return json{{"type", type}, {"format", format}, {"base", base}};
}

// Parses a small JSON file; null when it is absent, unreadable or not JSON
// (the matchers then say which file they missed).
json ReadJsonOrNull(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return nullptr;
  std::ifstream in(path, std::ios::binary);
  if (!in) return nullptr;
  json parsed = json::parse(in, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return nullptr;
  return parsed;
}

std::optional<int64_t> IntField(const json& object, absl::string_view key) {
  if (!object.is_object()) return std::nullopt;
  const auto it = object.find(key);
  if (it == object.end()) return std::nullopt;
  if (it->is_number_integer()) return it->get<int64_t>();
  // Some exporters write integral floats ("in_channels": 4.0).
  if (it->is_number_float()) {
    const double value = it->get<double>();
    if (std::floor(value) == value) return static_cast<int64_t>(value);
  }
  return std::nullopt;
}

std::string IntText(std::optional<int64_t> value) {
  return value.has_value() ? absl::StrCat(*value) : "absent";
}

// Calls `visit(path, depth)` for every regular file (or link to one) under
// `folder`, depth 1 being the folder's own files, down to `max_depth`.
// Skips dot-entries and does not follow directory links (no loops). Stops
// early when `visit` returns false. Never throws.
void WalkFiles(const fs::path& folder, int max_depth,
               const std::function<bool(const fs::path&, int)>& visit) {
  struct Pending {
    fs::path dir;
    int depth;
  };
  std::vector<Pending> pending = {{folder, 1}};
  while (!pending.empty()) {
    const Pending current = std::move(pending.back());
    pending.pop_back();
    std::error_code ec;
    fs::directory_iterator it(current.dir, ec);
    if (ec) continue;
    std::vector<fs::directory_entry> entries;
    for (; it != fs::directory_iterator(); it.increment(ec)) {
      if (ec) break;
      entries.push_back(*it);
    }
    // Sorted so "first hit" rules do not depend on directory order.
    std::sort(entries.begin(), entries.end());
    for (const fs::directory_entry& entry : entries) {
      if (absl::StartsWith(entry.path().filename().string(), ".")) continue;
      const fs::file_status link = entry.symlink_status(ec);
      if (ec) continue;
      if (fs::is_directory(link)) {
        if (current.depth < max_depth) {
          pending.push_back({entry.path(), current.depth + 1});
        }
        continue;
      }
      if (fs::is_regular_file(entry.status(ec)) && !ec) {
        if (!visit(entry.path(), current.depth)) return;
      }
    }
  }
}

constexpr std::array<absl::string_view, 9> kWeightSuffixes = {
    ".safetensors", ".bin",  ".ckpt",    ".pt", ".pth",
    ".gguf",        ".onnx", ".msgpack", ".pb"};

bool IsWeightFile(const fs::path& path) {
  const std::string ext = absl::AsciiStrToLower(path.extension().string());
  return std::find(kWeightSuffixes.begin(), kWeightSuffixes.end(), ext) !=
         kWeightSuffixes.end();
}

// True when ".fp16" is one of the file's suffixes (Python's
// Path.suffixes: every dot-separated part after the first).
bool HasFp16Suffix(const fs::path& path) {
  const std::string name = path.filename().string();
  const std::vector<absl::string_view> parts = absl::StrSplit(name, '.');
  for (size_t i = 1; i < parts.size(); ++i) {
    if (parts[i] == "fp16") return true;
  }
  return false;
}

bool ClassIs(const ProbeSubject& subject,
             std::initializer_list<absl::string_view> names) {
  const std::string& class_name = subject.folder->class_name;
  for (absl::string_view name : names) {
    if (class_name == name) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------
// Stable Diffusion pipelines.

MatchResult MatchSdPipeline(const ProbeSubject& subject) {
  if (!ClassIs(subject,
               {"StableDiffusionPipeline", "StableDiffusionInpaintPipeline",
                "StableDiffusionXLPipeline", "StableDiffusionXLInpaintPipeline",
                "StableDiffusionXLImg2ImgPipeline",
                "LatentConsistencyModelPipeline"})) {
    return MatchResult::NotMine();
  }
  const std::string& class_name = subject.folder->class_name;
  const json unet = ReadJsonOrNull(subject.path / "unet" / "config.json");
  if (!unet.is_object()) {
    return MatchResult::Unusable(absl::StrCat(
        class_name, ": unet/config.json is missing or not valid JSON"));
  }
  const std::optional<int64_t> width = IntField(unet, "cross_attention_dim");
  std::string base;
  if (width == 768) {
    base = "sd-1";
  } else if (width == 1024) {
    base = "sd-2";
  } else if (width == 1280) {
    base = "sdxl-refiner";
  } else if (width == 2048) {
    base = "sdxl";
  } else {
    return MatchResult::Unusable(absl::StrCat(
        class_name, ": unet/config.json cross_attention_dim ", IntText(width),
        " is none of 768 (sd-1), 1024 (sd-2), 1280 (sdxl-refiner), 2048 "
        "(sdxl)"));
  }
  const std::optional<int64_t> channels = IntField(unet, "in_channels");
  std::string variant;
  if (channels == 4) {
    variant = "normal";
  } else if (channels == 5) {
    variant = "depth";
  } else if (channels == 9) {
    variant = "inpaint";
  } else {
    return MatchResult::Unusable(absl::StrCat(
        class_name, ": unet/config.json in_channels ", IntText(channels),
        " is none of 4 (normal), 5 (depth), 9 (inpaint)"));
  }
  std::string prediction_type = "epsilon";
  const json scheduler =
      ReadJsonOrNull(subject.path / "scheduler" / "scheduler_config.json");
  if (scheduler.is_object() && scheduler.contains("prediction_type") &&
      scheduler["prediction_type"].is_string()) {
    prediction_type = scheduler["prediction_type"].get<std::string>();
    if (!IsKnownPredictionType(prediction_type)) {
      return MatchResult::Unusable(absl::StrCat(
          class_name, ": scheduler/scheduler_config.json prediction_type ",
          QuotedForMessage(prediction_type),
          " is none of epsilon, v_prediction, sample"));
    }
  }
  json fields = Fields("main", "diffusers", base);
  fields["variant"] = variant;
  fields["prediction_type"] = prediction_type;
  fields["repo_variant"] = RepoVariantOfFolder(subject.path);
  return MatchResult::Match(std::move(fields));
}

// ---------------------------------------------------------------------------
// Stable Diffusion 3 pipeline.

std::string ClipVariantOf(const json& config) {
  std::optional<int64_t> hidden = IntField(config, "hidden_size");
  if (!hidden.has_value() && config.is_object() &&
      config.contains("text_config")) {
    hidden = IntField(config["text_config"], "hidden_size");
  }
  if (hidden == 768) return "large";
  if (hidden == 1280) return "gigantic";
  return "";
}

MatchResult MatchSd3Pipeline(const ProbeSubject& subject) {
  if (!ClassIs(subject, {"StableDiffusion3Pipeline"})) {
    return MatchResult::NotMine();
  }
  const json& index = subject.folder->model_index;
  json submodels = json::object();
  if (index.is_object()) {
    for (const auto& [name, value] : index.items()) {
      if (!IsKnownSubmodelType(name) || !value.is_array() || value.size() < 2 ||
          !value[1].is_string()) {
        continue;
      }
      const std::string class_name = value[1].get<std::string>();
      const fs::path location = subject.path / name;
      json definition = {{"path_or_prefix", location.string()}};
      if (class_name == "CLIPTextModel" ||
          class_name == "CLIPTextModelWithProjection") {
        definition["model_type"] = "clip_embed";
        // The reference treats an unreadable CLIP config as the large
        // variant; we do the same so a partial download still registers.
        std::string variant =
            ClipVariantOf(ReadJsonOrNull(location / "config.json"));
        definition["variant"] = variant.empty() ? "large" : variant;
      } else if (class_name == "T5EncoderModel") {
        definition["model_type"] = "t5_encoder";
      } else if (absl::StartsWith(class_name, "Autoencoder")) {
        definition["model_type"] = "vae";
      } else if (class_name == "SD3Transformer2DModel") {
        definition["model_type"] = "main";
      } else {
        continue;  // tokenizers and schedulers are not models
      }
      submodels[name] = std::move(definition);
    }
  }
  json fields = Fields("main", "diffusers", "sd-3");
  fields["repo_variant"] = RepoVariantOfFolder(subject.path);
  fields["submodels"] = std::move(submodels);
  return MatchResult::Match(std::move(fields));
}

// ---------------------------------------------------------------------------
// FLUX pipeline or transformer.

MatchResult MatchFluxDiffusers(const ProbeSubject& subject) {
  if (!ClassIs(subject, {"FluxPipeline", "FluxFillPipeline",
                         "FluxTransformer2DModel"})) {
    return MatchResult::NotMine();
  }
  const bool transformer_only =
      subject.folder->class_name == "FluxTransformer2DModel";
  const json transformer =
      transformer_only
          ? subject.folder->config
          : ReadJsonOrNull(subject.path / "transformer" / "config.json");
  if (!transformer.is_object()) {
    return MatchResult::Unusable(absl::StrCat(
        subject.folder->class_name, ": ",
        transformer_only ? "config.json" : "transformer/config.json",
        " is missing or not valid JSON"));
  }
  std::string variant;
  if (IntField(transformer, "in_channels") == 384) {
    variant = "dev_fill";
  } else {
    const auto it = transformer.find("guidance_embeds");
    variant = (it != transformer.end() && it->is_boolean() && it->get<bool>())
                  ? "dev"
                  : "schnell";
  }
  json fields = Fields("main", "diffusers", "flux");
  fields["variant"] = variant;
  fields["repo_variant"] = RepoVariantOfFolder(subject.path);
  return MatchResult::Match(std::move(fields));
}

// ---------------------------------------------------------------------------
// VAE.

MatchResult MatchVaeDiffusers(const ProbeSubject& subject) {
  if (!ClassIs(subject, {"AutoencoderKL", "AutoencoderTiny"})) {
    return MatchResult::NotMine();
  }
  const json& config = subject.folder->config;
  bool sdxl = false;
  if (config.is_object()) {
    const auto scaling = config.find("scaling_factor");
    const std::optional<int64_t> sample_size = IntField(config, "sample_size");
    sdxl = scaling != config.end() && scaling->is_number() &&
           std::fabs(scaling->get<double>() - 0.13025) < 1e-9 &&
           (sample_size == 512 || sample_size == 1024);
  }
  if (!sdxl) {
    static const std::regex* const kXlName =
        new std::regex("xl\\b", std::regex::icase);
    sdxl = std::regex_search(subject.path.filename().string(), *kXlName);
  }
  json fields = Fields("vae", "diffusers", sdxl ? "sdxl" : "sd-1");
  fields["repo_variant"] = RepoVariantOfFolder(subject.path);
  return MatchResult::Match(std::move(fields));
}

// ---------------------------------------------------------------------------
// ControlNet and T2I-Adapter.

MatchResult MatchControlNetDiffusers(const ProbeSubject& subject) {
  std::string base;
  if (ClassIs(subject, {"FluxControlNetModel"})) {
    base = "flux";
  } else if (ClassIs(subject, {"ControlNetModel"})) {
    const std::optional<int64_t> width =
        IntField(subject.folder->config, "cross_attention_dim");
    if (width == 768) {
      base = "sd-1";
    } else if (width == 1024) {
      base = "sd-2";
    } else if (width == 2048) {
      base = "sdxl";
    } else {
      return MatchResult::Unusable(absl::StrCat(
          "ControlNetModel: config.json cross_attention_dim ", IntText(width),
          " is none of 768 (sd-1), 1024 (sd-2), 2048 (sdxl)"));
    }
  } else {
    return MatchResult::NotMine();
  }
  json fields = Fields("controlnet", "diffusers", base);
  fields["repo_variant"] = RepoVariantOfFolder(subject.path);
  return MatchResult::Match(std::move(fields));
}

MatchResult MatchT2iAdapter(const ProbeSubject& subject) {
  if (!ClassIs(subject, {"T2IAdapter"})) return MatchResult::NotMine();
  const json& config = subject.folder->config;
  std::string adapter_type;
  if (config.is_object() && config.contains("adapter_type") &&
      config["adapter_type"].is_string()) {
    adapter_type = config["adapter_type"].get<std::string>();
  }
  std::string base;
  if (adapter_type == "full_adapter_xl") {
    base = "sdxl";
  } else if (adapter_type == "full_adapter" ||
             adapter_type == "light_adapter") {
    base = "sd-1";
  } else {
    return MatchResult::Unusable(absl::StrCat(
        "T2IAdapter: config.json adapter_type ", QuotedForMessage(adapter_type),
        " is none of full_adapter_xl (sdxl), full_adapter, light_adapter "
        "(sd-1)"));
  }
  json fields = Fields("t2i_adapter", "diffusers", base);
  fields["repo_variant"] = RepoVariantOfFolder(subject.path);
  return MatchResult::Match(std::move(fields));
}

// ---------------------------------------------------------------------------
// Encoders.

MatchResult MatchClipVision(const ProbeSubject& subject) {
  const json& config = subject.folder->config;
  const bool vision = ClassIs(subject, {"CLIPVisionModelWithProjection"}) ||
                      (ClassIs(subject, {"CLIPModel"}) && config.is_object() &&
                       config.contains("vision_config"));
  if (!vision) return MatchResult::NotMine();
  json fields = Fields("clip_vision", "diffusers", "any");
  fields["repo_variant"] = RepoVariantOfFolder(subject.path);
  return MatchResult::Match(std::move(fields));
}

MatchResult MatchClipEmbed(const ProbeSubject& subject) {
  if (!ClassIs(subject,
               {"CLIPModel", "CLIPTextModel", "CLIPTextModelWithProjection"})) {
    return MatchResult::NotMine();
  }
  const std::string variant = ClipVariantOf(subject.folder->config);
  if (variant.empty()) {
    return MatchResult::Unusable(absl::StrCat(
        subject.folder->class_name,
        ": config.json hidden_size is none of 768 (large), 1280 (gigantic)"));
  }
  json fields = Fields("clip_embed", "diffusers", "any");
  fields["variant"] = variant;
  fields["repo_variant"] = RepoVariantOfFolder(subject.path);
  return MatchResult::Match(std::move(fields));
}

MatchResult MatchT5Encoder(const ProbeSubject& subject) {
  const fs::path encoder_dir = subject.path / "text_encoder_2";
  const json encoder = ReadJsonOrNull(encoder_dir / "config.json");
  bool t5 = false;
  if (encoder.is_object() && encoder.contains("architectures") &&
      encoder["architectures"].is_array() &&
      !encoder["architectures"].empty()) {
    t5 = encoder["architectures"][0] == "T5EncoderModel";
  }
  if (encoder.is_object() && encoder.contains("_class_name")) {
    t5 = t5 || encoder["_class_name"] == "T5EncoderModel";
  }
  if (!t5) return MatchResult::NotMine();
  // bitsandbytes LLM.int8 exports name their weight files after it.
  bool int8 = false;
  WalkFiles(encoder_dir, 1, [&int8](const fs::path& file, int) {
    int8 = absl::StrContains(file.filename().string(), "bnb_llm_int8");
    return !int8;
  });
  return MatchResult::Match(
      Fields("t5_encoder", int8 ? "bnb_quantized_int8b" : "t5_encoder", "any"));
}

MatchResult MatchSiglip(const ProbeSubject& subject) {
  if (!ClassIs(subject, {"SiglipModel"})) return MatchResult::NotMine();
  json fields = Fields("siglip", "diffusers", "any");
  fields["repo_variant"] = RepoVariantOfFolder(subject.path);
  return MatchResult::Match(std::move(fields));
}

// ---------------------------------------------------------------------------
// Folder forms of single-file families.

// The first of `names` that exists in `folder`, or nullopt.
std::optional<fs::path> FirstExisting(
    const fs::path& folder, std::initializer_list<absl::string_view> names) {
  for (absl::string_view name : names) {
    std::error_code ec;
    const fs::path candidate = folder / std::string(name);
    if (fs::is_regular_file(candidate, ec)) return candidate;
  }
  return std::nullopt;
}

MatchResult MatchLoraFolder(const ProbeSubject& subject) {
  const std::optional<fs::path> weights = FirstExisting(
      subject.path,
      {"pytorch_lora_weights.safetensors", "pytorch_lora_weights.bin"});
  if (!weights.has_value()) return MatchResult::NotMine();
  absl::StatusOr<TensorIndex> index = (*subject.read_index)(*weights);
  if (!index.ok()) {
    return MatchResult::Unusable(
        absl::StrCat("lora folder: ", index.status().message()));
  }
  const StateDictView view(*index);
  MatchResult base = LoraBaseFromStateDict(view);
  if (base.kind != MatchKind::kMatch) return base;
  return MatchResult::Match(
      Fields("lora", "diffusers", base.fields["base"].get<std::string>()));
}

MatchResult MatchIpAdapterFolder(const ProbeSubject& subject) {
  const fs::path weights = subject.path / "ip_adapter.bin";
  const fs::path encoder = subject.path / "image_encoder.txt";
  std::error_code ec;
  if (!fs::is_regular_file(weights, ec) || !fs::is_regular_file(encoder, ec)) {
    return MatchResult::NotMine();
  }
  absl::StatusOr<TensorIndex> index = (*subject.read_index)(weights);
  if (!index.ok()) {
    return MatchResult::Unusable(
        absl::StrCat("ip_adapter folder: ", index.status().message()));
  }
  const StateDictView view(*index);
  MatchResult base = IpAdapterBaseFromStateDict(view);
  if (base.kind != MatchKind::kMatch) return base;
  std::ifstream in(encoder, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  const std::string encoder_id(absl::StripAsciiWhitespace(text.str()));
  if (encoder_id.empty()) {
    return MatchResult::Unusable(
        absl::StrCat("ip_adapter folder: ", encoder.string(),
                     " is empty; it must name the image encoder model (e.g. "
                     "ip_adapter_sd_image_encoder)"));
  }
  json fields =
      Fields("ip_adapter", "invokeai", base.fields["base"].get<std::string>());
  fields["image_encoder_model_id"] = encoder_id;
  return MatchResult::Match(std::move(fields));
}

MatchResult MatchEmbeddingFolder(const ProbeSubject& subject) {
  const std::optional<fs::path> weights = FirstExisting(
      subject.path, {"learned_embeds.safetensors", "learned_embeds.bin"});
  if (!weights.has_value()) return MatchResult::NotMine();
  absl::StatusOr<TensorIndex> index = (*subject.read_index)(*weights);
  if (!index.ok()) {
    return MatchResult::Unusable(
        absl::StrCat("textual inversion folder: ", index.status().message()));
  }
  const StateDictView view(*index);
  if (!LooksLikeEmbedding(view)) {
    return MatchResult::NotMine(
        absl::StrCat("textual inversion folder: ", weights->filename().string(),
                     " does not hold an embedding"));
  }
  MatchResult base = EmbeddingBaseFromStateDict(view);
  if (base.kind != MatchKind::kMatch) return base;
  return MatchResult::Match(Fields("embedding", "embedding_folder",
                                   base.fields["base"].get<std::string>()));
}

constexpr ModelMatcher kFolderMatchers[] = {
    {"stable diffusion pipeline", &MatchSdPipeline},
    {"sd-3 pipeline", &MatchSd3Pipeline},
    {"flux diffusers", &MatchFluxDiffusers},
    {"lora folder", &MatchLoraFolder},
    {"clip_embed", &MatchClipEmbed},
    {"vae diffusers", &MatchVaeDiffusers},
    {"controlnet diffusers", &MatchControlNetDiffusers},
    {"t2i_adapter", &MatchT2iAdapter},
    {"clip_vision", &MatchClipVision},
    {"t5_encoder", &MatchT5Encoder},
    {"siglip", &MatchSiglip},
    {"ip_adapter folder", &MatchIpAdapterFolder},
    {"textual inversion folder", &MatchEmbeddingFolder},
};

}  // namespace

std::span<const ModelMatcher> FolderMatchers() { return kFolderMatchers; }

FolderFacts ReadFolderFacts(const fs::path& folder) {
  FolderFacts facts;
  facts.model_index = ReadJsonOrNull(folder / "model_index.json");
  facts.config = ReadJsonOrNull(folder / "config.json");
  auto class_of = [](const json& object) -> std::string {
    if (!object.is_object()) return "";
    const auto name = object.find("_class_name");
    if (name != object.end() && name->is_string()) return *name;
    const auto arch = object.find("architectures");
    if (arch != object.end() && arch->is_array() && !arch->empty() &&
        (*arch)[0].is_string()) {
      return (*arch)[0];
    }
    return "";
  };
  if (facts.model_index.is_object()) {
    const auto name = facts.model_index.find("_class_name");
    if (name != facts.model_index.end() && name->is_string()) {
      facts.class_name = *name;
    }
  }
  if (facts.class_name.empty()) facts.class_name = class_of(facts.config);
  return facts;
}

std::optional<std::string> GenericFolderRefusal(const fs::path& folder,
                                                const FolderFacts& facts) {
  constexpr int kMaxFilesBesideGenericConfig = 50;
  std::error_code ec;
  const bool generic_config = !fs::exists(folder / "model_index.json", ec) &&
                              fs::exists(folder / "config.json", ec);
  if (generic_config) {
    int files = 0;
    WalkFiles(folder, /*max_depth=*/64, [&files](const fs::path&, int) {
      return ++files <= kMaxFilesBesideGenericConfig;
    });
    if (files > kMaxFilesBesideGenericConfig) {
      return absl::StrCat(
          "the folder has a generic config.json and more than ",
          kMaxFilesBesideGenericConfig,
          " files, so it looks like a code or data repository, not a model; "
          "point at the model's own folder");
    }
  }
  bool has_weights = false;
  WalkFiles(folder, /*max_depth=*/2, [&has_weights](const fs::path& file, int) {
    has_weights = IsWeightFile(file);
    return !has_weights;
  });
  if (!has_weights) {
    return "no weight file (.safetensors, .bin, .ckpt, .pt, .pth, .gguf, "
           ".onnx, ...) in the folder or its immediate subfolders; the "
           "download may be incomplete";
  }
  return std::nullopt;
}

std::string RepoVariantOfFolder(const fs::path& folder) {
  bool fp16 = false, openvino = false, flax = false, onnx = false;
  WalkFiles(folder, /*max_depth=*/3, [&](const fs::path& file, int) {
    if (!IsWeightFile(file)) return true;
    const std::string name = file.filename().string();
    fp16 = fp16 || HasFp16Suffix(file);
    openvino = openvino || absl::StartsWith(name, "openvino_model");
    flax = flax || absl::StartsWith(name, "flax_model");
    onnx = onnx || file.extension() == ".onnx";
    return true;
  });
  if (fp16) return "fp16";
  if (openvino) return "openvino";
  if (flax) return "flax";
  if (onnx) return "onnx";
  return "";
}

}  // namespace mm::model
