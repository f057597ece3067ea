#include "cli/installer_commands.h"

#include <algorithm>
#include <optional>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/download_requests.h"
#include "cli/models_commands.h"
#include "cli/output.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "grpcpp/client_context.h"
#include "nlohmann/json.hpp"

namespace mm::cli {
namespace {

namespace fs = std::filesystem;
namespace v1 = modelmanager::v1;
using InstallerStub = v1::Installer::StubInterface;

struct StateName {
  v1::InstallState state;
  const char* name;
};
constexpr StateName kStates[] = {
    {v1::INSTALL_STATE_WAITING, "waiting"},
    {v1::INSTALL_STATE_DOWNLOADING, "downloading"},
    {v1::INSTALL_STATE_DOWNLOADS_DONE, "downloads_done"},
    {v1::INSTALL_STATE_RUNNING, "running"},
    {v1::INSTALL_STATE_PAUSED, "paused"},
    {v1::INSTALL_STATE_COMPLETED, "completed"},
    {v1::INSTALL_STATE_ERROR, "error"},
    {v1::INSTALL_STATE_CANCELLED, "cancelled"},
};

std::string InstallStateName(v1::InstallState state) {
  for (const StateName& entry : kStates) {
    if (entry.state == state) return entry.name;
  }
  return "unknown";
}

absl::StatusOr<v1::InstallState> ParseInstallState(const std::string& name) {
  for (const StateName& entry : kStates) {
    if (name == entry.name) return entry.state;
  }
  return UsageError(absl::StrCat(
      "unknown install state '", name,
      "'; use waiting, downloading, downloads_done, running, paused, "
      "completed, error or cancelled"));
}

std::string ProgressText(const v1::InstallJob& job) {
  if (job.total_bytes() > 0) {
    const int percent =
        static_cast<int>(100.0 * static_cast<double>(job.bytes()) /
                         static_cast<double>(job.total_bytes()));
    return absl::StrCat(percent, "% ", HumanSize(job.bytes()), "/",
                        HumanSize(job.total_bytes()));
  }
  if (job.bytes() > 0) return HumanSize(job.bytes());
  return "";
}

// "ID STATE [progress | key path | error]".
std::string InstallLine(const v1::InstallJob& job) {
  std::string line = absl::StrCat(job.id(), " ", InstallStateName(job.state()));
  switch (job.state()) {
    case v1::INSTALL_STATE_COMPLETED:
      absl::StrAppend(&line, " ", job.config_out().key(), " ",
                      job.config_out().path());
      break;
    case v1::INSTALL_STATE_ERROR:
      absl::StrAppend(&line, " ", job.error().type(), ": ",
                      job.error().message());
      break;
    default:
      if (const std::string progress = ProgressText(job); !progress.empty()) {
        absl::StrAppend(&line, " ", progress);
      }
      if (!job.status_message().empty()) {
        absl::StrAppend(&line, " (", job.status_message(), ")");
      }
  }
  return line;
}

absl::StatusOr<nlohmann::json> InstallJson(const v1::InstallJob& job) {
  ASSIGN_OR_RETURN(nlohmann::json value, ProtoJson(job));
  if (job.has_config_out()) {
    value["config_out"] = ModelJson(job.config_out());
  } else {
    value["config_out"] = nullptr;
  }
  return value;
}

absl::Status PrintJobs(const std::vector<v1::InstallJob>& jobs,
                       const CommandIo& io) {
  if (io.json) {
    nlohmann::json array = nlohmann::json::array();
    for (const v1::InstallJob& job : jobs) {
      ASSIGN_OR_RETURN(nlohmann::json value, InstallJson(job));
      array.push_back(std::move(value));
    }
    *io.out << JsonText(array) << '\n';
    return absl::OkStatus();
  }
  for (const v1::InstallJob& job : jobs) *io.out << InstallLine(job) << '\n';
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> JobIds(const ParsedArgs& args) {
  if (args.words.size() < 3) {
    return UsageError(absl::StrCat(CommandName(args, 2), " needs a job ID"));
  }
  return std::vector<std::string>(args.words.begin() + 2, args.words.end());
}

// A local path the user typed, made absolute against our working directory
// (the installer shares the filesystem but not our directory); anything
// else is sent as typed.
std::string SourceArgument(const std::string& text, const CommandIo& io) {
  fs::path path(text);
  std::error_code error;
  if (path.is_relative() && !io.working_dir.empty() &&
      fs::exists(io.working_dir / path, error)) {
    return (io.working_dir / path).lexically_normal().string();
  }
  return text;
}

// Follows one job until it is done (or paused), printing each change: a
// redrawn line on a terminal, one line per state change otherwise (and
// nothing but the final job with --json). Returns the last job seen.
absl::StatusOr<v1::InstallJob> Follow(const std::string& id,
                                      InstallerStub& stub,
                                      const CommandIo& io) {
  v1::InstallJob last;
  int64_t since = 0;
  int reconnects = 0;
  absl::Duration backoff = io.reconnect_backoff;
  std::optional<v1::InstallState> printed;
  while (true) {
    grpc::ClientContext context;
    v1::WatchInstallRequest request;
    request.set_id(id);
    request.set_since_revision(since);
    auto reader = stub.WatchInstall(&context, request);
    v1::InstallJob job;
    while (reader->Read(&job)) {
      last = job;
      since = job.revision();
      reconnects = 0;
      if (!io.json) {
        if (io.terminal) {
          *io.out << "\r\033[K" << InstallLine(job) << std::flush;
        } else if (!printed || *printed != job.state()) {
          *io.out << InstallLine(job) << '\n';
        }
        printed = job.state();
      }
      if (job.done() || job.state() == v1::INSTALL_STATE_PAUSED) {
        context.TryCancel();
        break;
      }
    }
    absl::Status status = FromGrpcStatus(reader->Finish());
    if (last.done() || last.state() == v1::INSTALL_STATE_PAUSED) break;
    if (!status.ok() && status.code() != absl::StatusCode::kUnavailable) {
      return status;
    }
    if (++reconnects > io.reconnect_attempts) {
      return status.ok() ? absl::UnavailableError(
                               "the watch ended before the install finished")
                         : status;
    }
    absl::SleepFor(backoff);
    backoff *= 2;
  }
  if (!io.json && io.terminal) *io.out << '\n';
  return last;
}

absl::Status RunInstall(const ParsedArgs& args, InstallerStub& stub,
                        const CommandIo& io) {
  ASSIGN_OR_RETURN(std::string source, SingleArgument(args, 1, "a SOURCE"));
  source = SourceArgument(source, io);
  ASSIGN_OR_RETURN(nlohmann::json overrides,
                   ParseSetAssignments(args.GetAll("set")));
  ASSIGN_OR_RETURN(std::string token, ReadUrlAccessToken(args));
  if (args.Has("dry-run")) {
    v1::PlanInstallRequest request;
    request.set_source(source);
    request.set_config_json(overrides.dump());
    request.set_access_token(token);
    v1::InstallPlan plan;
    auto context = UnaryContext(io);
    RETURN_IF_ERROR(
        FromGrpcStatus(stub.PlanInstall(context.get(), request, &plan)));
    if (io.json) {
      ASSIGN_OR_RETURN(nlohmann::json value, ProtoJson(plan));
      *io.out << JsonText(value) << '\n';
      return absl::OkStatus();
    }
    PrintFields(
        {{"source", plan.source()},
         {"type", plan.source_type()},
         {"repo", plan.repo_id()},
         {"revision", plan.revision()},
         {"commit", plan.commit()},
         {"local path", plan.local_path()},
         {"files", std::to_string(plan.files_size())},
         {"total", plan.total_bytes() > 0 ? HumanSize(plan.total_bytes())
                                          : std::string("unknown")}},
        *io.out);
    for (const v1::PlannedFile& file : plan.files()) {
      *io.out << "  " << (file.path().empty() ? file.url() : file.path())
              << "  " << (file.size() > 0 ? HumanSize(file.size()) : "?")
              << (file.sha256().empty() ? "" : "  sha256:")
              << file.sha256().substr(0, 12) << '\n';
    }
    return absl::OkStatus();
  }
  v1::CreateInstallRequest request;
  request.set_source(source);
  request.set_config_json(overrides.dump());
  request.set_inplace(args.Has("inplace"));
  request.set_access_token(token);
  request.set_request_id(args.Get("request-id"));
  v1::InstallJob job;
  auto context = UnaryContext(io);
  RETURN_IF_ERROR(
      FromGrpcStatus(stub.CreateInstall(context.get(), request, &job)));
  if (!args.Has("wait")) return PrintInstallJob(job, io.json, *io.out);
  ASSIGN_OR_RETURN(v1::InstallJob last, Follow(job.id(), stub, io));
  if (io.json) RETURN_IF_ERROR(PrintInstallJob(last, true, *io.out));
  return InstallOutcome(last);
}

absl::Status RunList(const ParsedArgs& args, InstallerStub& stub,
                     const CommandIo& io) {
  RETURN_IF_ERROR(NoArguments(args, 2));
  v1::ListInstallsRequest request;
  for (const std::string& name : args.GetAll("state")) {
    ASSIGN_OR_RETURN(v1::InstallState state, ParseInstallState(name));
    request.add_states(state);
  }
  std::vector<v1::InstallJob> jobs;
  while (true) {
    v1::ListInstallsResponse response;
    auto context = UnaryContext(io);
    RETURN_IF_ERROR(
        FromGrpcStatus(stub.ListInstalls(context.get(), request, &response)));
    for (v1::InstallJob& job : *response.mutable_jobs()) {
      jobs.push_back(std::move(job));
    }
    if (response.next_page_token().empty()) break;
    request.set_page_token(response.next_page_token());
  }
  if (jobs.empty() && !io.json) {
    *io.out << "No install jobs.\n";
    return absl::OkStatus();
  }
  return PrintJobs(jobs, io);
}

absl::Status RunGet(const ParsedArgs& args, InstallerStub& stub,
                    const CommandIo& io) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, JobIds(args));
  for (size_t i = 0; i < ids.size(); ++i) {
    v1::GetInstallRequest request;
    request.set_id(ids[i]);
    v1::InstallJob job;
    auto context = UnaryContext(io);
    RETURN_IF_ERROR(
        FromGrpcStatus(stub.GetInstall(context.get(), request, &job)));
    if (i > 0 && !io.json) *io.out << '\n';
    RETURN_IF_ERROR(PrintInstallJob(job, io.json, *io.out));
  }
  return absl::OkStatus();
}

absl::Status RunWait(const ParsedArgs& args, InstallerStub& stub,
                     const CommandIo& io) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, JobIds(args));
  std::optional<absl::Time> deadline;
  if (args.Has("timeout")) deadline = absl::Now() + io.timeout;
  std::vector<v1::InstallJob> jobs;
  for (const std::string& id : ids) {
    v1::InstallJobRequest request;
    request.set_id(id);
    v1::InstallJob job;
    grpc::ClientContext context;
    if (deadline) context.set_deadline(absl::ToChronoTime(*deadline));
    RETURN_IF_ERROR(FromGrpcStatus(stub.WaitInstall(&context, request, &job)));
    jobs.push_back(std::move(job));
  }
  RETURN_IF_ERROR(PrintJobs(jobs, io));
  for (const v1::InstallJob& job : jobs) RETURN_IF_ERROR(InstallOutcome(job));
  return absl::OkStatus();
}

