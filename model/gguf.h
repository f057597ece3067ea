// Reader for the header of GGUF files (llama.cpp / ggml, versions 2 and 3):
// magic "GGUF", version, tensor and key/value counts, typed metadata values
// (arrays included), and tensor infos (name, dims, ggml type, offset), with
// tensor data aligned to general.alignment (default 32). Every count and
// length is checked against the bytes that remain before anything is
// allocated, so absurd counts fail at once. Tensor data is never read.
//
// Shapes are reported outermost first like every other format (GGUF stores
// ne[0], the innermost dimension, first). Quantized tensors get their ggml
// type name as dtype ("Q4_0", "Q6_K") and their block-rounded byte size.
// Metadata lands in scalars["metadata"]; arrays longer than
// kMaxGgufArrayInJson are summarised as {"type", "length"}.
//
// Thread-safety: stateless free functions, safe from any thread.
//
//   ASSIGN_OR_RETURN(TensorIndex index, ReadGgufIndex(path));
//   std::string arch = index.scalars["metadata"].value("general.architecture",
//   "");
#ifndef MM_MODEL_GGUF_H_
#define MM_MODEL_GGUF_H_

#include <cstdint>
#include <filesystem>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/tensor_index.h"

namespace mm::model {

// Arrays up to this many elements are copied into the metadata JSON.
inline constexpr uint64_t kMaxGgufArrayInJson = 256;
// Most tensors and metadata pairs accepted in one file.
inline constexpr uint64_t kMaxGgufTensors = 1'000'000;
inline constexpr uint64_t kMaxGgufMetadataPairs = 1'000'000;

struct GgmlTypeInfo {
  absl::string_view name;
  // Elements per block (1 for plain types) and bytes per block.
  uint64_t block_size;
  uint64_t type_size;
};

// The ggml type with id `type`, or INVALID_ARGUMENT when unknown.
absl::StatusOr<GgmlTypeInfo> GgmlType(uint32_t type);

// Parses a GGUF header. `bytes` is the start of a file of `file_size` bytes
// and must hold the whole header (more is ignored).
absl::StatusOr<TensorIndex> ParseGguf(absl::string_view bytes,
                                      uint64_t file_size);
inline absl::StatusOr<TensorIndex> ParseGguf(absl::string_view bytes) {
  return ParseGguf(bytes, bytes.size());
}

// Reads the header of `path`: a first pread of up to 1 MiB, doubled while
// the metadata (a tokenizer vocabulary can be megabytes) needs more.
absl::StatusOr<TensorIndex> ReadGgufIndex(const std::filesystem::path& path);

}  // namespace mm::model

#endif  // MM_MODEL_GGUF_H_
