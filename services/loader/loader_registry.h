// Which loader handles a model family: a registry keyed by (base, type,
// format) with spec §9's fallback to (any, type, format); no entry is
// UNIMPLEMENTED. A second registration of a triple is an error, so a
// start-up that registers twice fails instead of silently picking one.
//
// Thread-safety: Register during start-up only; Find is then safe from
// any thread.
//
//   LoaderRegistry registry;
//   RETURN_IF_ERROR(registry.Register({"any", "vae", "checkpoint"}, kind));
//   ASSIGN_OR_RETURN(LoaderKind kind, registry.Find("sd-1", "vae",
//   "checkpoint"));
#ifndef MM_SERVICES_LOADER_LOADER_REGISTRY_H_
#define MM_SERVICES_LOADER_LOADER_REGISTRY_H_

#include <map>
#include <string>
#include <tuple>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mm::loader {

// The loaders this build has.
enum class LoaderKind {
  // Weights files read into the RAM tier as stored (safetensors, sharded
  // safetensors, PyTorch zip checkpoints, diffusers folders and their
  // files-only submodels, GGUF blocks, one submodel of a single-file main
  // checkpoint; load_plan.h).
  kWeightsFiles,
};

struct FamilyKey {
  std::string base;
  std::string type;
  std::string format;
  bool operator<(const FamilyKey& other) const {
    return std::tie(base, type, format) <
           std::tie(other.base, other.type, other.format);
  }
};

class LoaderRegistry {
 public:
  // ALREADY_EXISTS when `key` is registered already.
  absl::Status Register(const FamilyKey& key, LoaderKind kind);
  // The exact triple, else (any, type, format); UNIMPLEMENTED naming the
  // family when neither is registered.
  absl::StatusOr<LoaderKind> Find(const std::string& base,
                                  const std::string& type,
                                  const std::string& format) const;

 private:
  std::map<FamilyKey, LoaderKind> loaders_;
};

// The registry of this build: kWeightsFiles for (any, type, format) of
// every registered family (model/taxonomy.h) whose format is stored as
// weights files (everything but onnx, olive and unknown).
absl::StatusOr<LoaderRegistry> DefaultLoaderRegistry();

}  // namespace mm::loader

#endif  // MM_SERVICES_LOADER_LOADER_REGISTRY_H_
