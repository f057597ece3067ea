#include "services/downloader/download_manager.h"

#include <filesystem>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/http/url.h"
#include "common/ids.h"
#include "common/paging.h"
#include "common/status.h"
#include "common/strings.h"

namespace mm::downloader {
namespace {

namespace v1 = modelmanager::v1;
namespace fs = std::filesystem;

// Empty means "no digest"; anything else must be a SHA-256 in hex.
absl::Status ValidateSha256(const std::string& hex, std::string_view field) {
  if (hex.empty()) return absl::OkStatus();
  if (!NormalizeSha256Hex(hex).has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(AsAbsl(field), " must be 64 hexadecimal digits"));
  }
  return absl::OkStatus();
}

// What an action asks of the state machine (CanTransition): the state it
// moves a job to, and the one state it moves from where the machine allows
// several (start and resume both queue a job, from different states).
struct ActionRule {
  std::string_view verb;
  JobState to;
  std::optional<JobState> only_from;
};

ActionRule RuleFor(DownloadManager::Action action) {
  switch (action) {
    case DownloadManager::Action::kStart:
      return {"start", JobState::kQueued, JobState::kWaiting};
    case DownloadManager::Action::kPause:
      return {"pause", JobState::kPaused, std::nullopt};
    case DownloadManager::Action::kResume:
      return {"resume", JobState::kQueued, JobState::kPaused};
    case DownloadManager::Action::kCancel:
      break;
  }
  return {"cancel", JobState::kCancelled, std::nullopt};
}

}  // namespace

DownloadManager::DownloadManager(
    JobStore* store, TokenProvider* tokens, DownloadRoots roots,
    std::shared_ptr<const http::AddressPolicy> policy,
    std::function<void()> wake_worker)
    : store_(store),
      tokens_(tokens),
      roots_(std::move(roots)),
      policy_(std::move(policy)),
      wake_worker_(std::move(wake_worker)),
      follower_(&store->changes(), "download job") {}

