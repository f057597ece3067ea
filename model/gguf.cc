#include "model/gguf.h"

#include <algorithm>
#include <bit>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/strings.h"
#include "model/weights_file.h"

namespace mm::model {
namespace {

constexpr uint32_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;
// Nested arrays deeper than this are not metadata anyone writes.
constexpr int kMaxArrayNesting = 4;
// Smallest possible tensor info: name length, n_dims, type, offset.
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;
// Smallest possible key/value pair: key length, value type, one byte.
constexpr uint64_t kMinKeyValueBytes = 8 + 4 + 1;
constexpr uint64_t kMaxGgufStringBytes = 64ull << 20;

enum ValueType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

absl::string_view ValueTypeName(uint32_t type) {
  static constexpr absl::string_view kNames[] = {
      "uint8", "int8",   "uint16", "int16",  "uint32", "int32",  "float32",
      "bool",  "string", "array",  "uint64", "int64",  "float64"};
  return type < std::size(kNames) ? kNames[type] : "unknown";
}

uint64_t FixedValueSize(uint32_t type) {
  switch (type) {
    case kU8:
    case kI8:
    case kBool:
      return 1;
    case kU16:
    case kI16:
      return 2;
    case kU32:
    case kI32:
    case kF32:
      return 4;
    case kU64:
    case kI64:
    case kF64:
      return 8;
    default:
      return 0;
  }
}

// The header parser. When `bytes` is a prefix of a longer file and runs out,
// it reports kNeedMore instead of truncation so the file reader can fetch
// more.
class GgufParser {
 public:
  GgufParser(absl::string_view bytes, uint64_t file_size)
      : bytes_(bytes), file_size_(file_size) {}

  bool needs_more() const { return needs_more_; }

  absl::StatusOr<TensorIndex> Parse() {
    ASSIGN_OR_RETURN(absl::string_view magic, Bytes(4, "magic"));
    if (magic != "GGUF") {
      return absl::InvalidArgumentError(
          "file does not start with the GGUF magic; it is not a GGUF file");
    }
    ASSIGN_OR_RETURN(uint64_t version, Unsigned(4, "version"));
    if (version == 1) {
      return absl::UnimplementedError(
          "GGUF version 1 is not supported (2 and 3 are); convert the file "
          "with a current llama.cpp");
    }
    if (version != 2 && version != 3) {
      const uint32_t swapped = ((version & 0xFF) << 24) |
                               ((version & 0xFF00) << 8) |
                               ((version >> 8) & 0xFF00) | (version >> 24);
      if (swapped == 2 || swapped == 3) {
        return absl::UnimplementedError(
            "GGUF file is big-endian; only little-endian GGUF is supported");
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "GGUF version ", version,
          " is not supported (2 and 3 are); the file is corrupt or newer"));
    }
    ASSIGN_OR_RETURN(uint64_t tensor_count, Unsigned(8, "tensor_count"));
    ASSIGN_OR_RETURN(uint64_t kv_count, Unsigned(8, "kv_count"));
    if (tensor_count > kMaxGgufTensors) {
      return absl::InvalidArgumentError(absl::StrCat(
          "GGUF tensor_count ", tensor_count, " exceeds the limit of ",
          kMaxGgufTensors, "; the file is corrupt"));
    }
    if (kv_count > kMaxGgufMetadataPairs) {
      return absl::InvalidArgumentError(
          absl::StrCat("GGUF kv_count ", kv_count, " exceeds the limit of ",
                       kMaxGgufMetadataPairs, "; the file is corrupt"));
    }
    if (tensor_count * kMinTensorInfoBytes + kv_count * kMinKeyValueBytes >
        file_size_ - pos_) {
      return absl::DataLossError(absl::StrCat(
          "GGUF header declares ", tensor_count, " tensors and ", kv_count,
          " metadata pairs, more than the ", file_size_,
          "-byte file can hold; the file is truncated or corrupt"));
    }

    TensorIndex index;
    index.format = WeightsFormat::kGguf;
    nlohmann::json metadata = nlohmann::json::object();
    uint64_t alignment = kDefaultAlignment;
    for (uint64_t i = 0; i < kv_count; ++i) {
      ASSIGN_OR_RETURN(std::string key, String("metadata key"));
      ASSIGN_OR_RETURN(uint64_t type, Unsigned(4, "metadata value type"));
      const std::string safe_key = SanitizeUtf8(key);
      // How messages name the value: escaped and short, whatever the key.
      const std::string label =
          absl::StrCat("metadata ", QuotedForMessage(key));
      if (metadata.contains(safe_key)) {
        return absl::DataLossError(absl::StrCat(
            "GGUF ", label, " appears twice; the file is corrupt"));
      }
      if (key == "general.alignment") {
        if (type != kU32) {
          return absl::DataLossError(absl::StrCat(
              "GGUF general.alignment has type ", ValueTypeName(type),
              ", not uint32; the file is corrupt"));
        }
        ASSIGN_OR_RETURN(alignment, Unsigned(4, "general.alignment"));
        if (alignment == 0 || !std::has_single_bit(alignment)) {
          return absl::DataLossError(
              absl::StrCat("GGUF general.alignment ", alignment,
                           " is not a power of two; the file is corrupt"));
        }
        metadata[safe_key] = alignment;
        continue;
      }
      ASSIGN_OR_RETURN(nlohmann::json value,
                       Value(static_cast<uint32_t>(type), label, 0));
      metadata[safe_key] = std::move(value);
    }
    index.scalars["metadata"] = std::move(metadata);