absl::Status RunWatch(const ParsedArgs& args, InstallerStub& stub,
                      const CommandIo& io) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, JobIds(args));
  for (const std::string& id : ids) {
    ASSIGN_OR_RETURN(v1::InstallJob last, Follow(id, stub, io));
    if (io.json) RETURN_IF_ERROR(PrintInstallJob(last, true, *io.out));
  }
  return absl::OkStatus();
}

enum class Action { kCancel, kPause, kResume };

absl::Status RunAction(const ParsedArgs& args, InstallerStub& stub,
                       const CommandIo& io, Action action) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, JobIds(args));
  std::string token;
  if (action == Action::kResume) {
    ASSIGN_OR_RETURN(token, ReadUrlAccessToken(args));
  }
  std::vector<v1::InstallJob> jobs;
  absl::Status first_error;
  for (const std::string& id : ids) {
    v1::InstallJob job;
    auto context = UnaryContext(io);
    grpc::Status status;
    if (action == Action::kResume) {
      v1::ResumeInstallRequest request;
      request.set_id(id);
      request.set_access_token(token);
      status = stub.ResumeInstall(context.get(), request, &job);
    } else {
      v1::InstallJobRequest request;
      request.set_id(id);
      status = action == Action::kCancel
                   ? stub.CancelInstall(context.get(), request, &job)
                   : stub.PauseInstall(context.get(), request, &job);
    }
    if (!status.ok()) {
      if (first_error.ok()) {
        first_error = Annotate(FromGrpcStatus(status),
                               absl::StrCat(args.words[1], " ", id));
      }
      continue;
    }
    jobs.push_back(std::move(job));
  }
  RETURN_IF_ERROR(PrintJobs(jobs, io));
  return first_error;
}

