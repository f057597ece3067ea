#include "model/config_validation.h"

#include <cmath>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/status.h"
#include "common/strings.h"
#include "model/taxonomy.h"

namespace mm::model {
namespace {

using nlohmann::json;

// Fields the records service keeps beside the config; callers strip them.
constexpr absl::string_view kServiceFields[] = {"revision", "created_at",
                                                "updated_at"};
// Values quoted in messages are cut to this many bytes.
constexpr size_t kMaxShownBytes = 80;

// The JSON text of `value` for a message, shortened at a character
// boundary. Never throws.
std::string Show(const json& value) {
  return SafeForMessage(
      value.dump(-1, ' ', false, json::error_handler_t::replace),
      kMaxShownBytes);
}

// A field name or other bare string for a message, shortened, unquoted.
std::string ShowName(absl::string_view name) {
  return SafeForMessage(AsStd(name), kMaxShownBytes);
}

std::string Quoted(const std::vector<std::string>& values) {
  return absl::StrJoin(values, ", ",
                       [](std::string* out, const std::string& v) {
                         absl::StrAppend(out, "'", v, "'");
                       });
}

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("field '", field, "': ", what));
}

// "expected <expectation>, got <value> (<json type>)".
absl::Status WrongValue(absl::string_view field, absl::string_view expectation,
                        const json& value) {
  return Invalid(
      field, absl::StrCat("expected ", expectation, ", got ", Show(value), " (",
                          value.type_name(), ")"));
}

// What a valid value of `spec` looks like, for messages.
std::string Expectation(const FieldSpec& spec) {
  switch (spec.kind) {
    case FieldKind::kString:
      return absl::StrCat(spec.allow_empty ? "a string" : "a non-empty string",
                          " of at most ", spec.max_bytes, " bytes");
    case FieldKind::kEnum:
      return absl::StrCat("one of ", Quoted(*spec.allowed));
    case FieldKind::kSize:
      return "an integer >= 0 (bytes)";
    case FieldKind::kStringSet:
      return absl::StrCat("a list of at most ", kMaxListItems,
                          " unique non-empty strings of at most ",
                          spec.max_bytes, " bytes each");
    case FieldKind::kBaseList:
      return absl::StrCat("a list of unique base values, each one of ",
                          Quoted(KnownBases()));
    case FieldKind::kKey:
      return absl::StrCat("1 to ", kMaxKeyBytes,
                          " characters from A-Z a-z 0-9 . _ -");
    case FieldKind::kHash:
      return absl::StrCat(
          "'<algorithm>:<lowercase hex digest>' with algorithm one of ",
          Quoted(KnownHashAlgorithms()));
    case FieldKind::kPath:
      return absl::StrCat("a non-empty path of at most ", spec.max_bytes,
                          " bytes without NUL bytes");
    case FieldKind::kBool:
      return "true, false or null";
    case FieldKind::kHttpUrl:
      return absl::StrCat("an http:// or https:// URL with a host, of at most ",
                          spec.max_bytes, " bytes, without spaces");
    case FieldKind::kMainSettings:
      return "an object {vae, vae_precision, scheduler, steps, cfg_scale, "
             "cfg_rescale_multiplier, width, height, guidance, cpu_only, "
             "fp8_storage} or null";
    case FieldKind::kLoraSettings:
      return "an object {weight, weight_min, weight_max} or null";
    case FieldKind::kControlSettings:
      return "an object {preprocessor, fp8_storage} or null";
    case FieldKind::kSubmodels:
      return "an object mapping submodel names to {path_or_prefix, "
             "model_type, variant} or null";
  }
  return "a valid value";
}

bool IsKeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

bool IsLowerHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

absl::Status CheckString(absl::string_view field, const json& value,
                         size_t max_bytes, bool allow_empty,
                         absl::string_view expectation) {
  if (!value.is_string()) return WrongValue(field, expectation, value);
  const std::string& text = value.get_ref<const std::string&>();
  if (text.empty() && !allow_empty) {
    return Invalid(field,
                   absl::StrCat("must not be empty; expected ", expectation));
  }
  if (text.size() > max_bytes) {
    return Invalid(
        field, absl::StrCat("is ", text.size(), " bytes, over the limit of ",
                            max_bytes, " bytes; shorten it"));
  }
  return absl::OkStatus();
}