    struct Placed {
      TensorInfo info;
      uint64_t relative_offset;
    };
    std::vector<Placed> tensors;
    tensors.reserve(tensor_count);
    for (uint64_t i = 0; i < tensor_count; ++i) {
      ASSIGN_OR_RETURN(std::string name, String("tensor name"));
      if (!IsValidUtf8(name)) {
        return absl::DataLossError(
            absl::StrCat("GGUF tensor ", i,
                         " has a name that is not valid UTF-8; the file "
                         "is corrupt"));
      }
      const auto bad = [&](absl::string_view what) {
        return absl::DataLossError(absl::StrCat("GGUF tensor ",
                                                QuotedForMessage(name), ": ",
                                                what, "; the file is corrupt"));
      };
      ASSIGN_OR_RETURN(uint64_t n_dims, Unsigned(4, "tensor n_dims"));
      if (n_dims > kMaxDims) {
        return bad(absl::StrCat("n_dims ", n_dims, " exceeds ", kMaxDims));
      }
      std::vector<uint64_t> dims;
      uint64_t elements = 1;
      bool overflow = false;
      for (uint64_t d = 0; d < n_dims; ++d) {
        ASSIGN_OR_RETURN(uint64_t dim, Unsigned(8, "tensor dimension"));
        if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
          overflow = true;
        }
        if (dim != 0 && elements > std::numeric_limits<uint64_t>::max() / dim) {
          overflow = true;
        }
        elements *= dim;
        dims.push_back(dim);
      }
      const bool has_zero_dim =
          std::find(dims.begin(), dims.end(), 0) != dims.end();
      const bool dim_too_large =
          std::any_of(dims.begin(), dims.end(), [](uint64_t d) {
            return d >
                   static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
          });
      if (has_zero_dim) {
        elements = 0;
        overflow = dim_too_large;
      }
      ASSIGN_OR_RETURN(uint64_t type_id, Unsigned(4, "tensor type"));
      ASSIGN_OR_RETURN(uint64_t offset, Unsigned(8, "tensor offset"));
      absl::StatusOr<GgmlTypeInfo> type =
          GgmlType(static_cast<uint32_t>(type_id));
      if (!type.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("GGUF tensor ", QuotedForMessage(name), ": ",
                         type.status().message()));
      }
      if (overflow) return bad("its dimensions overflow 64-bit sizes");
      const uint64_t row = dims.empty() ? 1 : dims[0];
      if (row % type->block_size != 0) {
        return bad(absl::StrCat("innermost dimension ", row,
                                " is not a multiple of the ", type->name,
                                " block size ", type->block_size));
      }
      const uint64_t blocks = elements / type->block_size;
      if (blocks > std::numeric_limits<uint64_t>::max() / type->type_size) {
        return bad("its byte size overflows 64 bits");
      }
      if (offset % alignment != 0) {
        return bad(absl::StrCat("offset ", offset,
                                " is not a multiple of the alignment ",
                                alignment));
      }
      Placed placed;
      placed.info.name = std::move(name);
      placed.info.dtype = std::string(type->name);
      for (auto it = dims.rbegin(); it != dims.rend(); ++it) {
        placed.info.shape.push_back(static_cast<int64_t>(*it));
      }
      placed.info.byte_size = blocks * type->type_size;
      placed.relative_offset = offset;
      tensors.push_back(std::move(placed));
    }

