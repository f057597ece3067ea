#include "cli/cli.h"

#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "cli/command.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::cli {
namespace {

using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

EnvLookup FakeEnv(std::map<std::string, std::string> values) {
  return [values = std::move(values)](
             const std::string& name) -> std::optional<std::string> {
    auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    return it->second;
  };
}

struct RunResult {
  int code;
  std::string out;
  std::string err;
};

RunResult RunMm(const std::vector<std::string>& args,
                std::map<std::string, std::string> env = {}) {
  std::istringstream in;
  std::ostringstream out, err;
  CliIo io{&in, &out, &err, FakeEnv(std::move(env)), "/nonexistent/bin/mm"};
  int code = RunCli(args, io);
  return {code, out.str(), err.str()};
}

TEST(ParseArgsTest, SplitsWordsAndFlags) {
  ASSERT_OK_AND_ASSIGN(ParsedArgs args,
                       ParseArgs({"models", "list", "--base", "sd-1", "--tag=a",
                                  "--tag", "b", "--desc", "--json"}));
  EXPECT_THAT(args.words, ElementsAre("models", "list"));
  EXPECT_EQ(args.Get("base"), "sd-1");
  EXPECT_THAT(args.GetAll("tag"), ElementsAre("a", "b"));
  EXPECT_TRUE(args.Has("desc"));
  EXPECT_TRUE(args.Has("json"));
  EXPECT_FALSE(args.Has("name"));
  EXPECT_EQ(args.Get("name", "fallback"), "fallback");
}

TEST(ParseArgsTest, FlagsMayComeBeforeTheCommand) {
  ASSERT_OK_AND_ASSIGN(ParsedArgs args, ParseArgs({"--records", "unix:/x.sock",
                                                   "models", "get", "abc"}));
  EXPECT_THAT(args.words, ElementsAre("models", "get", "abc"));
  EXPECT_EQ(args.Get("records"), "unix:/x.sock");
}

TEST(ParseArgsTest, DashIsAWordAndDoubleDashEndsFlags) {
  ASSERT_OK_AND_ASSIGN(ParsedArgs args,
                       ParseArgs({"models", "add", "-", "--", "--json"}));
  EXPECT_THAT(args.words, ElementsAre("models", "add", "-", "--json"));
  EXPECT_FALSE(args.Has("json"));
}

TEST(ParseArgsTest, SetValueMayLookLikeAFlag) {
  ASSERT_OK_AND_ASSIGN(
      ParsedArgs args,
      ParseArgs({"models", "update", "k", "--set", "description=--weird"}));
  EXPECT_THAT(args.GetAll("set"), ElementsAre("description=--weird"));
}

TEST(ParseArgsTest, BooleanFlagAcceptsExplicitFalse) {
  ASSERT_OK_AND_ASSIGN(ParsedArgs args, ParseArgs({"status", "--json=false"}));
  EXPECT_FALSE(args.Has("json"));
  EXPECT_THAT(ParseArgs({"status", "--json=maybe"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--json takes no value")));
}

TEST(ParseArgsTest, UnknownFlagIsAUsageError) {
  absl::StatusOr<ParsedArgs> args = ParseArgs({"models", "list", "--bogus"});
  EXPECT_THAT(args, StatusIs(absl::StatusCode::kInvalidArgument,
                             HasSubstr("unknown flag --bogus")));
  EXPECT_TRUE(IsUsageError(args.status()));
}

TEST(ParseArgsTest, MissingValueIsAUsageError) {
  EXPECT_THAT(ParseArgs({"models", "list", "--base"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--base needs a value")));
}

TEST(ParseArgsTest, SingleDashFlagIsRejected) {
  EXPECT_THAT(ParseArgs({"-x"}), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr("unknown flag -x")));
}

TEST(UsageErrorTest, OnlyUsageErrorsAreMarked) {
  EXPECT_TRUE(IsUsageError(UsageError("bad")));
  EXPECT_FALSE(IsUsageError(absl::InvalidArgumentError("bad")));
}

TEST(StateDirTest, FlagWins) {
  EXPECT_EQ(ResolveStateDir("/a/b", FakeEnv({{"MM_HOME", "/c"}})).value_or(""),
            std::filesystem::path("/a/b"));
}

TEST(StateDirTest, ThenMmHome) {
  EXPECT_EQ(ResolveStateDir("", FakeEnv({{"MM_HOME", "/c/"},
                                         {"XDG_STATE_HOME", "/x"},
                                         {"HOME", "/h"}}))
                .value_or(""),
            std::filesystem::path("/c/"));
}

TEST(StateDirTest, ThenXdgStateHome) {
  EXPECT_EQ(
      ResolveStateDir("", FakeEnv({{"XDG_STATE_HOME", "/x"}, {"HOME", "/h"}}))
          .value_or(""),
      std::filesystem::path("/x/modelmanager"));
}

TEST(StateDirTest, ThenHome) {
  EXPECT_EQ(ResolveStateDir("", FakeEnv({{"HOME", "/h"}})).value_or(""),
            std::filesystem::path("/h/.local/state/modelmanager"));
}

TEST(StateDirTest, EmptyVariablesAreIgnored) {
  EXPECT_EQ(ResolveStateDir("", FakeEnv({{"MM_HOME", ""}, {"HOME", "/h"}}))
                .value_or(""),
            std::filesystem::path("/h/.local/state/modelmanager"));
}

TEST(StateDirTest, NothingSetIsFailedPrecondition) {
  EXPECT_THAT(
      ResolveStateDir("", FakeEnv({})),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("--home")));
}

TEST(StateDirTest, EnsureCreatesWithMode0700) {
  TempDir temp;
  std::filesystem::path dir = temp.path() / "deep" / "state";
  ASSERT_TRUE(EnsureStateDir(dir).ok());
  struct stat info;
  ASSERT_EQ(stat(dir.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0700u);
  EXPECT_TRUE(EnsureStateDir(dir).ok());
}

TEST(GlobalOptionsTest, AddressesFromStateDir) {
  ASSERT_OK_AND_ASSIGN(ParsedArgs args, ParseArgs({"status"}));
  ASSERT_OK_AND_ASSIGN(
      GlobalOptions options,
      ResolveGlobalOptions(args, FakeEnv({{"MM_HOME", "/s"}})));
  EXPECT_EQ(options.state_dir, "/s");
  EXPECT_EQ(options.addresses.at("records").address, "unix:/s/records.sock");
  EXPECT_TRUE(options.addresses.at("records").from_state_dir);
  EXPECT_EQ(options.addresses.at("loader").address, "unix:/s/loader.sock");
  EXPECT_FALSE(options.json);
  EXPECT_EQ(options.timeout, absl::Seconds(30));
}

TEST(GlobalOptionsTest, FlagBeatsEnvironmentBeatsStateDir) {
  ASSERT_OK_AND_ASSIGN(ParsedArgs args,
                       ParseArgs({"status", "--records", "localhost:1",
                                  "--token-file", "/t", "--timeout", "5s"}));
  ASSERT_OK_AND_ASSIGN(
      GlobalOptions options,
      ResolveGlobalOptions(args, FakeEnv({{"MM_HOME", "/s"},
                                          {"MM_RECORDS_ADDR", "localhost:2"},
                                          {"MM_LOADER_ADDR", "localhost:3"},
                                          {"MM_TOKEN_FILE", "/env-token"}})));
  EXPECT_EQ(options.addresses.at("records").address, "localhost:1");
  EXPECT_FALSE(options.addresses.at("records").from_state_dir);
  EXPECT_EQ(options.addresses.at("loader").address, "localhost:3");
  EXPECT_FALSE(options.addresses.at("loader").from_state_dir);
  EXPECT_EQ(options.client.token_file, "/t");
  EXPECT_EQ(options.timeout, absl::Seconds(5));
}

TEST(GlobalOptionsTest, BadTimeoutIsAUsageError) {
  ASSERT_OK_AND_ASSIGN(ParsedArgs args,
                       ParseArgs({"status", "--timeout", "x"}));
  absl::StatusOr<GlobalOptions> options =
      ResolveGlobalOptions(args, FakeEnv({{"HOME", "/h"}}));
  EXPECT_THAT(options, StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr("--timeout")));
  EXPECT_TRUE(IsUsageError(options.status()));
}

TEST(GlobalOptionsTest, TlsCertNeedsKey) {
  ASSERT_OK_AND_ASSIGN(ParsedArgs args,
                       ParseArgs({"status", "--tls-cert", "/c.pem"}));
  EXPECT_THAT(
      ResolveGlobalOptions(args, FakeEnv({{"HOME", "/h"}})),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--tls-key")));
}

TEST(KnownServicesTest, RecordsComesFirst) {
  ASSERT_FALSE(KnownServices().empty());
  EXPECT_EQ(KnownServices()[0].executable, "mm-records");
  ASSERT_NE(FindService("loader"), nullptr);
  EXPECT_EQ(FindService("loader")->executable, "mm-loader");
  EXPECT_EQ(FindService("nope"), nullptr);
}

TEST(RunCliTest, NoArgumentsPrintsUsageAndExits2) {
  RunResult result = RunMm({});
  EXPECT_EQ(result.code, kExitUsage);
  EXPECT_THAT(result.out, HasSubstr("Usage:"));
}

TEST(RunCliTest, HelpExits0) {
  RunResult result = RunMm({"--help"});
  EXPECT_EQ(result.code, kExitOk);
  EXPECT_THAT(result.out, HasSubstr("mm models"));
  RunResult models = RunMm({"models", "-h"});
  EXPECT_EQ(models.code, kExitOk);
  EXPECT_THAT(models.out, HasSubstr("mm models update KEY --set"));
}

TEST(RunCliTest, UnknownCommandIsUsageError) {
  RunResult result = RunMm({"frobnicate"});
  EXPECT_EQ(result.code, kExitUsage);
  EXPECT_THAT(result.err, HasSubstr("mm: unknown command 'frobnicate'"));
  EXPECT_THAT(result.err, HasSubstr("mm --help"));
}

TEST(RunCliTest, UnknownModelsVerbIsUsageError) {
  RunResult result = RunMm({"models", "frob"});
  EXPECT_EQ(result.code, kExitUsage);
  EXPECT_THAT(result.err, HasSubstr("unknown command 'mm models frob'"));
  EXPECT_THAT(result.err, HasSubstr("mm models --help"));
  EXPECT_EQ(RunMm({"models"}).code, kExitUsage);
}

TEST(RunCliTest, FlagOfAnotherCommandIsUsageError) {
  RunResult result = RunMm({"models", "get", "k", "--desc"}, {{"HOME", "/h"}});
  EXPECT_EQ(result.code, kExitUsage);
  EXPECT_THAT(result.err, HasSubstr("mm models get does not take --desc"));
}

TEST(RunCliTest, MissingKeyIsUsageError) {
  RunResult result = RunMm({"models", "get"}, {{"HOME", "/h"}});
  EXPECT_EQ(result.code, kExitUsage);
  EXPECT_THAT(result.err, HasSubstr("mm models get needs a model KEY"));
}

TEST(RunCliTest, UnreachableServerNamesCodeAndHint) {
  TempDir temp;
  RunResult result = RunMm({"models", "get", "abc", "--timeout", "2s"},
                           {{"MM_HOME", temp.path().string()}});
  EXPECT_EQ(result.code, kExitFailure);
  EXPECT_THAT(result.err, ::testing::StartsWith("mm: UNAVAILABLE: "));
  EXPECT_THAT(result.err, HasSubstr("mm up"));
  EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1);
  EXPECT_THAT(result.out, IsEmpty());
}

TEST(RunCliTest, NoStateDirAndNoAddressIsFailedPrecondition) {
  RunResult result = RunMm({"models", "list"});
  EXPECT_EQ(result.code, kExitFailure);
  EXPECT_THAT(result.err, HasSubstr("mm: FAILED_PRECONDITION: "));
  EXPECT_THAT(result.err, HasSubstr("--records"));
}

TEST(RunCliTest, DownloadsWithoutAddressIsFailedPrecondition) {
  RunResult result = RunMm({"downloads", "list"});
  EXPECT_EQ(result.code, kExitFailure);
  EXPECT_THAT(result.err, HasSubstr("mm: FAILED_PRECONDITION: "));
  EXPECT_THAT(result.err, HasSubstr("--downloader ADDR"));
}

TEST(RunCliTest, UnreachableDownloaderNamesCodeAndHint) {
  TempDir temp;
  RunResult result = RunMm({"downloads", "get", "abc", "--timeout", "2s"},
                           {{"MM_HOME", temp.path().string()}});
  EXPECT_EQ(result.code, kExitFailure);
  EXPECT_THAT(result.err, ::testing::StartsWith("mm: UNAVAILABLE: "));
  EXPECT_THAT(result.err, HasSubstr("downloader.sock"));
  EXPECT_THAT(result.err, HasSubstr("--downloader ADDR"));
}

TEST(RunCliTest, DownWithNothingRunningSaysSo) {
  TempDir temp;
  RunResult result = RunMm({"down", "--home", temp.path().string()});
  EXPECT_EQ(result.code, kExitOk);
  EXPECT_THAT(result.out, HasSubstr("not running"));
}

TEST(RunCliTest, StatusWithNothingRunningExits1) {
  TempDir temp;
  RunResult result = RunMm({"status", "--home", temp.path().string()});
  EXPECT_EQ(result.code, kExitFailure);
  EXPECT_THAT(result.out, HasSubstr("mm up: not running"));
  EXPECT_THAT(result.out, HasSubstr("records"));
  EXPECT_THAT(result.err,
              HasSubstr("mm: FAILED_PRECONDITION: records is not running"));
}

TEST(RunCliTest, StatusJson) {
  TempDir temp;
  RunResult result =
      RunMm({"--json", "status", "--home", temp.path().string()});
  EXPECT_EQ(result.code, kExitFailure);
  nlohmann::json report = nlohmann::json::parse(result.out);
  EXPECT_TRUE(report["supervisor_pid"].is_null());
  ASSERT_EQ(report["services"].size(), 1u);
  EXPECT_EQ(report["services"][0]["service"], "records");
  EXPECT_EQ(report["services"][0]["health"], "not running");
}

TEST(RunCliTest, UpWithoutRecordsExecutableIsNotFound) {
  TempDir temp;
  RunResult result = RunMm({"up", "--home", (temp.path() / "state").string()},
                           {{"MM_BIN_DIR", (temp.path() / "bin").string()}});
  EXPECT_EQ(result.code, kExitFailure);
  EXPECT_THAT(result.err, HasSubstr("mm: NOT_FOUND: mm-records not found"));
  EXPECT_THAT(result.err, HasSubstr("MM_BIN_DIR"));
}

TEST(ReportStatusTest, OneLinePerFailureAndTheExitCodes) {
  std::ostringstream err;
  EXPECT_EQ(ReportStatus(absl::OkStatus(), "hint", err), kExitOk);
  EXPECT_EQ(err.str(), "");
  EXPECT_EQ(ReportStatus(absl::NotFoundError("no model 'x'\nat line 2\r\n"),
                         "hint", err),
            kExitFailure);
  EXPECT_EQ(err.str(), "mm: NOT_FOUND: no model 'x' at line 2 \n");
  err.str("");
  EXPECT_EQ(ReportStatus(UsageError("mm x needs a KEY"),
                         "run `mm x --help` for usage", err),
            kExitUsage);
  EXPECT_EQ(err.str(), "mm: mm x needs a KEY\nrun `mm x --help` for usage\n");
}

TEST(CommandTableTest, TheRegistryIsConsistent) {
  EXPECT_OK(ValidateCommandGroups(CommandGroups()));
  // Every service command names a known service.
  std::set<std::string> services;
  for (const CommandGroup& group : CommandGroups()) {
    for (const Command& command : group.commands) {
      if (!command.service.empty()) services.insert(command.service);
    }
  }
  EXPECT_THAT(services,
              ElementsAre("downloader", "installer", "loader", "records"));
}

absl::Status Nothing(const CommandContext&) { return absl::OkStatus(); }

TEST(CommandTableTest, ValidationNamesTheProblem) {
  auto group = [](std::vector<Command> commands) {
    CommandGroup result;
    result.commands = std::move(commands);
    return std::vector<CommandGroup>{result};
  };
  EXPECT_THAT(ValidateCommandGroups(group({{.words = {"a"}, .run = Nothing},
                                           {.words = {"a"}, .run = Nothing}})),
              StatusIs(absl::StatusCode::kInternal,
                       "command 'mm a' is declared twice"));
  EXPECT_THAT(
      ValidateCommandGroups(
          group({{.words = {"a"}, .flags = {ValueFlag("x")}, .run = Nothing},
                 {.words = {"b"}, .flags = {BoolFlag("x")}, .run = Nothing}})),
      StatusIs(absl::StatusCode::kInternal,
               "--x takes a value in one command and not in another (mm b)"));
  EXPECT_THAT(
      ValidateCommandGroups(group(
          {{.words = {"a"}, .flags = {BoolFlag("json")}, .run = Nothing}})),
      StatusIs(absl::StatusCode::kInternal,
               "mm a declares the global flag --json"));
  EXPECT_THAT(ValidateCommandGroups(
                  group({{.words = {"a"}, .service = "nope", .run = Nothing}})),
              StatusIs(absl::StatusCode::kInternal,
                       "mm a calls unknown service 'nope'"));
  EXPECT_THAT(ValidateCommandGroups(group({{.words = {"a"}}})),
              StatusIs(absl::StatusCode::kInternal,
                       "command 'a' has no words or no run"));
}

TEST(MatchCommandWordsTest, LongestMatchElseAUsageErrorListingTheVerbs) {
  const std::vector<std::vector<std::string>> known = {
      {"jobs", "list"}, {"jobs", "get"}, {"jobs", "rm"}, {"up"}};
  EXPECT_EQ(MatchCommandWords(known, {"jobs", "get", "ID"}).value(), 1u);
  EXPECT_EQ(MatchCommandWords(known, {"up"}).value(), 3u);
  absl::StatusOr<size_t> none = MatchCommandWords(known, {"jobs"});
  EXPECT_THAT(none, StatusIs(absl::StatusCode::kInvalidArgument,
                             "mm jobs needs a command: list, get or rm"));
  EXPECT_TRUE(IsUsageError(none.status()));
  EXPECT_THAT(MatchCommandWords(known, {"jobs", "frob"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "unknown command 'mm jobs frob'; use list, get or rm"));
  EXPECT_THAT(
      MatchCommandWords(known, {"frob"}),
      StatusIs(absl::StatusCode::kInvalidArgument, "unknown command 'frob'"));
}

TEST(ConnectToServiceTest, EveryKnownServiceResolvesTheSameWay) {
  for (const ServiceInfo& service : KnownServices()) {
    ASSERT_OK_AND_ASSIGN(ParsedArgs args, ParseArgs({"status"}));
    ASSERT_OK_AND_ASSIGN(GlobalOptions options,
                         ResolveGlobalOptions(args, FakeEnv({})));
    std::string variable =
        absl::StrCat("MM_", absl::AsciiStrToUpper(service.name), "_ADDR");
    EXPECT_THAT(ConnectToService(options, service.name, options.client),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         HasSubstr(absl::StrCat("; or pass --", service.name,
                                                " ADDR or set ", variable))));
    ASSERT_OK_AND_ASSIGN(
        options, ResolveGlobalOptions(args, FakeEnv({{variable, "h:1"}})));
    EXPECT_OK(ConnectToService(options, service.name, options.client));
    EXPECT_THAT(ExplainUnavailable(absl::UnavailableError("down"), options,
                                   service.name),
                StatusIs(absl::StatusCode::kUnavailable,
                         absl::StrCat("down; is the ", service.name,
                                      " service running at h:1?")));
  }
}

TEST(RunCliTest, HelpOfALocalCommandIsItsOwnUsage) {
  RunResult result = RunMm({"hash", "--help"});
  EXPECT_EQ(result.code, kExitOk);
  EXPECT_EQ(result.out, "usage: mm hash PATH [--algo ALGO]\n");
  RunResult top = RunMm({"up", "--help"});
  EXPECT_EQ(top.code, kExitOk);
  EXPECT_THAT(top.out, HasSubstr("mm downloads ..."));
  EXPECT_THAT(top.out, HasSubstr("mm probe|hash|scan|inspect ..."));
}

}  // namespace
}  // namespace mm::cli
