// The installer fixtures of tests/testing/install_fixtures.h probe as what
// their header says, so installer tests can rely on them.
#include "tests/testing/install_fixtures.h"

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/probe.h"
#include "model/tensor_index.h"
#include "model/weights_file.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::Contains;
using ::testing::HasSubstr;
using json = nlohmann::json;

class InstallFixturesTest : public ::testing::Test {
 protected:
  // Probes `path` and checks its type, format and base.
  json ExpectProbe(const fs::path& path, const std::string& type,
                   const std::string& format, const std::string& base) {
    absl::StatusOr<json> config = model::Probe(path, {});
    EXPECT_OK(config.status()) << path;
    if (!config.ok()) return json();
    EXPECT_EQ((*config)["type"], type) << config->dump();
    EXPECT_EQ((*config)["format"], format) << config->dump();
    EXPECT_EQ((*config)["base"], base) << config->dump();
    return *config;
  }

  TempDir dir_;
};

TEST_F(InstallFixturesTest, SingleFilesProbeAsDocumented) {
  WriteSd1Checkpoint(dir_.path() / "sd1.safetensors");
  json sd1 = ExpectProbe(dir_.path() / "sd1.safetensors", "main", "checkpoint",
                         "sd-1");
  EXPECT_EQ(sd1["variant"], "normal");

  WriteSdxlCheckpoint(dir_.path() / "sdxl.safetensors");
  ExpectProbe(dir_.path() / "sdxl.safetensors", "main", "checkpoint", "sdxl");

  WriteLoraSd1(dir_.path() / "detail.safetensors");
  ExpectProbe(dir_.path() / "detail.safetensors", "lora", "lycoris", "sd-1");

  WriteEmbeddingSd1(dir_.path() / "easyneg.safetensors");
  ExpectProbe(dir_.path() / "easyneg.safetensors", "embedding",
              "embedding_file", "sd-1");

  WriteFile(dir_.path() / "negxl.safetensors", EmbeddingSdxlBytes());
  ExpectProbe(dir_.path() / "negxl.safetensors", "embedding", "embedding_file",
              "sdxl");

  WriteFile(dir_.path() / "concept/learned_embeds.bin",
            LearnedEmbedsBinBytes());
  ExpectProbe(dir_.path() / "concept", "embedding", "embedding_folder", "sd-1");
}

TEST_F(InstallFixturesTest, FoldersProbeAsDocumented) {
  WriteFixtureFiles(dir_.path() / "sdxl", DiffusersSdxlFiles({}));
  json sdxl = ExpectProbe(dir_.path() / "sdxl", "main", "diffusers", "sdxl");
  // The default variant is written as "" (the reference's wire value).
  EXPECT_EQ(sdxl["repo_variant"], "") << sdxl.dump();

  WriteFixtureFiles(dir_.path() / "sdxl-fp16",
                    DiffusersSdxlFiles({.fp16 = true}));
  json fp16 =
      ExpectProbe(dir_.path() / "sdxl-fp16", "main", "diffusers", "sdxl");
  EXPECT_EQ(fp16["repo_variant"], "fp16") << fp16.dump();

  WriteFixtureFiles(dir_.path() / "vae", VaeFolderFiles({}));
  ExpectProbe(dir_.path() / "vae", "vae", "diffusers", "sd-1");
  WriteFixtureFiles(dir_.path() / "vae-xl", VaeFolderFiles({.sdxl = true}));
  ExpectProbe(dir_.path() / "vae-xl", "vae", "diffusers", "sdxl");
}

TEST_F(InstallFixturesTest, FixtureWeightsAreValidAndSmall) {
  // Every safetensors file of the repo-shaped folder parses, and the whole
  // repo stays small enough to serve from memory in any test.
  size_t total = 0;
  for (const FixtureFile& file :
       DiffusersSdxlFiles({.fp16 = true, .onnx = true, .repo_extras = true})) {
    total += file.contents.size();
    if (!file.path.ends_with(".safetensors")) continue;
    WriteFile(dir_.path() / "check" / file.path, file.contents);
    EXPECT_OK(
        model::ReadTensorIndex(dir_.path() / "check" / file.path).status())
        << file.path;
  }
  EXPECT_LT(total, 512u * 1024);
  // The fp16 branch's weights differ from main's under the same name.
  EXPECT_NE(VaeFolderFiles({})[1].contents,
            VaeFolderFiles({.fp16_weights = true})[1].contents);
}

TEST_F(InstallFixturesTest, NonModelFileIsRefused) {
  WriteNonModelSafetensors(dir_.path() / "notes.safetensors");
  EXPECT_THAT(model::Probe(dir_.path() / "notes.safetensors", {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a recognised model")));
}

TEST_F(InstallFixturesTest, HtmlPageIsNoModel) {
  WriteFile(dir_.path() / "model.safetensors", HtmlPageBytes());
  EXPECT_THAT(model::Probe(dir_.path() / "model.safetensors", {}),
              StatusIs(absl::StatusCode::kDataLoss));
}

TEST_F(InstallFixturesTest, HostilePickleIsRefusedAndNeverRuns) {
  const fs::path marker = dir_.path() / "pwned";
  WriteHostilePickleCheckpoint(dir_.path() / "evil.ckpt", marker.string());
  absl::StatusOr<model::TensorIndex> index =
      model::ReadTensorIndex(dir_.path() / "evil.ckpt");
  ASSERT_OK(index.status());
  EXPECT_THAT(index->findings, Contains(HasSubstr("refused global os.system")));
  EXPECT_THAT(model::Probe(dir_.path() / "evil.ckpt", {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a recognised model")));
  EXPECT_FALSE(fs::exists(marker));
}

}  // namespace
}  // namespace mm::testing