absl::Status CheckEnum(absl::string_view field, const json& value,
                       const std::vector<std::string>& allowed) {
  const std::string expectation = absl::StrCat("one of ", Quoted(allowed));
  if (!value.is_string()) return WrongValue(field, expectation, value);
  const std::string& text = value.get_ref<const std::string&>();
  for (const std::string& candidate : allowed) {
    if (candidate == text) return absl::OkStatus();
  }
  return Invalid(field, absl::StrCat("unknown value ", Show(value),
                                     "; expected ", expectation));
}

absl::Status CheckKey(absl::string_view field, const json& value,
                      absl::string_view expectation) {
  RETURN_IF_ERROR(CheckString(field, value, kMaxKeyBytes, /*allow_empty=*/false,
                              expectation));
  for (char c : value.get_ref<const std::string&>()) {
    if (!IsKeyChar(c)) {
      return Invalid(field, absl::StrCat("value ", Show(value),
                                         " has a character outside A-Z a-z "
                                         "0-9 . _ -; expected ",
                                         expectation));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckHash(absl::string_view field, const json& value,
                       absl::string_view expectation) {
  if (!value.is_string()) return WrongValue(field, expectation, value);
  const std::string& text = value.get_ref<const std::string&>();
  const size_t colon = text.find(':');
  if (colon == std::string::npos) {
    return Invalid(field, absl::StrCat("value ", Show(value),
                                       " has no '<algorithm>:' prefix; "
                                       "expected ",
                                       expectation));
  }
  const std::string algorithm = text.substr(0, colon);
  const absl::string_view digest = absl::string_view(text).substr(colon + 1);
  if (!IsKnownHashAlgorithm(algorithm)) {
    return Invalid(
        field, absl::StrCat("unknown hash algorithm '", ShowName(algorithm),
                            "' in ", Show(value), "; expected ", expectation));
  }
  for (char c : digest) {
    if (!IsLowerHex(c)) {
      return Invalid(
          field, absl::StrCat("digest of ", Show(value),
                              " is not lowercase hex; expected ", expectation));
    }
  }
  const size_t want = static_cast<size_t>(HashHexLength(algorithm));
  if (want != 0 && digest.size() != want) {
    return Invalid(
        field, absl::StrCat(algorithm, " digests have ", want, " hex digits, ",
                            Show(value), " has ", digest.size()));
  }
  return absl::OkStatus();
}

absl::Status CheckPath(absl::string_view field, const json& value,
                       size_t max_bytes, absl::string_view expectation) {
  RETURN_IF_ERROR(
      CheckString(field, value, max_bytes, /*allow_empty=*/false, expectation));
  if (value.get_ref<const std::string&>().find('\0') != std::string::npos) {
    return Invalid(
        field, absl::StrCat("value ", Show(value),
                            " contains a NUL byte; expected ", expectation));
  }
  return absl::OkStatus();
}

absl::Status CheckBool(absl::string_view field, const json& value) {
  if (!value.is_boolean()) return WrongValue(field, "true or false", value);
  return absl::OkStatus();
}

absl::Status CheckHttpUrl(absl::string_view field, const json& value,
                          size_t max_bytes, absl::string_view expectation) {
  RETURN_IF_ERROR(
      CheckString(field, value, max_bytes, /*allow_empty=*/false, expectation));
  if (!IsHttpUrl(value.get_ref<const std::string&>())) {
    return Invalid(
        field, absl::StrCat("value ", Show(value),
                            " is not an http(s) URL; expected ", expectation));
  }
  return absl::OkStatus();
}

absl::Status CheckStringSet(absl::string_view field, const json& value,
                            size_t max_item_bytes,
                            absl::string_view expectation) {
  if (!value.is_array()) return WrongValue(field, expectation, value);
  if (value.size() > kMaxListItems) {
    return Invalid(
        field, absl::StrCat("has ", value.size(), " items, over the limit of ",
                            kMaxListItems));
  }
  absl::flat_hash_set<std::string> seen;
  for (size_t i = 0; i < value.size(); ++i) {
    const std::string item_field = absl::StrCat(field, "[", i, "]");
    RETURN_IF_ERROR(CheckString(item_field, value[i], max_item_bytes,
                                /*allow_empty=*/false, expectation));
    if (!seen.insert(value[i].get<std::string>()).second) {
      return Invalid(field, absl::StrCat("value ", Show(value[i]),
                                         " appears twice; list it once"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckBaseList(absl::string_view field, const json& value,
                           absl::string_view expectation) {
  if (!value.is_array()) return WrongValue(field, expectation, value);
  absl::flat_hash_set<std::string> seen;
  for (size_t i = 0; i < value.size(); ++i) {
    const std::string item_field = absl::StrCat(field, "[", i, "]");
    RETURN_IF_ERROR(CheckEnum(item_field, value[i], KnownBases()));
    if (!seen.insert(value[i].get<std::string>()).second) {
      return Invalid(field, absl::StrCat("base ", Show(value[i]),
                                         " appears twice; list it once"));
    }
  }
  return absl::OkStatus();
}

// A finite JSON number (integer or not).
absl::Status CheckNumber(absl::string_view field, const json& value,
                         absl::string_view expectation) {
  if (!value.is_number() ||
      (value.is_number_float() && !std::isfinite(value.get<double>()))) {
    return WrongValue(field, expectation, value);
  }
  return absl::OkStatus();
}

// The sub-keys of a settings object, in the order they are documented.
// Returns `value` with every sub-key present (null when not given) after
// `check_entry` accepted each non-null entry.
template <typename CheckEntry>
absl::StatusOr<json> NormalizeObject(absl::string_view field, const json& value,
                                     const std::vector<std::string>& keys,
                                     absl::string_view expectation,
                                     CheckEntry check_entry) {
  if (!value.is_object()) return WrongValue(field, expectation, value);
  json out = json::object();
  for (const std::string& key : keys) out[key] = nullptr;
  for (const auto& [key, entry] : value.items()) {
    const std::string entry_field = absl::StrCat(field, ".", ShowName(key));
    if (!out.contains(key)) {
      return Invalid(
          entry_field,
          absl::StrCat("is not a known setting; allowed: ", Quoted(keys)));
    }
    if (entry.is_null()) continue;
    RETURN_IF_ERROR(check_entry(entry_field, key, entry));
    out[key] = entry;
  }
  return out;
}

absl::StatusOr<json> NormalizeMainSettings(absl::string_view field,
                                           const json& value,
                                           absl::string_view expectation) {
  static const std::vector<std::string>* const kKeys =
      new std::vector<std::string>{
          "vae",      "vae_precision", "scheduler",
          "steps",    "cfg_scale",     "cfg_rescale_multiplier",
          "width",    "height",        "guidance",
          "cpu_only", "fp8_storage"};
  static const std::vector<std::string>* const kPrecisions =
      new std::vector<std::string>{"fp16", "fp32"};
  ASSIGN_OR_RETURN(
      json out,
      NormalizeObject(
          field, value, *kKeys, expectation,
          [](const std::string& f, const std::string& key,
             const json& entry) -> absl::Status {
            if (key == "vae" || key == "scheduler") {
              return CheckString(f, entry, kMaxSettingBytes, false,
                                 "a non-empty string");
            }
            if (key == "vae_precision") {
              return CheckEnum(f, entry, *kPrecisions);
            }
            if (key == "cpu_only" || key == "fp8_storage") {
              return CheckBool(f, entry);
            }
            if (key == "steps") {
              if (!entry.is_number_integer() || entry.get<int64_t>() <= 0 ||
                  (entry.is_number_unsigned() &&
                   entry.get<uint64_t>() > INT64_MAX)) {
                return WrongValue(f, "an integer > 0", entry);
              }
              return absl::OkStatus();
            }
            if (key == "width" || key == "height") {
              const char* want = "an integer >= 64 that is a multiple of 8";
              if (!entry.is_number_integer() ||
                  (entry.is_number_unsigned() &&
                   entry.get<uint64_t>() > INT64_MAX)) {
                return WrongValue(f, want, entry);
              }
              const int64_t pixels = entry.get<int64_t>();
              if (pixels < 64 || pixels % 8 != 0) {
                return WrongValue(f, want, entry);
              }
              return absl::OkStatus();
            }
            if (key == "cfg_scale") {
              RETURN_IF_ERROR(CheckNumber(f, entry, "a number >= 1"));
              if (entry.get<double>() < 1.0) {
                return WrongValue(f, "a number >= 1", entry);
              }
              return absl::OkStatus();
            }
            if (key == "cfg_rescale_multiplier") {
              const char* want = "a number in [0, 1)";
              RETURN_IF_ERROR(CheckNumber(f, entry, want));
              const double m = entry.get<double>();
              if (m < 0.0 || m >= 1.0) return WrongValue(f, want, entry);
              return absl::OkStatus();
            }
            // guidance
            return CheckNumber(f, entry, "a number");
          }));
  return out;
}

absl::StatusOr<json> NormalizeLoraSettings(absl::string_view field,
                                           const json& value,
                                           absl::string_view expectation) {
  static const std::vector<std::string>* const kKeys =
      new std::vector<std::string>{"weight", "weight_min", "weight_max"};
  ASSIGN_OR_RETURN(json out,
                   NormalizeObject(field, value, *kKeys, expectation,
                                   [](const std::string& f, const std::string&,
                                      const json& entry) {
                                     return CheckNumber(f, entry, "a number");
                                   }));
  // A range that excludes its own default weight is a typo, not a choice.
  const json& low = out["weight_min"];
  const json& high = out["weight_max"];
  const json& weight = out["weight"];
  if (!low.is_null() && !high.is_null() &&
      low.get<double>() > high.get<double>()) {
    return Invalid(absl::StrCat(field, ".weight_min"),
                   absl::StrCat(Show(low), " is greater than weight_max ",
                                Show(high), "; swap them"));
  }
  if (!weight.is_null() &&
      ((!low.is_null() && weight.get<double>() < low.get<double>()) ||
       (!high.is_null() && weight.get<double>() > high.get<double>()))) {
    return Invalid(
        absl::StrCat(field, ".weight"),
        absl::StrCat(Show(weight), " is outside [weight_min, weight_max] = [",
                     Show(low), ", ", Show(high), "]"));
  }
  return out;
}

absl::StatusOr<json> NormalizeControlSettings(absl::string_view field,
                                              const json& value,
                                              absl::string_view expectation) {
  static const std::vector<std::string>* const kKeys =
      new std::vector<std::string>{"preprocessor", "fp8_storage"};
  return NormalizeObject(
      field, value, *kKeys, expectation,
      [](const std::string& f, const std::string& key, const json& entry) {
        if (key == "fp8_storage") return CheckBool(f, entry);
        return CheckString(f, entry, kMaxSettingBytes, false,
                           "a non-empty string");
      });
}

absl::StatusOr<json> NormalizeSubmodels(absl::string_view field,
                                        const json& value,
                                        absl::string_view expectation) {
  if (!value.is_object()) return WrongValue(field, expectation, value);
  static const std::vector<std::string>* const kKeys =
      new std::vector<std::string>{"path_or_prefix", "model_type", "variant"};
  json out = json::object();
  for (const auto& [submodel, definition] : value.items()) {
    const std::string sub_field = absl::StrCat(field, ".", ShowName(submodel));
    if (!IsKnownSubmodelType(submodel)) {
      return Invalid(sub_field,
                     absl::StrCat("unknown submodel; expected one of ",
                                  Quoted(KnownSubmodelTypes())));
    }
    std::vector<std::string> variants = KnownSdVariants();
    variants.insert(variants.end(), KnownClipVariants().begin(),
                    KnownClipVariants().end());
    variants.insert(variants.end(), KnownFluxVariants().begin(),
                    KnownFluxVariants().end());
    ASSIGN_OR_RETURN(
        json normalized,
        NormalizeObject(
            sub_field, definition, *kKeys,
            "an object {path_or_prefix, model_type, variant}",
            [&variants](const std::string& f, const std::string& key,
                        const json& entry) -> absl::Status {
              if (key == "path_or_prefix") {
                return CheckPath(f, entry, kMaxSettingBytes,
                                 "a non-empty path or prefix");
              }
              if (key == "model_type") return CheckEnum(f, entry, KnownTypes());
              return CheckEnum(f, entry, variants);
            }));
    for (const char* required : {"path_or_prefix", "model_type"}) {
      if (normalized[required].is_null()) {
        const bool given_null = definition.contains(required);
        return Invalid(absl::StrCat(sub_field, ".", required),
                       absl::StrCat(given_null ? "is null" : "is missing",
                                    "; every submodel needs path_or_prefix "
                                    "and model_type"));
      }
    }
    out[submodel] = std::move(normalized);
  }
  return out;
}

// Checks a non-null value of `spec` and returns it normalized.
absl::StatusOr<json> NormalizeValue(const FieldSpec& spec, const json& value) {
  const std::string expectation = Expectation(spec);
  const std::string& field = spec.name;
  switch (spec.kind) {
    case FieldKind::kString:
      RETURN_IF_ERROR(CheckString(field, value, spec.max_bytes,
                                  spec.allow_empty, expectation));
      return value;
    case FieldKind::kEnum:
      RETURN_IF_ERROR(CheckEnum(field, value, *spec.allowed));
      return value;
    case FieldKind::kSize:
      if (!value.is_number_integer() ||
          (!value.is_number_unsigned() && value.get<int64_t>() < 0)) {
        return WrongValue(field, expectation, value);
      }
      return value;
    case FieldKind::kStringSet:
      RETURN_IF_ERROR(
          CheckStringSet(field, value, spec.max_bytes, expectation));
      return value;
    case FieldKind::kBaseList:
      RETURN_IF_ERROR(CheckBaseList(field, value, expectation));
      return value;
    case FieldKind::kKey:
      RETURN_IF_ERROR(CheckKey(field, value, expectation));
      return value;
    case FieldKind::kHash:
      RETURN_IF_ERROR(CheckHash(field, value, expectation));
      return value;
    case FieldKind::kPath:
      RETURN_IF_ERROR(CheckPath(field, value, spec.max_bytes, expectation));
      return value;
    case FieldKind::kBool:
      RETURN_IF_ERROR(CheckBool(field, value));
      return value;
    case FieldKind::kHttpUrl:
      RETURN_IF_ERROR(CheckHttpUrl(field, value, spec.max_bytes, expectation));
      return value;
    case FieldKind::kMainSettings:
      return NormalizeMainSettings(field, value, expectation);
    case FieldKind::kLoraSettings:
      return NormalizeLoraSettings(field, value, expectation);
    case FieldKind::kControlSettings:
      return NormalizeControlSettings(field, value, expectation);
    case FieldKind::kSubmodels:
      return NormalizeSubmodels(field, value, expectation);
  }
  return absl::InternalError(
      absl::StrCat("field '", field, "' has an unhandled kind"));
}

// Checks `spec` against `config` and writes the normalized value to `out`.
absl::Status NormalizeField(const FieldSpec& spec, const json& config,
                            absl::string_view tag, json& out) {
  auto it = config.find(spec.name);
  if (it == config.end() || it->is_null()) {
    switch (spec.presence) {
      case Presence::kRequired:
        // Null means "unset" for optional fields only; say which it was,
        // as a null usually comes from a program, an absence from a person.
        return absl::InvalidArgumentError(absl::StrCat(
            "field '", spec.name, "' is ",
            it == config.end() ? "missing" : "null, but it is required",
            tag.empty() ? "" : " for ", tag, "; set it to ",
            Expectation(spec)));
      case Presence::kDefaulted:
        out[spec.name] = spec.default_value;
        return absl::OkStatus();
      case Presence::kOptional:
        out[spec.name] = nullptr;
        return absl::OkStatus();
    }
  }
  ASSIGN_OR_RETURN(out[spec.name], NormalizeValue(spec, *it));
  return absl::OkStatus();
}

const FieldSpec& CommonField(absl::string_view name) {
  for (const FieldSpec& spec : CommonFields()) {
    if (spec.name == name) return spec;
  }
  // Only called with names from the common table.
  return CommonFields().front();
}

bool IsCommonField(absl::string_view name) {
  for (const FieldSpec& spec : CommonFields()) {
    if (spec.name == name) return true;
  }
  return false;
}

// The message for a type/format/base combination with no family: what is
// registered nearby, never the whole table.
absl::Status UnregisteredTag(absl::string_view tag, const std::string& type,
                             const std::string& format) {
  std::vector<std::string> bases;
  std::vector<std::string> formats;
  for (const FamilySpec& family : Families()) {
    if (family.type != type) continue;
    if (family.format == format) {
      if (bases.empty() || bases.back() != family.base) {
        bases.push_back(family.base);
      }
    } else if (formats.empty() || formats.back() != family.format) {
      bool seen = false;
      for (const std::string& f : formats) seen = seen || f == family.format;
      if (!seen) formats.push_back(family.format);
    }
  }
  std::string hint;
  if (!bases.empty()) {
    hint = absl::StrCat("; ", type, ".", format, " is registered for base ",
                        Quoted(bases));
  } else if (!formats.empty()) {
    hint = absl::StrCat("; type '", type, "' is registered with format ",
                        Quoted(formats));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "no model family is registered for '", tag, "' (type.format.base)", hint,
      "; fix type, format or base, or register the family "
      "(docs/taxonomy.md)"));
}

}  // namespace

bool IsHttpUrl(std::string_view text) {
  const absl::string_view url(text.data(), text.size());
  size_t scheme_end = url.find("://");
  if (scheme_end == absl::string_view::npos) return false;
  const std::string scheme = absl::AsciiStrToLower(url.substr(0, scheme_end));
  if (scheme != "http" && scheme != "https") return false;
  // A space or control character makes the link ambiguous to copy and can
  // rewrite a terminal that prints it.
  for (char c : url) {
    const unsigned char byte = static_cast<unsigned char>(c);
    if (byte <= 0x20 || byte == 0x7f) return false;
  }
  const absl::string_view rest = url.substr(scheme_end + 3);
  const absl::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  // The host is what follows any "user@"; it must not be empty.
  const size_t at = authority.rfind('@');
  const absl::string_view host =
      at == absl::string_view::npos ? authority : authority.substr(at + 1);
  return !host.empty() && host.front() != ':';
}

absl::StatusOr<json> ValidateConfig(const json& config) {
  if (!config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a model config must be a JSON object, got ", config.type_name()));
  }
  // Strings must be UTF-8 (they travel in protobuf strings); dump() is
  // also the size check.
  size_t input_bytes = 0;
  try {
    input_bytes = config.dump().size();
  } catch (const std::exception&) {
    for (const auto& [name, value] : config.items()) {
      try {
        json(name).dump();
        value.dump();
      } catch (const std::exception&) {
        return Invalid(ShowName(name),
                       "contains a string that is not valid UTF-8; send "
                       "UTF-8 text");
      }
    }
    return absl::InvalidArgumentError(
        "config contains a string that is not valid UTF-8; send UTF-8 text");
  }
  if (input_bytes > kMaxRecordJsonBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model config is ", input_bytes, " bytes of JSON, over the limit of ",
        kMaxRecordJsonBytes,
        " bytes; shorten source_api_response, description or tags"));
  }

  json out = json::object();
  // The taxonomy triple first: the family depends on it.
  for (const char* name : {"type", "format", "base"}) {
    RETURN_IF_ERROR(NormalizeField(CommonField(name), config, "", out));
  }
  const std::string type = out["type"];
  const std::string format = out["format"];
  const std::string base = out["base"];
  const std::string triple = absl::StrCat(type, ".", format, ".", base);
  if (TagIncludesVariant(type, format, base)) {
    auto it = config.find("variant");
    if (it == config.end() || it->is_null()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "field 'variant' is ",
          it == config.end() ? "missing" : "null, but it is required", " for ",
          triple, "; set it to one of ", Quoted(KnownClipVariants())));
    }
    RETURN_IF_ERROR(CheckEnum("variant", *it, KnownClipVariants()));
  }
  const std::string tag = ConfigTag(config);
  const FamilySpec* family = FindFamily(tag);
  if (family == nullptr) return UnregisteredTag(tag, type, format);

  for (const auto& [name, value] : config.items()) {
    if (IsCommonField(name) || family->FindField(name) != nullptr) continue;
    for (absl::string_view service_field : kServiceFields) {
      if (name == service_field) {
        return Invalid(name,
                       "is kept by the records service and is not part of a "
                       "model config; remove it");
      }
    }
    std::vector<std::string> extra;
    for (const FieldSpec& spec : family->fields) extra.push_back(spec.name);
    return absl::InvalidArgumentError(absl::StrCat(
        "field '", ShowName(name), "' is not allowed for ", tag,
        extra.empty() ? "; it takes only the common fields"
                      : absl::StrCat("; its extra fields are ", Quoted(extra)),
        "; remove it"));
  }

  for (const FieldSpec& spec : CommonFields()) {
    if (out.contains(spec.name)) continue;
    RETURN_IF_ERROR(NormalizeField(spec, config, tag, out));
  }
  for (const FieldSpec& spec : family->fields) {
    RETURN_IF_ERROR(NormalizeField(spec, config, tag, out));
  }

  // Normalizing adds nulls and defaults, so check what will be stored.
  const size_t output_bytes = out.dump().size();
  if (output_bytes > kMaxRecordJsonBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model config is ", output_bytes,
        " bytes of JSON once normalized, over the limit of ",
        kMaxRecordJsonBytes,
        " bytes; shorten source_api_response, description or tags"));
  }
  return out;
}

