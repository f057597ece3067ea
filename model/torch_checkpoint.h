// Reader for PyTorch checkpoints in the zip layout torch.save has written
// since 1.6 (`<archive>/data.pkl`, `<archive>/data/<key>`,
// `<archive>/version`). It reads the central directory and data.pkl only,
// unpickles data.pkl with our own data-only unpickler (model/unpickler.h:
// nothing is ever called), and turns `torch._utils._rebuild_tensor_v2` records
// into TensorInfo rows whose `storage` names the archive entry and `offset` is
// the byte offset inside it. A {"state_dict": {...}} wrapper is unwrapped;
// top-level ints, floats, strings and bools (global_step, epoch, ...) go to
// `scalars`; nested dicts of tensors are flattened with "."
// ("string_to_param.*"). Foreign classes (Lightning callbacks, argparse
// namespaces) stay inert placeholders and are listed in `findings`. The pre-1.6
// legacy format is refused with UNIMPLEMENTED.
//
// Thread-safety: stateless free functions, safe from any thread.
//
//   ASSIGN_OR_RETURN(TensorIndex index, ReadTorchCheckpoint(path));
//   int64_t step = index.scalars.value("global_step", 0);
#ifndef MM_MODEL_TORCH_CHECKPOINT_H_
#define MM_MODEL_TORCH_CHECKPOINT_H_

#include <cstdint>
#include <filesystem>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/tensor_index.h"
#include "model/unpickler.h"
#include "model/zip_archive.h"

namespace mm::model {

struct TorchCheckpointOptions {
  // Largest data.pkl read into memory. Default 512 MiB (a 2,500-tensor
  // state dict pickles to well under 1 MiB).
  uint64_t max_pickle_bytes = 512ull << 20;
  // Deepest dict nesting flattened into tensor names. Default 8.
  int max_name_depth = 8;
  // Limits for the unpickler.
  UnpicklerOptions unpickler;
};

// Reads the tensor table of a torch.save zip checkpoint at `path`; the
// formats before 1.6 (SniffedFormat kPickle and kTar) are UNIMPLEMENTED.
absl::StatusOr<TensorIndex> ReadTorchCheckpoint(
    const std::filesystem::path& path,
    const TorchCheckpointOptions& options = {});

// The same for a checkpoint held in memory (tests, fuzzers).
absl::StatusOr<TensorIndex> ParseTorchCheckpoint(
    std::string bytes, const TorchCheckpointOptions& options = {});

// The tensor table of an opened archive.
absl::StatusOr<TensorIndex> TensorIndexFromArchive(
    const ZipArchive& archive, const TorchCheckpointOptions& options = {});

// Builds the tensor table from an unpickled data.pkl. `archive_prefix` is
// the folder of data.pkl with its slash ("archive/"); storages are checked
// against the entries of `archive`.
absl::StatusOr<TensorIndex> TensorIndexFromPickle(
    const PickleData& pickle, absl::string_view archive_prefix,
    const ZipArchive& archive, const TorchCheckpointOptions& options = {});

}  // namespace mm::model

#endif  // MM_MODEL_TORCH_CHECKPOINT_H_
