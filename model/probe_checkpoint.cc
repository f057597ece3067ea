// The checkpoint matchers of spec §4.1: one function per family, each
// deciding from the keys and shapes of a single file's state dict.
#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <optional>
#include <regex>
#include <span>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "model/probe_matchers.h"

namespace mm::model {
namespace {

using json = nlohmann::json;

// Dimension `i` of `tensor` (negative counts from the end), or nullopt when
// the tensor is absent or has fewer dimensions.
std::optional<int64_t> Dim(const TensorInfo* tensor, int i) {
  if (tensor == nullptr) return std::nullopt;
  const int rank = static_cast<int>(tensor->shape.size());
  const int at = i < 0 ? rank + i : i;
  if (at < 0 || at >= rank) return std::nullopt;
  return tensor->shape[at];
}

std::optional<int64_t> Dim(const StateDictView& sd, absl::string_view name,
                           int i) {
  return Dim(sd.Find(name), i);
}

std::string DimText(std::optional<int64_t> dim) {
  return dim.has_value() ? absl::StrCat(*dim) : "absent";
}

json Fields(absl::string_view type, absl::string_view format,
            absl::string_view base) {
  return json{{"type", type}, {"format", format}, {"base", base}};
}

bool IsDigits(absl::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(),
                     [](unsigned char c) { return std::isdigit(c) != 0; });
}

// Consumes a run of digits at the front of `text`; false when there is none.
bool ConsumeDigits(absl::string_view& text) {
  size_t n = 0;
  while (n < text.size() && std::isdigit(static_cast<unsigned char>(text[n])))
    ++n;
  if (n == 0) return false;
  text.remove_prefix(n);
  return true;
}

// ---------------------------------------------------------------------------
// Main Stable Diffusion checkpoint.

constexpr std::array<absl::string_view, 4> kMainPrefixes = {
    "cond_stage_model.", "first_stage_model.", "model.diffusion_model.",
    "double_blocks."};

bool LooksLikeMain(const StateDictView& sd) {
  for (const TensorInfo& tensor : sd.tensors()) {
    if (absl::StrContains(tensor.name, "ip_adapter")) continue;
    for (absl::string_view prefix : kMainPrefixes) {
      if (absl::StartsWith(tensor.name, prefix)) return true;
    }
  }
  return false;
}

MatchResult MatchMainSd(const ProbeSubject& subject) {
  const StateDictView& sd = *subject.state_dict;
  if (!LooksLikeMain(sd)) return MatchResult::NotMine();
  constexpr absl::string_view kSd12Key =
      "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k."
      "weight";
  constexpr absl::string_view kSdxlKey =
      "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k."
      "weight";
  std::string base;
  const std::optional<int64_t> sd12 = Dim(sd, kSd12Key, -1);
  const std::optional<int64_t> sdxl = Dim(sd, kSdxlKey, -1);
  if (sd12 == 768) {
    base = "sd-1";
  } else if (sd12 == 1024) {
    base = "sd-2";
  } else if (sdxl == 2048) {
    base = "sdxl";
  } else if (sdxl == 1280) {
    base = "sdxl-refiner";
  } else {
    return MatchResult::NotMine(
        absl::StrCat("main checkpoint: the UNet cross-attention width (",
                     kSd12Key, ": ", DimText(sd12), ", ", kSdxlKey, ": ",
                     DimText(sdxl), ") is none of 768, 1024, 2048, 1280"));
  }
  constexpr absl::string_view kInputKey =
      "model.diffusion_model.input_blocks.0.0.weight";
  const std::optional<int64_t> channels = Dim(sd, kInputKey, 1);
  std::string variant;
  if (channels == 4) {
    variant = "normal";
  } else if (channels == 5 && base == "sd-2") {
    variant = "depth";
  } else if (channels == 9) {
    variant = "inpaint";
  } else {
    return MatchResult::Unusable(absl::StrCat(
        "main checkpoint (", base, "): ", kInputKey, " has ", DimText(channels),
        " input channels; expected 4 (normal), 9 (inpaint) or, for sd-2 only, "
        "5 (depth)"));
  }
  std::string prediction_type = "epsilon";
  if (base == "sd-2") {
    const json& scalars = sd.index().scalars;
    const bool step_220k = scalars.is_object() &&
                           scalars.contains("global_step") &&
                           scalars["global_step"].is_number_integer() &&
                           scalars["global_step"].get<int64_t>() == 220000;
    prediction_type = step_220k ? "epsilon" : "v_prediction";
  }
  json fields = Fields("main", "checkpoint", base);
  fields["variant"] = variant;
  fields["prediction_type"] = prediction_type;
  return MatchResult::Match(std::move(fields));
}

// ---------------------------------------------------------------------------
// FLUX main checkpoint (plain, NF4-quantized or GGUF).

constexpr absl::string_view kFluxPrefix = "model.diffusion_model.";

// Finds `name`, also under the optional "model.diffusion_model." prefix.
const TensorInfo* FindFlux(const StateDictView& sd, absl::string_view name) {
  if (const TensorInfo* tensor = sd.Find(name)) return tensor;
  return sd.Find(absl::StrCat(kFluxPrefix, name));
}

MatchResult MatchFluxMain(const ProbeSubject& subject) {
  const StateDictView& sd = *subject.state_dict;
  if (FindFlux(sd, "double_blocks.0.img_attn.norm.key_norm.scale") == nullptr)
    return MatchResult::NotMine();
  // XLabs FLUX ControlNets carry a copy of the first double blocks; their
  // hint keys say they are ControlNets, not main models.
  if (sd.Has("controlnet_blocks.0.weight") ||
      sd.Has("input_hint_block.0.weight")) {
    return MatchResult::NotMine(
        "flux main: has ControlNet keys (controlnet_blocks.0.weight)");
  }
  std::string format = "checkpoint";
  if (sd.index().format == WeightsFormat::kGguf) {
    format = "gguf_quantized";
  } else if (FindFlux(sd,
                      "double_blocks.0.img_attn.proj.weight.quant_state."
                      "bitsandbytes__nf4") != nullptr) {
    format = "bnb_quantized_nf4b";
  }
  std::string variant = "schnell";
  if (FindFlux(sd, "guidance_in.out_layer.weight") != nullptr) {
    variant = Dim(FindFlux(sd, "img_in.weight"), 1) == 384 ? "dev_fill" : "dev";
  }
  json fields = Fields("main", format, "flux");
  fields["variant"] = variant;
  return MatchResult::Match(std::move(fields));
}

// ---------------------------------------------------------------------------
// VAE checkpoint.

// The spec's file-name rule for 4-channel VAEs: the first of "xl", "sd2",
// "vae" the lower-cased name contains decides; sd-1 by default.
std::string VaeBaseFromFileName(const std::filesystem::path& path) {
  const std::string name = absl::AsciiStrToLower(path.filename().string());
  if (absl::StrContains(name, "xl")) return "sdxl";
  if (absl::StrContains(name, "sd2")) return "sd-2";
  return "sd-1";  // "vae" and the default agree
}

MatchResult MatchVae(const ProbeSubject& subject) {
  const StateDictView& sd = *subject.state_dict;
  if (!sd.AnyKeyStartsWith("encoder.conv_in") &&
      !sd.AnyKeyStartsWith("decoder.conv_in")) {
    return MatchResult::NotMine();
  }
  const std::optional<int64_t> latent = Dim(sd, "decoder.conv_in.weight", 1);
  std::string base;
  if (latent == 16) {
    base = "flux";
  } else if (latent == 4 || !latent.has_value()) {
    // The shapes of SD-1, SD-2 and SDXL VAEs are the same: the name is a
    // guess, so an explicit base override decides instead.
    const json& overrides = *subject.overrides;
    const auto it = overrides.find("base");
    if (it != overrides.end() && it->is_string() &&
        (*it == "sd-1" || *it == "sd-2" || *it == "sdxl")) {
      base = it->get<std::string>();
    } else {
      base = VaeBaseFromFileName(subject.path);
    }
  } else {
    return MatchResult::Unusable(
        absl::StrCat("vae checkpoint: decoder.conv_in.weight has ", *latent,
                     " latent channels; expected 4 (SD) or 16 (FLUX)"));
  }
  return MatchResult::Match(Fields("vae", "checkpoint", base));
}

// ---------------------------------------------------------------------------
// LoRA (lycoris and friends, one file).

constexpr std::array<absl::string_view, 5> kLoraPrefixes = {
    "lora_te_", "lora_unet_", "lora_te1_", "lora_te2_", "lora_transformer_"};
constexpr std::array<absl::string_view, 8> kLoraSuffixes = {
    "to_k_lora.up.weight",
    "to_q_lora.down.weight",
    "lora_A.weight",
    "lora_B.weight",
    "lokr_w1",
    "lokr_w2",
    "hada_w1_a",
    "hada_w2_a"};

bool IsLoraKey(absl::string_view key) {
  for (absl::string_view prefix : kLoraPrefixes) {
    if (absl::StartsWith(key, prefix)) return true;
  }
  for (absl::string_view suffix : kLoraSuffixes) {
    if (absl::EndsWith(key, suffix)) return true;
  }
  return false;
}

// XLabs FLUX LoRA key: double_blocks.N.processor.(qkv|proj)_lora(1|2).
// (down|up).weight
bool IsXlabsFluxLoraKey(absl::string_view key) {
  if (!absl::ConsumePrefix(&key, "double_blocks.")) return false;
  if (!ConsumeDigits(key)) return false;
  if (!absl::ConsumePrefix(&key, ".processor.")) return false;
  if (!absl::ConsumePrefix(&key, "qkv_lora") &&
      !absl::ConsumePrefix(&key, "proj_lora")) {
    return false;
  }
  if (!absl::ConsumePrefix(&key, "1") && !absl::ConsumePrefix(&key, "2"))
    return false;
  return key == ".down.weight" || key == ".up.weight";
}

bool AllKeys(const StateDictView& sd, bool (*predicate)(absl::string_view)) {
  if (sd.tensors().empty()) return false;
  for (const TensorInfo& tensor : sd.tensors()) {
    if (!predicate(tensor.name)) return false;
  }
  return true;
}

// Kohya FLUX LoRA key: lora_unet_(double|single)_blocks_N_...
bool IsKohyaFluxLoraKey(absl::string_view key) {
  if (!absl::ConsumePrefix(&key, "lora_unet_double_blocks_") &&
      !absl::ConsumePrefix(&key, "lora_unet_single_blocks_")) {
    return false;
  }
  return ConsumeDigits(key) && absl::StartsWith(key, "_");
}

// Diffusers/PEFT FLUX LoRA: every key lies under the FLUX transformer blocks
// and is a lora_A/lora_B weight (or its alpha).
bool IsPeftFluxLoraKey(absl::string_view key) {
  if (!absl::StartsWith(key, "transformer.single_transformer_blocks.") &&
      !absl::StartsWith(key, "transformer.transformer_blocks.")) {
    return false;
  }
  return absl::EndsWith(key, "lora_A.weight") ||
         absl::EndsWith(key, "lora_B.weight") || absl::EndsWith(key, ".alpha");
}

bool HasPeftFluxLoraWeights(const StateDictView& sd) {
  if (!AllKeys(sd, IsPeftFluxLoraKey)) return false;
  for (const TensorInfo& tensor : sd.tensors()) {
    if (absl::EndsWith(tensor.name, "lora_A.weight") ||
        absl::EndsWith(tensor.name, "lora_B.weight")) {
      return true;
    }
  }
  return false;
}

bool LooksLikeLora(const StateDictView& sd) {
  for (const TensorInfo& tensor : sd.tensors()) {
    if (IsLoraKey(tensor.name)) return true;
  }
  return AllKeys(sd, IsXlabsFluxLoraKey);
}

// Slider LoRAs train only deep transformer blocks; a transformer block
// index of 2 or more exists only in SDXL UNets.
bool HasSdxlOnlyTransformerBlock(const StateDictView& sd) {
  static const std::regex* const kSliderKey = new std::regex(
      "^lora_unet_((down|up)_blocks_\\d+_attentions_\\d+|mid_block_attentions_"
      "\\d+|(input|output)_blocks_\\d+_\\d+|middle_block_\\d+)_transformer_"
      "blocks_(\\d+)_");
  std::smatch match;
  for (const TensorInfo& tensor : sd.tensors()) {
    if (!absl::StartsWith(tensor.name, "lora_unet_") ||
        !absl::StrContains(tensor.name, "_transformer_blocks_")) {
      continue;
    }
    if (std::regex_search(tensor.name, match, *kSliderKey) &&
        std::stoll(match[4].str()) >= 2) {
      return true;
    }
  }
  return false;
}

// The width one LoRA key reveals (spec §4.1 "take the dimension").
std::optional<int64_t> LoraKeyWidth(const StateDictView& sd,
                                    const TensorInfo& tensor) {
  const size_t dot = tensor.name.find('.');
  if (dot == std::string::npos) return std::nullopt;
  const absl::string_view module =
      absl::string_view(tensor.name).substr(0, dot);
  const absl::string_view part = absl::string_view(tensor.name).substr(dot + 1);
  if (part == "lora_down.weight" || part == "hada_w1_b" ||
      part == "hada_w2_b" || part == "diff") {
    return Dim(&tensor, 1);
  }
  if (absl::StrContains(part, "lokr_")) {
    const TensorInfo* w1 = sd.Find(absl::StrCat(module, ".lokr_w1"));
    if (w1 == nullptr) w1 = sd.Find(absl::StrCat(module, ".lokr_w1_b"));
    const TensorInfo* w2 = sd.Find(absl::StrCat(module, ".lokr_w2"));
    if (w2 == nullptr) w2 = sd.Find(absl::StrCat(module, ".lokr_w2_b"));
    const std::optional<int64_t> a = Dim(w1, 1);
    const std::optional<int64_t> b = Dim(w2, 1);
    if (!a.has_value() || !b.has_value()) return std::nullopt;
    return *a * *b;
  }
  return std::nullopt;
}

MatchResult MatchLora(const ProbeSubject& subject) {
  const StateDictView& sd = *subject.state_dict;
  if (!LooksLikeLora(sd)) return MatchResult::NotMine();
  MatchResult base = LoraBaseFromStateDict(sd);
  if (base.kind != MatchKind::kMatch) return base;
  return MatchResult::Match(
      Fields("lora", "lycoris", base.fields["base"].get<std::string>()));
}

// ---------------------------------------------------------------------------
// ControlNet checkpoint.

MatchResult MatchControlNet(const ProbeSubject& subject) {
  const StateDictView& sd = *subject.state_dict;
  bool mine = false;
  for (const TensorInfo& tensor : sd.tensors()) {
    // "controlnet" also covers "controlnet_blocks".
    if (absl::StartsWith(tensor.name, "controlnet") ||
        absl::StartsWith(tensor.name, "control_model") ||
        absl::StartsWith(tensor.name, "input_blocks")) {
      mine = true;
      break;
    }
  }
  if (!mine) return MatchResult::NotMine();
  const bool xlabs = sd.Has("controlnet_blocks.0.weight") &&
                     sd.Has("input_hint_block.0.weight") &&
                     sd.Has("pos_embed_input.weight");
  const bool instantx = sd.Has("controlnet_blocks.0.weight") &&
                        sd.Has("controlnet_x_embedder.weight");
  if (xlabs || instantx) {
    return MatchResult::Match(Fields("controlnet", "checkpoint", "flux"));
  }
  constexpr std::array<absl::string_view, 4> kWidthKeys = {
      "control_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight",
      "controlnet_mid_block.bias",
      "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight",
      "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"};
  for (absl::string_view key : kWidthKeys) {
    const TensorInfo* tensor = sd.Find(key);
    if (tensor == nullptr) continue;
    const std::optional<int64_t> width = Dim(tensor, -1);
    if (width == 768) {
      return MatchResult::Match(Fields("controlnet", "checkpoint", "sd-1"));
    }
    if (width == 1024) {
      return MatchResult::Match(Fields("controlnet", "checkpoint", "sd-2"));
    }
    if (width == 2048 || width == 1280) {
      return MatchResult::Match(Fields("controlnet", "checkpoint", "sdxl"));
    }
    return MatchResult::Unusable(absl::StrCat(
        "controlnet checkpoint: ", key, " has last dimension ", DimText(width),
        "; expected 768 (sd-1), 1024 (sd-2), 1280 or 2048 "
        "(sdxl)"));
  }
  return MatchResult::Unusable(absl::StrCat(
      "controlnet checkpoint: none of the keys that tell the base is present "
      "(",
      absl::StrJoin(kWidthKeys, ", "), ")"));
}

// ---------------------------------------------------------------------------
// IP-Adapter checkpoint.

MatchResult MatchIpAdapter(const ProbeSubject& subject) {
  const StateDictView& sd = *subject.state_dict;
  if (!sd.AnyKeyStartsWith("image_proj.") &&
      !sd.AnyKeyStartsWith("ip_adapter.") &&
      !sd.AnyKeyStartsWith("ip_adapter_proj_model.")) {
    return MatchResult::NotMine();
  }
  MatchResult base = IpAdapterBaseFromStateDict(sd);
  if (base.kind != MatchKind::kMatch) return base;
  return MatchResult::Match(Fields("ip_adapter", "checkpoint",
                                   base.fields["base"].get<std::string>()));
}

// ---------------------------------------------------------------------------
// Textual inversion file.

MatchResult MatchEmbeddingFile(const ProbeSubject& subject) {
  const StateDictView& sd = *subject.state_dict;
  if (!LooksLikeEmbedding(sd)) return MatchResult::NotMine();
  MatchResult base = EmbeddingBaseFromStateDict(sd);
  if (base.kind != MatchKind::kMatch) return base;
  return MatchResult::Match(Fields("embedding", "embedding_file",
                                   base.fields["base"].get<std::string>()));
}

// ---------------------------------------------------------------------------
// FLUX Redux.

MatchResult MatchFluxRedux(const ProbeSubject& subject) {
  const StateDictView& sd = *subject.state_dict;
  constexpr std::array<absl::string_view, 4> kReduxKeys = {
      "redux_down.bias", "redux_down.weight", "redux_up.bias",
      "redux_up.weight"};
  if (sd.tensors().size() != kReduxKeys.size()) return MatchResult::NotMine();
  for (absl::string_view key : kReduxKeys) {
    if (!sd.Has(key)) return MatchResult::NotMine();
  }
  return MatchResult::Match(Fields("flux_redux", "checkpoint", "flux"));
}

constexpr ModelMatcher kCheckpointMatchers[] = {
    {"main checkpoint", &MatchMainSd},
    {"flux main checkpoint", &MatchFluxMain},
    {"lora", &MatchLora},
    {"vae checkpoint", &MatchVae},
    {"controlnet checkpoint", &MatchControlNet},
    {"ip_adapter checkpoint", &MatchIpAdapter},
    {"flux_redux", &MatchFluxRedux},
    // Last: its "fewer than 10 tensors" rule is the weakest evidence.
    {"textual inversion", &MatchEmbeddingFile},
};

}  // namespace

