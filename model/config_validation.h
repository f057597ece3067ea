// Validation and normalization of model config records (spec §2) and the
// sparse update rule of the records service (spec §3).
//
// A config is a plain JSON object. ValidateConfig resolves it to its
// registered family by its tag (model/taxonomy.h), checks every field, and
// returns the normalized form that the records store keeps:
//   - every field the family allows is present (common fields first, then
//     the family's extra fields);
//   - a defaulted field that is absent or null gets its default
//     (repo_variant "", prediction_type "epsilon", SD variant "normal");
//   - an optional field that is absent is written as null, as the reference
//     dumps its records; `default_settings` and `submodels` entries are
//     filled the same way (every sub-key present, null when not given).
// Null and absent are the same for every field and sub-key that is not
// required (InvokeAI 6.x writes each unset optional field as null); a
// required field given as null is an error that says so.
// Validating a normalized config returns it unchanged.
//
// Stateless functions; thread-safe.
//
//   ASSIGN_OR_RETURN(nlohmann::json record, mm::model::ValidateConfig(dict));
//   ASSIGN_OR_RETURN(record, mm::model::ApplyConfigChanges(
//                                record, {{"name", "new"}},
//                                /*allow_class_change=*/false));
#ifndef MM_MODEL_CONFIG_VALIDATION_H_
#define MM_MODEL_CONFIG_VALIDATION_H_

#include <cstddef>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace mm::model {

// The whole serialized record (compact JSON) may not exceed this.
inline constexpr size_t kMaxRecordJsonBytes = 1 << 20;
// `key`: the service generates 32 hex characters; callers may choose their
// own within this limit.
inline constexpr size_t kMaxKeyBytes = 256;
inline constexpr size_t kMaxNameBytes = 1024;
inline constexpr size_t kMaxDescriptionBytes = 64 * 1024;
// `path`, `config_path`, `cover_image`: Linux PATH_MAX.
inline constexpr size_t kMaxPathBytes = 4096;
// `source` and other model ids (`image_encoder_model_id`).
inline constexpr size_t kMaxSourceBytes = 4096;
inline constexpr size_t kMaxTagBytes = 256;
inline constexpr size_t kMaxTriggerPhraseBytes = 1024;
// Items in `tags` and `trigger_phrases`.
inline constexpr size_t kMaxListItems = 1000;
// Free strings inside default_settings (vae, scheduler, preprocessor) and
// submodels (path_or_prefix).
inline constexpr size_t kMaxSettingBytes = 4096;

// Returns the normalized config (see the file comment), or
// INVALID_ARGUMENT naming the field, the bad value and what is allowed:
// not an object, a missing or null required field, a field of the wrong JSON
// type, a value out of range, an unregistered type/format/base combination, a
// field the family does not allow (including the service-managed
// `revision`, `created_at`, `updated_at`), or a record over
// kMaxRecordJsonBytes.
absl::StatusOr<nlohmann::json> ValidateConfig(const nlohmann::json& config);

// True for what `source_url` accepts: scheme http or https (any case),
// "://", a non-empty host, and no space or control character anywhere.
bool IsHttpUrl(std::string_view text);

// Applies the sparse `changes` to `current` (a stored config) and returns
// the validated, normalized result:
//   - only the fields in `changes` change; a field given as null is
//     removed (so an optional field becomes null, a defaulted one gets its
//     default again, a required one fails validation);
//   - `key` cannot change: INVALID_ARGUMENT;
//   - when the tag changes (type, format, base, or the clip_embed variant)
//     and !allow_class_change: INVALID_ARGUMENT saying allow_class_change is
//     needed. When allowed, the family is re-resolved and every field of
//     `current` that the new family does not allow, or checks differently
//     (an SD `variant` on a FLUX model), is dropped unless `changes` gives
//     it; the new family's defaults then fill in.
// Other errors are those of ValidateConfig.
absl::StatusOr<nlohmann::json> ApplyConfigChanges(const nlohmann::json& current,
                                                  const nlohmann::json& changes,
                                                  bool allow_class_change);

}  // namespace mm::model

#endif  // MM_MODEL_CONFIG_VALIDATION_H_
