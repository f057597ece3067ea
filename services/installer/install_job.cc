#include "services/installer/install_job.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/strings.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"

namespace mm::installer {
namespace {

namespace v1 = ::modelmanager::v1;
using nlohmann::json;

struct StateEntry {
  InstallState state;
  std::string_view name;
  v1::InstallState wire;
};
constexpr StateEntry kStates[] = {
    {InstallState::kWaiting, "waiting", v1::INSTALL_STATE_WAITING},
    {InstallState::kDownloading, "downloading", v1::INSTALL_STATE_DOWNLOADING},
    {InstallState::kDownloadsDone, "downloads_done",
     v1::INSTALL_STATE_DOWNLOADS_DONE},
    {InstallState::kRunning, "running", v1::INSTALL_STATE_RUNNING},
    {InstallState::kPaused, "paused", v1::INSTALL_STATE_PAUSED},
    {InstallState::kCompleted, "completed", v1::INSTALL_STATE_COMPLETED},
    {InstallState::kError, "error", v1::INSTALL_STATE_ERROR},
    {InstallState::kCancelled, "cancelled", v1::INSTALL_STATE_CANCELLED},
};

constexpr std::string_view kStepNames[] = {
    "plan", "download", "identify", "place", "register", "cleanup", "done"};

int64_t ToMs(absl::Time time) {
  return time == absl::InfinitePast() ? 0 : absl::ToUnixMillis(time);
}
absl::Time FromMs(int64_t ms) {
  return ms == 0 ? absl::InfinitePast() : absl::FromUnixMillis(ms);
}

google::protobuf::Timestamp ToTimestamp(absl::Time time) {
  return google::protobuf::util::TimeUtil::MillisecondsToTimestamp(ToMs(time));
}

}  // namespace

std::string_view StateName(InstallState state) {
  for (const StateEntry& entry : kStates) {
    if (entry.state == state) return entry.name;
  }
  return "unknown";
}

std::optional<InstallState> StateFromName(std::string_view name) {
  for (const StateEntry& entry : kStates) {
    if (entry.name == name) return entry.state;
  }
  return std::nullopt;
}

bool IsTerminal(InstallState state) {
  return state == InstallState::kCompleted || state == InstallState::kError ||
         state == InstallState::kCancelled;
}

bool CanTransition(InstallState from, InstallState to) {
  if (IsTerminal(from) || from == to) return false;
  if (to == InstallState::kError || to == InstallState::kCancelled) return true;
  switch (from) {
    case InstallState::kWaiting:
      return to == InstallState::kDownloading || to == InstallState::kRunning ||
             to == InstallState::kPaused;
    case InstallState::kDownloading:
      return to == InstallState::kDownloadsDone || to == InstallState::kPaused;
    case InstallState::kPaused:
      return to == InstallState::kWaiting;
    case InstallState::kDownloadsDone:
      return to == InstallState::kRunning;
    case InstallState::kRunning:
      return to == InstallState::kCompleted;
    default:
      return false;
  }
}

std::string_view StepName(InstallStep step) {
  return kStepNames[static_cast<int>(step)];
}

void InstallJob::AddEvent(std::string_view type, absl::Time now) {
  if (type == "download_progress" && !events.empty() &&
      events.back().type == type) {
    ++events.back().count;
    return;
  }
  events.push_back({std::string(type), now, 1});
}

absl::Status InstallJob::TransitionTo(InstallState to, absl::Time now) {
  if (!CanTransition(state, to)) {
    return absl::FailedPreconditionError(
        absl::StrCat("install job ", id, " is ", AsAbsl(StateName(state)),
                     " and cannot become ", AsAbsl(StateName(to))));
  }
  state = to;
  if (IsTerminal(to)) ended = now;
  return absl::OkStatus();
}

std::string DependencyRequestId(const InstallJob& job) {
  return absl::StrCat("install:", job.id);
}

json JobBodyJson(const InstallJob& job) {
  json body = {
      {"source", job.source},
      {"source_type", job.source_type},
      {"config_in", job.config_in},
      {"inplace", job.inplace},
      {"has_token", job.has_token},
      {"key", job.key},
      {"temp_dir", job.temp_dir},
      {"step", StepName(job.step)},
      {"download_id", job.download_id},
      {"download_revision", job.download_revision},
      {"model_path", job.model_path},
      {"config", job.config},
      {"record_path", job.record_path},
      {"bytes", job.bytes},
      {"total_bytes", job.total_bytes},
      {"status_message", job.status_message},
      {"created_ms", ToMs(job.created)},
      {"started_ms", ToMs(job.started)},
      {"ended_ms", ToMs(job.ended)},
  };
  json plan = {{"source", job.plan.source},
               {"source_type", job.plan.source_type},
               {"repo_id", job.plan.repo_id},
               {"revision", job.plan.revision},
               {"commit", job.plan.commit},
               {"variant", job.plan.variant},
               {"subfolders", job.plan.subfolders},
               {"tags", job.plan.tags},
               {"api_response", job.plan.api_response},
               {"local_path", job.plan.local_path},
               {"model_entry", job.plan.model_entry},
               {"files", json::array()}};
  for (const PlannedFile& file : job.plan.files) {
    plan["files"].push_back({{"path", file.path},
                             {"url", file.url},
                             {"size", file.size},
                             {"sha256", file.sha256}});
  }
  body["plan"] = std::move(plan);
  json parts = json::array();
  for (const InstallPart& part : job.parts) {
    parts.push_back({{"name", part.name},
                     {"bytes", part.bytes},
                     {"total_bytes", part.total_bytes},
                     {"done", part.done}});
  }
  body["parts"] = std::move(parts);
  json events = json::array();
  for (const InstallEventEntry& event : job.events) {
    events.push_back({{"type", event.type},
                      {"time_ms", ToMs(event.time)},
                      {"count", event.count}});
  }
  body["events"] = std::move(events);
  if (job.error) {
    body["error"] = {
        {"code", std::string(absl::StatusCodeToString(job.error->code))},
        {"type", job.error->type},
        {"message", job.error->message}};
  }
  if (job.config_out) {
    std::string text;
    // A Model always converts; a failure would leave the field empty, and
    // reading it back reports DATA_LOSS.
    (void)google::protobuf::util::MessageToJsonString(*job.config_out, &text);
    body["config_out"] = std::move(text);
  }
  return body;
}

absl::Status JobBodyFromJson(const json& body, InstallJob& job) {
  try {
    job.source = body.at("source").get<std::string>();
    job.source_type = body.at("source_type").get<std::string>();
    job.config_in = body.value("config_in", json::object());
    job.inplace = body.value("inplace", false);
    job.has_token = body.value("has_token", false);
    job.key = body.at("key").get<std::string>();
    job.temp_dir = body.value("temp_dir", "");
    const std::string step = body.at("step").get<std::string>();
    bool known_step = false;
    for (int i = 0; i <= static_cast<int>(InstallStep::kDone); ++i) {
      if (kStepNames[i] == step) {
        job.step = static_cast<InstallStep>(i);
        known_step = true;
      }
    }
    if (!known_step) {
      return absl::DataLossError(
          absl::StrCat("install job ", job.id, ": unknown step ", step));
    }
    job.download_id = body.value("download_id", "");
    job.download_revision = body.value("download_revision", int64_t{0});
    job.model_path = body.value("model_path", "");
    job.config = body.value("config", json::object());
    job.record_path = body.value("record_path", "");
    job.bytes = body.value("bytes", int64_t{0});
    job.total_bytes = body.value("total_bytes", int64_t{0});
    job.status_message = body.value("status_message", "");
    job.created = FromMs(body.value("created_ms", int64_t{0}));
    job.started = FromMs(body.value("started_ms", int64_t{0}));
    job.ended = FromMs(body.value("ended_ms", int64_t{0}));
    const json& plan = body.at("plan");
    job.plan.source = plan.value("source", "");
    job.plan.source_type = plan.value("source_type", "");
    job.plan.repo_id = plan.value("repo_id", "");
    job.plan.revision = plan.value("revision", "");
    job.plan.commit = plan.value("commit", "");
    job.plan.variant = plan.value("variant", "");
    job.plan.subfolders = plan.value("subfolders", std::vector<std::string>{});
    job.plan.tags = plan.value("tags", std::vector<std::string>{});
    job.plan.api_response = plan.value("api_response", "");
    job.plan.local_path = plan.value("local_path", "");
    job.plan.model_entry = plan.value("model_entry", "");
    job.plan.files.clear();
    for (const json& file : plan.at("files")) {
      job.plan.files.push_back({file.at("path").get<std::string>(),
                                file.at("url").get<std::string>(),
                                file.value("size", int64_t{0}),
                                file.value("sha256", "")});
    }
    job.parts.clear();
    for (const json& part : body.value("parts", json::array())) {
      job.parts.push_back(
          {part.at("name").get<std::string>(), part.value("bytes", int64_t{0}),
           part.value("total_bytes", int64_t{0}), part.value("done", false)});
    }
    job.events.clear();
    for (const json& event : body.value("events", json::array())) {
      job.events.push_back({event.at("type").get<std::string>(),
                            FromMs(event.value("time_ms", int64_t{0})),
                            event.value("count", int64_t{1})});
    }
    job.error.reset();
    if (body.contains("error")) {
      const json& error = body.at("error");
      job.error =
          InstallError{StatusCodeFromName(error.value("code", "UNKNOWN")),
                       error.value("type", ""), error.value("message", "")};
    }
    job.config_out.reset();
    if (body.contains("config_out")) {
      v1::Model model;
      if (!google::protobuf::util::JsonStringToMessage(
               body.at("config_out").get<std::string>(), &model)
               .ok()) {
        return absl::DataLossError(absl::StrCat(
            "install job ", job.id, ": its stored record does not parse"));
      }
      job.config_out = std::move(model);
    }
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrCat(
        "install job ", job.id, ": malformed stored body: ", e.what()));
  }
  return absl::OkStatus();
}

