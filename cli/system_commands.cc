#include "cli/system_commands.h"

#include "cli/supervisor.h"
#include "common/status.h"

namespace mm::cli {
namespace {

absl::Status Up(const CommandContext& context) {
  RETURN_IF_ERROR(NoArguments(context.args, 1));
  RETURN_IF_ERROR(context.options.state_dir_error);
  SupervisorOptions supervisor;
  supervisor.state_dir = context.options.state_dir;
  supervisor.self_exe = context.cli.self_exe;
  supervisor.env = context.cli.env;
  supervisor.detach = context.args.Has("detach");
  supervisor.hf_endpoint = context.args.Get("hf-endpoint");
  supervisor.allow_private_urls = context.args.Has("allow-private-urls");
  return RunUp(supervisor, *context.io.out);
}

absl::Status Down(const CommandContext& context) {
  RETURN_IF_ERROR(NoArguments(context.args, 1));
  RETURN_IF_ERROR(context.options.state_dir_error);
  return RunDown(context.options.state_dir, *context.io.out);
}

absl::Status Status(const CommandContext& context) {
  RETURN_IF_ERROR(NoArguments(context.args, 1));
  return RunStatus(context.options, *context.io.out);
}

}  // namespace

CommandGroup SystemCommands() {
  CommandGroup group;
  // No usage of their own: `mm up --help` prints the top-level usage,
  // and docs/cli.md describes --hf-endpoint and --allow-private-urls.
  group.summary = {
      {"mm up [--detach] ...", "start every service under the state directory"},
      {"mm down", "stop a running `mm up`"},
      {"mm status", "health of each service"}};
  group.commands = {
      {.words = {"up"},
       .flags = {BoolFlag("detach"), ValueFlag("hf-endpoint"),
                 BoolFlag("allow-private-urls")},
       .run = Up},
      {.words = {"down"}, .run = Down},
      {.words = {"status"}, .run = Status},
  };
  return group;
}

}  // namespace mm::cli
