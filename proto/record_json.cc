#include "proto/record_json.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace mm {
namespace {

using modelmanager::v1::Model;
using nlohmann::json;

template <typename Repeated>
json StringList(const Repeated& values) {
  json list = json::array();
  for (const auto& value : values) list.push_back(value);
  return list;
}

json MainSettingsToJson(const modelmanager::v1::MainDefaultSettings& s) {
  json out = json::object();
  if (s.has_vae()) out["vae"] = s.vae();
  if (s.has_vae_precision()) out["vae_precision"] = s.vae_precision();
  if (s.has_scheduler()) out["scheduler"] = s.scheduler();
  if (s.has_steps()) out["steps"] = s.steps();
  if (s.has_cfg_scale()) out["cfg_scale"] = s.cfg_scale();
  if (s.has_cfg_rescale_multiplier()) {
    out["cfg_rescale_multiplier"] = s.cfg_rescale_multiplier();
  }
  if (s.has_width()) out["width"] = s.width();
  if (s.has_height()) out["height"] = s.height();
  if (s.has_guidance()) out["guidance"] = s.guidance();
  if (s.has_cpu_only()) out["cpu_only"] = s.cpu_only();
  if (s.has_fp8_storage()) out["fp8_storage"] = s.fp8_storage();
  return out;
}

json LoraSettingsToJson(const modelmanager::v1::LoraDefaultSettings& s) {
  json out = json::object();
  if (s.has_weight()) out["weight"] = s.weight();
  if (s.has_weight_min()) out["weight_min"] = s.weight_min();
  if (s.has_weight_max()) out["weight_max"] = s.weight_max();
  return out;
}

// Reads typed JSON values, remembering the first error with its field path.
class JsonReader {
 public:
  bool String(const json& value, const std::string& field, std::string* out) {
    if (!value.is_string()) return Fail(field, "a string");
    *out = value.get<std::string>();
    return true;
  }
  bool Int(const json& value, const std::string& field, int64_t* out) {
    if (!value.is_number_integer()) return Fail(field, "an integer");
    *out = value.get<int64_t>();
    return true;
  }
  bool Number(const json& value, const std::string& field, double* out) {
    if (!value.is_number()) return Fail(field, "a number");
    *out = value.get<double>();
    return true;
  }
  bool Bool(const json& value, const std::string& field, bool* out) {
    if (!value.is_boolean()) return Fail(field, "true or false");
    *out = value.get<bool>();
    return true;
  }
  template <typename Repeated>
  bool Strings(const json& value, const std::string& field, Repeated* out) {
    if (!value.is_array()) return Fail(field, "a list of strings");
    for (const json& item : value) {
      if (!item.is_string()) return Fail(field, "a list of strings");
      out->Add(item.get<std::string>());
    }
    return true;
  }
  bool Fail(const std::string& field, const char* expected) {
    if (status_.ok()) {
      status_ = absl::InvalidArgumentError(
          absl::StrCat("field '", field, "' must be ", expected));
    }
    return false;
  }
  const absl::Status& status() const { return status_; }

 private:
  absl::Status status_;
};

void ReadMainSettings(const json& in, JsonReader& r,
                      modelmanager::v1::MainDefaultSettings* s) {
  for (const auto& [name, value] : in.items()) {
    std::string field = absl::StrCat("default_settings.", name);
    if (value.is_null()) continue;
    std::string text;
    int64_t integer = 0;
    double number = 0;
    bool flag = false;
    if (name == "vae" && r.String(value, field, &text))
      s->set_vae(text);
    else if (name == "vae_precision" && r.String(value, field, &text))
      s->set_vae_precision(text);
    else if (name == "scheduler" && r.String(value, field, &text))
      s->set_scheduler(text);
    else if (name == "steps" && r.Int(value, field, &integer))
      s->set_steps(static_cast<int32_t>(integer));
    else if (name == "cfg_scale" && r.Number(value, field, &number))
      s->set_cfg_scale(number);
    else if (name == "cfg_rescale_multiplier" &&
             r.Number(value, field, &number))
      s->set_cfg_rescale_multiplier(number);
    else if (name == "width" && r.Int(value, field, &integer))
      s->set_width(static_cast<int32_t>(integer));
    else if (name == "height" && r.Int(value, field, &integer))
      s->set_height(static_cast<int32_t>(integer));
    else if (name == "guidance" && r.Number(value, field, &number))
      s->set_guidance(number);
    else if (name == "cpu_only" && r.Bool(value, field, &flag))
      s->set_cpu_only(flag);
    else if (name == "fp8_storage" && r.Bool(value, field, &flag))
      s->set_fp8_storage(flag);
    else if (r.status().ok())
      r.Fail(field, "one of the main model default settings");
  }
}

void ReadLoraSettings(const json& in, JsonReader& r,
                      modelmanager::v1::LoraDefaultSettings* s) {
  for (const auto& [name, value] : in.items()) {
    std::string field = absl::StrCat("default_settings.", name);
    if (value.is_null()) continue;
    double number = 0;
    if (name == "weight" && r.Number(value, field, &number))
      s->set_weight(number);
    else if (name == "weight_min" && r.Number(value, field, &number))
      s->set_weight_min(number);
    else if (name == "weight_max" && r.Number(value, field, &number))
      s->set_weight_max(number);
    else if (r.status().ok())
      r.Fail(field, "one of weight, weight_min, weight_max");
  }
}

}  // namespace

