// Reader for safetensors files: an 8-byte little-endian header length, a JSON
// header describing each tensor, then the data. Nothing in the header is
// trusted: lengths, dtypes, shapes and offsets are all checked (with overflow
// checks) before an index is returned, and the data area is never read.
//
// Thread-safety: stateless free functions, safe from any thread.
//
//   ASSIGN_OR_RETURN(TensorIndex index, ReadSafetensorsIndex(path));
//   for (const TensorInfo& t : index.tensors) ... t.offset, t.byte_size
#ifndef MM_MODEL_SAFETENSORS_H_
#define MM_MODEL_SAFETENSORS_H_

#include <cstdint>
#include <filesystem>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/tensor_index.h"

namespace mm::model {

// The largest JSON header accepted (the reference implementation's limit);
// real headers of 2,500-tensor checkpoints are a few hundred kilobytes.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// Bytes per element of a safetensors dtype ("F32" → 4), or INVALID_ARGUMENT
// for a name we do not know.
absl::StatusOr<uint64_t> SafetensorsDtypeSize(absl::string_view dtype);

// Parses the header of a safetensors file of `file_size` bytes. `bytes` is
// the start of the file (at least 8 + header length bytes; more is ignored).
// Tensors come back in data order with absolute file offsets; the
// "__metadata__" map lands in scalars["metadata"].
absl::StatusOr<TensorIndex> ParseSafetensorsHeader(absl::string_view bytes,
                                                   uint64_t file_size);

// Reads the header of `path` with two preads and parses it.
absl::StatusOr<TensorIndex> ReadSafetensorsIndex(
    const std::filesystem::path& path);

}  // namespace mm::model

#endif  // MM_MODEL_SAFETENSORS_H_