absl::StatusOr<Job> DownloadManager::BuildJob(
    const v1::CreateDownloadRequest& request) {
  bool single = !request.url().empty();
  if (single == (request.files_size() > 0)) {
    return absl::InvalidArgumentError(
        "exactly one of url and files must be set");
  }
  if (!request.dest_dir().empty() && !request.output_path().empty()) {
    return absl::InvalidArgumentError("dest_dir and output_path are exclusive");
  }
  if (!single &&
      (!request.output_path().empty() || !request.file_name().empty() ||
       request.expected_size() != 0 || !request.expected_sha256().empty())) {
    return absl::InvalidArgumentError(
        "output_path, file_name, expected_size and expected_sha256 are for "
        "single-file downloads; give size and sha256 per file");
  }
  if (request.files_size() > kMaxFilesPerDownload) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", kMaxFilesPerDownload, " files per download"));
  }
  if (request.expected_size() < 0) {
    return absl::InvalidArgumentError("expected_size must not be negative");
  }
  Job job;
  job.id = NewResourceId();
  job.request_id = request.request_id();
  job.priority = request.has_priority() ? request.priority() : 10;
  job.state = request.has_start() && !request.start() ? JobState::kWaiting
                                                      : JobState::kQueued;
  job.keep_partial = request.keep_partial_on_error();
  job.created = store_->clock()->Now();
  job.multi_file = !single;
  if (!request.output_path().empty()) {
    ASSIGN_OR_RETURN(fs::path file,
                     roots_.ResolveFile(request.output_path(), "output_path"));
    job.destination = file.string();
    job.dest_is_dir = false;
  } else {
    std::string dir = request.dest_dir().empty()
                          ? roots_.roots().front().string()
                          : request.dest_dir();
    ASSIGN_OR_RETURN(fs::path resolved,
                     roots_.ResolveDirectory(dir, "dest_dir"));
    job.destination = resolved.string();
    job.dest_is_dir = true;
  }
  if (!request.file_name().empty()) {
    RETURN_IF_ERROR(ValidateFileName(request.file_name(), "file_name"));
    if (!job.dest_is_dir) {
      return absl::InvalidArgumentError(
          "file_name goes with dest_dir, not output_path");
    }
    job.file_name = request.file_name();
  }
  int64_t known_bytes = 0;
  if (single) {
    RETURN_IF_ERROR(http::CheckUrl(request.url(), "url", *policy_));
    RETURN_IF_ERROR(
        ValidateSha256(request.expected_sha256(), "expected_sha256"));
    Part part;
    part.url = request.url();
    part.expected_size = request.expected_size();
    part.expected_sha256 = absl::AsciiStrToLower(request.expected_sha256());
    if (!job.dest_is_dir) {
      part.path = job.destination;
    } else if (!job.file_name.empty()) {
      part.path = (fs::path(job.destination) / job.file_name).string();
    }
    known_bytes = part.expected_size;
    job.parts.push_back(std::move(part));
  } else {
    std::set<std::string> seen;
    for (int i = 0; i < request.files_size(); ++i) {
      const v1::DownloadFile& file = request.files(i);
      std::string field = absl::StrCat("files[", i, "]");
      RETURN_IF_ERROR(
          http::CheckUrl(file.url(), absl::StrCat(field, ".url"), *policy_));
      RETURN_IF_ERROR(ValidateRelativePath(
          file.relative_path(), absl::StrCat(field, ".relative_path")));
      RETURN_IF_ERROR(
          ValidateSha256(file.sha256(), absl::StrCat(field, ".sha256")));
      if (file.size() < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".size must not be negative"));
      }
      if (!seen.insert(file.relative_path()).second) {
        return absl::InvalidArgumentError(absl::StrCat(
            field, ".relative_path ", file.relative_path(), " appears twice"));
      }
      Part part;
      part.url = file.url();
      part.relative_path = file.relative_path();
      part.expected_size = file.size();
      part.expected_sha256 = absl::AsciiStrToLower(file.sha256());
      known_bytes += part.expected_size;
      job.parts.push_back(std::move(part));
    }
  }
  if (known_bytes > 0) {
    fs::path dir = job.dest_is_dir ? fs::path(job.destination)
                                   : fs::path(job.destination).parent_path();
    absl::StatusOr<int64_t> free_bytes = FreeBytes(dir);
    if (free_bytes.ok() && *free_bytes < known_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "not enough free space in ", dir.string(), ": ", known_bytes,
          " bytes needed, ", *free_bytes, " available"));
    }
  }
  if (!request.access_token().empty()) {
    job.has_token = true;
    job.token_owner = store_->replica_id();
  }
  return job;
}

absl::StatusOr<Job> DownloadManager::Create(
    const v1::CreateDownloadRequest& request) {
  ASSIGN_OR_RETURN(Job job, BuildJob(request));
  std::string id = job.id;
  // The token is in memory before the job can be claimed.
  if (job.has_token) tokens_->PutJobToken(id, request.access_token());
  absl::StatusOr<Job> created = store_->Create(std::move(job));
  if (!created.ok() || created->id != id) tokens_->ForgetJob(id);
  if (created.ok()) wake_worker_();
  return created;
}

absl::StatusOr<Job> DownloadManager::Get(const std::string& id) {
  if (id.empty()) return absl::InvalidArgumentError("id is required");
  return store_->Get(id);
}

absl::StatusOr<JobPage> DownloadManager::List(
    const std::vector<JobState>& states, int page_size,
    const std::string& page_token) {
  return store_->ListPage(states, page_size, page_token);
}

