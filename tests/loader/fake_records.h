// Records for the loader's tests: a RecordSource over an in-memory map that
// can be made to fail as an unreachable records service does, and the
// record of a test model.
//
//   FakeRecords records;
//   records.Put(TestRecord("k", "m.safetensors", "vae", "checkpoint"));
//   ModelLoader loader({.models_dir = dir, .records = &records});
#ifndef MM_TESTS_LOADER_FAKE_RECORDS_H_
#define MM_TESTS_LOADER_FAKE_RECORDS_H_

#include <map>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/mutex.h"
#include "modelmanager/v1/records.pb.h"
#include "services/loader/record_source.h"

namespace mm::loader {

class FakeRecords : public RecordSource {
 public:
  // NOT_FOUND "unknown model key 'KEY'" for a key never put, or the status
  // given to SetDown.
  absl::StatusOr<modelmanager::v1::Model> Get(const std::string& key) override
      ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    if (!down_.ok()) return down_;
    auto it = records_.find(key);
    if (it == records_.end()) {
      return absl::NotFoundError("unknown model key '" + key + "'");
    }
    return it->second;
  }
  // Adds or replaces the record of record.key().
  void Put(modelmanager::v1::Model record) ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    records_[record.key()] = std::move(record);
  }
  // Every Get fails with `status` from now on (OK: answers again).
  void SetDown(absl::Status status) ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    down_ = std::move(status);
  }

 private:
  Mutex mu_;
  std::map<std::string, modelmanager::v1::Model> records_ ABSL_GUARDED_BY(mu_);
  absl::Status down_ ABSL_GUARDED_BY(mu_);
};

// The record of a model of `type` and `format` (base sd-1) whose file or
// folder is `path` under the models folder.
inline modelmanager::v1::Model TestRecord(const std::string& key,
                                          const std::string& path,
                                          const std::string& type,
                                          const std::string& format) {
  modelmanager::v1::Model record;
  record.set_key(key);
  record.set_path(path);
  record.set_type(type);
  record.set_format(format);
  record.set_base("sd-1");
  return record;
}

}  // namespace mm::loader

#endif  // MM_TESTS_LOADER_FAKE_RECORDS_H_
