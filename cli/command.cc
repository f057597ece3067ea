#include "cli/command.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace mm::cli {
namespace {

// "a", "a or b", "a, b or c".
std::string JoinWithOr(const std::vector<std::string>& items) {
  if (items.size() <= 1) return absl::StrJoin(items, "");
  return absl::StrCat(absl::StrJoin(items.begin(), items.end() - 1, ", "),
                      " or ", items.back());
}

}  // namespace

std::unique_ptr<grpc::ClientContext> UnaryContext(const CommandIo& io) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + io.timeout));
  return context;
}

absl::StatusOr<size_t> MatchCommandWords(
    const std::vector<std::vector<std::string>>& known,
    const std::vector<std::string>& words) {
  std::optional<size_t> best;
  for (size_t i = 0; i < known.size(); ++i) {
    const std::vector<std::string>& candidate = known[i];
    if (candidate.empty() || words.size() < candidate.size()) continue;
    if (!std::equal(candidate.begin(), candidate.end(), words.begin())) {
      continue;
    }
    if (!best || candidate.size() > known[*best].size()) best = i;
  }
  if (best) return *best;
  if (words.empty()) return UsageError("mm needs a command");
  // The second words of the group the first word names, in table order.
  std::vector<std::string> verbs;
  for (const std::vector<std::string>& candidate : known) {
    if (candidate.size() > 1 && candidate[0] == words[0] &&
        std::find(verbs.begin(), verbs.end(), candidate[1]) == verbs.end()) {
      verbs.push_back(candidate[1]);
    }
  }
  if (verbs.empty()) {
    return UsageError(absl::StrCat("unknown command '", words[0], "'"));
  }
  if (words.size() < 2) {
    return UsageError(
        absl::StrCat("mm ", words[0], " needs a command: ", JoinWithOr(verbs)));
  }
  return UsageError(absl::StrCat("unknown command 'mm ", words[0], " ",
                                 words[1], "'; use ", JoinWithOr(verbs)));
}

std::string CommandName(const ParsedArgs& args, size_t depth) {
  depth = std::min(depth, args.words.size());
  return absl::StrCat("mm ", absl::StrJoin(args.words.begin(),
                                           args.words.begin() + depth, " "));
}

absl::Status NoArguments(const ParsedArgs& args, size_t depth) {
  if (args.words.size() > depth) {
    return UsageError(absl::StrCat(CommandName(args, depth),
                                   " takes no arguments, got '",
                                   args.words[depth], "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SingleArgument(const ParsedArgs& args, size_t depth,
                                           const char* what) {
  if (args.words.size() <= depth) {
    return UsageError(absl::StrCat(CommandName(args, depth), " needs ", what));
  }
  if (args.words.size() > depth + 1) {
    return UsageError(absl::StrCat(CommandName(args, depth), " takes only ",
                                   what, ", got also '", args.words[depth + 1],
                                   "'"));
  }
  return args.words[depth];
}

absl::Status ValidateCommandGroups(const std::vector<CommandGroup>& groups) {
  std::set<std::vector<std::string>> seen;
  std::map<std::string, bool> kinds;
  for (const CommandGroup& group : groups) {
    for (const Command& command : group.commands) {
      const std::string name = absl::StrJoin(command.words, " ");
      if (command.words.empty() || !command.run) {
        return absl::InternalError(
            absl::StrCat("command '", name, "' has no words or no run"));
      }
      if (!seen.insert(command.words).second) {
        return absl::InternalError(
            absl::StrCat("command 'mm ", name, "' is declared twice"));
      }
      if (!command.service.empty() && FindService(command.service) == nullptr) {
        return absl::InternalError(absl::StrCat(
            "mm ", name, " calls unknown service '", command.service, "'"));
      }
      for (const FlagSpec& flag : command.flags) {
        if (IsGlobalFlag(flag.name)) {
          return absl::InternalError(absl::StrCat(
              "mm ", name, " declares the global flag --", flag.name));
        }
        auto [it, inserted] = kinds.emplace(flag.name, flag.takes_value);
        if (!inserted && it->second != flag.takes_value) {
          return absl::InternalError(
              absl::StrCat("--", flag.name,
                           " takes a value in one command and not in "
                           "another (mm ",
                           name, ")"));
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace mm::cli
