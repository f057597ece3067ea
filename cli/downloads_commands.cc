#include "cli/downloads_commands.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "cli/output.h"
#include "common/grpc_status.h"
#include "common/mutex.h"
#include "common/secret_file.h"
#include "common/status.h"
#include "common/strings.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/client_context.h"
#include "nlohmann/json.hpp"

namespace mm::cli {
namespace {

namespace fs = std::filesystem;
namespace v1 = modelmanager::v1;

// Most jobs one ListDownloads page may carry (downloader.proto).
constexpr int32_t kMaxPageSize = 1000;
// Characters of a job id shown on a progress line.
constexpr size_t kShortIdLength = 8;
constexpr int kProgressBarWidth = 24;
constexpr char kStatePrefix[] = "DOWNLOAD_STATE_";

std::unique_ptr<grpc::ClientContext> UnaryContext(
    const DownloadsCommandIo& io) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + io.timeout));
  return context;
}

std::string CommandName(const ParsedArgs& args) {
  if (args.words[0] == "download" || args.words.size() < 2) {
    return absl::StrCat("mm ", args.words[0]);
  }
  return absl::StrCat("mm ", args.words[0], " ", args.words[1]);
}

// The ids after `mm downloads VERB`; at least one.
absl::StatusOr<std::vector<std::string>> JobIds(const ParsedArgs& args) {
  if (args.words.size() < 3) {
    return UsageError(absl::StrCat(CommandName(args), " needs a job ID"));
  }
  return std::vector<std::string>(args.words.begin() + 2, args.words.end());
}

absl::Status NoArguments(const ParsedArgs& args) {
  if (args.words.size() > 2) {
    return UsageError(absl::StrCat(
        CommandName(args), " takes no arguments, got '", args.words[2], "'"));
  }
  return absl::OkStatus();
}

std::string ShortId(const std::string& id) {
  return id.size() > kShortIdLength ? id.substr(0, kShortIdLength) : id;
}

// Whole percent done, never 100 before the last byte; nullopt when the
// total is unknown.
std::optional<int> PercentDone(int64_t bytes, int64_t total) {
  if (total <= 0) return std::nullopt;
  if (bytes >= total) return 100;
  return static_cast<int>(static_cast<double>(std::max<int64_t>(bytes, 0)) *
                          100.0 / static_cast<double>(total));
}

std::string RateText(double bytes_per_second) {
  return absl::StrCat(HumanSize(static_cast<int64_t>(bytes_per_second)), "/s");
}

// "45s", "3m07s", "2h05m".
std::string EtaText(int64_t seconds) {
  char buffer[32];
  if (seconds < 60) {
    std::snprintf(buffer, sizeof(buffer), "%llds",
                  static_cast<long long>(seconds));
  } else if (seconds < 3600) {
    std::snprintf(buffer, sizeof(buffer), "%lldm%02llds",
                  static_cast<long long>(seconds / 60),
                  static_cast<long long>(seconds % 60));
  } else {
    std::snprintf(buffer, sizeof(buffer), "%lldh%02lldm",
                  static_cast<long long>(seconds / 3600),
                  static_cast<long long>(seconds / 60 % 60));
  }
  return buffer;
}

std::string BytesText(const v1::DownloadJob& job) {
  if (job.total_bytes() <= 0) return HumanSize(job.bytes());
  return absl::StrCat(HumanSize(job.bytes()), "/",
                      HumanSize(job.total_bytes()));
}

int PartsDone(const v1::DownloadJob& job) {
  return static_cast<int>(
      std::count_if(job.parts().begin(), job.parts().end(),
                    [](const v1::PartProgress& part) { return part.done(); }));
}

absl::StatusCode StatusCodeFromName(const std::string& name) {
  for (int code = 1;
       code <= static_cast<int>(absl::StatusCode::kUnauthenticated); ++code) {
    auto candidate = static_cast<absl::StatusCode>(code);
    if (absl::StatusCodeToString(candidate) == name) return candidate;
  }
  return absl::StatusCode::kUnknown;
}

absl::StatusOr<nlohmann::json> JobJsonValue(const v1::DownloadJob& job) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  // Scripts read `bytes: 0` and `done: false` rather than missing keys.
  options.always_print_primitive_fields = true;
  std::string text;
  auto status =
      google::protobuf::util::MessageToJsonString(job, &text, options);
  if (!status.ok()) {
    return absl::InternalError(absl::StrCat("cannot print download job ",
                                            job.id(),
                                            " as JSON: ", status.ToString()));
  }
  return nlohmann::json::parse(text);
}