const std::vector<std::string>& ModelConfigFieldNames() {
  static const auto* names =
      new std::vector<std::string>{"key",
                                   "hash",
                                   "path",
                                   "file_size",
                                   "name",
                                   "description",
                                   "source",
                                   "source_type",
                                   "source_api_response",
                                   "tags",
                                   "type",
                                   "format",
                                   "base",
                                   "cover_image",
                                   "compatible_bases",
                                   "source_url",
                                   "variant",
                                   "prediction_type",
                                   "repo_variant",
                                   "config_path",
                                   "trigger_phrases",
                                   "default_settings",
                                   "submodels",
                                   "image_encoder_model_id",
                                   "cpu_only"};
  return *names;
}

json ModelToConfigJson(const Model& m) {
  json out = json::object();
  out["key"] = m.key();
  out["hash"] = m.hash();
  out["path"] = m.path();
  out["file_size"] = m.file_size();
  out["name"] = m.name();
  if (m.has_description()) out["description"] = m.description();
  out["source"] = m.source();
  out["source_type"] = m.source_type();
  if (m.has_source_api_response()) {
    out["source_api_response"] = m.source_api_response();
  }
  if (m.tags_size() > 0) out["tags"] = StringList(m.tags());
  out["type"] = m.type();
  out["format"] = m.format();
  out["base"] = m.base();
  if (m.has_cover_image()) out["cover_image"] = m.cover_image();
  if (m.compatible_bases_size() > 0) {
    out["compatible_bases"] = StringList(m.compatible_bases());
  }
  if (m.has_source_url()) out["source_url"] = m.source_url();
  if (m.has_variant()) out["variant"] = m.variant();
  if (m.has_prediction_type()) out["prediction_type"] = m.prediction_type();
  if (m.has_repo_variant()) out["repo_variant"] = m.repo_variant();
  if (m.has_config_path()) out["config_path"] = m.config_path();
  if (m.trigger_phrases_size() > 0) {
    out["trigger_phrases"] = StringList(m.trigger_phrases());
  }
  switch (m.default_settings_case()) {
    case Model::kMainDefaultSettings:
      out["default_settings"] = MainSettingsToJson(m.main_default_settings());
      break;
    case Model::kLoraDefaultSettings:
      out["default_settings"] = LoraSettingsToJson(m.lora_default_settings());
      break;
    case Model::kControlAdapterDefaultSettings: {
      json settings = json::object();
      const auto& s = m.control_adapter_default_settings();
      if (s.has_preprocessor()) settings["preprocessor"] = s.preprocessor();
      if (s.has_fp8_storage()) settings["fp8_storage"] = s.fp8_storage();
      out["default_settings"] = settings;
      break;
    }
    case Model::DEFAULT_SETTINGS_NOT_SET:
      break;
  }
  if (!m.submodels().empty()) {
    json submodels = json::object();
    for (const auto& [name, def] : m.submodels()) {
      json entry = {{"path_or_prefix", def.path_or_prefix()},
                    {"model_type", def.model_type()}};
      if (def.has_variant()) entry["variant"] = def.variant();
      submodels[name] = entry;
    }
    out["submodels"] = submodels;
  }
  if (m.has_image_encoder_model_id()) {
    out["image_encoder_model_id"] = m.image_encoder_model_id();
  }
  if (m.has_cpu_only()) out["cpu_only"] = m.cpu_only();
  return out;
}

