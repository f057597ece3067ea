#include "cli/models_commands.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/installer_commands.h"
#include "cli/model_import.h"
#include "cli/output.h"
#include "common/grpc_status.h"
#include "common/paging.h"
#include "common/status.h"
#include "grpcpp/client_context.h"

namespace mm::cli {
namespace {

namespace fs = std::filesystem;
namespace v1 = modelmanager::v1;

struct OrderName {
  const char* name;
  v1::ModelOrder order;
};
constexpr OrderName kOrders[] = {
    {"default", v1::MODEL_ORDER_DEFAULT},
    {"name", v1::MODEL_ORDER_NAME},
    {"base", v1::MODEL_ORDER_BASE},
    {"type", v1::MODEL_ORDER_TYPE},
    {"format", v1::MODEL_ORDER_FORMAT},
    {"size", v1::MODEL_ORDER_SIZE},
    {"created_at", v1::MODEL_ORDER_CREATED_AT},
    {"updated_at", v1::MODEL_ORDER_UPDATED_AT},
    {"path", v1::MODEL_ORDER_PATH},
};

using RecordsStub = v1::ModelRecords::StubInterface;

absl::Status RunList(const ParsedArgs& args, RecordsStub& stub,
                     const CommandIo& io) {
  RETURN_IF_ERROR(NoArguments(args, 2));
  ASSIGN_OR_RETURN(v1::ListModelsRequest request, BuildListRequest(args));
  ASSIGN_OR_RETURN(std::optional<int64_t> limit, ListLimit(args));
  std::vector<v1::Model> models;
  while (true) {
    if (limit.has_value()) {
      int64_t remaining = *limit - static_cast<int64_t>(models.size());
      if (remaining <= 0) break;
      request.set_page_size(
          static_cast<int32_t>(std::min<int64_t>(remaining, kMaxPageSize)));
    }
    v1::ListModelsResponse response;
    auto context = UnaryContext(io);
    grpc::Status status = stub.ListModels(context.get(), request, &response);
    if (!status.ok()) return FromGrpcStatus(status);
    for (auto& model : *response.mutable_models()) {
      models.push_back(std::move(model));
    }
    if (response.next_page_token().empty()) break;
    request.set_page_token(response.next_page_token());
  }
  if (limit.has_value() && static_cast<int64_t>(models.size()) > *limit) {
    models.resize(*limit);
  }
  PrintModelList(models, io.json, *io.out);
  return absl::OkStatus();
}

absl::Status RunGet(const ParsedArgs& args, RecordsStub& stub,
                    const CommandIo& io) {
  ASSIGN_OR_RETURN(std::string key, SingleArgument(args, 2, "a model KEY"));
  v1::GetModelRequest request;
  request.set_key(key);
  v1::Model model;
  auto context = UnaryContext(io);
  grpc::Status status = stub.GetModel(context.get(), request, &model);
  if (!status.ok()) return FromGrpcStatus(status);
  PrintModel(model, io.json, *io.out);
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadInput(const std::string& file,
                                      std::istream* in) {
  if (file == "-") {
    if (in == nullptr) {
      return absl::FailedPreconditionError("no standard input to read from");
    }
    return std::string(std::istreambuf_iterator<char>(*in),
                       std::istreambuf_iterator<char>());
  }
  std::ifstream stream(file, std::ios::binary);
  if (!stream) {
    return absl::NotFoundError(
        absl::StrCat("cannot read ", file,
                     ": no such file or not readable; give a JSON "
                     "file or - for standard input"));
  }
  return std::string(std::istreambuf_iterator<char>(stream),
                     std::istreambuf_iterator<char>());
}

absl::Status RunAdd(const ParsedArgs& args, RecordsStub& stub,
                    const CommandIo& io) {
  ASSIGN_OR_RETURN(std::string file,
                   SingleArgument(args, 2, "a FILE.json (or - for stdin)"));
  ASSIGN_OR_RETURN(std::string text, ReadInput(file, io.in));
  ASSIGN_OR_RETURN(
      v1::CreateModelRequest request,
      BuildCreateRequest(text, file == "-" ? "standard input" : file,
                         args.Get("request-id")));
  v1::Model model;
  auto context = UnaryContext(io);
  grpc::Status status = stub.CreateModel(context.get(), request, &model);
  if (!status.ok()) return FromGrpcStatus(status);
  PrintModel(model, io.json, *io.out);
  return absl::OkStatus();
}

absl::Status RunUpdate(const ParsedArgs& args, RecordsStub& stub,
                       const CommandIo& io) {
  ASSIGN_OR_RETURN(v1::UpdateModelRequest request, BuildUpdateRequest(args));
  v1::Model model;
  auto context = UnaryContext(io);
  grpc::Status status = stub.UpdateModel(context.get(), request, &model);
  if (!status.ok()) return FromGrpcStatus(status);
  PrintModel(model, io.json, *io.out);
  return absl::OkStatus();
}

absl::Status RunRemove(const ParsedArgs& args, RecordsStub& stub,
                       const CommandIo& io) {
  ASSIGN_OR_RETURN(std::string key, SingleArgument(args, 2, "a model KEY"));
  v1::DeleteModelRequest request;
  request.set_key(key);
  request.set_etag(args.Get("etag"));
  v1::DeleteModelResponse response;
  auto context = UnaryContext(io);
  grpc::Status status = stub.DeleteModel(context.get(), request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  if (io.json) {
    *io.out << JsonText({{"key", key}, {"revision", response.revision()}})
            << '\n';
  } else {
    *io.out << "Removed " << key << " (revision " << response.revision()
            << ").\n";
  }
  return absl::OkStatus();
}

absl::Status RunWatch(const ParsedArgs& args, RecordsStub& stub,
                      const CommandIo& io) {
  RETURN_IF_ERROR(NoArguments(args, 2));
  v1::WatchModelsRequest request;
  if (args.Has("since")) {
    int64_t since = 0;
    if (!absl::SimpleAtoi(args.Get("since"), &since) || since < 0) {
      return UsageError(
          absl::StrCat("--since must be a revision number >= 0, got '",
                       args.Get("since"), "'"));
    }
    request.set_since_revision(since);
  }
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReaderInterface<v1::ModelEvent>> reader =
      stub.WatchModels(&context, request);
  v1::ModelEvent event;
  while (reader->Read(&event)) {
    *io.out << FormatEvent(event, io.json) << std::endl;
  }
  return FromGrpcStatus(reader->Finish());
}

std::string ConfigString(const nlohmann::json& config, const char* field) {
  auto it = config.find(field);
  return it != config.end() && it->is_string() ? it->get<std::string>() : "";
}

// "'name' (entry)" for a report line, or the entry alone without a name.
std::string EntryLabel(const std::string& entry, const std::string& name) {
  if (name.empty()) return entry;
  return absl::StrCat("'", name, "' (", entry, ")");
}

// Creates every planned record. A record the server refuses is reported
// and skipped; an unreachable server stops the import (the rest would fail
// the same way), and a rerun is safe: each create's request_id is derived
// from the record's key.
absl::Status RunImport(const ParsedArgs& args, RecordsStub& stub,
                       const CommandIo& io) {
  ASSIGN_OR_RETURN(
      std::string file,
      SingleArgument(args, 2,
                     "a FILE (a v3 models.yaml or an InvokeAI database)"));
  ImportOptions options;
  options.models_dir = args.Get("models-dir");
  options.target_models_dir = args.Has("target-models-dir")
                                  ? fs::path(args.Get("target-models-dir"))
                                  : io.models_dir;
  options.hash_files = !args.Has("no-hash");
  ASSIGN_OR_RETURN(ImportPlan plan, PlanImport(file, options));
  const bool dry_run = args.Has("dry-run");
  nlohmann::json added = nlohmann::json::array();
  std::vector<ImportSkip> skipped;
  for (size_t i = 0; i < plan.configs.size(); ++i) {
    const nlohmann::json& config = plan.configs[i];
    std::string key = ConfigString(config, "key");
    std::string name = ConfigString(config, "name");
    if (!dry_run) {
      v1::CreateModelRequest request;
      request.set_config_json(JsonText(config, -1));
      if (!key.empty()) request.set_request_id("import-" + key);
      v1::Model model;
      auto context = UnaryContext(io);
      grpc::Status status = stub.CreateModel(context.get(), request, &model);
      if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
        return Annotate(FromGrpcStatus(status),
                        absl::StrCat("import stopped after ", added.size(),
                                     " of ", plan.configs.size(), " records"));
      }
      if (!status.ok()) {
        skipped.push_back(
            {plan.config_entries[i], name,
             status.error_code() == grpc::StatusCode::ALREADY_EXISTS
                 ? SkipReason::kAlreadyExists
                 : SkipReason::kRejected,
             GrpcStatusLine(status)});
        continue;
      }
      key = model.key();
    }
    const std::string path = ConfigString(config, "path");
    if (!io.json) {
      *io.out << (dry_run ? "would add " : "added ") << key << " " << name
              << " (" << path << ")\n";
    }
    added.push_back({{"key", key}, {"name", name}, {"path", path}});
  }
  skipped.insert(skipped.end(), plan.skipped.begin(), plan.skipped.end());

  // Counted in a std::map so the summary lists reasons in a stable order.
  std::map<std::string, int> by_reason;
  for (const ImportSkip& skip : skipped) {
    ++by_reason[std::string(SkipReasonName(skip.code))];
  }
  const size_t total = plan.configs.size() + plan.skipped.size();
  if (io.json) {
    nlohmann::json skipped_json = nlohmann::json::array();
    for (const ImportSkip& skip : skipped) {
      skipped_json.push_back({{"entry", skip.entry},
                              {"name", skip.name},
                              {"code", SkipReasonName(skip.code)},
                              {"reason", skip.reason}});
    }
    nlohmann::json notes = nlohmann::json::array();
    for (const ImportNote& note : plan.notes) {
      notes.push_back({{"entry", note.entry},
                       {"name", note.name},
                       {"message", note.message}});
    }
    *io.out << JsonText(
                   {{"source", file},
                    {"source_kind", plan.source_kind},
                    {"models_dir", plan.models_dir.string()},
                    {"target_models_dir", options.target_models_dir.string()},
                    {"dry_run", dry_run},
                    {"entries", total},
                    {"added", added},
                    {"skipped", skipped_json},
                    {"skipped_by_reason", by_reason},
                    {"notes", notes}})
            << "\n";
    return absl::OkStatus();
  }
  for (const ImportSkip& skip : skipped) {
    *io.out << "skipped " << EntryLabel(skip.entry, skip.name) << ": "
            << skip.reason << "\n";
  }
  for (const ImportNote& note : plan.notes) {
    *io.out << "note: " << EntryLabel(note.entry, note.name) << ": "
            << note.message << "\n";
  }
  *io.out << (dry_run ? "Would import " : "Imported ") << added.size() << " of "
          << total << " entries from " << file << " (" << plan.source_kind
          << "); " << skipped.size() << " skipped.\n";
  if (!by_reason.empty()) {
    std::vector<std::string> counts;
    for (const auto& [reason, count] : by_reason) {
      counts.push_back(absl::StrCat(reason, " ", count));
    }
    *io.out << "Skipped by reason: " << absl::StrJoin(counts, ", ") << ".\n";
  }
  return absl::OkStatus();
}

// Every records command, in the order `mm models` lists them.
const std::vector<StubCommand<RecordsStub>>& RecordsCommandTable() {
  static const auto* const kTable = new std::vector<StubCommand<RecordsStub>>{
      {{"models", "list"},
       {ValueFlag("name"), ValueFlag("base"), ValueFlag("type"),
        ValueFlag("format"), ValueFlag("tag"), ValueFlag("order-by"),
        BoolFlag("desc"), ValueFlag("limit")},
       RunList},
      {{"models", "get"}, {}, RunGet},
      {{"models", "add"}, {ValueFlag("request-id")}, RunAdd},
      {{"models", "update"},
       {ValueFlag("set"), BoolFlag("allow-class-change"), ValueFlag("etag")},
       RunUpdate},
      {{"models", "rm"},
       {ValueFlag("etag"), BoolFlag("delete-files"),
        BoolFlag("unconditionally")},
       RunRemove},
      {{"models", "import"},
       {BoolFlag("dry-run"), ValueFlag("models-dir"),
        ValueFlag("target-models-dir"), BoolFlag("no-hash")},
       RunImport},
      {{"models", "watch"}, {ValueFlag("since")}, RunWatch},
  };
  return *kTable;
}

}  // namespace

absl::StatusOr<v1::ModelOrder> ParseModelOrder(const std::string& name) {
  for (const OrderName& entry : kOrders) {
    if (name == entry.name) return entry.order;
  }
  std::vector<std::string> names;
  for (const OrderName& entry : kOrders) names.push_back(entry.name);
  return UsageError(absl::StrCat("--order-by '", name, "' is not one of ",
                                 absl::StrJoin(names, ", ")));
}

nlohmann::json ParseSetValue(const std::string& text) {
  nlohmann::json value = nlohmann::json::parse(text, /*cb=*/nullptr,
                                               /*allow_exceptions=*/false);
  if (value.is_discarded()) return text;
  return value;
}

absl::StatusOr<nlohmann::json> ParseSetAssignments(
    const std::vector<std::string>& assignments) {
  nlohmann::json changes = nlohmann::json::object();
  for (const std::string& assignment : assignments) {
    size_t eq = assignment.find('=');
    if (eq == std::string::npos || eq == 0) {
      return UsageError(
          absl::StrCat("--set needs FIELD=VALUE, got '", assignment, "'"));
    }
    std::string field = assignment.substr(0, eq);
    if (changes.contains(field)) {
      return UsageError(absl::StrCat("--set gives field '", field,
                                     "' twice; give each field once"));
    }
    changes[field] = ParseSetValue(assignment.substr(eq + 1));
  }
  return changes;
}

absl::StatusOr<std::optional<int64_t>> ListLimit(const ParsedArgs& args) {
  if (!args.Has("limit")) return std::optional<int64_t>();
  int64_t limit = 0;
  if (!absl::SimpleAtoi(args.Get("limit"), &limit) || limit < 1) {
    return UsageError(absl::StrCat("--limit must be a number >= 1, got '",
                                   args.Get("limit"), "'"));
  }
  return std::optional<int64_t>(limit);
}

absl::StatusOr<v1::ListModelsRequest> BuildListRequest(const ParsedArgs& args) {
  v1::ListModelsRequest request;
  if (args.Has("name")) request.set_name(args.Get("name"));
  if (args.Has("base")) request.set_base(args.Get("base"));
  if (args.Has("type")) request.set_type(args.Get("type"));
  if (args.Has("format")) request.set_format(args.Get("format"));
  for (const std::string& tag : args.GetAll("tag")) request.add_tags(tag);
  ASSIGN_OR_RETURN(v1::ModelOrder order,
                   ParseModelOrder(args.Get("order-by", "default")));
  request.set_order_by(order);
  request.set_descending(args.Has("desc"));
  ASSIGN_OR_RETURN(std::optional<int64_t> limit, ListLimit(args));
  request.set_page_size(static_cast<int32_t>(
      limit.has_value() ? std::min<int64_t>(*limit, kMaxPageSize)
                        : kMaxPageSize));
  return request;
}

absl::StatusOr<v1::UpdateModelRequest> BuildUpdateRequest(
    const ParsedArgs& args) {
  ASSIGN_OR_RETURN(std::string key, SingleArgument(args, 2, "a model KEY"));
  std::vector<std::string> assignments = args.GetAll("set");
  if (assignments.empty()) {
    return UsageError("mm models update needs at least one --set FIELD=VALUE");
  }
  ASSIGN_OR_RETURN(nlohmann::json changes, ParseSetAssignments(assignments));
  v1::UpdateModelRequest request;
  request.set_key(key);
  request.set_changes_json(JsonText(changes, -1));
  request.set_allow_class_change(args.Has("allow-class-change"));
  request.set_etag(args.Get("etag"));
  return request;
}

absl::StatusOr<v1::CreateModelRequest> BuildCreateRequest(
    const std::string& json_text, const std::string& source,
    const std::string& request_id) {
  nlohmann::json config = nlohmann::json::parse(json_text, /*cb=*/nullptr,
                                                /*allow_exceptions=*/false);
  if (config.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, " is not valid JSON; give one model config object"));
  }
  if (!config.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, " holds JSON ", config.type_name(),
                     ", not an object; give one model config object like "
                     "{\"name\": ..., \"base\": ..., \"type\": ...}"));
  }
  v1::CreateModelRequest request;
  request.set_config_json(JsonText(config, -1));
  request.set_request_id(request_id);
  return request;
}

