// The local `mm` commands (probe, hash, scan, inspect): output shapes, exit
// codes and the one-line error contract.
#include "cli/local_commands.h"

#include <cstdint>
#include <filesystem>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

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

template <typename Command>
Result Call(Command command, std::vector<std::string> args) {
  std::ostringstream out, err;
  const int code = command(args, out, err);
  return {code, out.str(), err.str()};
}

// Exactly one line on err, nothing on out, exit 1.
void ExpectOneLineError(const Result& result, const std::string& prefix) {
  EXPECT_EQ(result.code, 1);
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
  Result r = Call(RunProbeCommand, {P("m.safetensors")});
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
  Result r = Call(RunProbeCommand,
                  {P("m.safetensors"), "--json", "--set", "name=My model",
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
  ExpectOneLineError(Call(RunProbeCommand, {P("notes.txt")}),
                     "mm probe: INVALID_ARGUMENT: not a recognised model: ");
  Result r = Call(RunProbeCommand, {P("notes.txt"), "--allow-unknown"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("type: unknown\n"));
}

TEST_F(LocalCommandsTest, ProbeErrors) {
  ExpectOneLineError(Call(RunProbeCommand, {P("missing.safetensors")}),
                     "mm probe: NOT_FOUND: ");
  ExpectOneLineError(Call(RunProbeCommand, {}),
                     "mm probe: INVALID_ARGUMENT: missing model PATH");
  ExpectOneLineError(Call(RunProbeCommand, {"a", "b"}),
                     "mm probe: INVALID_ARGUMENT: expected one model PATH");
  ExpectOneLineError(Call(RunProbeCommand, {"a", "--bogus"}),
                     "mm probe: INVALID_ARGUMENT: usage: mm probe PATH");
  ExpectOneLineError(Call(RunProbeCommand, {"a", "--set", "novalue"}),
                     "mm probe: INVALID_ARGUMENT: --set 'novalue'");
  ExpectOneLineError(Call(RunProbeCommand, {"a", "--hash"}),
                     "mm probe: INVALID_ARGUMENT: usage: ");
  WriteF16Safetensors(P("m.safetensors"), Sd1());
  ExpectOneLineError(
      Call(RunProbeCommand, {P("m.safetensors"), "--hash", "crc32"}),
      "mm probe: INVALID_ARGUMENT: ");
  ExpectOneLineError(
      Call(RunProbeCommand, {P("m.safetensors"), "--set", "type=lora"}),
      "mm probe: INVALID_ARGUMENT: not a recognised model");
}

TEST_F(LocalCommandsTest, HelpGoesToOut) {
  Result r = Call(RunScanCommand, {"--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "usage: mm scan DIR [--json]\n");
}

TEST_F(LocalCommandsTest, Hash) {
  WriteFile(P("f.bin"), "hello");
  Result r = Call(RunHashCommand, {P("f.bin")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, MatchesRegex("blake3:[0-9a-f]{64}\n"));
  Result md5 = Call(RunHashCommand, {P("f.bin"), "--algo", "md5"});
  ASSERT_EQ(md5.code, 0) << md5.err;
  EXPECT_EQ(md5.out, "md5:5d41402abc4b2a76b9719d911017c592\n");
  ExpectOneLineError(Call(RunHashCommand, {P("f.bin"), "--algo", "nope"}),
                     "mm hash: INVALID_ARGUMENT: ");
  ExpectOneLineError(Call(RunHashCommand, {P("none")}), "mm hash: NOT_FOUND: ");
}

TEST_F(LocalCommandsTest, Scan) {
  WriteFile(P("models/b.safetensors"), "x");
  WriteFile(P("models/a/model_index.json"), "{}");
  WriteFile(P("models/readme.txt"), "x");
  Result r = Call(RunScanCommand, {P("models")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, P("models/a") + "\n" + P("models/b.safetensors") + "\n");
  Result j = Call(RunScanCommand, {P("models"), "--json"});
  ASSERT_EQ(j.code, 0) << j.err;
  EXPECT_EQ(json::parse(j.out),
            (json{P("models/a"), P("models/b.safetensors")}));
  ExpectOneLineError(Call(RunScanCommand, {P("nothing")}),
                     "mm scan: NOT_FOUND: ");
}

TEST_F(LocalCommandsTest, Inspect) {
  WriteF16Safetensors(P("m.safetensors"), Sd1());
  Result r = Call(RunInspectCommand, {P("m.safetensors")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith("format: safetensors\ntensors: 3\n"));
  EXPECT_THAT(r.out, ContainsRegex("model\\.diffusion_model\\.input_blocks\\."
                                   "0\\.0\\.weight +F16 +\\[320, 4, 3, 3\\] "
                                   "+23040\n"));
  Result j = Call(RunInspectCommand, {P("m.safetensors"), "--json"});
  ASSERT_EQ(j.code, 0) << j.err;
  const json parsed = json::parse(j.out);
  EXPECT_EQ(parsed["format"], "safetensors");
  ASSERT_EQ(parsed["tensors"].size(), 3u);
  EXPECT_EQ(parsed["tensors"][2]["shape"], (json{320, 768}));
  EXPECT_EQ(parsed["tensors"][2]["byte_size"], 320 * 768 * 2);
  ExpectOneLineError(Call(RunInspectCommand, {P("none.safetensors")}),
                     "mm inspect: NOT_FOUND: ");
}

}  // namespace
}  // namespace mm::cli
