// libFuzzer target: the zip reader (central directory, local headers,
// stored entries) and the torch checkpoint reader on top of it; every error
// message and finding must be printable UTF-8 (message_check.h).
#include <cstddef>
#include <cstdint>
#include <string>

#include "model/torch_checkpoint.h"
#include "model/zip_archive.h"
#include "tests/fuzz/message_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<std::unique_ptr<mm::model::ZipArchive>> zip =
      mm::model::ZipArchive::FromBytes(bytes);
  if (zip.ok()) {
    for (const mm::model::ZipEntry& entry : (*zip)->entries()) {
      mm::fuzz::CheckMessage((*zip)->ReadEntry(entry, 1 << 20).status());
    }
  } else {
    mm::fuzz::CheckMessage(zip.status());
  }
  mm::model::TorchCheckpointOptions options;
  options.unpickler.max_objects = 100000;
  absl::StatusOr<mm::model::TensorIndex> index =
      mm::model::ParseTorchCheckpoint(std::move(bytes), options);
  mm::fuzz::CheckMessage(index.status());
  if (index.ok()) {
    (void)index->scalars.dump();
    for (const std::string& finding : index->findings) {
      mm::fuzz::CheckMessage(finding);
    }
  }
  return 0;
}
