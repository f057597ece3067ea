// The installer's view of a Hugging Face hub (spec §6.1): model-info with
// blobs, turned into an InstallPlan for a repo source with the file
// selection of model/huggingface.h.
//
// The endpoint is operator configuration (--hf-endpoint, else HF_ENDPOINT,
// else https://huggingface.co) and may be a private address, such as a
// mirror, so requests to it are not filtered by the address policy that
// guards URLs users give. A token goes to the hub only: the downloader
// fetches the files and drops the Authorization header on the redirect to
// the CDN host.
//
//   HubClient hub(loop.get(), {.endpoint = {"https://huggingface.co"}});
//   ASSIGN_OR_RETURN(InstallPlan plan, hub.Plan(repo_source, token));
//
// Thread-safety: thread-safe (the loop is).
#ifndef MM_SERVICES_INSTALLER_HUB_CLIENT_H_
#define MM_SERVICES_INSTALLER_HUB_CLIENT_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/http/transfer_loop.h"
#include "model/huggingface.h"
#include "model/source.h"
#include "services/installer/install_plan.h"

namespace mm::installer {

// The largest model-info response read: repos with tens of thousands of
// files stay far below it (about 300 bytes a file).
inline constexpr size_t kMaxModelInfoBytes = size_t{64} << 20;

struct HubOptions {
  model::HfEndpoint endpoint;
  // Token sent when a request brings none (--token-file); empty for none.
  std::string default_token;
  absl::Duration timeout = absl::Seconds(60);
};

class HubClient {
 public:
  // `loop` must outlive the client.
  HubClient(http::TransferLoop* loop, HubOptions options);

  const model::HfEndpoint& endpoint() const { return options_.endpoint; }

  // GET model-info of `repo_id` at `revision` (nullopt: the default
  // branch). Errors: NOT_FOUND naming the repo or revision,
  // PERMISSION_DENIED for a gated or private repo (saying whether a token
  // was sent), UNAVAILABLE when the hub cannot be reached or answers 429 or
  // 5xx, INVALID_ARGUMENT for a response that is not a valid model-info
  // (including file names that would escape the download folder).
  absl::StatusOr<model::HfModelInfo> ModelInfo(
      const std::string& repo_id, std::optional<std::string> revision,
      const std::string& token) const;

  // The files `source` selects (spec §6.2), each with its resolve URL at
  // the commit the revision pointed to, size and LFS SHA-256. A variant no
  // file of the default branch carries falls back to the branch of that
  // name (spec §6.1), when the repo has one.
  absl::StatusOr<InstallPlan> Plan(const model::HfRepoSource& source,
                                   const std::string& token) const;

 private:
  http::TransferLoop* const loop_;
  const HubOptions options_;
};

}  // namespace mm::installer

#endif  // MM_SERVICES_INSTALLER_HUB_CLIENT_H_
