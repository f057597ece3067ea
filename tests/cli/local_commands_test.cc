// The local `mm` commands (probe, hash, scan, inspect) through RunCli:
// output shapes, exit codes and the one-line error contract.
#include "cli/local_commands.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cli/cli.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/model_fixtures.h"
#include "tests/testing/temp_dir.h"

namespace mm::cli {
namespace {

namespace fs = std::filesystem;
using ::mm::testing::TempDir;
using ::mm::testing::WriteFile;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;
using json = nlohmann::json;

using Shapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;

// A safetensors file with F16 tensors of `shapes`; the data is a hole, so
// multi-gigabyte shapes cost nothing on disk.
void WriteF16Safetensors(const fs::path& path, const Shapes& shapes) {
  std::vector<::mm::testing::FixtureTensor> tensors;
  for (const auto& [name, shape] : shapes) {
    tensors.push_back({.name = name, .dtype = "F16", .shape = shape});
  }
  ::mm::testing::WriteSafetensors(path, tensors);
}

const Shapes& Sd1() {
  static const Shapes* const kShapes = new Shapes{
      {"cond_stage_model.transformer.x", {4}},
      {"model.diffusion_model.input_blocks.0.0.weight", {320, 4, 3, 3}},
      {"model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_"
       "k.weight",
       {320, 768}}};
  return *kShapes;
}

struct Result {
  int code;
  std::string out;
  std::string err;
};

// `mm COMMAND ARGS...` in-process.
Result Call(const std::string& command, std::vector<std::string> args) {
  args.insert(args.begin(), command);
  std::istringstream in;
  std::ostringstream out, err;
  CliIo io{&in, &out, &err,
           [](const std::string&) -> std::optional<std::string> {
             return std::nullopt;
           },
           "/nonexistent/bin/mm"};
  const int code = RunCli(args, io);
  return {code, out.str(), err.str()};
}

// A bad command line: nothing on out, exit 2, `mm: MESSAGE` and the
// command's usage hint.
void ExpectUsageError(const Result& result, const std::string& command,
                      const std::string& message) {
  EXPECT_EQ(result.code, kExitUsage);
  EXPECT_EQ(result.out, "");
  EXPECT_EQ(result.err,
            "mm: " + message + "\nrun `mm " + command + " --help` for usage\n");
}

// Exactly one line on err, nothing on out, exit 1.
void ExpectOneLineError(const Result& result, const std::string& prefix) {
  EXPECT_EQ(result.code, kExitFailure);
  EXPECT_EQ(result.out, "");
  EXPECT_THAT(result.err, StartsWith(prefix));
  ASSERT_FALSE(result.err.empty());
  EXPECT_EQ(result.err.back(), '\n');
  EXPECT_EQ(result.err.find('\n'), result.err.size() - 1) << result.err;
}

class LocalCommandsTest : public ::testing::Test {
 protected:
  std::string P(const std::string& relative) {
    return (dir_.path() / relative).string();
  }
  TempDir dir_;
};

TEST_F(LocalCommandsTest, ProbePrintsFieldLines) {
  WriteF16Safetensors(P("m.safetensors"), Sd1());
  Result r = Call("probe", {P("m.safetensors")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_THAT(r.out, StartsWith("name: m\ntype: main\nformat: checkpoint\n"
                                "base: sd-1\nvariant: normal\n"));
  EXPECT_THAT(r.out, HasSubstr("\npath: " + P("m.safetensors") + "\n"));
  EXPECT_THAT(
      r.out, HasSubstr("\ndefault_settings: {\"height\":512,\"width\":512}\n"));
  EXPECT_THAT(r.out, Not(HasSubstr("hash:")));
}

TEST_F(LocalCommandsTest, ProbeJsonWithOverridesAndHash) {
  WriteF16Safetensors(P("m.safetensors"), Sd1());
  Result r =
      Call("probe", {P("m.safetensors"), "--json", "--set", "name=My model",
                     "--set=trigger_phrases=[\"a\",\"b\"]", "--hash", "md5"});
  ASSERT_EQ(r.code, 0) << r.err;
  const json config = json::parse(r.out);
  EXPECT_EQ(config["name"], "My model");
  EXPECT_EQ(config["trigger_phrases"], (json{"a", "b"}));
  EXPECT_THAT(config["hash"].get<std::string>(),
              MatchesRegex("md5:[0-9a-f]{32}"));
}

TEST_F(LocalCommandsTest, ProbeUnknownNeedsAllowUnknown) {
  WriteFile(P("notes.txt"), "x");
  ExpectOneLineError(Call("probe", {P("notes.txt")}),
                     "mm: INVALID_ARGUMENT: not a recognised model: ");
  Result r = Call("probe", {P("notes.txt"), "--allow-unknown"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("type: unknown\n"));
}

TEST_F(LocalCommandsTest, ProbeErrors) {
  ExpectOneLineError(Call("probe", {P("missing.safetensors")}),
                     "mm: NOT_FOUND: ");
  ExpectUsageError(Call("probe", {}), "probe", "mm probe needs a model PATH");
  ExpectUsageError(Call("probe", {"a", "b"}), "probe",
                   "mm probe takes only a model PATH, got also 'b'");
  ExpectUsageError(Call("probe", {"a", "--bogus"}), "probe",
                   "unknown flag --bogus");
  ExpectUsageError(Call("probe", {"a", "--set", "novalue"}), "probe",
                   "--set 'novalue': expected FIELD=VALUE, e.g. --set "
                   "base=sdxl");
  ExpectUsageError(Call("probe", {"a", "--hash"}), "probe",
                   "flag --hash needs a value");
  ExpectUsageError(Call("probe", {"a", "--algo", "md5"}), "probe",
                   "mm probe does not take --algo");
  WriteF16Safetensors(P("m.safetensors"), Sd1());
  ExpectOneLineError(Call("probe", {P("m.safetensors"), "--hash", "crc32"}),
                     "mm: INVALID_ARGUMENT: ");
  ExpectOneLineError(Call("probe", {P("m.safetensors"), "--set", "type=lora"}),
                     "mm: INVALID_ARGUMENT: not a recognised model");
}

TEST_F(LocalCommandsTest, JsonBeforeTheCommandWordApplies) {
  WriteFile(P("models/b.safetensors"), "x");
  std::istringstream in;
  std::ostringstream out, err;
  CliIo io{&in, &out, &err, nullptr, "/nonexistent/bin/mm"};
  ASSERT_EQ(RunCli({"--json", "scan", P("models")}, io), kExitOk) << err.str();
  EXPECT_EQ(json::parse(out.str()), (json{P("models/b.safetensors")}));
}

TEST_F(LocalCommandsTest, HelpGoesToOut) {
  Result r = Call("scan", {"--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "usage: mm scan DIR [--json]\n");
}

TEST_F(LocalCommandsTest, Hash) {
  WriteFile(P("f.bin"), "hello");
  Result r = Call("hash", {P("f.bin")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, MatchesRegex("blake3:[0-9a-f]{64}\n"));
  Result md5 = Call("hash", {P("f.bin"), "--algo", "md5"});
  ASSERT_EQ(md5.code, 0) << md5.err;
  EXPECT_EQ(md5.out, "md5:5d41402abc4b2a76b9719d911017c592\n");
  ExpectOneLineError(Call("hash", {P("f.bin"), "--algo", "nope"}),
                     "mm: INVALID_ARGUMENT: ");
  ExpectOneLineError(Call("hash", {P("none")}), "mm: NOT_FOUND: ");
}

TEST_F(LocalCommandsTest, Scan) {
  WriteFile(P("models/b.safetensors"), "x");
  WriteFile(P("models/a/model_index.json"), "{}");
  WriteFile(P("models/readme.txt"), "x");
  Result r = Call("scan", {P("models")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, P("models/a") + "\n" + P("models/b.safetensors") + "\n");
  Result j = Call("scan", {P("models"), "--json"});
  ASSERT_EQ(j.code, 0) << j.err;
  EXPECT_EQ(json::parse(j.out),
            (json{P("models/a"), P("models/b.safetensors")}));
  ExpectOneLineError(Call("scan", {P("nothing")}), "mm: NOT_FOUND: ");
}

TEST_F(LocalCommandsTest, Inspect) {
  WriteF16Safetensors(P("m.safetensors"), Sd1());
  Result r = Call("inspect", {P("m.safetensors")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith("format: safetensors\ntensors: 3\n"));
  EXPECT_THAT(r.out, ContainsRegex("model\\.diffusion_model\\.input_blocks\\."
                                   "0\\.0\\.weight +F16 +\\[320, 4, 3, 3\\] "
                                   "+23040\n"));
  Result j = Call("inspect", {P("m.safetensors"), "--json"});
  ASSERT_EQ(j.code, 0) << j.err;
  const json parsed = json::parse(j.out);
  EXPECT_EQ(parsed["format"], "safetensors");
  ASSERT_EQ(parsed["tensors"].size(), 3u);
  EXPECT_EQ(parsed["tensors"][2]["shape"], (json{320, 768}));
  EXPECT_EQ(parsed["tensors"][2]["byte_size"], 320 * 768 * 2);
  ExpectOneLineError(Call("inspect", {P("none.safetensors")}),
                     "mm: NOT_FOUND: ");
}

}  // namespace
}  // namespace mm::cli
