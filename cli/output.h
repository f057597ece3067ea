// How `mm` prints things: aligned text tables and `field: value` blocks for
// people, and JSON (the reference's config JSON for a record, an array for a
// list) for programs.
//
//   TextTable table({"KEY", "NAME"});
//   table.AddRow({model.key(), model.name()});
//   table.Print(std::cout);
//
// Thread-safety: TextTable is a plain value; the functions are reentrant.
#ifndef MM_CLI_OUTPUT_H_
#define MM_CLI_OUTPUT_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"
#include "modelmanager/v1/records.pb.h"
#include "nlohmann/json.hpp"

namespace mm::cli {

// "0 B", "512 B", "1.5 KiB", "3.9 GiB": binary units, one decimal from KiB
// on. Negative sizes print as "-".
std::string HumanSize(int64_t bytes);

// RFC 3339 in UTC ("2026-01-02T03:04:05Z"); "-" for an unset timestamp.
std::string FormatTimestamp(const google::protobuf::Timestamp& timestamp);

// Left-aligned columns separated by two spaces; the last column is not
// padded, so long paths do not leave trailing blanks.
class TextTable {
 public:
  explicit TextTable(std::vector<std::string> header);
  // Missing cells print empty; extra cells are ignored.
  void AddRow(std::vector<std::string> row);
  void Print(std::ostream& out) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// JSON text, indented by 2, never throwing: invalid UTF-8 in a value is
// replaced (U+FFFD) rather than failing the print. `indent` < 0 prints one
// line.
std::string JsonText(const nlohmann::json& value, int indent = 2);

// A protobuf message as JSON: proto field names, and every field, defaults
// included (scripts read `"bytes": 0` and `"done": false` rather than
// missing keys). INTERNAL only if protobuf cannot print the message.
absl::StatusOr<nlohmann::json> ProtoJson(
    const google::protobuf::Message& message);

// A record as JSON: exactly the reference's config dict (ModelToConfigJson),
// no output-only fields.
nlohmann::json ModelJson(const modelmanager::v1::Model& model);

// The list table (KEY NAME BASE TYPE FORMAT SIZE PATH) or a JSON array.
void PrintModelList(const std::vector<modelmanager::v1::Model>& models,
                    bool json, std::ostream& out);

// `field: value` lines with the values aligned after the longest field;
// trailing blanks trimmed.
void PrintFields(const std::vector<std::pair<std::string, std::string>>& lines,
                 std::ostream& out);

// One record: `field: value` lines (config fields, then revision, etag and
// times), or its config JSON.
void PrintModel(const modelmanager::v1::Model& model, bool json,
                std::ostream& out);

// One change-feed event on one line: "ADDED revision 7 KEY name
// (main.checkpoint.sd-1) path", or with `json` a one-line object
// {"type": "ADDED", "revision": 7, "model": {...}}.
std::string FormatEvent(const modelmanager::v1::ModelEvent& event, bool json);

}  // namespace mm::cli

#endif  // MM_CLI_OUTPUT_H_