absl::StatusOr<std::string> JobListJson(
    const std::vector<v1::DownloadJob>& jobs) {
  nlohmann::json list = nlohmann::json::array();
  for (const v1::DownloadJob& job : jobs) {
    ASSIGN_OR_RETURN(nlohmann::json value, JobJsonValue(job));
    list.push_back(std::move(value));
  }
  return JsonText(list);
}

absl::StatusOr<std::string> MessageJson(
    const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string text;
  auto status =
      google::protobuf::util::MessageToJsonString(message, &text, options);
  if (!status.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot print the response as JSON: ", status.ToString()));
  }
  return JsonText(nlohmann::json::parse(text));
}

std::string OrDash(const std::string& text) {
  return text.empty() ? "-" : text;
}

absl::StatusOr<std::string> ReadAccessToken(const ParsedArgs& args) {
  if (!args.Has("token-file")) return std::string();
  return ReadTokenFile(args.Get("token-file"));
}

// A byte count >= 0, or nullopt.
std::optional<int64_t> ParseSize(const std::string& text) {
  int64_t size = 0;
  if (!absl::SimpleAtoi(text, &size) || size < 0) return std::nullopt;
  return size;
}

// The files of `mm download --files PATH`: one per line, `URL
// RELATIVE_PATH [SIZE [SHA256]]` separated by tabs or spaces (so neither
// may contain whitespace); blank lines and lines starting with `#` are
// skipped. A bad line is a usage error naming PATH and its line number;
// the server checks the paths themselves (safe components, no duplicates).
absl::StatusOr<std::vector<v1::DownloadFile>> ReadFileList(
    const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadConfigFile(path, "download list"));
  std::vector<v1::DownloadFile> files;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    std::vector<std::string> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    auto bad_line = [&](const std::string& why) {
      return UsageError(absl::StrCat("--files ", path, " line ", line_number,
                                     ": ", why,
                                     "; expected 'URL RELATIVE_PATH [SIZE "
                                     "[SHA256]]'"));
    };
    if (fields.size() < 2) return bad_line("no relative path after the URL");
    if (fields.size() > 4) {
      return bad_line(
          absl::StrCat("unexpected '", fields[4], "' after the SHA-256"));
    }
    v1::DownloadFile file;
    file.set_url(fields[0]);
    file.set_relative_path(fields[1]);
    if (fields.size() > 2) {
      std::optional<int64_t> size = ParseSize(fields[2]);
      if (!size) {
        return bad_line(absl::StrCat("size '", fields[2],
                                     "' is not a number of bytes >= 0"));
      }
      file.set_size(*size);
    }
    if (fields.size() > 3) {
      std::optional<std::string> sha256 = NormalizeSha256Hex(fields[3]);
      if (!sha256) {
        return bad_line(absl::StrCat("SHA-256 '", fields[3],
                                     "' is not 64 hexadecimal characters"));
      }
      file.set_sha256(*sha256);
    }
    files.push_back(std::move(file));
  }
  if (files.empty()) {
    return UsageError(absl::StrCat("--files ", path,
                                   " lists no files (only blank lines and "
                                   "# comments)"));
  }
  return files;
}

// Serialises the output of concurrent watches: one progress line per job
// redrawn in place on a terminal, else one line (or JSON object) per state
// change. Shared by the watcher threads; every method takes the lock.
class WatchPrinter {
 public:
  WatchPrinter(const std::vector<std::string>& ids,
               const DownloadsCommandIo& io)
      : io_(io),
        lines_(ids.size()),
        printed_state_(ids.size(), v1::DOWNLOAD_STATE_UNSPECIFIED) {
    for (size_t i = 0; i < ids.size(); ++i) lines_[i] = ShortId(ids[i]);
  }

