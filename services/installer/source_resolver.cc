#include "services/installer/source_resolver.h"

#include <system_error>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "common/http/url.h"
#include "common/status.h"
#include "common/strings.h"

namespace mm::installer {

namespace fs = std::filesystem;

SourceResolver::SourceResolver(
    fs::path models_dir, HubClient* hub,
    std::shared_ptr<const http::AddressPolicy> policy)
    : models_dir_(std::move(models_dir)),
      hub_(hub),
      policy_(std::move(policy)) {}

absl::StatusOr<ResolvedSource> SourceResolver::Parse(
    const std::string& text) const {
  // A relative path is looked up in the models folder (where a client on
  // another machine can see files), not in the server's working directory.
  auto exists = [this](std::string_view path) {
    fs::path candidate(path);
    if (candidate.is_relative()) candidate = models_dir_ / candidate;
    return model::LocalPathExists(candidate.string());
  };
  absl::StatusOr<model::ModelSource> maybe =
      model::ParseModelSource(text, exists);
  if (!maybe.ok()) {
    // A string shaped like a path that is not there: say so rather than
    // "unsupported model source".
    if (!text.empty() && (text[0] == '/' || text.rfind("./", 0) == 0 ||
                          text.rfind("../", 0) == 0)) {
      return absl::NotFoundError(absl::StrCat(
          "model path ", QuotedForMessage(text), " does not exist"));
    }
    return maybe.status();
  }
  model::ModelSource parsed = *std::move(maybe);
  ResolvedSource resolved;
  resolved.source_type = std::string(model::SourceTypeName(parsed));
  if (auto* local = std::get_if<model::LocalSource>(&parsed)) {
    fs::path path(local->path);
    if (path.is_relative()) path = models_dir_ / path;
    std::error_code error;
    path = fs::absolute(path, error).lexically_normal();
    local->path = path.string();
  }
  if (auto* url = std::get_if<model::UrlSource>(&parsed)) {
    if (policy_) RETURN_IF_ERROR(http::CheckUrl(url->url, "source", *policy_));
  }
  resolved.normalized = model::FormatModelSource(parsed);
  resolved.parsed = std::move(parsed);
  return resolved;
}

absl::StatusOr<InstallPlan> SourceResolver::Plan(
    const ResolvedSource& source, const std::string& token) const {
  if (const auto* repo = std::get_if<model::HfRepoSource>(&source.parsed)) {
    return hub_->Plan(*repo, token);
  }
  InstallPlan plan;
  plan.source = source.normalized;
  plan.source_type = source.source_type;
  if (const auto* url = std::get_if<model::UrlSource>(&source.parsed)) {
    plan.files.push_back({"", url->url, 0, ""});
    return plan;
  }
  const auto& local = std::get<model::LocalSource>(source.parsed);
  std::error_code error;
  if (!fs::exists(local.path, error)) {
    return absl::NotFoundError(absl::StrCat(
        "model path ", QuotedForMessage(local.path), " does not exist"));
  }
  plan.local_path = local.path;
  return plan;
}

}  // namespace mm::installer
