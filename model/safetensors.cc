#include "model/safetensors.h"

#include <algorithm>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/strings.h"
#include "model/weights_file.h"
#include "nlohmann/json.hpp"

namespace mm::model {
namespace {

// Deeper JSON than this is not a safetensors header (real ones have depth 3)
// and is refused before nlohmann builds a tree from it.
constexpr int kMaxHeaderJsonDepth = 16;

uint64_t LoadLittleEndian64(absl::string_view bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) {
    value = (value << 8) | static_cast<unsigned char>(bytes[i]);
  }
  return value;
}

// Checks the nesting depth and counts the top-level members (one ':' at
// depth 1 each) in one pass, so that duplicate keys, which nlohmann would
// silently merge, can be detected without its much slower callback parser.
absl::StatusOr<uint64_t> ScanJson(absl::string_view json) {
  int depth = 0;
  uint64_t top_level_members = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : json) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxHeaderJsonDepth) {
        return absl::DataLossError(absl::StrCat(
            "safetensors header nests JSON deeper than ", kMaxHeaderJsonDepth,
            " levels; the file is corrupt or not safetensors"));
      }
    } else if (c == '}' || c == ']') {
      --depth;
    } else if (c == ':' && depth == 1) {
      ++top_level_members;
    }
  }
  return top_level_members;
}

// The first top-level key that appears twice (slow; only on the error path).
std::string FindDuplicateKey(absl::string_view json) {
  std::string duplicate;
  absl::flat_hash_set<std::string> keys;
  try {
    (void)nlohmann::json::parse(
        json.begin(), json.end(),
        [&](int depth, nlohmann::json::parse_event_t event,
            nlohmann::json& parsed) {
          if (event == nlohmann::json::parse_event_t::key && depth == 1 &&
              parsed.is_string() && duplicate.empty() &&
              !keys.insert(parsed.get<std::string>()).second) {
            duplicate = parsed.get<std::string>();
          }
          return true;
        });
  } catch (const nlohmann::json::exception&) {
  }
  return duplicate;
}

// A JSON value from the header for a message (short, valid UTF-8).
std::string ShowJson(const nlohmann::json& value) {
  return SafeForMessage(
      value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

// Reads a non-negative JSON integer that fits in uint64.
bool AsUnsigned(const nlohmann::json& value, uint64_t& out) {
  if (value.is_number_unsigned()) {
    out = value.get<uint64_t>();
    return true;
  }
  if (value.is_number_integer() && value.get<int64_t>() >= 0) {
    out = static_cast<uint64_t>(value.get<int64_t>());
    return true;
  }
  return false;
}

absl::StatusOr<TensorInfo> ParseTensorEntry(const std::string& name,
                                            const nlohmann::json& entry,
                                            uint64_t data_start,
                                            uint64_t data_size) {
  const auto bad = [&](absl::string_view what) {
    return absl::DataLossError(
        absl::StrCat("safetensors tensor ", QuotedForMessage(name), ": ", what,
                     "; the file is corrupt or not safetensors"));
  };
  if (!entry.is_object()) return bad("entry is not a JSON object");
  TensorInfo info;
  info.name = name;

  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end() || !dtype_it->is_string()) {
    return bad("field 'dtype' is missing or not a string");
  }
  info.dtype = dtype_it->get<std::string>();
  absl::StatusOr<uint64_t> element_size = SafetensorsDtypeSize(info.dtype);
  if (!element_size.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors tensor ", QuotedForMessage(name), ": ",
                     element_size.status().message()));
  }

  auto shape_it = entry.find("shape");
  if (shape_it == entry.end() || !shape_it->is_array()) {
    return bad("field 'shape' is missing or not an array");
  }
  uint64_t elements = 1;
  bool overflow = false;
  bool has_zero_dim = false;
  for (const nlohmann::json& dim : *shape_it) {
    uint64_t value;
    if (!AsUnsigned(dim, value) ||
        value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return bad(absl::StrCat("shape ", ShowJson(*shape_it),
                              " has a dimension that is not a non-negative "
                              "integer"));
    }
    info.shape.push_back(static_cast<int64_t>(value));
    if (value == 0) has_zero_dim = true;
    if (value != 0 && elements > std::numeric_limits<uint64_t>::max() / value) {
      overflow = true;
    }
    elements *= value;
  }
  // A zero dimension makes the product 0 whatever overflowed before it.
  if (has_zero_dim) {
    elements = 0;
    overflow = false;
  }
  if (overflow ||
      elements > std::numeric_limits<uint64_t>::max() / *element_size) {
    return bad(absl::StrCat("shape ", ShowJson(*shape_it), " of dtype ",
                            info.dtype, " overflows 64-bit byte size"));
  }
  const uint64_t expected_bytes = elements * *element_size;

  auto offsets_it = entry.find("data_offsets");
  uint64_t begin = 0;
  uint64_t end = 0;
  if (offsets_it == entry.end() || !offsets_it->is_array() ||
      offsets_it->size() != 2 || !AsUnsigned((*offsets_it)[0], begin) ||
      !AsUnsigned((*offsets_it)[1], end)) {
    return bad(
        "field 'data_offsets' is missing or not two non-negative integers");
  }
  if (begin > end) {
    return bad(absl::StrCat("data_offsets [", begin, ", ", end,
                            "] end before they begin"));
  }
  if (end > data_size) {
    return bad(absl::StrCat("data_offsets [", begin, ", ", end,
                            "] point past the end of the data area (",
                            data_size, " bytes)"));
  }
  if (end - begin != expected_bytes) {
    return bad(absl::StrCat("data_offsets [", begin, ", ", end, "] hold ",
                            end - begin, " bytes but shape ",
                            ShowJson(*shape_it), " of dtype ", info.dtype,
                            " needs ", expected_bytes));
  }
  info.offset = data_start + begin;
  info.byte_size = expected_bytes;
  return info;
}

}  // namespace