absl::StatusOr<json> ApplyConfigChanges(const json& current,
                                        const json& changes,
                                        bool allow_class_change) {
  if (!current.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the current model config must be a JSON object, got ",
                     current.type_name()));
  }
  if (!changes.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model config changes must be a JSON object of fields to change, "
        "got ",
        changes.type_name()));
  }
  if (auto it = changes.find("key"); it != changes.end()) {
    auto old_key = current.find("key");
    if (old_key == current.end() || *old_key != *it) {
      return Invalid(
          "key",
          absl::StrCat("cannot change (from ",
                       Show(old_key == current.end() ? json() : *old_key),
                       " to ", Show(*it),
                       "); delete the model and add it again to "
                       "give it another key"));
    }
  }

  json merged = current;
  for (const auto& [name, value] : changes.items()) {
    if (value.is_null()) {
      merged.erase(name);
    } else {
      merged[name] = value;
    }
  }

  const std::string old_tag = ConfigTag(current);
  const std::string new_tag = ConfigTag(merged);
  if (old_tag != new_tag) {
    if (!allow_class_change) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the changes move the model from ", old_tag, " to ", new_tag,
          " (type, format, base or variant); set allow_class_change=true "
          "to change the model's family"));
    }
    const FamilySpec* old_family = FindFamily(old_tag);
    const FamilySpec* new_family = FindFamily(new_tag);
    // An unregistered new tag is left for ValidateConfig to report.
    if (new_family != nullptr) {
      std::vector<std::string> stale;
      for (const auto& [name, value] : merged.items()) {
        if (IsCommonField(name) || changes.contains(name)) continue;
        const FieldSpec* now = new_family->FindField(name);
        const FieldSpec* before =
            old_family == nullptr ? nullptr : old_family->FindField(name);
        if (now == nullptr ||
            (before != nullptr && !before->SameCheckAs(*now))) {
          stale.push_back(name);
        }
      }
      for (const std::string& name : stale) merged.erase(name);
    }
  }
  return ValidateConfig(merged);
}

}  // namespace mm::model