v1::InstallState StateToProto(InstallState state) {
  for (const StateEntry& entry : kStates) {
    if (entry.state == state) return entry.wire;
  }
  return v1::INSTALL_STATE_UNSPECIFIED;
}

std::optional<InstallState> StateFromProto(v1::InstallState state) {
  for (const StateEntry& entry : kStates) {
    if (entry.wire == state) return entry.state;
  }
  return std::nullopt;
}

v1::InstallJob JobToProto(const InstallJob& job) {
  v1::InstallJob out;
  out.set_id(job.id);
  out.set_state(StateToProto(job.state));
  out.set_done(IsTerminal(job.state));
  out.set_source(job.source);
  out.set_source_type(job.source_type);
  out.set_config_in_json(job.config_in.dump());
  if (job.config_out) *out.mutable_config_out() = *job.config_out;
  out.set_inplace(job.inplace);
  out.set_local_path(job.remote() ? job.temp_dir : job.model_path);
  out.set_bytes(job.bytes);
  out.set_total_bytes(job.total_bytes);
  for (const InstallPart& part : job.parts) {
    v1::PartProgress* progress = out.add_parts();
    progress->set_name(part.name);
    progress->set_bytes(part.bytes);
    progress->set_total_bytes(part.total_bytes);
    progress->set_done(part.done);
  }
  *out.mutable_times()->mutable_create_time() = ToTimestamp(job.created);
  if (job.started != absl::InfinitePast()) {
    *out.mutable_times()->mutable_start_time() = ToTimestamp(job.started);
  }
  if (job.ended != absl::InfinitePast()) {
    *out.mutable_times()->mutable_end_time() = ToTimestamp(job.ended);
  }
  if (job.error) {
    out.mutable_error()->set_code(
        std::string(absl::StatusCodeToString(job.error->code)));
    out.mutable_error()->set_type(job.error->type);
    out.mutable_error()->set_message(job.error->message);
  }
  out.set_revision(job.revision);
  out.set_key(job.key);
  out.set_status_message(job.status_message);
  out.set_download_id(job.download_id);
  for (const InstallEventEntry& event : job.events) {
    v1::InstallEvent* wire = out.add_events();
    wire->set_type(event.type);
    *wire->mutable_time() = ToTimestamp(event.time);
    wire->set_count(event.count);
  }
  out.set_has_access_token(job.has_token);
  return out;
}

}  // namespace mm::installer
