// Finding model candidates under a folder (spec §4.3): the list the
// installer's "scan folder" feature probes and offers for registration.
//
// Walks the tree (following directory links, each real directory at most
// once, so link loops are harmless), skipping dot-entries, at most
// kMaxScanDepth levels below the root. A directory that holds a model
// marker (config.json, model_index.json, learned_embeds.bin,
// pytorch_lora_weights.bin, image_encoder.txt) is one candidate and is not
// descended; elsewhere every file ending .ckpt .bin .pth .safetensors .pt
// .gguf is a candidate. Only names and directory entries are read.
//
// Stateless; thread-safe.
//
//   ASSIGN_OR_RETURN(std::vector<std::filesystem::path> found,
//                    mm::model::ScanForModels("/srv/models/incoming"));
//   for (const auto& path : found) Probe(path, {});
#ifndef MM_MODEL_SCAN_H_
#define MM_MODEL_SCAN_H_

#include <filesystem>
#include <vector>

#include "absl/status/statusor.h"

namespace mm::model {

// Directories deeper than this below the scanned root are not read.
inline constexpr int kMaxScanDepth = 20;

// Returns the candidates under `dir`, sorted, as paths below `dir` as given
// (a link is reported where it was found, not where it points). When `dir`
// itself holds a model marker the result is just `dir`. NOT_FOUND when
// `dir` does not exist; INVALID_ARGUMENT when it is not a directory;
// PERMISSION_DENIED when `dir` itself cannot be read (unreadable
// subdirectories are skipped with a warning).
absl::StatusOr<std::vector<std::filesystem::path>> ScanForModels(
    const std::filesystem::path& dir);

// True when `dir` holds one of the spec §4.3 model markers.
bool IsModelDirectory(const std::filesystem::path& dir);

// True when `file`'s suffix makes it a scan candidate (case-insensitive).
bool IsCandidateModelFile(const std::filesystem::path& file);

}  // namespace mm::model

#endif  // MM_MODEL_SCAN_H_
