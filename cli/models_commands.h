// `mm models list|get|add|update|rm|import|watch`: the records service from
// the command line. The request builders are separate from the rpc calls so
// they can be tested without a server.
//
//   auto stub = modelmanager::v1::ModelRecords::NewStub(channel);
//   CommandIo io;
//   io.in = &std::cin;
//   io.out = &std::cout;
//   absl::Status status = RunModelsCommand(args, *stub, io);
//
// Thread-safety: reentrant; the stub may be shared (gRPC stubs are
// thread-safe).
#ifndef MM_CLI_MODELS_COMMANDS_H_
#define MM_CLI_MODELS_COMMANDS_H_

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cli/cli.h"
#include "cli/command.h"
#include "modelmanager/v1/records.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace mm::cli {

// The `--order-by` names (default, name, base, type, format, size,
// created_at, updated_at, path) as the enum. A usage error names the value
// and the accepted ones.
absl::StatusOr<modelmanager::v1::ModelOrder> ParseModelOrder(
    const std::string& name);

// A `--set` VALUE: JSON when it parses as JSON (30, true, null,
// ["a","b"], {"steps": 30}, "quoted"), else the text itself as a string.
nlohmann::json ParseSetValue(const std::string& text);

// `FIELD=VALUE...` as one JSON object of changes. A missing `=`, an empty
// field or a field given twice is a usage error.
absl::StatusOr<nlohmann::json> ParseSetAssignments(
    const std::vector<std::string>& assignments);

// `mm models list` flags as the first page's request (page_size 1000, or
// less with --limit).
absl::StatusOr<modelmanager::v1::ListModelsRequest> BuildListRequest(
    const ParsedArgs& args);
// --limit N: nullopt when absent; a usage error unless N >= 1.
absl::StatusOr<std::optional<int64_t>> ListLimit(const ParsedArgs& args);

// `mm models update KEY --set F=V... [--allow-class-change] [--etag E]`.
absl::StatusOr<modelmanager::v1::UpdateModelRequest> BuildUpdateRequest(
    const ParsedArgs& args);

// `mm models add`: `json_text` must be one JSON object (the reference's
// config dict); `source` names where it came from, for messages.
absl::StatusOr<modelmanager::v1::CreateModelRequest> BuildCreateRequest(
    const std::string& json_text, const std::string& source,
    const std::string& request_id);

// Runs `mm models ...` (args.words[0] == "models") against `stub`. Errors
// from the server come back with their gRPC code (NOT_FOUND, ...).
// `mm models import` stores paths inside --target-models-dir, else
// io.models_dir, relative to it.
absl::Status RunModelsCommand(
    const ParsedArgs& args, modelmanager::v1::ModelRecords::StubInterface& stub,
    const CommandIo& io);

// The commands for RunCli (command.h), on the "records" service.
CommandGroup ModelsCommands();

// Usage text of `mm models`.
std::string ModelsUsage();

}  // namespace mm::cli

#endif  // MM_CLI_MODELS_COMMANDS_H_
