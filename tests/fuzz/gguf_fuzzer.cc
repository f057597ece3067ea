// libFuzzer target: the GGUF header reader on arbitrary bytes; its error
// messages must be printable UTF-8 (message_check.h).
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "model/gguf.h"
#include "tests/fuzz/message_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<mm::model::TensorIndex> index = mm::model::ParseGguf(bytes);
  if (!index.ok()) mm::fuzz::CheckMessage(index.status());
  if (index.ok()) {
    for (const mm::model::TensorInfo& tensor : index->tensors) {
      if (tensor.offset > size || tensor.byte_size > size - tensor.offset) {
        __builtin_trap();
      }
    }
    (void)index->scalars.dump();
  }
  return 0;
}
