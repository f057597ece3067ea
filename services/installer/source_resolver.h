// From what a user typed to what an install fetches: parses a source string
// (spec §6.3; a relative local path is relative to the models folder),
// checks it (a local path exists; a URL passes the address policy the
// downloader applies), and plans it (InstallPlan: the hub's files, the one
// URL, or the local path).
//
// Thread-safety: thread-safe.
#ifndef MM_SERVICES_INSTALLER_SOURCE_RESOLVER_H_
#define MM_SERVICES_INSTALLER_SOURCE_RESOLVER_H_

#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/http/address_policy.h"
#include "model/source.h"
#include "services/installer/hub_client.h"
#include "services/installer/install_plan.h"

namespace mm::installer {

struct ResolvedSource {
  model::ModelSource parsed;
  std::string normalized;   // FormatModelSource (local: absolute path)
  std::string source_type;  // "path", "url", "hf_repo_id"
};

class SourceResolver {
 public:
  // `hub` must outlive the resolver; `policy` guards URLs users give.
  SourceResolver(std::filesystem::path models_dir, HubClient* hub,
                 std::shared_ptr<const http::AddressPolicy> policy);

  // Errors: INVALID_ARGUMENT (syntax; a URL the policy refuses), NOT_FOUND
  // (a path that looks local and does not exist).
  absl::StatusOr<ResolvedSource> Parse(const std::string& text) const;
  // The plan of a parsed source; Hugging Face sources ask the hub (see
  // HubClient::Plan for its errors).
  absl::StatusOr<InstallPlan> Plan(const ResolvedSource& source,
                                   const std::string& token) const;

  HubClient* hub() const { return hub_; }
  const std::filesystem::path& models_dir() const { return models_dir_; }

 private:
  const std::filesystem::path models_dir_;
  HubClient* const hub_;
  const std::shared_ptr<const http::AddressPolicy> policy_;
};

}  // namespace mm::installer

#endif  // MM_SERVICES_INSTALLER_SOURCE_RESOLVER_H_