  // Called by the watcher of job `index` with every message it receives.
  absl::Status Update(size_t index, const v1::DownloadJob& job) {
    MutexLock lock(&mu_);
    std::ostream& out = *io_.out;
    if (!io_.json && io_.terminal) {
      lines_[index] = job.done() ? JobStateLine(job) : JobProgressLine(job);
      Redraw(out);
      return absl::OkStatus();
    }
    // Progress ticks repeat the state; only a new state is news here.
    if (job.state() == printed_state_[index]) return absl::OkStatus();
    printed_state_[index] = job.state();
    if (io_.json) {
      ASSIGN_OR_RETURN(nlohmann::json value, JobJsonValue(job));
      out << JsonText(value, -1) << std::endl;
    } else {
      out << JobStateLine(job) << std::endl;
    }
    return absl::OkStatus();
  }

 private:
  // Moves the cursor back over the block drawn last time (one line per
  // job) and draws it again, each line cleared first.
  void Redraw(std::ostream& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (drawn_) out << "\x1b[" << lines_.size() << "A";
    for (const std::string& line : lines_) out << "\r\x1b[2K" << line << "\n";
    out.flush();
    drawn_ = true;
  }

  Mutex mu_;
  const DownloadsCommandIo& io_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::DownloadState> printed_state_ ABSL_GUARDED_BY(mu_);
  bool drawn_ ABSL_GUARDED_BY(mu_) = false;
};

// Streams one job until a message with done = true, reopening a broken
// stream from the last revision seen; returns that final job.
absl::StatusOr<v1::DownloadJob> FollowJob(
    v1::Downloader::StubInterface& stub, const std::string& id,
    const DownloadsCommandIo& io,
    const std::function<absl::Status(const v1::DownloadJob&)>& on_update) {
  int64_t since_revision = 0;
  int failures = 0;
  absl::Duration backoff = io.reconnect_backoff;
  while (true) {
    grpc::ClientContext context;
    v1::WatchDownloadRequest request;
    request.set_id(id);
    request.set_since_revision(since_revision);
    std::unique_ptr<grpc::ClientReaderInterface<v1::DownloadJob>> reader =
        stub.WatchDownload(&context, request);
    v1::DownloadJob job;
    std::optional<v1::DownloadJob> final_job;
    absl::Status update_status;
    while (reader->Read(&job)) {
      failures = 0;
      backoff = io.reconnect_backoff;
      since_revision = std::max(since_revision, job.revision());
      update_status = on_update(job);
      if (!update_status.ok()) break;
      if (job.done()) {
        final_job = job;
        break;
      }
    }
    if (!update_status.ok() || final_job.has_value()) {
      // The server ends the stream after the final message; not waiting
      // for that keeps a slow close from holding up the exit.
      context.TryCancel();
      reader->Finish().IgnoreError();
      if (!update_status.ok()) return update_status;
      return *std::move(final_job);
    }
    grpc::Status status = reader->Finish();
    // A stream that ends OK before `done` broke as surely as one that
    // reports UNAVAILABLE: the job is still going.
    if (!status.ok() && status.error_code() != grpc::StatusCode::UNAVAILABLE) {
      return FromGrpcStatus(status);
    }
    if (failures >= io.reconnect_attempts) {
      std::string reason = status.ok() ? "the stream ended before the job "
                                         "finished"
                                       : GrpcStatusLine(status);
      return absl::UnavailableError(absl::StrCat(
          "lost the watch of download ", id, " ", failures + 1,
          " times in a row (last: ", reason, "); run `mm downloads watch ", id,
          "` to follow it again"));
    }
    ++failures;
    absl::SleepFor(backoff);
    backoff *= 2;
  }
}

// Follows every job (concurrently when several) to the end, then returns
// the first error: a broken watch first, else a job that did not succeed.
absl::Status WatchJobs(const std::vector<std::string>& ids,
                       v1::Downloader::StubInterface& stub,
                       const DownloadsCommandIo& io) {
  WatchPrinter printer(ids, io);
  std::vector<absl::StatusOr<v1::DownloadJob>> results(
      ids.size(), absl::UnknownError("not watched"));
  auto follow = [&](size_t index) {
    results[index] = FollowJob(
        stub, ids[index], io,
        [&](const v1::DownloadJob& job) { return printer.Update(index, job); });
  };
  if (ids.size() == 1) {
    follow(0);
  } else {
    std::vector<std::thread> threads;
    threads.reserve(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) threads.emplace_back(follow, i);
    for (std::thread& thread : threads) thread.join();
  }
  for (const auto& result : results) RETURN_IF_ERROR(result.status());
  for (const auto& result : results) RETURN_IF_ERROR(JobOutcome(*result));
  return absl::OkStatus();
}