absl::StatusOr<uint64_t> SafetensorsDtypeSize(absl::string_view dtype) {
  static constexpr std::pair<absl::string_view, uint64_t> kSizes[] = {
      {"BOOL", 1},    {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"F8_E8M0", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},     {"BF16", 2},
      {"I32", 4},     {"U32", 4}, {"F32", 4}, {"F64", 8},     {"I64", 8},
      {"U64", 8},     {"C64", 8},
  };
  for (const auto& [name, size] : kSizes) {
    if (name == dtype) return size;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown dtype ", QuotedForMessage(AsStd(dtype)),
      " (known: BOOL U8 I8 F8_E5M2 F8_E4M3 F8_E8M0 I16 U16 F16 BF16 I32 U32 "
      "F32 F64 I64 U64 C64); the file needs a newer reader or is corrupt"));
}

absl::StatusOr<TensorIndex> ParseSafetensorsHeader(absl::string_view bytes,
                                                   uint64_t file_size) {
  if (bytes.size() < 8 || file_size < 8) {
    return absl::DataLossError(absl::StrCat(
        "safetensors file is ", std::min<uint64_t>(bytes.size(), file_size),
        " bytes, shorter than the 8-byte header length; the file is "
        "truncated"));
  }
  const uint64_t header_size = LoadLittleEndian64(bytes);
  if (header_size > kMaxSafetensorsHeaderBytes) {
    return absl::DataLossError(
        absl::StrCat("safetensors header length ", header_size, " exceeds the ",
                     kMaxSafetensorsHeaderBytes,
                     "-byte limit; the file is corrupt or not safetensors"));
  }
  if (header_size > file_size - 8) {
    return absl::DataLossError(absl::StrCat(
        "safetensors header length ", header_size, " runs past the end of the ",
        file_size, "-byte file; the file is truncated or corrupt"));
  }
  if (bytes.size() - 8 < header_size) {
    return absl::DataLossError(absl::StrCat(
        "safetensors header needs ", header_size, " bytes but only ",
        bytes.size() - 8, " were given; the file is truncated"));
  }
  const absl::string_view header_text = bytes.substr(8, header_size);
  const uint64_t data_start = 8 + header_size;
  const uint64_t data_size = file_size - data_start;
  ASSIGN_OR_RETURN(const uint64_t top_level_members, ScanJson(header_text));

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_text.begin(), header_text.end());
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat(
        "safetensors header is not valid JSON (", SafeForMessage(e.what()),
        "); the file is corrupt or not safetensors"));
  }
  if (!header.is_object()) {
    return absl::DataLossError(
        "safetensors header is not a JSON object; the file is corrupt or not "
        "safetensors");
  }
  if (header.size() != top_level_members) {
    return absl::DataLossError(
        absl::StrCat("safetensors header names ",
                     QuotedForMessage(FindDuplicateKey(header_text)),
                     " twice; the file is corrupt"));
  }

  TensorIndex index;
  index.format = WeightsFormat::kSafetensors;
  std::vector<TensorInfo> tensors;
  tensors.reserve(header.size());
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) {
        return absl::DataLossError(
            "safetensors '__metadata__' is not a JSON object of strings; the "
            "file is corrupt");
      }
      nlohmann::json metadata = nlohmann::json::object();
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) {
          return absl::DataLossError(absl::StrCat(
              "safetensors '__metadata__' value for ", QuotedForMessage(key),
              " is not a string; the file is corrupt"));
        }
        metadata[key] = value;
      }
      index.scalars["metadata"] = std::move(metadata);
      continue;
    }
    ASSIGN_OR_RETURN(TensorInfo info,
                     ParseTensorEntry(name, entry, data_start, data_size));
    tensors.push_back(std::move(info));
  }

  // File order, and proof that no two tensors share bytes.
  std::sort(tensors.begin(), tensors.end(),
            [](const TensorInfo& a, const TensorInfo& b) {
              if (a.offset != b.offset) return a.offset < b.offset;
              if (a.byte_size != b.byte_size) return a.byte_size < b.byte_size;
              return a.name < b.name;
            });
  for (size_t i = 1; i < tensors.size(); ++i) {
    const TensorInfo& previous = tensors[i - 1];
    if (tensors[i].offset < previous.offset + previous.byte_size) {
      return absl::DataLossError(absl::StrCat(
          "safetensors tensors ", QuotedForMessage(previous.name), " (bytes ",
          previous.offset - data_start, "..",
          previous.offset - data_start + previous.byte_size, ") and ",
          QuotedForMessage(tensors[i].name), " (from byte ",
          tensors[i].offset - data_start, ") overlap; the file is corrupt"));
    }
  }
  index.tensors.reserve(tensors.size());
  for (TensorInfo& info : tensors) {
    RETURN_IF_ERROR(index.AddTensor(std::move(info)));
  }
  return index;
}

absl::StatusOr<TensorIndex> ReadSafetensorsIndex(
    const std::filesystem::path& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file,
                   RandomAccessFile::Open({.path = path}));
  absl::StatusOr<TensorIndex> index = [&]() -> absl::StatusOr<TensorIndex> {
    const uint64_t file_size = file->size();
    ASSIGN_OR_RETURN(std::string length_bytes,
                     file->ReadAt(0, std::min<uint64_t>(8, file_size),
                                  "safetensors header length"));
    if (file_size < 8) return ParseSafetensorsHeader(length_bytes, file_size);
    const uint64_t header_size = LoadLittleEndian64(length_bytes);
    if (header_size > kMaxSafetensorsHeaderBytes ||
        header_size > file_size - 8) {
      // The parser words the error; nothing more needs reading.
      return ParseSafetensorsHeader(length_bytes, file_size);
    }
    ASSIGN_OR_RETURN(std::string header,
                     file->ReadAt(0, 8 + header_size, "safetensors header"));
    return ParseSafetensorsHeader(header, file_size);
  }();
  if (!index.ok()) return Annotate(index.status(), path.string());
  return index;
}

}  // namespace mm::model
