#include "services/records/store_util.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/paging.h"
#include "common/status.h"

namespace mm::records {
namespace {

using nlohmann::json;

std::string StringField(const json& config, const char* field) {
  auto it = config.find(field);
  if (it == config.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

bool ListContains(const json& config, const char* field,
                  const std::string& value) {
  auto it = config.find(field);
  if (it == config.end() || !it->is_array()) return false;
  return std::any_of(it->begin(), it->end(), [&](const json& item) {
    return item.is_string() && item.get<std::string>() == value;
  });
}

// Identifies the filters and order a page token belongs to.
std::string QueryFingerprint(const ModelQuery& q) {
  json f = json::array();
  auto opt = [](const std::optional<std::string>& v) {
    return v ? json(*v) : json(nullptr);
  };
  f.push_back(opt(q.name));
  f.push_back(opt(q.base));
  f.push_back(opt(q.type));
  f.push_back(opt(q.format));
  f.push_back(opt(q.path));
  f.push_back(opt(q.hash));
  f.push_back(q.tags);
  f.push_back(static_cast<int>(q.order));
  f.push_back(q.descending);
  return f.dump();
}

}  // namespace

std::string AsciiLower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

json SortValues(const StoredModel& model, ModelOrder order) {
  const json& c = model.config;
  json values = json::array();
  switch (order) {
    case ModelOrder::kDefault:
      values = {StringField(c, "type"), StringField(c, "base"),
                AsciiLower(StringField(c, "name")), StringField(c, "format")};
      break;
    case ModelOrder::kName:
      values = {AsciiLower(StringField(c, "name"))};
      break;
    case ModelOrder::kBase:
      values = {StringField(c, "base")};
      break;
    case ModelOrder::kType:
      values = {StringField(c, "type")};
      break;
    case ModelOrder::kFormat:
      values = {StringField(c, "format")};
      break;
    case ModelOrder::kSize: {
      auto it = c.find("file_size");
      values = {it != c.end() && it->is_number_integer() ? it->get<int64_t>()
                                                         : int64_t{0}};
      break;
    }
    case ModelOrder::kCreatedAt:
      values = {model.created_at_us};
      break;
    case ModelOrder::kUpdatedAt:
      values = {model.updated_at_us};
      break;
    case ModelOrder::kPath:
      values = {StringField(c, "path")};
      break;
  }
  values.push_back(StringField(c, "key"));
  return values;
}

bool MatchesQuery(const StoredModel& model, const ModelQuery& q) {
  const json& c = model.config;
  if (q.name && StringField(c, "name") != *q.name) return false;
  if (q.base && StringField(c, "base") != *q.base &&
      !ListContains(c, "compatible_bases", *q.base)) {
    return false;
  }
  if (q.type && StringField(c, "type") != *q.type) return false;
  if (q.format && StringField(c, "format") != *q.format) return false;
  if (q.path && StringField(c, "path") != *q.path) return false;
  if (q.hash && StringField(c, "hash") != *q.hash) return false;
  for (const std::string& tag : q.tags) {
    if (!ListContains(c, "tags", tag)) return false;
  }
  return true;
}

std::string EncodePageToken(const ModelQuery& query,
                            const json& last_sort_values) {
  return mm::EncodePageToken(QueryFingerprint(query), last_sort_values);
}

absl::StatusOr<json> DecodePageToken(const ModelQuery& query) {
  ASSIGN_OR_RETURN(json after, mm::DecodePageToken(query.page_token,
                                                   QueryFingerprint(query)));
  if (after.is_null()) return after;
  json expected = SortValues(StoredModel{}, query.order);
  if (!after.is_array() || after.size() != expected.size()) {
    return absl::InvalidArgumentError("page_token is malformed");
  }
  for (size_t i = 0; i < after.size(); ++i) {
    if (after[i].type() != expected[i].type() &&
        !(after[i].is_number_integer() && expected[i].is_number_integer())) {
      return absl::InvalidArgumentError("page_token is malformed");
    }
  }
  return after;
}

void ChangeNotifier::Notify(int64_t revision) {
  MutexLock lock(&mu_);
  latest_ = std::max(latest_, revision);
}

void ChangeNotifier::Poke() {
  MutexLock lock(&mu_);
  ++pokes_;
}

void ChangeNotifier::Wait(int64_t after, absl::Time deadline) {
  MutexLock lock(&mu_);
  int64_t pokes = pokes_;
  mu_.AwaitWithDeadline(
      [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return latest_ > after || pokes_ != pokes || interrupted_;
      },
      deadline);
}

void ChangeNotifier::Interrupt() {
  MutexLock lock(&mu_);
  interrupted_ = true;
}

}  // namespace mm::records
