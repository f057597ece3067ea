#include "model/taxonomy.h"

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"
#include "model/config_validation.h"

namespace mm::model {
namespace {

// Lists are heap-allocated once and never destroyed, so they stay valid
// during static destruction (Google style for non-trivial statics).
using Strings = std::vector<std::string>;

bool Contains(const Strings& list, std::string_view value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

// ---------------------------------------------------------------------------
// Field builders: each names one field shape the family table reuses.

FieldSpec Enum(std::string name, const Strings& allowed, Presence presence,
               nlohmann::json default_value = nullptr) {
  FieldSpec spec;
  spec.name = std::move(name);
  spec.kind = FieldKind::kEnum;
  spec.presence = presence;
  spec.allowed = &allowed;
  spec.default_value = std::move(default_value);
  return spec;
}

FieldSpec Text(std::string name, Presence presence, size_t max_bytes,
               bool allow_empty = false) {
  FieldSpec spec;
  spec.name = std::move(name);
  spec.kind = FieldKind::kString;
  spec.presence = presence;
  spec.max_bytes = max_bytes;
  spec.allow_empty = allow_empty;
  return spec;
}

FieldSpec Of(std::string name, FieldKind kind, Presence presence,
             size_t max_bytes = 0) {
  FieldSpec spec;
  spec.name = std::move(name);
  spec.kind = kind;
  spec.presence = presence;
  spec.max_bytes = max_bytes;
  return spec;
}

FieldSpec ConfigPath() {
  return Of("config_path", FieldKind::kPath, Presence::kOptional,
            kMaxPathBytes);
}
FieldSpec PredictionType() {
  return Enum("prediction_type", KnownPredictionTypes(), Presence::kDefaulted,
              "epsilon");
}
FieldSpec SdVariant() {
  return Enum("variant", KnownSdVariants(), Presence::kDefaulted, "normal");
}
// No default: schnell and dev need different sampling settings, so a wrong
// guess would silently produce bad images. The probe always sets it.
FieldSpec FluxVariant() {
  return Enum("variant", KnownFluxVariants(), Presence::kRequired);
}
FieldSpec ClipVariant() {
  return Enum("variant", KnownClipVariants(), Presence::kRequired);
}
FieldSpec RepoVariant() {
  return Enum("repo_variant", KnownRepoVariants(), Presence::kDefaulted, "");
}
FieldSpec TriggerPhrases() {
  return Of("trigger_phrases", FieldKind::kStringSet, Presence::kOptional,
            kMaxTriggerPhraseBytes);
}
FieldSpec MainSettings() {
  return Of("default_settings", FieldKind::kMainSettings, Presence::kOptional);
}
FieldSpec LoraSettings() {
  return Of("default_settings", FieldKind::kLoraSettings, Presence::kOptional);
}
FieldSpec ControlSettings() {
  return Of("default_settings", FieldKind::kControlSettings,
            Presence::kOptional);
}
FieldSpec Submodels() {
  return Of("submodels", FieldKind::kSubmodels, Presence::kOptional);
}
// InvokeAI 6.x: run this model on the CPU (text encoders, VAEs).
FieldSpec CpuOnly() {
  return Of("cpu_only", FieldKind::kBool, Presence::kOptional);
}
FieldSpec ImageEncoderModelId() {
  return Text("image_encoder_model_id", Presence::kRequired, kMaxSourceBytes);
}

// ---------------------------------------------------------------------------
// The family table. One row registers `type`.`format` for each listed base
// (and, where `tag_variants` is non-empty, for each variant, which then
// becomes part of the tag). To add a family, add a row.

struct FamilyRow {
  std::string type;
  std::string format;
  Strings bases;
  std::vector<FieldSpec> fields;
  Strings tag_variants = {};
};

std::vector<FamilyRow> FamilyTable() {
  const Strings sd = {"sd-1", "sd-2", "sdxl", "sdxl-refiner"};
  const Strings sd_flux = {"sd-1", "sd-2", "sdxl", "flux"};
  const Strings sd3 = {"sd-1", "sd-2", "sdxl"};
  const Strings any = {"any"};
  return {
      // Stable Diffusion main models.
      {"main",
       "checkpoint",
       sd,
       {ConfigPath(), PredictionType(), SdVariant(), TriggerPhrases(),
        MainSettings()}},
      {"main",
       "diffusers",
       sd,
       {RepoVariant(), PredictionType(), SdVariant(), TriggerPhrases(),
        MainSettings()}},
      // ONNX exports of SD main models are folders laid out like diffusers.
      {"main",
       "onnx",
       sd3,
       {RepoVariant(), PredictionType(), SdVariant(), TriggerPhrases(),
        MainSettings()}},
      {"main",
       "olive",
       sd3,
       {RepoVariant(), PredictionType(), SdVariant(), TriggerPhrases(),
        MainSettings()}},
      {"main",
       "diffusers",
       {"sd-3"},
       {RepoVariant(), Submodels(), TriggerPhrases(), MainSettings()}},
      // FLUX main models. default_settings carries `guidance`, a FLUX
      // setting, so FLUX models allow it too.
      {"main",
       "checkpoint",
       {"flux"},
       {ConfigPath(), FluxVariant(), TriggerPhrases(), MainSettings()}},
      {"main",
       "diffusers",
       {"flux"},
       {RepoVariant(), FluxVariant(), TriggerPhrases(), MainSettings()}},
      {"main",
       "bnb_quantized_nf4b",
       {"flux"},
       {ConfigPath(), FluxVariant(), TriggerPhrases(), MainSettings()}},
      {"main",
       "gguf_quantized",
       {"flux"},
       {ConfigPath(), FluxVariant(), TriggerPhrases(), MainSettings()}},
      // VAEs. The FLUX autoencoder ships as a single checkpoint file.
      {"vae", "checkpoint", sd_flux, {ConfigPath(), CpuOnly()}},
      {"vae", "diffusers", sd3, {RepoVariant(), CpuOnly()}},
      // Control adapters.
      {"controlnet", "checkpoint", sd_flux, {ConfigPath(), ControlSettings()}},
      {"controlnet", "diffusers", sd_flux, {RepoVariant(), ControlSettings()}},
      {"t2i_adapter",
       "diffusers",
       {"sd-1", "sdxl"},
       {RepoVariant(), ControlSettings()}},
      {"control_lora",
       "lycoris",
       {"flux"},
       {TriggerPhrases(), ControlSettings()}},
      // LoRAs.
      {"lora", "lycoris", sd_flux, {TriggerPhrases(), LoraSettings()}},
      {"lora", "omi", sd_flux, {TriggerPhrases(), LoraSettings()}},
      {"lora", "diffusers", sd_flux, {TriggerPhrases(), LoraSettings()}},
      // Textual inversions.
      {"embedding", "embedding_file", sd3, {}},
      {"embedding", "embedding_folder", sd3, {}},
      // IP adapters.
      {"ip_adapter", "checkpoint", sd_flux, {}},
      {"ip_adapter", "invokeai", sd3, {ImageEncoderModelId()}},
      // Encoders and helpers that work with any base. The 6.x release lets
      // the text and image encoders (and VAEs, above) run on the CPU.
      {"clip_vision", "diffusers", any, {RepoVariant(), CpuOnly()}},
      {"clip_embed",
       "diffusers",
       any,
       {RepoVariant(), ClipVariant(), CpuOnly()},
       KnownClipVariants()},
      {"siglip", "diffusers", any, {RepoVariant(), CpuOnly()}},
      {"t5_encoder", "t5_encoder", any, {CpuOnly()}},
      {"t5_encoder", "bnb_quantized_int8b", any, {CpuOnly()}},
      {"spandrel_image_to_image", "checkpoint", any, {}},
      {"flux_redux", "checkpoint", {"flux"}, {}},
      {"llava_onevision", "diffusers", any, {RepoVariant(), CpuOnly()}},
      // A file the probe could not identify, kept so it can be fixed later.
      {"unknown", "unknown", {"unknown"}, {}},
  };
}

int ProbeImageSize(std::string_view type, std::string_view base) {
  if (type != "main") return 0;
  if (base == "sd-1") return 512;
  if (base == "sd-2") return 768;
  if (base == "sdxl") return 1024;
  return 0;
}

std::vector<FamilySpec>* BuildFamilies() {
  auto* families = new std::vector<FamilySpec>();
  for (FamilyRow& row : FamilyTable()) {
    for (const std::string& base : row.bases) {
      const std::string tag =
          absl::StrCat(row.type, ".", row.format, ".", base);
      Strings variants = row.tag_variants;
      if (variants.empty()) variants.push_back("");
      for (const std::string& variant : variants) {
        FamilySpec family;
        family.tag = variant.empty() ? tag : absl::StrCat(tag, ".", variant);
        family.type = row.type;
        family.format = row.format;
        family.base = base;
        family.variant = variant;
        family.fields = row.fields;
        family.probe_default_image_size = ProbeImageSize(row.type, base);
        families->push_back(std::move(family));
      }
    }
  }
  return families;
}

struct Registry {
  const std::vector<FamilySpec>* families;
  absl::flat_hash_map<std::string, const FamilySpec*> by_tag;
  // "<type>.<format>.<base>" prefixes whose families carry the variant.
  absl::flat_hash_map<std::string, bool> variant_keyed;
};

const Registry& GetRegistry() {
  static const Registry* const registry = [] {
    auto* r = new Registry();
    r->families = BuildFamilies();
    for (const FamilySpec& family : *r->families) {
      r->by_tag.emplace(family.tag, &family);
      if (!family.variant.empty()) {
        r->variant_keyed.emplace(
            absl::StrCat(family.type, ".", family.format, ".", family.base),
            true);
      }
    }
    return r;
  }();
  return *registry;
}

}  // namespace

// ---------------------------------------------------------------------------
// Wire values.

const Strings& KnownBases() {
  static const Strings* const v =
      new Strings{"any",          "sd-1", "sd-2",   "sd-3",     "sdxl",
                  "sdxl-refiner", "flux", "flux2",  "cogview4", "z-image",
                  "qwen-image",   "wan",  "unknown"};
  return *v;
}
const Strings& KnownTypes() {
  static const Strings* const v =
      new Strings{"main",         "vae",         "lora",
                  "control_lora", "controlnet",  "embedding",
                  "ip_adapter",   "clip_vision", "clip_embed",
                  "t2i_adapter",  "t5_encoder",  "spandrel_image_to_image",
                  "siglip",       "flux_redux",  "llava_onevision",
                  "onnx",         "unknown"};
  return *v;
}
const Strings& KnownFormats() {
  static const Strings* const v = new Strings{"diffusers",
                                              "checkpoint",
                                              "lycoris",
                                              "omi",
                                              "onnx",
                                              "olive",
                                              "embedding_file",
                                              "embedding_folder",
                                              "invokeai",
                                              "t5_encoder",
                                              "bnb_quantized_int8b",
                                              "bnb_quantized_nf4b",
                                              "gguf_quantized",
                                              "unknown"};
  return *v;
}
const Strings& KnownSubmodelTypes() {
  static const Strings* const v =
      new Strings{"unet",           "transformer",    "text_encoder",
                  "text_encoder_2", "text_encoder_3", "tokenizer",
                  "tokenizer_2",    "tokenizer_3",    "vae",
                  "vae_decoder",    "vae_encoder",    "scheduler",
                  "safety_checker"};
  return *v;
}
const Strings& KnownSdVariants() {
  static const Strings* const v = new Strings{"normal", "inpaint", "depth"};
  return *v;
}
const Strings& KnownClipVariants() {
  static const Strings* const v = new Strings{"large", "gigantic"};
  return *v;
}
const Strings& KnownFluxVariants() {
  static const Strings* const v = new Strings{"schnell", "dev", "dev_fill"};
  return *v;
}
const Strings& KnownPredictionTypes() {
  static const Strings* const v =
      new Strings{"epsilon", "v_prediction", "sample"};
  return *v;
}
const Strings& KnownRepoVariants() {
  static const Strings* const v =
      new Strings{"", "fp16", "fp32", "onnx", "openvino", "flax"};
  return *v;
}
const Strings& KnownSourceTypes() {
  static const Strings* const v = new Strings{"path", "url", "hf_repo_id"};
  return *v;
}
const Strings& KnownHashAlgorithms() {
  static const Strings* const v = new Strings{
      "blake3", "md5", "sha1", "sha256", "sha512", "imohash", "random"};
  return *v;
}

bool IsKnownBase(std::string_view value) {
  return Contains(KnownBases(), value);
}
bool IsKnownType(std::string_view value) {
  return Contains(KnownTypes(), value);
}
bool IsKnownFormat(std::string_view value) {
  return Contains(KnownFormats(), value);
}
bool IsKnownSubmodelType(std::string_view value) {
  return Contains(KnownSubmodelTypes(), value);
}
bool IsKnownSdVariant(std::string_view value) {
  return Contains(KnownSdVariants(), value);
}
bool IsKnownClipVariant(std::string_view value) {
  return Contains(KnownClipVariants(), value);
}
bool IsKnownFluxVariant(std::string_view value) {
  return Contains(KnownFluxVariants(), value);
}
bool IsKnownVariant(std::string_view value) {
  return IsKnownSdVariant(value) || IsKnownClipVariant(value) ||
         IsKnownFluxVariant(value);
}
bool IsKnownPredictionType(std::string_view value) {
  return Contains(KnownPredictionTypes(), value);
}
bool IsKnownRepoVariant(std::string_view value) {
  return Contains(KnownRepoVariants(), value);
}
bool IsKnownSourceType(std::string_view value) {
  return Contains(KnownSourceTypes(), value);
}
bool IsKnownHashAlgorithm(std::string_view value) {
  return Contains(KnownHashAlgorithms(), value);
}

int HashHexLength(std::string_view algorithm) {
  // `random` is BLAKE3 of a fresh id; imohash is a 128-bit digest.
  if (algorithm == "blake3" || algorithm == "random" || algorithm == "sha256") {
    return 64;
  }
  if (algorithm == "md5" || algorithm == "imohash") return 32;
  if (algorithm == "sha1") return 40;
  if (algorithm == "sha512") return 128;
  return 0;
}

// ---------------------------------------------------------------------------
// Families.

const FieldSpec* FamilySpec::FindField(std::string_view name) const {
  for (const FieldSpec& field : fields) {
    if (field.name == name) return &field;
  }
  return nullptr;
}

const std::vector<FieldSpec>& CommonFields() {
  static const std::vector<FieldSpec>* const fields = [] {
    return new std::vector<FieldSpec>{
        Of("key", FieldKind::kKey, Presence::kRequired),
        Of("hash", FieldKind::kHash, Presence::kRequired),
        Of("path", FieldKind::kPath, Presence::kRequired, kMaxPathBytes),
        Of("file_size", FieldKind::kSize, Presence::kRequired),
        Text("name", Presence::kRequired, kMaxNameBytes),
        Text("description", Presence::kOptional, kMaxDescriptionBytes,
             /*allow_empty=*/true),
        Text("source", Presence::kRequired, kMaxSourceBytes),
        Enum("source_type", KnownSourceTypes(), Presence::kRequired),
        Text("source_api_response", Presence::kOptional, kMaxRecordJsonBytes,
             /*allow_empty=*/true),
        // InvokeAI 6.x: a web page for the model (download or model page).
        Of("source_url", FieldKind::kHttpUrl, Presence::kOptional,
           kMaxSourceBytes),
        Of("tags", FieldKind::kStringSet, Presence::kOptional, kMaxTagBytes),
        Text("cover_image", Presence::kOptional, kMaxPathBytes),
        Enum("type", KnownTypes(), Presence::kRequired),
        Enum("format", KnownFormats(), Presence::kRequired),
        Enum("base", KnownBases(), Presence::kRequired),
        Of("compatible_bases", FieldKind::kBaseList, Presence::kOptional),
    };
  }();
  return *fields;
}

const std::vector<FamilySpec>& Families() { return *GetRegistry().families; }

const FamilySpec* FindFamily(std::string_view tag) {
  const Registry& registry = GetRegistry();
  auto it = registry.by_tag.find(AsAbsl(tag));
  return it == registry.by_tag.end() ? nullptr : it->second;
}

bool TagIncludesVariant(std::string_view type, std::string_view format,
                        std::string_view base) {
  return GetRegistry().variant_keyed.contains(
      absl::StrCat(AsAbsl(type), ".", AsAbsl(format), ".", AsAbsl(base)));
}

std::string ConfigTag(const nlohmann::json& config) {
  if (!config.is_object()) return "..";
  auto part = [&config](const char* name) -> std::string {
    auto it = config.find(name);
    if (it == config.end() || !it->is_string()) return "";
    return it->get<std::string>();
  };
  const std::string type = part("type");
  const std::string format = part("format");
  const std::string base = part("base");
  std::string tag = absl::StrCat(type, ".", format, ".", base);
  if (TagIncludesVariant(type, format, base)) {
    const std::string variant = part("variant");
    if (!variant.empty()) absl::StrAppend(&tag, ".", variant);
  }
  return tag;
}

}  // namespace mm::model