    // Data starts at the next multiple of the alignment.
    const uint64_t padding = (alignment - pos_ % alignment) % alignment;
    if (pos_ + padding > file_size_) {
      return absl::DataLossError(
          absl::StrCat("GGUF data section would start at byte ", pos_ + padding,
                       ", past the end of the ", file_size_,
                       "-byte file; the file is "
                       "truncated"));
    }
    const uint64_t data_start = pos_ + padding;
    const uint64_t data_size = file_size_ - data_start;
    std::sort(tensors.begin(), tensors.end(),
              [](const Placed& a, const Placed& b) {
                if (a.relative_offset != b.relative_offset) {
                  return a.relative_offset < b.relative_offset;
                }
                return a.info.byte_size < b.info.byte_size;
              });
    uint64_t previous_end = 0;
    std::string previous_name;
    for (Placed& placed : tensors) {
      const uint64_t offset = placed.relative_offset;
      if (offset > data_size || placed.info.byte_size > data_size - offset) {
        return absl::DataLossError(absl::StrCat(
            "GGUF tensor ", QuotedForMessage(placed.info.name), " (",
            placed.info.byte_size, " bytes at data offset ", offset,
            ") runs past the end of the file; the file is truncated"));
      }
      if (offset < previous_end) {
        return absl::DataLossError(
            absl::StrCat("GGUF tensors ", QuotedForMessage(previous_name),
                         " and ", QuotedForMessage(placed.info.name),
                         " overlap; the file is corrupt"));
      }
      previous_end = offset + placed.info.byte_size;
      previous_name = placed.info.name;
      placed.info.offset = data_start + offset;
      RETURN_IF_ERROR(index.AddTensor(std::move(placed.info)));
    }
    return index;
  }

 private:
  absl::Status Short(absl::string_view what, uint64_t count) {
    if (bytes_.size() < file_size_) needs_more_ = true;
    return absl::DataLossError(
        absl::StrCat("GGUF ", what, " (", count, " bytes at offset ", pos_,
                     ") runs past the end of the ",
                     std::min<uint64_t>(bytes_.size(), file_size_),
                     "-byte header; the file is truncated or corrupt"));
  }

  absl::StatusOr<absl::string_view> Bytes(uint64_t count,
                                          absl::string_view what) {
    const uint64_t available =
        std::min<uint64_t>(bytes_.size(), file_size_) -
        std::min<uint64_t>(pos_, std::min<uint64_t>(bytes_.size(), file_size_));
    if (count > available) return Short(what, count);
    absl::string_view out = bytes_.substr(pos_, count);
    pos_ += count;
    return out;
  }

  absl::StatusOr<uint64_t> Unsigned(int width, absl::string_view what) {
    ASSIGN_OR_RETURN(absl::string_view raw, Bytes(width, what));
    uint64_t value = 0;
    for (int i = width - 1; i >= 0; --i) {
      value = (value << 8) | static_cast<unsigned char>(raw[i]);
    }
    return value;
  }

  absl::StatusOr<std::string> String(absl::string_view what) {
    ASSIGN_OR_RETURN(uint64_t length, Unsigned(8, what));
    if (length > kMaxGgufStringBytes) {
      return absl::DataLossError(
          absl::StrCat("GGUF ", what, " at offset ", pos_ - 8, " claims ",
                       length, " bytes, over the ", kMaxGgufStringBytes,
                       "-byte limit; the file is corrupt"));
    }
    ASSIGN_OR_RETURN(absl::string_view text, Bytes(length, what));
    return std::string(text);
  }

  // `key` is how messages name the value ("metadata 'general.name'").
  absl::StatusOr<nlohmann::json> Value(uint32_t type, const std::string& key,
                                       int nesting) {
    switch (type) {
      case kU8:
      case kU16:
      case kU32:
      case kU64: {
        ASSIGN_OR_RETURN(uint64_t v, Unsigned(FixedValueSize(type), key));
        return nlohmann::json(v);
      }
      case kI8:
      case kI16:
      case kI32:
      case kI64: {
        const int width = static_cast<int>(FixedValueSize(type));
        ASSIGN_OR_RETURN(uint64_t v, Unsigned(width, key));
        if (width < 8 && (v >> (width * 8 - 1)) & 1) {
          v |= ~uint64_t{0} << (width * 8);
        }
        return nlohmann::json(static_cast<int64_t>(v));
      }
      case kF32: {
        ASSIGN_OR_RETURN(uint64_t v, Unsigned(4, key));
        return nlohmann::json(static_cast<double>(
            std::bit_cast<float>(static_cast<uint32_t>(v))));
      }
      case kF64: {
        ASSIGN_OR_RETURN(uint64_t v, Unsigned(8, key));
        return nlohmann::json(std::bit_cast<double>(v));
      }
      case kBool: {
        ASSIGN_OR_RETURN(uint64_t v, Unsigned(1, key));
        return nlohmann::json(v != 0);
      }
      case kString: {
        ASSIGN_OR_RETURN(std::string text, String(key));
        return nlohmann::json(SanitizeUtf8(text));
      }
      case kArray: {
        if (nesting >= kMaxArrayNesting) {
          return absl::DataLossError(
              absl::StrCat("GGUF ", key, " nests arrays deeper than ",
                           kMaxArrayNesting, " levels; the file is corrupt"));
        }
        ASSIGN_OR_RETURN(uint64_t element_type, Unsigned(4, key));
        ASSIGN_OR_RETURN(uint64_t length, Unsigned(8, key));
        const uint64_t fixed = FixedValueSize(element_type);
        // Every element takes at least one byte (strings and arrays at
        // least eight), so a length the file cannot hold fails here.
        const uint64_t min_element =
            fixed != 0                                            ? fixed
            : (element_type == kString || element_type == kArray) ? 8
                                                                  : 0;
        if (min_element == 0) {
          return absl::DataLossError(
              absl::StrCat("GGUF ", key, " is an array of unknown type ",
                           element_type, "; the file is corrupt"));
        }
        if (length > (file_size_ - std::min(pos_, file_size_)) / min_element) {
          return absl::DataLossError(absl::StrCat(
              "GGUF ", key, " claims ", length,
              " array elements, more than the file can hold; the file is "
              "truncated or corrupt"));
        }
        if (length > kMaxGgufArrayInJson) {
          if (fixed != 0) {
            ASSIGN_OR_RETURN(absl::string_view skipped,
                             Bytes(length * fixed, key));
            (void)skipped;
          } else {
            for (uint64_t i = 0; i < length; ++i) {
              ASSIGN_OR_RETURN(
                  nlohmann::json ignored,
                  Value(static_cast<uint32_t>(element_type), key, nesting + 1));
              (void)ignored;
            }
          }
          return nlohmann::json{
              {"type",
               absl::StrCat("array<", ValueTypeName(element_type), ">")},
              {"length", length}};
        }
        nlohmann::json array = nlohmann::json::array();
        for (uint64_t i = 0; i < length; ++i) {
          ASSIGN_OR_RETURN(
              nlohmann::json element,
              Value(static_cast<uint32_t>(element_type), key, nesting + 1));
          array.push_back(std::move(element));
        }
        return array;
      }
      default:
        return absl::DataLossError(absl::StrCat("GGUF ", key,
                                                " has unknown value type ",
                                                type, "; the file is corrupt"));
    }
  }

  absl::string_view bytes_;
  uint64_t file_size_;
  uint64_t pos_ = 0;
  bool needs_more_ = false;
};

}  // namespace

