// libFuzzer target: the data-only unpickler, and the torch index builder on
// whatever it produces (with no storages, so tensors are refused cleanly);
// every error message and finding must be printable UTF-8
// (message_check.h).
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "model/torch_checkpoint.h"
#include "model/unpickler.h"
#include "model/zip_archive.h"
#include "tests/fuzz/message_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  mm::model::UnpicklerOptions options;
  // Small limits keep each run fast; the logic is the same.
  options.max_objects = 100000;
  options.max_memo_entries = 10000;
  absl::StatusOr<mm::model::PickleData> pickle =
      mm::model::Unpickle(bytes, options);
  mm::fuzz::CheckMessage(pickle.status());
  if (!pickle.ok()) return 0;
  for (const std::string& finding : pickle->findings) {
    mm::fuzz::CheckMessage(finding);
  }
  static const auto* const empty_archive = [] {
    // An empty zip: just an end-of-central-directory record.
    std::string eocd("PK\x05\x06", 4);
    eocd.append(18, '\0');
    return mm::model::ZipArchive::FromBytes(eocd)->release();
  }();
  absl::StatusOr<mm::model::TensorIndex> index =
      mm::model::TensorIndexFromPickle(*pickle, "archive/", *empty_archive);
  mm::fuzz::CheckMessage(index.status());
  if (index.ok()) (void)index->scalars.dump();
  return 0;
}
