#include "cli/loader_commands.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "cli/output.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "nlohmann/json.hpp"

namespace mm::cli {
namespace {

namespace v1 = ::modelmanager::v1;

// The one JSON form of a message (output.h's ProtoJson), on its own line.
std::string ToJson(const google::protobuf::Message& message) {
  absl::StatusOr<nlohmann::json> value = ProtoJson(message);
  if (!value.ok()) return "{}\n";
  return JsonText(*value) + "\n";
}

absl::StatusOr<v1::Tier> ParseTier(const std::string& text) {
  if (text.empty() || text == "ram") return v1::TIER_RAM;
  if (text == "vram") return v1::TIER_VRAM;
  return UsageError(
      absl::StrCat("--tier: '", text, "' is not one of ram, vram"));
}

std::string TierName(v1::Tier tier) {
  switch (tier) {
    case v1::TIER_RAM:
      return "ram";
    case v1::TIER_VRAM:
      return "vram";
    default:
      return "-";
  }
}

// KEY or KEY:SUBMODEL.
std::pair<std::string, std::string> SplitKey(const std::string& text) {
  size_t colon = text.find(':');
  if (colon == std::string::npos) return {text, ""};
  return {text.substr(0, colon), text.substr(colon + 1)};
}

std::string IdleText(const v1::CachedModel& model) {
  if (model.loading()) return "loading";
  if (model.leases() > 0) return "in use";
  absl::Duration idle =
      absl::Now() -
      absl::FromUnixNanos(
          google::protobuf::util::TimeUtil::TimestampToNanoseconds(
              model.last_use_time()));
  return absl::FormatDuration(
      absl::Trunc(std::max(idle, absl::ZeroDuration()), absl::Seconds(1)));
}

absl::Status Load(const ParsedArgs& args, v1::Loader::StubInterface& stub,
                  const CommandIo& io) {
  if (args.words.size() != 2) {
    return UsageError(
        "mm load takes one model key: mm load KEY "
        "[--submodel S] [--dtype D] [--tier ram|vram] [--hold]");
  }
  v1::LoadRequest request;
  auto [key, submodel] = SplitKey(args.words[1]);
  request.set_key(key);
  request.set_submodel(args.Has("submodel") ? args.Get("submodel") : submodel);
  request.set_dtype(args.Get("dtype"));
  ASSIGN_OR_RETURN(v1::Tier tier, ParseTier(args.Get("tier")));
  request.set_tier(tier);
  grpc::ClientContext context;
  auto reader = stub.Load(&context, request);
  v1::LoadResponse response;
  bool have_handle = false;
  while (reader->Read(&response)) {
    if (!response.has_handle()) continue;
    have_handle = true;
    const v1::ModelHandle& handle = response.handle();
    if (io.json) {
      *io.out << ToJson(handle);
    } else {
      int64_t data = 0;
      for (const v1::TensorHandle& t : handle.tensors()) data += t.byte_size();
      *io.out << "loaded " << handle.cache_key() << " ("
              << handle.config().name() << "): " << handle.tensors_size()
              << " tensors, " << HumanSize(data) << " in "
              << (handle.tier() == v1::TIER_RAM ? handle.shm_name() : "VRAM")
              << "\n";
    }
    if (!args.Has("hold")) break;
    if (!io.json) {
      *io.out << "holding the lease " << handle.lease_id()
              << "; press Ctrl-C to release it\n";
    }
    io.out->flush();
  }
  if (have_handle && !args.Has("hold")) {
    // Ending the stream ends the lease; the model stays cached.
    context.TryCancel();
    reader->Finish();
    return absl::OkStatus();
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return FromGrpcStatus(status);
  return absl::InternalError("the loader ended the stream without a handle");
}

absl::Status Ps(const ParsedArgs& args, v1::Loader::StubInterface& stub,
                const CommandIo& io, bool whole_stats) {
  if (args.words.size() != 1) {
    return UsageError(
        absl::StrCat("mm ", args.words[0], " takes no arguments"));
  }
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + io.timeout));
  v1::CacheStats stats;
  RETURN_IF_ERROR(FromGrpcStatus(stub.GetCacheStats(&context, {}, &stats)));
  if (io.json) {
    if (whole_stats) {
      *io.out << ToJson(stats);
    } else {
      v1::CacheStats models_only;
      *models_only.mutable_models() = stats.models();
      *io.out << ToJson(models_only);
    }
    return absl::OkStatus();
  }
  if (whole_stats) {
    PrintFields(
        {{"ram used", absl::StrCat(HumanSize(stats.ram_used_bytes()), " of ",
                                   HumanSize(stats.ram_budget_bytes()))},
         {"high watermark", HumanSize(stats.high_watermark_bytes())},
         {"vram used", absl::StrCat(HumanSize(stats.vram_used_bytes()), " of ",
                                    HumanSize(stats.vram_budget_bytes()))},
         {"models", absl::StrCat(stats.models_size())},
         {"hits", absl::StrCat(stats.hits())},
         {"misses", absl::StrCat(stats.misses())},
         {"evictions", absl::StrCat(stats.evictions())}},
        *io.out);
    return absl::OkStatus();
  }
  TextTable table(
      {"KEY", "NAME", "SUBMODEL", "DTYPE", "TIER", "SIZE", "LEASES", "IDLE"});
  for (const v1::CachedModel& m : stats.models()) {
    table.AddRow({m.key(), m.name(), m.submodel().empty() ? "-" : m.submodel(),
                  m.dtype().empty() ? "-" : m.dtype(), TierName(m.tier()),
                  HumanSize(m.bytes()), absl::StrCat(m.leases()), IdleText(m)});
  }
  table.Print(*io.out);
  return absl::OkStatus();
}

absl::Status Unload(const ParsedArgs& args, v1::Loader::StubInterface& stub,
                    const CommandIo& io) {
  if (args.words.size() != 2) {
    return UsageError("mm unload takes one KEY or KEY:SUBMODEL");
  }
  auto [key, submodel] = SplitKey(args.words[1]);
  v1::UnloadRequest request;
  request.set_key(key);
  request.set_submodel(submodel);
  request.set_dtype(args.Get("dtype"));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + io.timeout));
  v1::UnloadResponse response;
  RETURN_IF_ERROR(FromGrpcStatus(stub.Unload(&context, request, &response)));
  if (io.json) {
    *io.out << ToJson(response);
  } else {
    *io.out << "unloaded " << args.words[1] << ": "
            << HumanSize(response.freed_bytes()) << " freed\n";
  }
  return absl::OkStatus();
}

}  // namespace