absl::StatusOr<GgmlTypeInfo> GgmlType(uint32_t type) {
  static constexpr GgmlTypeInfo kTypes[] = {
      {"F32", 1, 4},        {"F16", 1, 2},        {"Q4_0", 32, 18},
      {"Q4_1", 32, 20},     {"", 0, 0},           {"", 0, 0},
      {"Q5_0", 32, 22},     {"Q5_1", 32, 24},     {"Q8_0", 32, 34},
      {"Q8_1", 32, 36},     {"Q2_K", 256, 84},    {"Q3_K", 256, 110},
      {"Q4_K", 256, 144},   {"Q5_K", 256, 176},   {"Q6_K", 256, 210},
      {"Q8_K", 256, 292},   {"IQ2_XXS", 256, 66}, {"IQ2_XS", 256, 74},
      {"IQ3_XXS", 256, 98}, {"IQ1_S", 256, 50},   {"IQ4_NL", 32, 18},
      {"IQ3_S", 256, 110},  {"IQ2_S", 256, 82},   {"IQ4_XS", 256, 136},
      {"I8", 1, 1},         {"I16", 1, 2},        {"I32", 1, 4},
      {"I64", 1, 8},        {"F64", 1, 8},        {"IQ1_M", 256, 56},
      {"BF16", 1, 2},       {"", 0, 0},           {"", 0, 0},
      {"", 0, 0},           {"TQ1_0", 256, 54},   {"TQ2_0", 256, 66},
      {"", 0, 0},           {"", 0, 0},           {"", 0, 0},
      {"MXFP4", 32, 17},
  };
  if (type < std::size(kTypes) && kTypes[type].block_size != 0) {
    return kTypes[type];
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown ggml type ", type,
                   "; the file needs a newer reader or is corrupt"));
}

absl::StatusOr<TensorIndex> ParseGguf(absl::string_view bytes,
                                      uint64_t file_size) {
  return GgufParser(bytes, file_size).Parse();
}

absl::StatusOr<TensorIndex> ReadGgufIndex(const std::filesystem::path& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file,
                   RandomAccessFile::Open({.path = path}));
  uint64_t want = std::min<uint64_t>(file->size(), 1ull << 20);
  while (true) {
    ASSIGN_OR_RETURN(std::string head, file->ReadAt(0, want, "GGUF header"));
    GgufParser parser(head, file->size());
    absl::StatusOr<TensorIndex> index = parser.Parse();
    if (index.ok()) return index;
    if (!parser.needs_more() || want == file->size()) {
      return Annotate(index.status(), path.string());
    }
    want = std::min<uint64_t>(file->size(), want * 2);
  }
}

}  // namespace mm::model
