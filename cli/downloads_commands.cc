#include "cli/downloads_commands.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/download_requests.h"
#include "cli/download_watch.h"
#include "cli/output.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "grpcpp/client_context.h"
#include "nlohmann/json.hpp"

namespace mm::cli {
namespace {

namespace fs = std::filesystem;
namespace v1 = modelmanager::v1;
using DownloaderStub = v1::Downloader::StubInterface;

// The ids after `mm downloads VERB`; at least one.
absl::StatusOr<std::vector<std::string>> JobIds(const ParsedArgs& args) {
  if (args.words.size() < 3) {
    return UsageError(absl::StrCat(CommandName(args, 2), " needs a job ID"));
  }
  return std::vector<std::string>(args.words.begin() + 2, args.words.end());
}

absl::Status RunCreate(const ParsedArgs& args, DownloaderStub& stub,
                       const CommandIo& io) {
  ASSIGN_OR_RETURN(v1::CreateDownloadRequest request,
                   BuildCreateDownloadRequest(args, io.working_dir));
  v1::DownloadJob job;
  auto context = UnaryContext(io);
  grpc::Status status = stub.CreateDownload(context.get(), request, &job);
  if (!status.ok()) return FromGrpcStatus(status);
  // The watch's first message is this job, so --wait prints it only once.
  if (args.Has("wait")) return WatchJobs({job.id()}, stub, io);
  return PrintDownloadJob(job, io.json, *io.out);
}

absl::Status RunList(const ParsedArgs& args, DownloaderStub& stub,
                     const CommandIo& io) {
  RETURN_IF_ERROR(NoArguments(args, 2));
  ASSIGN_OR_RETURN(v1::ListDownloadsRequest request,
                   BuildListDownloadsRequest(args));
  std::vector<v1::DownloadJob> jobs;
  while (true) {
    v1::ListDownloadsResponse response;
    auto context = UnaryContext(io);
    grpc::Status status = stub.ListDownloads(context.get(), request, &response);
    if (!status.ok()) return FromGrpcStatus(status);
    for (v1::DownloadJob& job : *response.mutable_jobs()) {
      jobs.push_back(std::move(job));
    }
    if (response.next_page_token().empty()) break;
    request.set_page_token(response.next_page_token());
  }
  return PrintDownloadList(jobs, io.json, *io.out);
}

absl::Status RunGet(const ParsedArgs& args, DownloaderStub& stub,
                    const CommandIo& io) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, JobIds(args));
  std::vector<v1::DownloadJob> jobs;
  for (const std::string& id : ids) {
    v1::GetDownloadRequest request;
    request.set_id(id);
    v1::DownloadJob job;
    auto context = UnaryContext(io);
    grpc::Status status = stub.GetDownload(context.get(), request, &job);
    if (!status.ok()) return FromGrpcStatus(status);
    jobs.push_back(std::move(job));
  }
  if (jobs.size() == 1) return PrintDownloadJob(jobs[0], io.json, *io.out);
  if (io.json) {
    ASSIGN_OR_RETURN(std::string text, DownloadListJson(jobs));
    *io.out << text << '\n';
    return absl::OkStatus();
  }
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (i > 0) *io.out << '\n';
    RETURN_IF_ERROR(PrintDownloadJob(jobs[i], /*json=*/false, *io.out));
  }
  return absl::OkStatus();
}

absl::Status RunWait(const ParsedArgs& args, DownloaderStub& stub,
                     const CommandIo& io) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, JobIds(args));
  // One deadline for all: waiting for the jobs one after another then takes
  // as long as waiting for the slowest.
  std::optional<absl::Time> deadline;
  if (args.Has("timeout")) deadline = absl::Now() + io.timeout;
  std::vector<v1::DownloadJob> jobs;
  for (const std::string& id : ids) {
    v1::DownloadJobRequest request;
    request.set_id(id);
    v1::DownloadJob job;
    grpc::ClientContext context;
    if (deadline) context.set_deadline(absl::ToChronoTime(*deadline));
    grpc::Status status = stub.WaitDownload(&context, request, &job);
    if (!status.ok()) return FromGrpcStatus(status);
    if (!io.json) *io.out << JobStateLine(job) << '\n';
    jobs.push_back(std::move(job));
  }
  if (io.json) {
    ASSIGN_OR_RETURN(std::string text, DownloadListJson(jobs));
    *io.out << text << '\n';
  }
  for (const v1::DownloadJob& job : jobs) RETURN_IF_ERROR(JobOutcome(job));
  return absl::OkStatus();
}