absl::StatusOr<Job> DownloadManager::Apply(const std::string& id, Action action,
                                           const std::string& token) {
  if (id.empty()) return absl::InvalidArgumentError("id is required");
  if (action == Action::kPause) {
    // Pausing a paused job changes nothing: answer without a write.
    ASSIGN_OR_RETURN(Job current, store_->Get(id));
    if (current.state == JobState::kPaused) return current;
  }
  bool changed = false;
  // Resume with a token: the token this one replaced in memory, to put back
  // if the write does not happen.
  bool token_put = false;
  std::optional<std::string> replaced_token;
  absl::StatusOr<Job> job = store_->Update(id, [&](Job& job) -> absl::Status {
    changed = false;
    auto wrong_state = [&](std::string_view verb) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot ", AsAbsl(verb), " download ", id, ": it is ",
                       AsAbsl(StateName(job.state))));
    };
    if (action == Action::kPause && job.state == JobState::kPaused) {
      return absl::OkStatus();  // paused meanwhile by another request
    }
    const ActionRule rule = RuleFor(action);
    if (!CanTransition(job.state, rule.to) ||
        (rule.only_from.has_value() && job.state != *rule.only_from)) {
      return wrong_state(rule.verb);
    }
    job.state = rule.to;
    if (action == Action::kResume) {
      job.status_message.clear();
      if (!token.empty()) {
        job.has_token = true;
        job.token_owner = store_->replica_id();
        // In memory before the commit makes the job claimable: a worker
        // that claims it the moment it is queued must find the token, or
        // it pauses the job again for want of one.
        if (!token_put) {
          replaced_token = tokens_->PutJobToken(id, token);
          token_put = true;
        }
      }
    } else if (action == Action::kCancel) {
      job.ended = store_->clock()->Now();
      job.bytes_per_second = 0;
    }
    changed = true;
    return absl::OkStatus();
  });
  if (!job.ok()) {
    if (token_put) {
      if (replaced_token.has_value()) {
        tokens_->PutJobToken(id, *std::move(replaced_token));
      } else {
        tokens_->ForgetJob(id);
      }
    }
    return job.status();
  }
  if (changed && action == Action::kCancel) {
    // A running worker removes them too once it has stopped writing.
    RemovePartialFiles(*job);
    tokens_->ForgetJob(id);
  }
  if (changed) wake_worker_();
  return job;
}

absl::StatusOr<std::vector<Job>> DownloadManager::ApplyToAll(Action action) {
  std::vector<JobState> states;
  switch (action) {
    case Action::kStart:
      states = {JobState::kWaiting};
      break;
    case Action::kPause:
      states = {JobState::kWaiting, JobState::kQueued, JobState::kRunning};
      break;
    case Action::kResume:
      states = {JobState::kPaused};
      break;
    case Action::kCancel:
      states = {JobState::kWaiting, JobState::kQueued, JobState::kRunning,
                JobState::kPaused};
      break;
  }
  std::vector<Job> changed;
  int64_t after = 0;
  while (true) {
    ASSIGN_OR_RETURN(std::vector<Job> jobs,
                     store_->List(states, after, kMaxPageSize));
    for (const Job& job : jobs) {
      absl::StatusOr<Job> applied = Apply(job.id, action);
      // A job that moved on meanwhile (finished, deleted) is skipped.
      if (applied.ok()) changed.push_back(*std::move(applied));
    }
    if (static_cast<int>(jobs.size()) < kMaxPageSize) break;
    after = jobs.back().sequence;
  }
  return changed;
}

absl::StatusOr<int64_t> DownloadManager::Prune(absl::Time ended_before) {
  ASSIGN_OR_RETURN(std::vector<Job> pruned, store_->Prune(ended_before));
  return static_cast<int64_t>(pruned.size());
}

absl::StatusOr<Job> DownloadManager::Wait(const std::string& id,
                                          absl::Time deadline,
                                          std::function<bool()> cancelled) {
  if (id.empty()) return absl::InvalidArgumentError("id is required");
  jobs::FollowOptions options;
  options.deadline = deadline;
  options.cancelled = std::move(cancelled);
  return store_->Wait(follower_, id, options);
}

absl::Status DownloadManager::Watch(const std::string& id,
                                    int64_t since_revision,
                                    const std::function<bool(const Job&)>& send,
                                    std::function<bool()> cancelled) {
  if (id.empty()) return absl::InvalidArgumentError("id is required");
  jobs::FollowOptions options;
  options.cancelled = std::move(cancelled);
  return store_->Watch(follower_, id, since_revision, send, options);
}

}  // namespace mm::downloader
