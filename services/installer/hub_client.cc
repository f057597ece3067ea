#include "services/installer/hub_client.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/http/fetch.h"
#include "common/status.h"
#include "common/strings.h"

namespace mm::installer {
namespace {

// Whether any selected weights file carries the variant's label, as in
// "model.fp16.safetensors" (spec §6.2).
bool CarriesVariant(const std::vector<model::HfFile>& files,
                    const std::string& variant) {
  const std::string label = absl::StrCat(".", variant, ".");
  for (const model::HfFile& file : files) {
    if (absl::StrContains(file.path, label) ||
        absl::StrContains(file.path, absl::StrCat(".", variant, "-"))) {
      return true;
    }
    // onnx/openvino/flax select by file kind, not by label.
    if (variant != "fp16" && variant != "fp32" &&
        absl::StrContains(file.path, variant)) {
      return true;
    }
  }
  return false;
}

}  // namespace

HubClient::HubClient(http::TransferLoop* loop, HubOptions options)
    : loop_(loop), options_(std::move(options)) {}

absl::StatusOr<model::HfModelInfo> HubClient::ModelInfo(
    const std::string& repo_id, std::optional<std::string> revision,
    const std::string& token) const {
  http::Request request;
  request.url = model::ModelInfoUrl(options_.endpoint, repo_id, revision);
  request.bearer_token = token.empty() ? options_.default_token : token;
  request.stall_timeout = options_.timeout;
  request.user_agent = "mm-installer";
  ASSIGN_OR_RETURN(http::FetchResult result,
                   http::Fetch(*loop_, request, kMaxModelInfoBytes));
  const int status = result.head.status;
  const std::string repo = QuotedForMessage(repo_id);
  const std::string error_code = result.head.Header("x-error-code");
  const bool sent_token = !request.bearer_token.empty();
  if (status == 200) {
    absl::StatusOr<model::HfModelInfo> info =
        model::ParseHfModelInfo(result.body);
    if (!info.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Hugging Face repo ", repo,
          ": the hub's model-info is refused: ", info.status().message()));
    }
    return info;
  }
  if (status == 404 && error_code == "RevisionNotFound") {
    return absl::NotFoundError(
        absl::StrCat("revision ", QuotedForMessage(revision.value_or("main")),
                     " of Hugging Face repo ", repo, " not found"));
  }
  if (status == 404 || ((status == 401 || status == 403) &&
                        error_code == "RepoNotFound" && sent_token)) {
    return absl::NotFoundError(
        absl::StrCat("Hugging Face repo ", repo, " not found at ",
                     QuotedForMessage(options_.endpoint.base)));
  }
  if (status == 401 || status == 403) {
    if (!sent_token) {
      return absl::PermissionDeniedError(absl::StrCat(
          "Hugging Face repo ", repo,
          " is gated, private or missing, and needs an access token: give "
          "one with `mm install --token-file FILE` (or the installer's "
          "--token-file)"));
    }
    return absl::PermissionDeniedError(absl::StrCat(
        "Hugging Face repo ", repo, " refused the access token (HTTP ", status,
        "): accept the repo's terms on the hub, or use a token with access "
        "to it"));
  }
  if (status == 429 || status >= 500) {
    return absl::UnavailableError(
        absl::StrCat("the Hugging Face hub answered HTTP ", status, " for ",
                     repo, "; try again later"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "the Hugging Face hub answered HTTP ", status, " for ", repo));
}

absl::StatusOr<InstallPlan> HubClient::Plan(const model::HfRepoSource& source,
                                            const std::string& token) const {
  ASSIGN_OR_RETURN(model::HfModelInfo info,
                   ModelInfo(source.repo_id, std::nullopt, token));
  std::string revision = "main";
  absl::StatusOr<std::vector<model::HfFile>> selected =
      model::SelectHfFiles(info.files, source);
  const bool variant_missing =
      !source.variant.empty() &&
      (!selected.ok() || !CarriesVariant(*selected, source.variant));
  if (variant_missing) {
    // The variant may live on a branch of its name instead (spec §6.1).
    absl::StatusOr<model::HfModelInfo> branch =
        ModelInfo(source.repo_id, source.variant, token);
    if (branch.ok()) {
      absl::StatusOr<std::vector<model::HfFile>> branch_selected =
          model::SelectHfFiles(branch->files, source);
      if (branch_selected.ok()) {
        info = *std::move(branch);
        selected = std::move(branch_selected);
        revision = source.variant;
      }
    } else if (branch.status().code() != absl::StatusCode::kNotFound) {
      return branch.status();
    }
  }
  if (!selected.ok()) {
    return Annotate(
        selected.status(),
        absl::StrCat("Hugging Face repo ", QuotedForMessage(source.repo_id)));
  }

  InstallPlan plan;
  model::ModelSource parsed = source;
  plan.source = model::FormatModelSource(parsed);
  plan.source_type = std::string(model::SourceTypeName(parsed));
  plan.repo_id = source.repo_id;
  plan.revision = revision;
  plan.commit = info.sha;
  plan.variant = source.variant;
  plan.subfolders = source.subfolders;
  if (!source.file_path.empty()) plan.subfolders = {source.file_path};
  plan.tags = info.tags;
  plan.api_response = info.raw_json;
  // Pin the files to the commit the listing came from, so a push to the
  // repo during the download cannot mix two versions.
  const std::string pinned = info.sha.empty() ? revision : info.sha;
  for (const model::HfFile& file : *selected) {
    PlannedFile planned;
    planned.path = model::HfLocalPath(source, file.path);
    planned.url =
        model::ResolveUrl(options_.endpoint, source.repo_id, pinned, file.path);
    planned.size = file.size ? static_cast<int64_t>(*file.size) : 0;
    planned.sha256 = file.sha256.value_or("");
    plan.files.push_back(std::move(planned));
  }
  if (!plan.files.empty()) {
    const std::string& first = plan.files.front().path;
    plan.model_entry = first.substr(0, first.find('/'));
  }
  return plan;
}

}  // namespace mm::installer