std::span<const ModelMatcher> CheckpointMatchers() {
  return kCheckpointMatchers;
}

std::optional<int64_t> LoraTokenVectorLength(const StateDictView& sd) {
  std::optional<int64_t> te1;
  std::optional<int64_t> te2;
  for (const TensorInfo& tensor : sd.tensors()) {
    const std::string& key = tensor.name;
    std::optional<int64_t> length;
    if (absl::StartsWith(key, "lora_unet_") &&
        (absl::StrContains(key, "_attn2_to_k.") ||
         absl::StrContains(key, "_attn2_to_v.") ||
         absl::StrContains(key, "time_emb_proj.lora_down"))) {
      length = LoraKeyWidth(sd, tensor);
    } else if (absl::StartsWith(key, "lora_te") &&
               absl::StrContains(key, "_self_attn_")) {
      const std::optional<int64_t> width = LoraKeyWidth(sd, tensor);
      if (absl::StartsWith(key, "lora_te_")) {
        length = width;
      } else if (absl::StartsWith(key, "lora_te1_")) {
        te1 = width;
      } else if (absl::StartsWith(key, "lora_te2_")) {
        te2 = width;
      }
    }
    // SDXL LoRAs train both text encoders: their widths add up.
    if (te1.has_value() && te2.has_value()) length = *te1 + *te2;
    if (length.has_value()) return length;
  }
  return std::nullopt;
}

