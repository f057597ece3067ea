#include "cli/output.h"

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "google/protobuf/util/json_util.h"
#include "proto/record_json.h"

namespace mm::cli {
namespace {

using modelmanager::v1::Model;
using modelmanager::v1::ModelEvent;

// The fields shown first by `mm models get`, in this order; the rest
// follow alphabetically.
const std::vector<std::string>& LeadingFields() {
  static const auto* const kFields = new std::vector<std::string>{
      "key",       "name", "base",   "type",        "format",     "path",
      "file_size", "hash", "source", "source_type", "description"};
  return *kFields;
}

// A config value as one line of text: strings bare, lists of strings
// comma-separated, everything else as compact JSON.
std::string ValueText(const std::string& field, const nlohmann::json& value) {
  if (field == "file_size" && value.is_number_integer()) {
    int64_t bytes = value.get<int64_t>();
    return absl::StrCat(HumanSize(bytes), " (", bytes, " bytes)");
  }
  if (value.is_string()) return value.get<std::string>();
  if (value.is_array() &&
      std::all_of(value.begin(), value.end(),
                  [](const nlohmann::json& v) { return v.is_string(); })) {
    std::vector<std::string> items;
    for (const auto& item : value) items.push_back(item.get<std::string>());
    return absl::StrJoin(items, ", ");
  }
  return JsonText(value, -1);
}

std::string TagOf(const Model& model) {
  return absl::StrCat(model.type(), ".", model.format(), ".", model.base());
}

}  // namespace

std::string HumanSize(int64_t bytes) {
  if (bytes < 0) return "-";
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB",
                                           "TiB", "PiB", "EiB"};
  double value = static_cast<double>(bytes) / 1024.0;
  size_t unit = 0;
  // Round first so 1023.96 KiB prints as "1.0 MiB", not "1024.0 KiB".
  while (value >= 1023.95 && unit + 1 < std::size(kUnits)) {
    value /= 1024.0;
    ++unit;
  }
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.1f %s", value, kUnits[unit]);
  return buffer;
}

std::string FormatTimestamp(const google::protobuf::Timestamp& timestamp) {
  if (timestamp.seconds() == 0 && timestamp.nanos() == 0) return "-";
  absl::Time time = absl::FromUnixSeconds(timestamp.seconds()) +
                    absl::Nanoseconds(timestamp.nanos());
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", time, absl::UTCTimeZone());
}

TextTable::TextTable(std::vector<std::string> header)
    : header_(std::move(header)) {}

void TextTable::AddRow(std::vector<std::string> row) {
  row.resize(header_.size());
  rows_.push_back(std::move(row));
}

void TextTable::Print(std::ostream& out) const {
  std::vector<size_t> widths(header_.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  };
  measure(header_);
  for (const auto& row : rows_) measure(row);
  auto print_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) {
        line.append(widths[i] - row[i].size() + 2, ' ');
      }
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << '\n';
  };
  print_row(header_);
  for (const auto& row : rows_) print_row(row);
}

std::string JsonText(const nlohmann::json& value, int indent) {
  return value.dump(indent, ' ', /*ensure_ascii=*/false,
                    nlohmann::json::error_handler_t::replace);
}

absl::StatusOr<nlohmann::json> ProtoJson(
    const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string text;
  auto status =
      google::protobuf::util::MessageToJsonString(message, &text, options);
  if (!status.ok()) {
    return absl::InternalError(absl::StrCat("cannot print ",
                                            message.GetTypeName(),
                                            " as JSON: ", status.ToString()));
  }
  return nlohmann::json::parse(text);
}

nlohmann::json ModelJson(const Model& model) {
  return ModelToConfigJson(model);
}

void PrintModelList(const std::vector<Model>& models, bool json,
                    std::ostream& out) {
  if (json) {
    nlohmann::json list = nlohmann::json::array();
    for (const Model& model : models) list.push_back(ModelJson(model));
    out << JsonText(list) << '\n';
    return;
  }
  if (models.empty()) {
    out << "No models.\n";
    return;
  }
  TextTable table({"KEY", "NAME", "BASE", "TYPE", "FORMAT", "SIZE", "PATH"});
  for (const Model& model : models) {
    table.AddRow({model.key(), model.name(), model.base(), model.type(),
                  model.format(), HumanSize(model.file_size()), model.path()});
  }
  table.Print(out);
}

void PrintFields(const std::vector<std::pair<std::string, std::string>>& lines,
                 std::ostream& out) {
  size_t width = 0;
  for (const auto& [field, value] : lines) {
    width = std::max(width, field.size());
  }
  for (const auto& [field, value] : lines) {
    std::string line = absl::StrCat(field, ":");
    line.append(width - field.size() + 1, ' ');
    line += value;
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << '\n';
  }
}

void PrintModel(const Model& model, bool json, std::ostream& out) {
  nlohmann::json config = ModelJson(model);
  if (json) {
    out << JsonText(config) << '\n';
    return;
  }
  std::vector<std::pair<std::string, std::string>> lines;
  for (const std::string& field : LeadingFields()) {
    auto it = config.find(field);
    if (it == config.end()) continue;
    lines.emplace_back(field, ValueText(field, *it));
    config.erase(it);
  }
  // nlohmann::json objects iterate in key order, so the rest is sorted.
  for (auto it = config.begin(); it != config.end(); ++it) {
    lines.emplace_back(it.key(), ValueText(it.key(), it.value()));
  }
  lines.emplace_back("revision", absl::StrCat(model.revision()));
  lines.emplace_back("etag", model.etag());
  lines.emplace_back("created", FormatTimestamp(model.create_time()));
  lines.emplace_back("updated", FormatTimestamp(model.update_time()));
  PrintFields(lines, out);
}

std::string FormatEvent(const ModelEvent& event, bool json) {
  std::string type = ModelEvent::Type_Name(event.type());
  if (json) {
    nlohmann::json object = {{"type", type}, {"revision", event.revision()}};
    if (event.has_model()) object["model"] = ModelJson(event.model());
    return JsonText(object, -1);
  }
  std::string line = absl::StrCat(type, " revision ", event.revision());
  if (event.has_model()) {
    const Model& model = event.model();
    absl::StrAppend(&line, " ", model.key(), " ", model.name(), " (",
                    TagOf(model), ")");
    if (!model.path().empty()) absl::StrAppend(&line, " ", model.path());
  }
  return line;
}

}  // namespace mm::cli
