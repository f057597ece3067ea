// The install job as the installer keeps it: what was asked (source,
// overrides, inplace), the step it reached and what that step produced
// (the plan, the download, the identified config, the placed path, the
// registered record), and the spec §8 events so far. Stored as the body of
// a common/jobs row by InstallStore; turned into the wire InstallJob by
// JobToProto. No token is ever part of it; `has_token` only says one was
// given.
//
// The step is recorded before the work it names is done, and every step is
// safe to do again, so a job whose worker died resumes from its step on
// any replica: the download is created with the job's id as request_id, the
// probe and hash run again, placement finds an earlier placement, and the
// record is created with the job's id as request_id (exactly once).
//
// Thread-safety: plain values.
#ifndef MM_SERVICES_INSTALLER_INSTALL_JOB_H_
#define MM_SERVICES_INSTALLER_INSTALL_JOB_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "modelmanager/v1/installer.pb.h"
#include "nlohmann/json.hpp"
#include "services/installer/install_plan.h"

namespace mm::installer {

// Spec §8's states, as stored and shown by `mm`.
enum class InstallState {
  kWaiting,
  kDownloading,
  kDownloadsDone,
  kRunning,
  kPaused,
  kCompleted,
  kError,
  kCancelled,
};

std::string_view StateName(InstallState state);
std::optional<InstallState> StateFromName(std::string_view name);
bool IsTerminal(InstallState state);
// The valid transitions (installer.proto): WAITING -> DOWNLOADING |
// RUNNING | PAUSED; DOWNLOADING -> DOWNLOADS_DONE | PAUSED; PAUSED ->
// WAITING; DOWNLOADS_DONE -> RUNNING; RUNNING -> COMPLETED; any
// non-terminal -> ERROR | CANCELLED. A state to itself is not a transition.
bool CanTransition(InstallState from, InstallState to);

// Where a job's worker is. Ordered: a job only moves forward.
enum class InstallStep {
  kPlan,      // remote: resolve the source into files
  kDownload,  // remote: one downloader job into the temporary folder
  kIdentify,  // probe and hash
  kPlace,     // move into models/<key>/ (or leave it, inplace)
  kRegister,  // create the record
  kCleanup,   // remove the temporary folder
  kDone,
};
std::string_view StepName(InstallStep step);

struct InstallEventEntry {
  std::string type;
  absl::Time time = absl::InfinitePast();
  int64_t count = 1;
};

struct InstallError {
  absl::StatusCode code = absl::StatusCode::kUnknown;
  std::string type;  // "InvalidModelConfig", "HTTPError(NOT FOUND)", ...
  std::string message;
};

struct InstallPart {
  std::string name;
  int64_t bytes = 0;
  int64_t total_bytes = 0;
  bool done = false;
};

struct InstallJob {
  // Columns of the job row.
  std::string id;
  int64_t sequence = 0;
  std::string request_id;
  InstallState state = InstallState::kWaiting;
  // Install jobs all have the same priority (claimed in submission order);
  // the column is shared with download jobs.
  int priority = 0;
  int64_t revision = 0;
  std::string lease_owner;
  int64_t lease_expires_ms = 0;
  std::string token_owner;

  // What was asked.
  std::string source;       // normalised
  std::string source_type;  // "path", "url", "hf_repo_id"
  nlohmann::json config_in = nlohmann::json::object();
  bool inplace = false;
  bool has_token = false;
  // Chosen at creation: the record's key, and the job's temporary folder
  // (remote sources) models/tmpinstall_<id>.
  std::string key;
  std::string temp_dir;

  // Progress through the steps.
  InstallStep step = InstallStep::kPlan;
  InstallPlan plan;         // remote sources, after kPlan
  std::string download_id;  // after kDownload started
  int64_t download_revision = 0;
  // The model on disk: the local source, or its entry in temp_dir.
  std::string model_path;
  // The identified config (probe + overrides + hash), after kIdentify.
  nlohmann::json config = nlohmann::json::object();
  // The record's path, after kPlace.
  std::string record_path;
  // The registered record, as the records service returned it.
  std::optional<modelmanager::v1::Model> config_out;

  int64_t bytes = 0;
  int64_t total_bytes = 0;
  std::vector<InstallPart> parts;
  std::optional<InstallError> error;
  std::string status_message;
  std::vector<InstallEventEntry> events;
  absl::Time created = absl::InfinitePast();
  absl::Time started = absl::InfinitePast();
  absl::Time ended = absl::InfinitePast();

  // Appends an event (consecutive download_progress entries coalesce).
  void AddEvent(std::string_view type, absl::Time now);
  // Whether the source is fetched (URL or Hugging Face).
  bool remote() const { return source_type != "path"; }
  // Moves to `to` when CanTransition allows; FAILED_PRECONDITION naming
  // both states otherwise.
  absl::Status TransitionTo(InstallState to, absl::Time now);
};

// The request_id under which the job makes its downloader job and its
// record: the same after a restart, so the downloader and the records
// service return what the job made before instead of a second one.
std::string DependencyRequestId(const InstallJob& job);

// The body kept as JSON (everything but the row's columns).
nlohmann::json JobBodyJson(const InstallJob& job);
// DATA_LOSS for a malformed body.
absl::Status JobBodyFromJson(const nlohmann::json& body, InstallJob& job);

modelmanager::v1::InstallState StateToProto(InstallState state);
std::optional<InstallState> StateFromProto(
    modelmanager::v1::InstallState state);
// The wire form (never a token).
modelmanager::v1::InstallJob JobToProto(const InstallJob& job);

}  // namespace mm::installer

#endif  // MM_SERVICES_INSTALLER_INSTALL_JOB_H_
