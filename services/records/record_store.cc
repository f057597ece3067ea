#include "services/records/record_store.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/records/sql_record_store.h"
#include "services/records/yaml_record_store.h"

namespace mm::records {

absl::StatusOr<std::unique_ptr<RecordStore>> OpenRecordStore(
    const std::string& url, metrics::Registry* metrics) {
  if (absl::EndsWith(url, ".yaml") || absl::EndsWith(url, ".yml")) {
    std::string path = url;
    if (absl::StartsWith(path, "yaml:")) path = path.substr(5);
    return OpenYamlRecordStore(path);
  }
  if (absl::StartsWith(url, "sqlite:") || absl::EndsWith(url, ".db") ||
      absl::StartsWith(url, "postgresql://") ||
      absl::StartsWith(url, "postgres://")) {
    return OpenSqlRecordStore(url, metrics);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--db '", url,
                   "' is not a record store URL: use sqlite:PATH (or PATH.db), "
                   "postgresql://..., or PATH.yaml"));
}

}  // namespace mm::records
