// The model taxonomy: the reference's wire values (spec §1) and the registry
// of model families (spec §2), each family a tag "<type>.<format>.<base>"
// with the extra config fields it allows.
//
// Everything here is immutable data built on first use; all functions are
// thread-safe. Adding a model family is one row in the table in
// taxonomy.cc (see docs/taxonomy.md); nothing else changes.
//
//   if (!mm::model::IsKnownBase(base)) return InvalidBase(base);
//   const mm::model::FamilySpec* family =
//       mm::model::FindFamily(mm::model::ConfigTag(config));
#ifndef MM_MODEL_TAXONOMY_H_
#define MM_MODEL_TAXONOMY_H_

#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace mm::model {

// Wire values (exact strings), in the order spec §1 lists them. Each list
// is built once and lives for the whole program.
const std::vector<std::string>& KnownBases();
const std::vector<std::string>& KnownTypes();
const std::vector<std::string>& KnownFormats();
const std::vector<std::string>& KnownSubmodelTypes();
const std::vector<std::string>& KnownSdVariants();
const std::vector<std::string>& KnownClipVariants();
const std::vector<std::string>& KnownFluxVariants();
const std::vector<std::string>& KnownPredictionTypes();
// Includes the empty string, the default repo variant.
const std::vector<std::string>& KnownRepoVariants();
const std::vector<std::string>& KnownSourceTypes();
// The hash algorithms a record's `hash` may name ("<algo>:<hex>").
const std::vector<std::string>& KnownHashAlgorithms();

bool IsKnownBase(std::string_view value);
bool IsKnownType(std::string_view value);
bool IsKnownFormat(std::string_view value);
bool IsKnownSubmodelType(std::string_view value);
bool IsKnownSdVariant(std::string_view value);
bool IsKnownClipVariant(std::string_view value);
bool IsKnownFluxVariant(std::string_view value);
// True for a value of any of the three variant lists (SD, CLIP, FLUX).
bool IsKnownVariant(std::string_view value);
bool IsKnownPredictionType(std::string_view value);
bool IsKnownRepoVariant(std::string_view value);
bool IsKnownSourceType(std::string_view value);
bool IsKnownHashAlgorithm(std::string_view value);

// Hex digits of the digest `algorithm` writes (blake3: 64, md5: 32, ...),
// or 0 for an unknown algorithm.
int HashHexLength(std::string_view algorithm);

// How a config field's value is checked. The rules of each kind are in
// docs/taxonomy.md; config_validation.cc implements them.
enum class FieldKind {
  kString,           // a string, non-empty unless allow_empty, <= max_bytes
  kEnum,             // a string from FieldSpec::allowed
  kSize,             // an integer >= 0
  kStringSet,        // a list of unique non-empty strings, each <= max_bytes
  kBaseList,         // a list of unique known base values
  kKey,              // [A-Za-z0-9._-]{1,256}
  kHash,             // "<algo>:<lowercase hex>"
  kPath,             // non-empty, <= max_bytes, no NUL byte
  kBool,             // true or false
  kHttpUrl,          // an http:// or https:// URL with a host, <= max_bytes
  kMainSettings,     // main-model default_settings object
  kLoraSettings,     // LoRA default_settings: {weight, weight_min, ...}
  kControlSettings,  // control adapter default_settings: {preprocessor, ...}
  kSubmodels,        // {submodel: {path_or_prefix, model_type, variant?}}
};

// Whether a field must be given. InvokeAI writes every optional field of
// its records, null when unset, so null and absent mean the same here.
enum class Presence {
  kRequired,   // absent or null is an error
  kDefaulted,  // absent or null becomes FieldSpec::default_value
  kOptional,   // absent or null is stored as null
};

// One config field: its name, how its value is checked, and whether it
// must be given.
struct FieldSpec {
  std::string name;
  FieldKind kind = FieldKind::kString;
  Presence presence = Presence::kOptional;
  // kEnum only: the allowed values (one of the Known*() lists).
  const std::vector<std::string>* allowed = nullptr;
  // kString, kPath, kStringSet (per item): the UTF-8 byte limit.
  size_t max_bytes = 0;
  // kString only: whether "" is a valid value.
  bool allow_empty = false;
  // kDefaulted only: the value filled in when the field is absent or null.
  nlohmann::json default_value;

  // Two specs check a value the same way (used to find stale fields when a
  // record changes family).
  bool SameCheckAs(const FieldSpec& other) const {
    return kind == other.kind && allowed == other.allowed &&
           max_bytes == other.max_bytes && allow_empty == other.allow_empty;
  }
};

// One registered model family.
struct FamilySpec {
  // "<type>.<format>.<base>", plus ".<variant>" where variant_in_tag.
  std::string tag;
  std::string type;
  std::string format;
  std::string base;
  // Non-empty for a family whose variant is part of its tag (clip_embed +
  // diffusers + any): the `variant` value the config must carry.
  std::string variant;
  // The extra fields this family allows beyond CommonFields().
  std::vector<FieldSpec> fields;
  // Main models: the image width/height the probe writes into
  // default_settings (spec §2: sd-1 512, sd-2 768, sdxl 1024); 0 for none.
  int probe_default_image_size = 0;

  // Returns the extra field named `name`, or nullptr.
  const FieldSpec* FindField(std::string_view name) const;
};

// The fields every record has (spec §2 common fields, including the 6.x
// release's `source_url`, plus our `compatible_bases`), in a fixed order.
const std::vector<FieldSpec>& CommonFields();

// Every registered family, one entry per tag, in table order.
const std::vector<FamilySpec>& Families();

// The family registered under `tag`, or nullptr.
const FamilySpec* FindFamily(std::string_view tag);

// True when families under "<type>.<format>.<base>" carry their variant in
// the tag (only clip_embed.diffusers.any today).
bool TagIncludesVariant(std::string_view type, std::string_view format,
                        std::string_view base);

// The tag of a config dict: "<type>.<format>.<base>", plus ".<variant>"
// when TagIncludesVariant() and `variant` is a string. A part that is
// missing or not a string is left empty ("lora..sdxl"), so the tag matches
// no family. Never throws.
std::string ConfigTag(const nlohmann::json& config);

}  // namespace mm::model

#endif  // MM_MODEL_TAXONOMY_H_