std::string LoaderCommandsUsage() {
  return R"(  mm load KEY[:SUBMODEL] [--submodel S] [--dtype D] [--tier ram|vram]
          [--hold]         load a model into the loader's cache; --hold keeps
                           the lease (the model locked) until Ctrl-C
  mm ps                    what the loader has loaded
  mm unload KEY[:SUBMODEL] [--dtype D]   drop a model that no one holds
  mm cache                 the loader's cache statistics
)";
}

namespace {

absl::Status RunLoad(const ParsedArgs& args, v1::Loader::StubInterface& stub,
                     const CommandIo& io) {
  return Load(args, stub, io);
}
absl::Status RunPs(const ParsedArgs& args, v1::Loader::StubInterface& stub,
                   const CommandIo& io) {
  return Ps(args, stub, io, /*whole_stats=*/false);
}
absl::Status RunCache(const ParsedArgs& args, v1::Loader::StubInterface& stub,
                      const CommandIo& io) {
  return Ps(args, stub, io, /*whole_stats=*/true);
}
absl::Status RunUnload(const ParsedArgs& args, v1::Loader::StubInterface& stub,
                       const CommandIo& io) {
  return Unload(args, stub, io);
}

const std::vector<StubCommand<v1::Loader::StubInterface>>&
LoaderCommandTable() {
  static const auto* const kTable =
      new std::vector<StubCommand<v1::Loader::StubInterface>>{
          {{"load"},
           {ValueFlag("submodel"), ValueFlag("dtype"), ValueFlag("tier"),
            BoolFlag("hold")},
           RunLoad},
          {{"ps"}, {}, RunPs},
          {{"unload"}, {ValueFlag("dtype")}, RunUnload},
          {{"cache"}, {}, RunCache},
      };
  return *kTable;
}

}  // namespace

absl::Status RunLoaderCommand(const ParsedArgs& args,
                              v1::Loader::StubInterface& stub,
                              const CommandIo& io) {
  return RunStubCommand(LoaderCommandTable(), args, stub, io);
}

CommandGroup LoaderCommands() {
  CommandGroup group;
  group.usage = absl::StrCat("Usage:\n", LoaderCommandsUsage());
  group.summary = {{"mm load|ps|unload|cache ...",
                    "models in the loader's memory (`mm load --help`)"}};
  group.commands = ServiceCommands<v1::Loader>("loader", LoaderCommandTable());
  return group;
}

}  // namespace mm::cli
