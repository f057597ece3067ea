// Where the loader gets a model's record: an interface, so the loader's
// logic is tested with an in-memory map, and the real one that asks the
// records service.
//
// Thread-safety: implementations are thread-safe.
//
//   ASSIGN_OR_RETURN(auto source, RecordsServiceSource::Create(address, {}));
//   ASSIGN_OR_RETURN(modelmanager::v1::Model record, source->Get("abc"));
#ifndef MM_SERVICES_LOADER_RECORD_SOURCE_H_
#define MM_SERVICES_LOADER_RECORD_SOURCE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/client.h"
#include "modelmanager/v1/records.grpc.pb.h"

namespace mm::loader {

class RecordSource {
 public:
  virtual ~RecordSource() = default;
  // The record of `key`. NOT_FOUND for an unknown key; UNAVAILABLE when the
  // source cannot be reached.
  virtual absl::StatusOr<modelmanager::v1::Model> Get(
      const std::string& key) = 0;
};

// Asks a records service (GetModel) with a deadline, so a records service
// that is down or hung is UNAVAILABLE within `timeout`, never a hang.
class RecordsServiceSource : public RecordSource {
 public:
  static absl::StatusOr<std::unique_ptr<RecordsServiceSource>> Create(
      const std::string& address, const ClientOptions& options,
      absl::Duration timeout = absl::Seconds(10));

  absl::StatusOr<modelmanager::v1::Model> Get(const std::string& key) override;

 private:
  RecordsServiceSource(
      std::string address,
      std::unique_ptr<modelmanager::v1::ModelRecords::Stub> stub,
      absl::Duration timeout)
      : address_(std::move(address)),
        stub_(std::move(stub)),
        timeout_(timeout) {}

  std::string address_;
  std::unique_ptr<modelmanager::v1::ModelRecords::Stub> stub_;
  absl::Duration timeout_;
};

}  // namespace mm::loader

#endif  // MM_SERVICES_LOADER_RECORD_SOURCE_H_