absl::Status RunCancel(const ParsedArgs& args, InstallerStub& stub,
                       const CommandIo& io) {
  return RunAction(args, stub, io, Action::kCancel);
}
absl::Status RunPause(const ParsedArgs& args, InstallerStub& stub,
                      const CommandIo& io) {
  return RunAction(args, stub, io, Action::kPause);
}
absl::Status RunResume(const ParsedArgs& args, InstallerStub& stub,
                       const CommandIo& io) {
  return RunAction(args, stub, io, Action::kResume);
}

absl::Status RunPrune(const ParsedArgs& args, InstallerStub& stub,
                      const CommandIo& io) {
  RETURN_IF_ERROR(NoArguments(args, 2));
  v1::PruneInstallsRequest request;
  v1::PruneInstallsResponse response;
  auto context = UnaryContext(io);
  RETURN_IF_ERROR(
      FromGrpcStatus(stub.PruneInstalls(context.get(), request, &response)));
  if (io.json) {
    *io.out << JsonText({{"pruned", response.pruned()}}) << '\n';
  } else {
    *io.out << "Pruned " << response.pruned() << " finished install"
            << (response.pruned() == 1 ? "" : "s") << ".\n";
  }
  return absl::OkStatus();
}

absl::Status RunSync(const ParsedArgs& args, InstallerStub& stub,
                     const CommandIo& io) {
  RETURN_IF_ERROR(NoArguments(args, 1));
  v1::SyncModelsRequest request;
  request.set_register_orphans(args.Has("register-orphans"));
  v1::SyncModelsResponse response;
  auto context = UnaryContext(io);
  RETURN_IF_ERROR(
      FromGrpcStatus(stub.SyncModels(context.get(), request, &response)));
  if (io.json) {
    ASSIGN_OR_RETURN(nlohmann::json value, ProtoJson(response));
    *io.out << JsonText(value) << '\n';
    return absl::OkStatus();
  }
  for (const std::string& key : response.missing_keys()) {
    *io.out << "missing files: " << key << '\n';
  }
  for (const std::string& path : response.orphan_paths()) {
    *io.out << "not registered: " << path << '\n';
  }
  for (const std::string& key : response.registered_keys()) {
    *io.out << "registered: " << key << '\n';
  }
  *io.out << response.missing_keys_size() << " records with missing files, "
          << response.orphan_paths_size() << " unregistered model files"
          << (args.Has("register-orphans")
                  ? absl::StrCat(", ", response.registered_keys_size(),
                                 " registered")
                  : std::string())
          << ".\n";
  return absl::OkStatus();
}