absl::Status RunWatch(const ParsedArgs& args, DownloaderStub& stub,
                      const CommandIo& io) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, JobIds(args));
  return WatchJobs(ids, stub, io);
}

absl::Status PrintJobs(const std::vector<v1::DownloadJob>& jobs,
                       const CommandIo& io) {
  if (io.json) {
    ASSIGN_OR_RETURN(std::string text, DownloadListJson(jobs));
    *io.out << text << '\n';
    return absl::OkStatus();
  }
  for (const v1::DownloadJob& job : jobs) {
    *io.out << JobStateLine(job) << '\n';
  }
  return absl::OkStatus();
}

// start, pause, resume and cancel: by id, each id tried even when an
// earlier one fails, or with --all as one BulkDownloadAction.
absl::Status RunAction(const ParsedArgs& args, DownloaderStub& stub,
                       const CommandIo& io,
                       v1::BulkDownloadActionRequest::Action action) {
  const std::string& verb = args.words[1];
  if (args.Has("all")) {
    if (args.words.size() > 2) {
      return UsageError(absl::StrCat(CommandName(args, 2),
                                     " takes job IDs or --all, not both"));
    }
    if (args.Has("token-file")) {
      return UsageError(
          "mm downloads resume --all cannot carry a token; resume the job "
          "that needs it by ID with --token-file");
    }
    v1::BulkDownloadActionRequest request;
    request.set_action(action);
    v1::BulkDownloadActionResponse response;
    auto context = UnaryContext(io);
    grpc::Status status =
        stub.BulkDownloadAction(context.get(), request, &response);
    if (!status.ok()) return FromGrpcStatus(status);
    std::vector<v1::DownloadJob> jobs(response.jobs().begin(),
                                      response.jobs().end());
    if (jobs.empty() && !io.json) {
      *io.out << "No downloads to " << verb << ".\n";
      return absl::OkStatus();
    }
    return PrintJobs(jobs, io);
  }
  if (args.words.size() < 3) {
    return UsageError(
        absl::StrCat(CommandName(args, 2), " needs job IDs or --all"));
  }
  std::string token;
  if (action == v1::BulkDownloadActionRequest::RESUME) {
    ASSIGN_OR_RETURN(token, ReadUrlAccessToken(args));
  }
  std::vector<v1::DownloadJob> jobs;
  absl::Status first_error;
  int errors = 0;
  for (size_t i = 2; i < args.words.size(); ++i) {
    const std::string& id = args.words[i];
    v1::DownloadJob job;
    auto context = UnaryContext(io);
    grpc::Status status;
    if (action == v1::BulkDownloadActionRequest::RESUME) {
      v1::ResumeDownloadRequest request;
      request.set_id(id);
      request.set_access_token(token);
      status = stub.ResumeDownload(context.get(), request, &job);
    } else {
      v1::DownloadJobRequest request;
      request.set_id(id);
      if (action == v1::BulkDownloadActionRequest::START) {
        status = stub.StartDownload(context.get(), request, &job);
      } else if (action == v1::BulkDownloadActionRequest::PAUSE) {
        status = stub.PauseDownload(context.get(), request, &job);
      } else {
        status = stub.CancelDownload(context.get(), request, &job);
      }
    }
    if (!status.ok()) {
      if (errors++ == 0) {
        first_error =
            Annotate(FromGrpcStatus(status), absl::StrCat(verb, " ", id));
      }
      continue;
    }
    jobs.push_back(std::move(job));
  }
  RETURN_IF_ERROR(PrintJobs(jobs, io));
  if (errors > 1) {
    return absl::Status(first_error.code(),
                        absl::StrCat(first_error.message(), " (and ",
                                     errors - 1, " more failed)"));
  }
  return first_error;
}