absl::Status RunCreate(const ParsedArgs& args,
                       v1::Downloader::StubInterface& stub,
                       const DownloadsCommandIo& io) {
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

absl::Status RunList(const ParsedArgs& args,
                     v1::Downloader::StubInterface& stub,
                     const DownloadsCommandIo& io) {
  RETURN_IF_ERROR(NoArguments(args));
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

absl::Status RunGet(const ParsedArgs& args, v1::Downloader::StubInterface& stub,
                    const DownloadsCommandIo& io) {
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
    ASSIGN_OR_RETURN(std::string text, JobListJson(jobs));
    *io.out << text << '\n';
    return absl::OkStatus();
  }
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (i > 0) *io.out << '\n';
    RETURN_IF_ERROR(PrintDownloadJob(jobs[i], /*json=*/false, *io.out));
  }
  return absl::OkStatus();
}

absl::Status RunWait(const ParsedArgs& args,
                     v1::Downloader::StubInterface& stub,
                     const DownloadsCommandIo& io) {
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
    ASSIGN_OR_RETURN(std::string text, JobListJson(jobs));
    *io.out << text << '\n';
  }
  for (const v1::DownloadJob& job : jobs) RETURN_IF_ERROR(JobOutcome(job));
  return absl::OkStatus();
}

absl::Status RunWatch(const ParsedArgs& args,
                      v1::Downloader::StubInterface& stub,
                      const DownloadsCommandIo& io) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, JobIds(args));
  return WatchJobs(ids, stub, io);
}