absl::Status RunCacheDownload(const ParsedArgs& args, InstallerStub& stub,
                              const CommandIo& io) {
  ASSIGN_OR_RETURN(std::string source, SingleArgument(args, 1, "a SOURCE"));
  ASSIGN_OR_RETURN(std::string token, ReadUrlAccessToken(args));
  v1::DownloadAndCacheRequest request;
  request.set_source(SourceArgument(source, io));
  request.set_access_token(token);
  v1::DownloadAndCacheResponse response;
  // A download takes as long as it takes, unless --timeout says otherwise.
  grpc::ClientContext context;
  if (args.Has("timeout")) {
    context.set_deadline(absl::ToChronoTime(absl::Now() + io.timeout));
  }
  RETURN_IF_ERROR(
      FromGrpcStatus(stub.DownloadAndCache(&context, request, &response)));
  if (io.json) {
    *io.out << JsonText(
                   {{"path", response.path()}, {"cached", response.cached()}})
            << '\n';
  } else {
    *io.out << response.path() << '\n';
  }
  return absl::OkStatus();
}

const std::vector<StubCommand<InstallerStub>>& InstallerCommandTable() {
  static const auto* const kTable = new std::vector<StubCommand<InstallerStub>>{
      // --token-file is the hub's or URL's token, passed on by the installer.
      {{"install"},
       {BoolFlag("inplace"), ValueFlag("set"), BoolFlag("dry-run"),
        BoolFlag("wait"), ValueFlag("request-id")},
       RunInstall,
       /*token_file_is_access_token=*/true},
      {{"installs", "list"}, {ValueFlag("state")}, RunList},
      {{"installs", "get"}, {}, RunGet},
      {{"installs", "wait"}, {}, RunWait},
      {{"installs", "watch"}, {}, RunWatch},
      {{"installs", "cancel"}, {}, RunCancel},
      {{"installs", "pause"}, {}, RunPause},
      {{"installs", "resume"},
       {},
       RunResume,
       /*token_file_is_access_token=*/true},
      {{"installs", "prune"}, {}, RunPrune},
      {{"sync"}, {BoolFlag("register-orphans")}, RunSync},
      {{"cache-download"},
       {},
       RunCacheDownload,
       /*token_file_is_access_token=*/true},
  };
  return *kTable;
}

}  // namespace

