#include "services/loader/loader_registry.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "model/taxonomy.h"

namespace mm::loader {

absl::Status LoaderRegistry::Register(const FamilyKey& key, LoaderKind kind) {
  if (!loaders_.emplace(key, kind).second) {
    return absl::AlreadyExistsError(
        absl::StrCat("a loader for base '", key.base, "', type '", key.type,
                     "', format '", key.format, "' is registered twice"));
  }
  return absl::OkStatus();
}

absl::StatusOr<LoaderKind> LoaderRegistry::Find(
    const std::string& base, const std::string& type,
    const std::string& format) const {
  for (const FamilyKey& key :
       {FamilyKey{base, type, format}, FamilyKey{"any", type, format}}) {
    auto it = loaders_.find(key);
    if (it != loaders_.end()) return it->second;
  }
  return absl::UnimplementedError(
      absl::StrCat("no loader for base '", base, "', type '", type,
                   "', format '", format, "' (", type, ".", format, ".", base,
                   " models cannot be loaded by this loader)"));
}

absl::StatusOr<LoaderRegistry> DefaultLoaderRegistry() {
  static const std::set<std::string> kNotWeightsFiles = {"onnx", "olive",
                                                         "unknown"};
  LoaderRegistry registry;
  std::set<FamilyKey> done;
  for (const model::FamilySpec& family : model::Families()) {
    if (kNotWeightsFiles.contains(family.format)) continue;
    FamilyKey key{"any", family.type, family.format};
    if (!done.insert(key).second) continue;
    if (absl::Status s = registry.Register(key, LoaderKind::kWeightsFiles);
        !s.ok()) {
      return s;
    }
  }
  return registry;
}

}  // namespace mm::loader