absl::Status RunPrune(const ParsedArgs& args, DownloaderStub& stub,
                      const CommandIo& io) {
  RETURN_IF_ERROR(NoArguments(args, 2));
  ASSIGN_OR_RETURN(v1::PruneDownloadsRequest request, BuildPruneRequest(args));
  v1::PruneDownloadsResponse response;
  auto context = UnaryContext(io);
  grpc::Status status = stub.PruneDownloads(context.get(), request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  if (io.json) {
    ASSIGN_OR_RETURN(nlohmann::json value, ProtoJson(response));
    *io.out << JsonText(value) << '\n';
  } else {
    *io.out << "Pruned " << response.pruned() << " finished download"
            << (response.pruned() == 1 ? "" : "s") << ".\n";
  }
  return absl::OkStatus();
}

absl::Status RunStart(const ParsedArgs& args, DownloaderStub& stub,
                      const CommandIo& io) {
  return RunAction(args, stub, io, v1::BulkDownloadActionRequest::START);
}
absl::Status RunPause(const ParsedArgs& args, DownloaderStub& stub,
                      const CommandIo& io) {
  return RunAction(args, stub, io, v1::BulkDownloadActionRequest::PAUSE);
}
absl::Status RunResume(const ParsedArgs& args, DownloaderStub& stub,
                       const CommandIo& io) {
  return RunAction(args, stub, io, v1::BulkDownloadActionRequest::RESUME);
}
absl::Status RunCancel(const ParsedArgs& args, DownloaderStub& stub,
                       const CommandIo& io) {
  return RunAction(args, stub, io, v1::BulkDownloadActionRequest::CANCEL);
}

// Every download command, in the order `mm downloads` lists them.
const std::vector<StubCommand<DownloaderStub>>& DownloaderCommandTable() {
  static const auto* const kTable =
      new std::vector<StubCommand<DownloaderStub>>{
          // --token-file is the URL's token (sent to the downloader, which
          // passes it only to the URL's host), not our bearer token.
          {{"download"},
           {ValueFlag("dest"), ValueFlag("output"), ValueFlag("name"),
            ValueFlag("priority"), ValueFlag("sha256"), ValueFlag("size"),
            BoolFlag("keep-partial"), BoolFlag("no-start"),
            ValueFlag("request-id"), BoolFlag("wait"), ValueFlag("files")},
           RunCreate,
           /*token_file_is_access_token=*/true},
          {{"downloads", "list"}, {ValueFlag("state")}, RunList},
          {{"downloads", "get"}, {}, RunGet},
          {{"downloads", "wait"}, {}, RunWait},
          {{"downloads", "watch"}, {}, RunWatch},
          {{"downloads", "start"}, {BoolFlag("all")}, RunStart},
          {{"downloads", "pause"}, {BoolFlag("all")}, RunPause},
          {{"downloads", "resume"},
           {BoolFlag("all")},
           RunResume,
           /*token_file_is_access_token=*/true},
          {{"downloads", "cancel"}, {BoolFlag("all")}, RunCancel},
          {{"downloads", "prune"}, {ValueFlag("before")}, RunPrune},
      };
  return *kTable;
}

}  // namespace

absl::Status RunDownloadsCommand(const ParsedArgs& args, DownloaderStub& stub,
                                 const CommandIo& io) {
  return RunStubCommand(DownloaderCommandTable(), args, stub, io);
}

CommandGroup DownloadsCommands() {
  CommandGroup group;
  group.usage = DownloadsUsage();
  group.summary = {{"mm download URL ...",
                    "queue a download (`mm download "
                    "--help`)"},
                   {"mm downloads ...",
                    "the download jobs (`mm downloads "
                    "--help`)"}};
  group.commands =
      ServiceCommands<v1::Downloader>("downloader", DownloaderCommandTable());
  return group;
}

std::string DownloadsUsage() {
  return R"(Usage:
  mm download URL [--dest DIR | --output FILE] [--name NAME] [--priority N]
              [--sha256 HEX] [--size BYTES] [--token-file F] [--keep-partial]
              [--no-start] [--request-id ID] [--wait] [--json]
  mm download --files LIST [--dest DIR] [--priority N] [--token-file F]
              [--keep-partial] [--no-start] [--request-id ID] [--wait] [--json]
      Neither --dest nor --output: the server's first download root.
      --files LIST: one job of several files, one per line of LIST:
      URL RELATIVE_PATH [SIZE [SHA256]] (tabs or spaces; # comments).
      --token-file F: the URL's bearer token (sent to the downloader, which
      passes it only to the URL's host; never printed).
  mm downloads list [--state STATE]... [--json]
      STATE: waiting, queued, running, paused, succeeded, failed, cancelled
  mm downloads get ID... [--json]
  mm downloads wait ID... [--timeout DURATION] [--json]
  mm downloads watch ID... [--json]
  mm downloads start|pause|cancel ID...|--all [--json]
  mm downloads resume ID... [--token-file F] | --all [--json]
  mm downloads prune [--before RFC3339] [--json]
)";
}

}  // namespace mm::cli
