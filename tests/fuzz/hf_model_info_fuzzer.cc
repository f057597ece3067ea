// libFuzzer target for ParseHfModelInfo and what consumes its output: any
// input must be refused with an error or give files whose selection and
// local paths are safe. Every error message must be printable UTF-8
// (message_check.h).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "model/huggingface.h"
#include "tests/fuzz/message_check.h"

namespace {

bool IsSafeRelative(std::string_view path) {
  if (path.empty() || path.front() == '/') return false;
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view segment = path.substr(start, end - start);
    if (segment.empty() || segment == "." || segment == ".." ||
        segment.find('\\') != std::string_view::npos) {
      return false;
    }
    start = end + 1;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mm::model;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<HfModelInfo> info = ParseHfModelInfo(text);
  if (!info.ok()) {
    mm::fuzz::CheckMessage(info.status());
    if (info.status().code() != absl::StatusCode::kDataLoss) std::abort();
    return 0;
  }
  if (info->raw_json != text || info->id.empty()) std::abort();
  for (const HfFile& file : info->files) {
    if (!IsSafeRelative(file.path)) std::abort();
    if (!IsSafeRelative(HfLocalPath(info->id, {}, file.path))) std::abort();
  }
  for (std::string_view variant :
       {"", "fp16", "fp32", "onnx", "openvino", "flax"}) {
    absl::StatusOr<std::vector<HfFile>> chosen =
        SelectHfFiles(info->files, variant, {});
    if (!chosen.ok()) {
      if (chosen.status().code() != absl::StatusCode::kNotFound) std::abort();
      continue;
    }
    if (chosen->empty()) std::abort();
    for (const HfFile& file : *chosen) {
      if (!IsSafeRelative(HfLocalPath(info->id, {"unet"}, file.path))) {
        std::abort();
      }
    }
  }
  if (!info->files.empty()) {
    const std::string& first = info->files.front().path;
    absl::StatusOr<std::vector<HfFile>> one =
        SelectHfFiles(info->files, "", {first});
    if (!one.ok() && one.status().code() != absl::StatusCode::kNotFound) {
      std::abort();
    }
  }
  return 0;
}