absl::Status PrintJobs(const std::vector<v1::DownloadJob>& jobs,
                       const DownloadsCommandIo& io) {
  if (io.json) {
    ASSIGN_OR_RETURN(std::string text, JobListJson(jobs));
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
absl::Status RunAction(const ParsedArgs& args,
                       v1::Downloader::StubInterface& stub,
                       const DownloadsCommandIo& io,
                       v1::BulkDownloadActionRequest::Action action) {
  const std::string& verb = args.words[1];
  if (args.Has("all")) {
    if (args.words.size() > 2) {
      return UsageError(
          absl::StrCat(CommandName(args), " takes job IDs or --all, not both"));
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
        absl::StrCat(CommandName(args), " needs job IDs or --all"));
  }
  std::string token;
  if (action == v1::BulkDownloadActionRequest::RESUME) {
    ASSIGN_OR_RETURN(token, ReadAccessToken(args));
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

absl::Status RunPrune(const ParsedArgs& args,
                      v1::Downloader::StubInterface& stub,
                      const DownloadsCommandIo& io) {
  RETURN_IF_ERROR(NoArguments(args));
  ASSIGN_OR_RETURN(v1::PruneDownloadsRequest request, BuildPruneRequest(args));
  v1::PruneDownloadsResponse response;
  auto context = UnaryContext(io);
  grpc::Status status = stub.PruneDownloads(context.get(), request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  if (io.json) {
    ASSIGN_OR_RETURN(std::string text, MessageJson(response));
    *io.out << text << '\n';
  } else {
    *io.out << "Pruned " << response.pruned() << " finished download"
            << (response.pruned() == 1 ? "" : "s") << ".\n";
  }
  return absl::OkStatus();
}

}  // namespace

std::string DownloadStateName(v1::DownloadState state) {
  std::string name = v1::DownloadState_Name(state);
  if (name.empty()) return absl::StrCat("state ", static_cast<int>(state));
  return absl::AsciiStrToLower(name.substr(sizeof(kStatePrefix) - 1));
}

absl::StatusOr<v1::DownloadState> ParseDownloadState(const std::string& name) {
  std::vector<std::string> names;
  for (int value = v1::DownloadState_MIN + 1; value <= v1::DownloadState_MAX;
       ++value) {
    auto state = static_cast<v1::DownloadState>(value);
    if (!v1::DownloadState_IsValid(value)) continue;
    if (absl::AsciiStrToLower(name) == DownloadStateName(state)) return state;
    names.push_back(DownloadStateName(state));
  }
  return UsageError(absl::StrCat("--state '", name, "' is not one of ",
                                 absl::StrJoin(names, ", ")));
}

absl::StatusOr<v1::CreateDownloadRequest> BuildCreateDownloadRequest(
    const ParsedArgs& args, const fs::path& working_dir) {
  const bool multi = args.Has("files");
  if (multi) {
    if (args.words.size() > 1) {
      return UsageError(absl::StrCat(
          "mm download takes a URL or --files LIST, not both (got URL '",
          args.words[1], "')"));
    }
    for (const char* flag : {"output", "name", "sha256", "size"}) {
      if (args.Has(flag)) {
        return UsageError(absl::StrCat(
            "--", flag,
            " is for a single URL; with --files LIST give the size and "
            "SHA-256 of each file on its line, and --dest for the directory"));
      }
    }
  } else if (args.words.size() < 2) {
    return UsageError("mm download needs a URL or --files LIST");
  }
  if (args.words.size() > 2) {
    return UsageError(absl::StrCat("mm download takes one URL, got also '",
                                   args.words[2], "'"));
  }
  v1::CreateDownloadRequest request;
  if (multi) {
    ASSIGN_OR_RETURN(std::vector<v1::DownloadFile> files,
                     ReadFileList(args.Get("files")));
    for (v1::DownloadFile& file : files) {
      *request.add_files() = std::move(file);
    }
  } else {
    request.set_url(args.words[1]);
  }
  if (args.Has("dest") && args.Has("output")) {
    return UsageError(
        "--dest DIR and --output FILE both name the destination; give one");
  }
  if (args.Has("output") && args.Has("name")) {
    return UsageError(
        "--name sets the file name inside --dest; with --output FILE the "
        "name is FILE's");
  }
  auto absolute = [&](const std::string& path) {
    fs::path base = working_dir.empty() ? fs::current_path() : working_dir;
    return (base / path).lexically_normal().string();
  };
  if (args.Has("dest")) request.set_dest_dir(absolute(args.Get("dest")));
  if (args.Has("output")) {
    request.set_output_path(absolute(args.Get("output")));
  }
  if (args.Has("name")) request.set_file_name(args.Get("name"));
  if (args.Has("priority")) {
    int32_t priority = 0;
    if (!absl::SimpleAtoi(args.Get("priority"), &priority)) {
      return UsageError(absl::StrCat(
          "--priority must be a whole number (lower runs first; default 10), "
          "got '",
          args.Get("priority"), "'"));
    }
    request.set_priority(priority);
  }
  if (args.Has("sha256")) {
    std::optional<std::string> sha256 = NormalizeSha256Hex(args.Get("sha256"));
    if (!sha256) {
      return UsageError(
          absl::StrCat("--sha256 must be 64 hexadecimal characters, got '",
                       args.Get("sha256"), "' (", args.Get("sha256").size(),
                       " characters)"));
    }
    request.set_expected_sha256(*sha256);
  }
  if (args.Has("size")) {
    std::optional<int64_t> size = ParseSize(args.Get("size"));
    if (!size) {
      return UsageError(absl::StrCat(
          "--size must be the expected size in bytes (a number >= 0), got '",
          args.Get("size"), "'"));
    }
    request.set_expected_size(*size);
  }
  ASSIGN_OR_RETURN(std::string token, ReadAccessToken(args));
  request.set_access_token(token);
  request.set_keep_partial_on_error(args.Has("keep-partial"));
  if (args.Has("no-start")) request.set_start(false);
  request.set_request_id(args.Get("request-id"));
  return request;
}

absl::StatusOr<v1::ListDownloadsRequest> BuildListDownloadsRequest(
    const ParsedArgs& args) {
  v1::ListDownloadsRequest request;
  for (const std::string& value : args.GetAll("state")) {
    for (absl::string_view name :
         absl::StrSplit(value, ',', absl::SkipWhitespace())) {
      ASSIGN_OR_RETURN(
          v1::DownloadState state,
          ParseDownloadState(std::string(absl::StripAsciiWhitespace(name))));
      request.add_states(state);
    }
  }
  request.set_page_size(kMaxPageSize);
  return request;
}

absl::StatusOr<v1::PruneDownloadsRequest> BuildPruneRequest(
    const ParsedArgs& args) {
  v1::PruneDownloadsRequest request;
  if (!args.Has("before")) return request;
  absl::Time before;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, args.Get("before"), &before,
                       &error)) {
    return UsageError(absl::StrCat(
        "--before must be an RFC 3339 time like 2026-01-02T03:04:05Z, got '",
        args.Get("before"), "'"));
  }
  int64_t seconds = absl::ToUnixSeconds(before);
  request.mutable_ended_before()->set_seconds(seconds);
  request.mutable_ended_before()->set_nanos(static_cast<int32_t>(
      absl::ToInt64Nanoseconds(before - absl::FromUnixSeconds(seconds))));
  return request;
}

absl::Status JobOutcome(const v1::DownloadJob& job) {
  switch (job.state()) {
    case v1::DOWNLOAD_STATE_FAILED: {
      std::string message = absl::StrCat("download ", job.id(), " failed");
      if (!job.error().type().empty()) {
        absl::StrAppend(&message, ": ", job.error().type());
      }
      if (!job.error().message().empty()) {
        absl::StrAppend(&message, ": ", job.error().message());
      }
      return absl::Status(StatusCodeFromName(job.error().code()), message);
    }
    case v1::DOWNLOAD_STATE_CANCELLED:
      return absl::CancelledError(
          absl::StrCat("download ", job.id(), " was cancelled"));
    case v1::DOWNLOAD_STATE_PAUSED:
      return absl::FailedPreconditionError(absl::StrCat(
          "download ", job.id(), " is paused",
          job.status_message().empty() ? "" : ": ", job.status_message(),
          "; continue it with `mm downloads resume ", job.id(), "`"));
    default:
      return absl::OkStatus();
  }
}

std::string JobStateLine(const v1::DownloadJob& job) {
  std::string line =
      absl::StrCat(job.id(), " ", DownloadStateName(job.state()));
  switch (job.state()) {
    case v1::DOWNLOAD_STATE_SUCCEEDED:
      if (!job.final_path().empty())
        absl::StrAppend(&line, " ", job.final_path());
      break;
    case v1::DOWNLOAD_STATE_FAILED: {
      const v1::JobError& error = job.error();
      std::string kind = error.type().empty() ? error.code() : error.type();
      if (!kind.empty()) absl::StrAppend(&line, " ", kind);
      if (!error.message().empty()) {
        absl::StrAppend(&line, kind.empty() ? " " : ": ", error.message());
      }
      break;
    }
    default:
      if (!job.status_message().empty()) {
        absl::StrAppend(&line, " ", job.status_message());
      }
  }
  return line;
}

std::string JobProgressLine(const v1::DownloadJob& job) {
  std::vector<std::string> fields = {ShortId(job.id()),
                                     DownloadStateName(job.state())};
  std::optional<int> percent = PercentDone(job.bytes(), job.total_bytes());
  if (percent) {
    int filled = *percent * kProgressBarWidth / 100;
    fields.push_back(absl::StrCat("[", std::string(filled, '#'),
                                  std::string(kProgressBarWidth - filled, '-'),
                                  "]"));
    fields.push_back(absl::StrCat(*percent, "%"));
  }
  fields.push_back(BytesText(job));
  fields.push_back(RateText(job.bytes_per_second()));
  if (percent && job.bytes_per_second() > 0 &&
      job.state() == v1::DOWNLOAD_STATE_RUNNING) {
    double remaining = static_cast<double>(
        std::max<int64_t>(job.total_bytes() - job.bytes(), 0));
    fields.push_back(
        absl::StrCat("ETA ", EtaText(static_cast<int64_t>(
                                 remaining / job.bytes_per_second() + 0.5))));
  }
  if (job.parts_size() > 1) {
    fields.push_back(
        absl::StrCat("parts ", PartsDone(job), "/", job.parts_size()));
  }
  return absl::StrJoin(fields, " ");
}

absl::Status PrintDownloadList(const std::vector<v1::DownloadJob>& jobs,
                               bool json, std::ostream& out) {
  if (json) {
    ASSIGN_OR_RETURN(std::string text, JobListJson(jobs));
    out << text << '\n';
    return absl::OkStatus();
  }
  if (jobs.empty()) {
    out << "No downloads.\n";
    return absl::OkStatus();
  }
  TextTable table(
      {"ID", "STATE", "PROGRESS", "BYTES/TOTAL", "RATE", "PRIORITY", "SOURCE"});
  for (const v1::DownloadJob& job : jobs) {
    std::optional<int> percent = PercentDone(job.bytes(), job.total_bytes());
    table.AddRow(
        {job.id(), DownloadStateName(job.state()),
         percent ? absl::StrCat(*percent, "%") : "-", BytesText(job),
         job.bytes_per_second() > 0 ? RateText(job.bytes_per_second()) : "-",
         absl::StrCat(job.priority()), job.source()});
  }
  table.Print(out);
  return absl::OkStatus();
}

absl::Status PrintDownloadJob(const v1::DownloadJob& job, bool json,
                              std::ostream& out) {
  if (json) {
    ASSIGN_OR_RETURN(nlohmann::json value, JobJsonValue(job));
    out << JsonText(value) << '\n';
    return absl::OkStatus();
  }
  std::vector<std::pair<std::string, std::string>> lines = {
      {"id", job.id()},
      {"state", DownloadStateName(job.state())},
      {"source", OrDash(job.source())},
      {"destination", OrDash(job.destination())},
      {"final_path", OrDash(job.final_path())},
  };
  std::optional<int> percent = PercentDone(job.bytes(), job.total_bytes());
  lines.emplace_back(
      "progress", percent ? absl::StrCat(BytesText(job), " (", *percent, "%)")
                          : absl::StrCat(BytesText(job), " (total unknown)"));
  lines.emplace_back("rate", RateText(job.bytes_per_second()));
  lines.emplace_back("priority", absl::StrCat(job.priority()));
  lines.emplace_back("sequence", absl::StrCat(job.sequence()));
  lines.emplace_back("retries", absl::StrCat(job.retries()));
  lines.emplace_back("access_token", job.has_access_token() ? "given" : "none");
  if (!job.status_message().empty()) {
    lines.emplace_back("status", job.status_message());
  }
  if (job.has_error() || job.state() == v1::DOWNLOAD_STATE_FAILED) {
    const v1::JobError& error = job.error();
    std::vector<std::string> parts;
    if (!error.code().empty()) parts.push_back(error.code());
    if (!error.type().empty()) parts.push_back(error.type());
    if (!error.message().empty()) parts.push_back(error.message());
    lines.emplace_back("error", OrDash(absl::StrJoin(parts, ": ")));
  }
  lines.emplace_back("created", FormatTimestamp(job.times().create_time()));
  lines.emplace_back("started", FormatTimestamp(job.times().start_time()));
  lines.emplace_back("ended", FormatTimestamp(job.times().end_time()));
  lines.emplace_back("revision", absl::StrCat(job.revision()));
  if (job.parts_size() > 0) {
    lines.emplace_back(
        "parts", absl::StrCat(PartsDone(job), "/", job.parts_size(), " done"));
  }
  for (int i = 0; i < job.parts_size(); ++i) {
    const v1::PartProgress& part = job.parts(i);
    std::string bytes = part.total_bytes() > 0
                            ? absl::StrCat(HumanSize(part.bytes()), "/",
                                           HumanSize(part.total_bytes()))
                            : HumanSize(part.bytes());
    lines.emplace_back(
        absl::StrCat("part ", i + 1),
        absl::StrCat(part.name(), " ", bytes, part.done() ? " done" : ""));
  }
  PrintFields(lines, out);
  return absl::OkStatus();
}

absl::Status RunDownloadsCommand(const ParsedArgs& args,
                                 v1::Downloader::StubInterface& stub,
                                 const DownloadsCommandIo& io) {
  if (args.words[0] == "download") return RunCreate(args, stub, io);
  if (args.words.size() < 2) {
    return UsageError(
        "mm downloads needs a command: list, get, wait, watch, start, "
        "pause, resume, cancel or prune");
  }
  const std::string& verb = args.words[1];
  if (verb == "list") return RunList(args, stub, io);
  if (verb == "get") return RunGet(args, stub, io);
  if (verb == "wait") return RunWait(args, stub, io);
  if (verb == "watch") return RunWatch(args, stub, io);
  if (verb == "start") {
    return RunAction(args, stub, io, v1::BulkDownloadActionRequest::START);
  }
  if (verb == "pause") {
    return RunAction(args, stub, io, v1::BulkDownloadActionRequest::PAUSE);
  }
  if (verb == "resume") {
    return RunAction(args, stub, io, v1::BulkDownloadActionRequest::RESUME);
  }
  if (verb == "cancel") {
    return RunAction(args, stub, io, v1::BulkDownloadActionRequest::CANCEL);
  }
  if (verb == "prune") return RunPrune(args, stub, io);
  return UsageError(absl::StrCat(
      "unknown command 'mm downloads ", verb,
      "'; use list, get, wait, watch, start, pause, resume, cancel or prune"));
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
