// InstallManager: the installer's logic, free of gRPC (the rpc edge,
// installer_service.h, only converts messages): creating install jobs
// (parse and check the source, dedupe on a live job of the same source and
// on request_id, choose the key), the requests on jobs (cancel, pause,
// resume, prune), and the synchronous operations: plan, probe, register in
// place, delete, sync.
//
//   InstallManager manager(deps, options);
//   ASSIGN_OR_RETURN(InstallJob job, manager.Create({.source = "o/n:fp16"}));
//
// Thread-safe (its parts are).
#ifndef MM_SERVICES_INSTALLER_INSTALL_MANAGER_H_
#define MM_SERVICES_INSTALLER_INSTALL_MANAGER_H_

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/jobs/follow.h"
#include "model/hashing.h"
#include "modelmanager/v1/records.pb.h"
#include "nlohmann/json.hpp"
#include "services/installer/install_store.h"
#include "services/installer/install_worker.h"

namespace mm::installer {

struct InstallRequest {
  std::string source;
  std::string config_json;  // "" or a JSON object
  bool inplace = false;
  std::string token;
  std::string request_id;
};

struct SyncResult {
  std::vector<std::string> missing_keys;
  std::vector<std::string> orphan_paths;
  std::vector<std::string> registered_keys;
};

// Longest request_id accepted (as for records).
inline constexpr size_t kMaxInstallRequestIdBytes = 128;

class InstallManager {
 public:
  // Every pointer in `deps` (and `worker`, which may be null) outlives the
  // manager.
  InstallManager(WorkerDeps deps, InstallWorker* worker, WorkerOptions options);

  absl::StatusOr<InstallJob> Create(const InstallRequest& request);
  absl::StatusOr<InstallJob> Get(const std::string& id);
  absl::StatusOr<InstallPage> List(const std::vector<InstallState>& states,
                                   int page_size,
                                   const std::string& page_token);
  // FAILED_PRECONDITION once the job is placing its files (it then
  // finishes) or is finished.
  absl::StatusOr<InstallJob> Cancel(const std::string& id);
  absl::StatusOr<InstallJob> Pause(const std::string& id);
  absl::StatusOr<InstallJob> Resume(const std::string& id,
                                    const std::string& token);
  // Finished jobs; returns how many were forgotten.
  absl::StatusOr<int64_t> Prune();

  absl::StatusOr<InstallPlan> Plan(const std::string& source,
                                   const std::string& config_json,
                                   const std::string& token);
  // The config a path would register as (no record is written).
  absl::StatusOr<nlohmann::json> Probe(const std::string& path,
                                       const std::string& config_json,
                                       const std::string& hash_algorithm);
  // Probe, hash and register in place (spec §8 register_path).
  absl::StatusOr<modelmanager::v1::Model> Register(
      const std::string& path, const std::string& config_json);
  // Spec §8 unregister/delete/unconditionally_delete; returns the paths
  // removed.
  absl::StatusOr<std::vector<std::string>> Delete(const std::string& key,
                                                  bool delete_files,
                                                  bool unconditionally);
  absl::StatusOr<SyncResult> Sync(bool register_orphans);

  // Blocks until the job is done or paused (a paused job needs a person),
  // `deadline` passes (DEADLINE_EXCEEDED naming the state) or `cancelled`
  // says the client left.
  absl::StatusOr<InstallJob> Wait(const std::string& id, absl::Time deadline,
                                  const std::function<bool()>& cancelled);
  // Sends the job's snapshot (unless `since_revision` is current), each
  // change (coalesced), and the final done job; `send` returns false when
  // the client is gone.
  absl::Status Watch(const std::string& id, int64_t since_revision,
                     const std::function<bool(const InstallJob&)>& send,
                     const std::function<bool()>& cancelled);
  // Ends every Wait and Watch promptly, now and after.
  void Shutdown() { follower_.Shutdown(); }

  // Start-up: temporary folders of jobs that are finished or gone are
  // removed; returns the paths removed.
  absl::StatusOr<std::vector<std::string>> RemoveAbandonedTemporaries();

 private:
  absl::StatusOr<std::filesystem::path> ExistingPath(
      const std::string& path) const;

  const WorkerDeps deps_;
  InstallWorker* const worker_;
  const WorkerOptions options_;
  jobs::Follower follower_;
};

// Parses a config_json override ("" = {}): INVALID_ARGUMENT unless a JSON
// object.
absl::StatusOr<nlohmann::json> ParseOverrides(const std::string& text);

}  // namespace mm::installer

#endif  // MM_SERVICES_INSTALLER_INSTALL_MANAGER_H_