absl::Status InstallOutcome(const v1::InstallJob& job) {
  switch (job.state()) {
    case v1::INSTALL_STATE_ERROR:
      return absl::Status(
          StatusCodeFromName(job.error().code()),
          absl::StrCat("install ", job.id(), " failed: ", job.error().type(),
                       job.error().type().empty() ? "" : ": ",
                       job.error().message()));
    case v1::INSTALL_STATE_CANCELLED:
      return absl::CancelledError(
          absl::StrCat("install ", job.id(), " was cancelled"));
    case v1::INSTALL_STATE_PAUSED:
      return absl::FailedPreconditionError(absl::StrCat(
          "install ", job.id(), " is paused",
          job.status_message().empty() ? "" : ": ", job.status_message(),
          "; continue it with `mm installs resume ", job.id(), "`"));
    default:
      return absl::OkStatus();
  }
}

absl::Status PrintInstallJob(const v1::InstallJob& job, bool json,
                             std::ostream& out) {
  if (json) {
    ASSIGN_OR_RETURN(nlohmann::json value, InstallJson(job));
    out << JsonText(value) << '\n';
    return absl::OkStatus();
  }
  std::vector<std::pair<std::string, std::string>> lines = {
      {"id", job.id()},
      {"state", InstallStateName(job.state())},
      {"source", job.source()},
      {"key", job.key()},
  };
  if (const std::string progress = ProgressText(job); !progress.empty()) {
    lines.push_back({"progress", progress});
  }
  if (!job.status_message().empty()) {
    lines.push_back({"status", job.status_message()});
  }
  if (job.has_config_out()) {
    lines.push_back({"path", job.config_out().path()});
    lines.push_back({"model", absl::StrCat(job.config_out().type(), " ",
                                           job.config_out().base(), " ",
                                           job.config_out().name())});
  }
  if (job.state() == v1::INSTALL_STATE_ERROR) {
    lines.push_back({"error", absl::StrCat(job.error().type(), ": ",
                                           job.error().message())});
  }
  PrintFields(lines, out);
  return absl::OkStatus();
}

