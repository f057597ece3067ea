#include "model/tensor_index.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace mm::model {

absl::string_view WeightsFormatName(WeightsFormat format) {
  switch (format) {
    case WeightsFormat::kSafetensors:
      return "safetensors";
    case WeightsFormat::kTorchZip:
      return "torch_zip";
    case WeightsFormat::kGguf:
      return "gguf";
  }
  return "unknown";
}

absl::Status TensorIndex::AddTensor(TensorInfo tensor) {
  if (index_by_name.size() != tensors.size()) {
    // `tensors` was edited directly; rebuild so the duplicate check holds.
    index_by_name.clear();
    for (size_t i = 0; i < tensors.size(); ++i) {
      index_by_name.emplace(tensors[i].name, i);
    }
  }
  auto [it, inserted] = index_by_name.emplace(tensor.name, tensors.size());
  if (!inserted) {
    return absl::DataLossError(absl::StrCat(
        "tensor ", QuotedForMessage(tensor.name),
        " appears twice in the tensor table; the file is corrupt"));
  }
  tensors.push_back(std::move(tensor));
  return absl::OkStatus();
}

const TensorInfo* TensorIndex::Find(absl::string_view name) const {
  if (index_by_name.size() == tensors.size()) {
    auto it = index_by_name.find(name);
    if (it == index_by_name.end()) return nullptr;
    if (it->second < tensors.size() && tensors[it->second].name == name) {
      return &tensors[it->second];
    }
  }
  // `tensors` was filled or edited without AddTensor: scan.
  for (const TensorInfo& tensor : tensors) {
    if (tensor.name == name) return &tensor;
  }
  return nullptr;
}

bool IsValidUtf8(absl::string_view text) {
  return mm::IsValidUtf8(AsStd(text));
}

std::string SanitizeUtf8(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  while (!text.empty()) {
    const size_t length = Utf8SequenceLength(AsStd(text));
    if (length == 0) {
      out += "\xEF\xBF\xBD";
      text.remove_prefix(1);
    } else {
      out.append(text.data(), length);
      text.remove_prefix(length);
    }
  }
  return out;
}

}  // namespace mm::model