MatchResult LoraBaseFromStateDict(const StateDictView& sd) {
  const std::optional<int64_t> length = LoraTokenVectorLength(sd);
  if (length == 768) return MatchResult::Match({{"base", "sd-1"}});
  if (length == 1024) return MatchResult::Match({{"base", "sd-2"}});
  if (length == 1280 || length == 2048) {
    return MatchResult::Match({{"base", "sdxl"}});
  }
  if (HasSdxlOnlyTransformerBlock(sd)) {
    return MatchResult::Match({{"base", "sdxl"}});
  }
  if (AllKeys(sd, IsKohyaFluxLoraKey) || HasPeftFluxLoraWeights(sd) ||
      AllKeys(sd, IsXlabsFluxLoraKey)) {
    return MatchResult::Match({{"base", "flux"}});
  }
  return MatchResult::Unusable(absl::StrCat(
      "lora: cannot tell the base: token vector length ", DimText(length),
      " (768 sd-1, 1024 sd-2, 1280/2048 sdxl), no SDXL-only transformer "
      "block, and not a FLUX LoRA layout; set the base explicitly"));
}

bool LooksLikeEmbedding(const StateDictView& sd) {
  if (sd.Has("string_to_param") || sd.AnyKeyStartsWith("string_to_param.") ||
      sd.Has("emb_params") || sd.Has("clip_g")) {
    return true;
  }
  return !sd.tensors().empty() && sd.TopLevelKeyCount() < 10 &&
         sd.AllTopLevelKeysAreTensors();
}