absl::StatusOr<Model> ConfigJsonToModel(const json& config) {
  if (!config.is_object()) {
    return absl::InvalidArgumentError("a model config must be a JSON object");
  }
  Model m;
  JsonReader r;
  // The family decides which default_settings message applies.
  std::string type = config.contains("type") && config["type"].is_string()
                         ? config["type"].get<std::string>()
                         : "";
  for (const auto& [name, value] : config.items()) {
    if (value.is_null()) continue;  // null means absent
    std::string text;
    int64_t integer = 0;
    bool flag = false;
    if (name == "key" && r.String(value, std::string(name), &text))
      m.set_key(text);
    else if (name == "hash" && r.String(value, std::string(name), &text))
      m.set_hash(text);
    else if (name == "path" && r.String(value, std::string(name), &text))
      m.set_path(text);
    else if (name == "file_size" && r.Int(value, name, &integer))
      m.set_file_size(integer);
    else if (name == "name" && r.String(value, std::string(name), &text))
      m.set_name(text);
    else if (name == "description" && r.String(value, std::string(name), &text))
      m.set_description(text);
    else if (name == "source" && r.String(value, std::string(name), &text))
      m.set_source(text);
    else if (name == "source_type" && r.String(value, std::string(name), &text))
      m.set_source_type(text);
    else if (name == "source_api_response" &&
             r.String(value, std::string(name), &text))
      m.set_source_api_response(text);
    else if (name == "tags")
      r.Strings(value, name, m.mutable_tags());
    else if (name == "type" && r.String(value, std::string(name), &text))
      m.set_type(text);
    else if (name == "format" && r.String(value, std::string(name), &text))
      m.set_format(text);
    else if (name == "base" && r.String(value, std::string(name), &text))
      m.set_base(text);
    else if (name == "cover_image" && r.String(value, std::string(name), &text))
      m.set_cover_image(text);
    else if (name == "compatible_bases")
      r.Strings(value, name, m.mutable_compatible_bases());
    else if (name == "source_url" && r.String(value, std::string(name), &text))
      m.set_source_url(text);
    else if (name == "cpu_only" && r.Bool(value, std::string(name), &flag))
      m.set_cpu_only(flag);
    else if (name == "variant" && r.String(value, std::string(name), &text))
      m.set_variant(text);
    else if (name == "prediction_type" &&
             r.String(value, std::string(name), &text))
      m.set_prediction_type(text);
    else if (name == "repo_variant" &&
             r.String(value, std::string(name), &text))
      m.set_repo_variant(text);
    else if (name == "config_path" && r.String(value, std::string(name), &text))
      m.set_config_path(text);
    else if (name == "trigger_phrases")
      r.Strings(value, name, m.mutable_trigger_phrases());
    else if (name == "image_encoder_model_id" &&
             r.String(value, std::string(name), &text))
      m.set_image_encoder_model_id(text);
    else if (name == "default_settings") {
      if (!value.is_object()) {
        r.Fail(std::string(name), "an object");
      } else if (type == "lora") {
        ReadLoraSettings(value, r, m.mutable_lora_default_settings());
      } else if (type == "controlnet" || type == "t2i_adapter" ||
                 type == "control_lora") {
        // The taxonomy gives control LoRAs the control adapter settings.
        auto* s = m.mutable_control_adapter_default_settings();
        for (const auto& [sub, subvalue] : value.items()) {
          std::string field = absl::StrCat("default_settings.", sub);
          if (subvalue.is_null()) continue;
          if (sub == "preprocessor" && r.String(subvalue, field, &text)) {
            s->set_preprocessor(text);
          } else if (sub == "fp8_storage" && r.Bool(subvalue, field, &flag)) {
            s->set_fp8_storage(flag);
          } else if (r.status().ok()) {
            r.Fail(field, "one of preprocessor, fp8_storage");
          }
        }
      } else {
        ReadMainSettings(value, r, m.mutable_main_default_settings());
      }
    } else if (name == "submodels") {
      if (!value.is_object()) {
        r.Fail(std::string(name), "an object keyed by submodel type");
      } else {
        for (const auto& [sub, def] : value.items()) {
          std::string field = absl::StrCat("submodels.", sub);
          if (!def.is_object()) {
            r.Fail(field, "an object");
            break;
          }
          modelmanager::v1::SubmodelDefinition out;
          for (const auto& [k, v] : def.items()) {
            if (v.is_null()) continue;
            std::string sub_field = absl::StrCat(field, ".", k);
            if (k == "path_or_prefix" && r.String(v, sub_field, &text))
              out.set_path_or_prefix(text);
            else if (k == "model_type" && r.String(v, sub_field, &text))
              out.set_model_type(text);
            else if (k == "variant" && r.String(v, sub_field, &text))
              out.set_variant(text);
            else if (r.status().ok())
              r.Fail(sub_field, "one of path_or_prefix, model_type, variant");
          }
          (*m.mutable_submodels())[sub] = out;
        }
      }
    } else if (r.status().ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown field '", name, "'"));
    }
    if (!r.status().ok()) return r.status();
  }
  return m;
}

absl::StatusOr<json> ChangesFromFieldMask(
    const Model& model, const google::protobuf::FieldMask& mask) {
  json full = ModelToConfigJson(model);
  json changes = json::object();
  if (mask.paths_size() == 0) {
    // Every field set in `model`; the always-present scalars only when they
    // carry a value.
    for (const auto& [name, value] : full.items()) {
      if (name == "file_size" && model.file_size() == 0) continue;
      if (value.is_string() && value.get<std::string>().empty() &&
          name != "description" && name != "repo_variant") {
        continue;
      }
      changes[name] = value;
    }
    return changes;
  }
  const auto& known = ModelConfigFieldNames();
  for (const std::string& path : mask.paths()) {
    if (std::find(known.begin(), known.end(), path) == known.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("update_mask names unknown field '", path,
                       "'; known fields: ", absl::StrJoin(known, ", ")));
    }
    changes[path] = full.contains(path) ? full[path] : json(nullptr);
  }
  return changes;
}

}  // namespace mm
