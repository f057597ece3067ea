#include "model/tensor_index.h"

#include <utility>

#include "absl/strings/str_cat.h"

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
        "tensor '", tensor.name,
        "' appears twice in the tensor table; the file is corrupt"));
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

namespace {

// Length of the well-formed UTF-8 sequence at the start of `text`, or 0.
size_t Utf8SequenceLength(absl::string_view text) {
  const auto byte = [&](size_t i) {
    return static_cast<unsigned char>(text[i]);
  };
  const unsigned char lead = byte(0);
  if (lead < 0x80) return 1;
  size_t length;
  unsigned char low = 0x80;
  unsigned char high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;   // overlong
    if (lead == 0xED) high = 0x9F;  // surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;   // overlong
    if (lead == 0xF4) high = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (text.size() < length) return 0;
  if (byte(1) < low || byte(1) > high) return 0;
  for (size_t i = 2; i < length; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xBF) return 0;
  }
  return length;
}

}  // namespace

bool IsValidUtf8(absl::string_view text) {
  while (!text.empty()) {
    const size_t length = Utf8SequenceLength(text);
    if (length == 0) return false;
    text.remove_prefix(length);
  }
  return true;
}

std::string SanitizeUtf8(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  while (!text.empty()) {
    const size_t length = Utf8SequenceLength(text);
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