MatchResult EmbeddingBaseFromStateDict(const StateDictView& sd) {
  std::optional<int64_t> width;
  std::string source;
  const TensorInfo* param = sd.Find("string_to_param");
  if (param == nullptr) {
    for (const TensorInfo& tensor : sd.tensors()) {
      if (absl::StartsWith(tensor.name, "string_to_param.")) {
        param = &tensor;
        break;
      }
    }
  }
  if (param != nullptr) {
    width = Dim(param, -1);
    source = param->name;
  } else if (const TensorInfo* emb = sd.Find("emb_params")) {
    width = Dim(emb, -1);
    source = "emb_params";
  } else if (const TensorInfo* clip_g = sd.Find("clip_g")) {
    width = Dim(clip_g, -1);
    source = "clip_g";
  } else if (!sd.tensors().empty()) {
    width = Dim(&sd.tensors().front(), 0);
    source = sd.tensors().front().name;
  }
  if (width == 768) return MatchResult::Match({{"base", "sd-1"}});
  if (width == 1024) return MatchResult::Match({{"base", "sd-2"}});
  if (width == 1280) return MatchResult::Match({{"base", "sdxl"}});
  return MatchResult::Unusable(absl::StrCat(
      "textual inversion: token width ", DimText(width), " (from '", source,
      "') is none of 768 (sd-1), 1024 (sd-2), 1280 (sdxl)"));
}

MatchResult IpAdapterBaseFromStateDict(const StateDictView& sd) {
  if (sd.Has("double_blocks.0.processor.ip_adapter_double_stream_k_proj."
             "weight") &&
      sd.Has("ip_adapter_proj_model.proj.weight")) {
    return MatchResult::Match({{"base", "flux"}});
  }
  const std::optional<int64_t> width =
      Dim(sd, "ip_adapter.1.to_k_ip.weight", -1);
  if (width == 768) return MatchResult::Match({{"base", "sd-1"}});
  if (width == 1024) return MatchResult::Match({{"base", "sd-2"}});
  if (width == 2048) return MatchResult::Match({{"base", "sdxl"}});
  return MatchResult::Unusable(absl::StrCat(
      "ip_adapter: ip_adapter.1.to_k_ip.weight last dimension ", DimText(width),
      " is none of 768 (sd-1), 1024 (sd-2), 2048 (sdxl)"));
}

// Engine helper shared with probe.cc: true when every key is an integer
// (a list of tensors pickled as a dict, not a model).
bool AllKeysAreIntegers(const StateDictView& sd) {
  return AllKeys(sd, [](absl::string_view key) { return IsDigits(key); });
}

}  // namespace mm::model