absl::Status RunInstallerCommand(const ParsedArgs& args, InstallerStub& stub,
                                 const CommandIo& io) {
  return RunStubCommand(InstallerCommandTable(), args, stub, io);
}

absl::Status RemoveModelThroughInstaller(const CommandContext& context) {
  ASSIGN_OR_RETURN(std::string key,
                   SingleArgument(context.args, 2, "a model KEY"));
  if (context.args.Has("etag")) {
    return UsageError(
        "--etag applies to removing the record only; drop it, or drop "
        "--delete-files/--unconditionally");
  }
  ASSIGN_OR_RETURN(
      std::shared_ptr<grpc::Channel> channel,
      ConnectToService(context.options, "installer", context.options.client));
  auto stub = v1::Installer::NewStub(channel);
  v1::DeleteInstalledModelRequest request;
  request.set_key(key);
  request.set_delete_files(context.args.Has("delete-files"));
  request.set_unconditionally(context.args.Has("unconditionally"));
  v1::DeleteInstalledModelResponse response;
  auto rpc = UnaryContext(context.io);
  absl::Status status =
      FromGrpcStatus(stub->DeleteModel(rpc.get(), request, &response));
  if (!status.ok()) {
    return ExplainUnavailable(status, context.options, "installer");
  }
  if (context.io.json) {
    *context.io.out << JsonText({{"key", key},
                                 {"removed_paths", response.removed_paths()}})
                    << '\n';
    return absl::OkStatus();
  }
  *context.io.out << "Removed " << key;
  if (response.removed_paths().empty()) {
    *context.io.out << " (its files were left in place).\n";
  } else {
    *context.io.out << " and " << absl::StrJoin(response.removed_paths(), ", ")
                    << ".\n";
  }
  return absl::OkStatus();
}

CommandGroup InstallerCommands() {
  CommandGroup group;
  group.usage = InstallerUsage();
  group.summary = {
      {"mm install SOURCE ...",
       "install a model from a path, URL or Hugging Face repo (`mm install "
       "--help`)"},
      {"mm installs ...", "the install jobs (`mm installs --help`)"},
      {"mm sync [--register-orphans]",
       "records without files, model files without records"},
      {"mm cache-download SOURCE", "fetch into the download cache"}};
  group.commands =
      ServiceCommands<v1::Installer>("installer", InstallerCommandTable());
  return group;
}

std::string InstallerUsage() {
  return R"(Usage:
  mm install SOURCE [--inplace] [--set FIELD=VALUE]... [--token-file F]
             [--dry-run] [--wait] [--request-id ID] [--json]
      SOURCE: a local path, an http(s) URL, or a Hugging Face repo
      owner/name[:variant][:subfolder] (variant: fp16, fp32, onnx, openvino,
      flax). --inplace registers a local path where it is. --set overrides a
      probed field (--set name="My VAE"). --token-file F: the hub's or the
      URL's token. --dry-run prints what would be fetched. --wait follows the
      job and exits non-zero when it ends in error or is cancelled.
  mm installs list [--state STATE]... [--json]
      STATE: waiting, downloading, downloads_done, running, paused,
      completed, error, cancelled
  mm installs get|watch ID... [--json]
  mm installs wait ID... [--timeout DURATION] [--json]
  mm installs cancel|pause ID... [--json]
  mm installs resume ID... [--token-file F] [--json]
  mm installs prune [--json]
  mm sync [--register-orphans] [--json]
  mm cache-download SOURCE [--token-file F] [--json]
  mm models rm KEY --delete-files | --unconditionally
      (through the installer: the record and its files; see mm models --help)
)";
}

}  // namespace mm::cli
