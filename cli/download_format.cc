#include "cli/download_format.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/cli.h"
#include "cli/output.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace mm::cli {
namespace {

namespace v1 = modelmanager::v1;

// Characters of a job id shown on a progress line: enough to tell a
// handful of running jobs apart.
constexpr size_t kShortIdLength = 8;
constexpr int kProgressBarWidth = 24;
constexpr char kStatePrefix[] = "DOWNLOAD_STATE_";

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

std::string OrDash(const std::string& text) {
  return text.empty() ? "-" : text;
}

}  // namespace

std::string ShortJobId(const std::string& id) {
  return id.size() > kShortIdLength ? id.substr(0, kShortIdLength) : id;
}

absl::StatusOr<std::string> DownloadListJson(
    const std::vector<v1::DownloadJob>& jobs) {
  nlohmann::json list = nlohmann::json::array();
  for (const v1::DownloadJob& job : jobs) {
    ASSIGN_OR_RETURN(nlohmann::json value, ProtoJson(job));
    list.push_back(std::move(value));
  }
  return JsonText(list);
}

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
  std::vector<std::string> fields = {ShortJobId(job.id()),
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
    ASSIGN_OR_RETURN(std::string text, DownloadListJson(jobs));
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
    ASSIGN_OR_RETURN(nlohmann::json value, ProtoJson(job));
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

}  // namespace mm::cli