absl::Status RunModelsCommand(const ParsedArgs& args, RecordsStub& stub,
                              const CommandIo& io) {
  return RunStubCommand(RecordsCommandTable(), args, stub, io);
}

CommandGroup ModelsCommands() {
  CommandGroup group;
  group.usage = ModelsUsage();
  group.summary = {{"mm models ...", "the model records (`mm models --help`)"}};
  group.commands =
      ServiceCommands<v1::ModelRecords>("records", RecordsCommandTable());
  // Removing files as well goes through the installer, which owns the
  // models folder; the record alone is the records service's.
  for (Command& command : group.commands) {
    if (command.words != std::vector<std::string>{"models", "rm"}) continue;
    command.run = [records = std::move(command.run)](
                      const CommandContext& context) -> absl::Status {
      if (context.args.Has("delete-files") ||
          context.args.Has("unconditionally")) {
        return RemoveModelThroughInstaller(context);
      }
      return records(context);
    };
  }
  return group;
}

std::string ModelsUsage() {
  return R"(Usage:
  mm models list [--name N] [--base B] [--type T] [--format F] [--tag TAG]...
                 [--order-by ORDER] [--desc] [--limit N] [--json]
      ORDER: default, name, base, type, format, size, created_at,
             updated_at, path
  mm models get KEY [--json]
  mm models add FILE.json|- [--request-id ID] [--json]
  mm models update KEY --set FIELD=VALUE... [--allow-class-change]
                   [--etag ETAG] [--json]
      VALUE is JSON when it parses (30, true, null, ["a","b"]), else text
  mm models rm KEY [--etag ETAG] | [--delete-files | --unconditionally]
      Without a flag only the record goes (the records service); with
      --delete-files its files inside the models folder go too, with
      --unconditionally its files wherever they are (through the installer).
  mm models import FILE [--dry-run] [--models-dir DIR]
                   [--target-models-dir DIR] [--no-hash] [--json]
      FILE: a v3 models.yaml (InvokeAI 3) or an InvokeAI database
            (databases/invokeai.db, InvokeAI 4 to 6)
      --models-dir: the source's models folder (default: <root>/models
            beside <root>/configs or <root>/databases, else FILE's folder)
      --target-models-dir: paths inside it are stored relative to it,
            others absolute (default: <state dir>/models)
  mm models watch [--since REVISION] [--json]
)";
}

}  // namespace mm::cli
