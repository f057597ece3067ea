#include "services/downloader/job.h"
#include "common/status.h"

#include <filesystem>

#include "absl/strings/str_cat.h"

namespace mm::downloader {
namespace {

constexpr std::pair<JobState, std::string_view> kStateNames[] = {
    {JobState::kWaiting, "waiting"},     {JobState::kQueued, "queued"},
    {JobState::kRunning, "running"},     {JobState::kPaused, "paused"},
    {JobState::kSucceeded, "succeeded"}, {JobState::kFailed, "failed"},
    {JobState::kCancelled, "cancelled"},
};

int64_t ToMillis(absl::Time t) {
  return t == absl::InfinitePast() ? 0 : absl::ToUnixMillis(t);
}
absl::Time FromMillis(int64_t ms) {
  return ms == 0 ? absl::InfinitePast() : absl::FromUnixMillis(ms);
}

}  // namespace

std::string_view StateName(JobState state) {
  for (const auto& [value, name] : kStateNames) {
    if (value == state) return name;
  }
  return "unknown";
}

std::optional<JobState> StateFromName(std::string_view name) {
  for (const auto& [value, text] : kStateNames) {
    if (text == name) return value;
  }
  return std::nullopt;
}

bool IsTerminal(JobState state) {
  return state == JobState::kSucceeded || state == JobState::kFailed ||
         state == JobState::kCancelled;
}

bool CanTransition(JobState from, JobState to) {
  if (from == to || IsTerminal(from)) return false;
  switch (to) {
    case JobState::kWaiting:
      return false;  // only a new job starts WAITING
    case JobState::kQueued:
      return from == JobState::kWaiting || from == JobState::kPaused;
    case JobState::kRunning:
      return from == JobState::kQueued;
    case JobState::kPaused:
      return from != JobState::kPaused;
    case JobState::kSucceeded:
    case JobState::kFailed:
      return from == JobState::kRunning;
    case JobState::kCancelled:
      return true;
  }
  return false;
}

int64_t Part::Bytes() const {
  if (done) return total_bytes;
  int64_t sum = 0;
  for (const Segment& s : segments) sum += s.done;
  return sum;
}

std::string Part::DisplayName() const {
  return relative_path.empty() ? url : relative_path;
}

int64_t Job::Bytes() const {
  int64_t sum = 0;
  for (const Part& p : parts) sum += p.Bytes();
  return sum;
}

int64_t Job::TotalBytes() const {
  int64_t sum = 0;
  for (const Part& p : parts) {
    int64_t total = p.total_bytes > 0 ? p.total_bytes : p.expected_size;
    if (total <= 0 && !p.done) return 0;
    sum += total;
  }
  return sum;
}

std::string Job::FinalPath() const {
  if (multi_file || parts.empty()) return destination;
  return parts[0].path;
}

std::string Job::Source() const {
  if (parts.empty()) return "";
  if (parts.size() == 1) return parts[0].url;
  return absl::StrCat(parts[0].url, " (+", parts.size() - 1, " more)");
}

nlohmann::json JobBodyJson(const Job& job) {
  nlohmann::json parts = nlohmann::json::array();
  for (const Part& p : job.parts) {
    nlohmann::json segments = nlohmann::json::array();
    for (const Segment& s : p.segments) {
      segments.push_back({s.begin, s.end, s.done});
    }
    parts.push_back({{"url", p.url},
                     {"relative_path", p.relative_path},
                     {"path", p.path},
                     {"expected_size", p.expected_size},
                     {"expected_sha256", p.expected_sha256},
                     {"total_bytes", p.total_bytes},
                     {"validator", p.validator},
                     {"segments", segments},
                     {"done", p.done}});
  }
  nlohmann::json body = {
      {"destination", job.destination},
      {"dest_is_dir", job.dest_is_dir},
      {"file_name", job.file_name},
      {"keep_partial", job.keep_partial},
      {"has_token", job.has_token},
      {"multi_file", job.multi_file},
      {"parts", parts},
      {"bytes_per_second", job.bytes_per_second},
      {"retries", job.retries},
      {"status_message", job.status_message},
      {"created_ms", ToMillis(job.created)},
      {"started_ms", ToMillis(job.started)},
  };
  if (job.error.has_value()) {
    body["error"] = {{"code", absl::StatusCodeToString(job.error->code)},
                     {"type", job.error->type},
                     {"message", job.error->message}};
  }
  return body;
}

absl::Status JobBodyFromJson(const nlohmann::json& body, Job& job) {
  try {
    job.destination = body.at("destination").get<std::string>();
    job.dest_is_dir = body.at("dest_is_dir").get<bool>();
    job.file_name = body.value("file_name", "");
    job.keep_partial = body.at("keep_partial").get<bool>();
    job.has_token = body.at("has_token").get<bool>();
    job.multi_file = body.value("multi_file", false);
    job.bytes_per_second = body.value("bytes_per_second", 0.0);
    job.retries = body.value("retries", 0);
    job.status_message = body.value("status_message", "");
    job.created = FromMillis(body.value("created_ms", int64_t{0}));
    job.started = FromMillis(body.value("started_ms", int64_t{0}));
    job.parts.clear();
    for (const nlohmann::json& p : body.at("parts")) {
      Part part;
      part.url = p.at("url").get<std::string>();
      part.relative_path = p.value("relative_path", "");
      part.path = p.value("path", "");
      part.expected_size = p.value("expected_size", int64_t{0});
      part.expected_sha256 = p.value("expected_sha256", "");
      part.total_bytes = p.value("total_bytes", int64_t{0});
      part.validator = p.value("validator", "");
      part.done = p.value("done", false);
      for (const nlohmann::json& s : p.at("segments")) {
        part.segments.push_back(Segment{s.at(0).get<int64_t>(),
                                        s.at(1).get<int64_t>(),
                                        s.at(2).get<int64_t>()});
      }
      job.parts.push_back(std::move(part));
    }
    job.error.reset();
    if (body.contains("error")) {
      const nlohmann::json& e = body["error"];
      job.error = JobError{StatusCodeFromName(e.value("code", "")),
                           e.value("type", ""), e.value("message", "")};
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(
        absl::StrCat("job ", job.id, " has a malformed body: ", e.what()));
  }
  return absl::OkStatus();
}

}  // namespace mm::downloader
