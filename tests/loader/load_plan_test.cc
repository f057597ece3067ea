#include "services/loader/load_plan.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/model_fixtures.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::loader {
namespace {

namespace fs = std::filesystem;
using ::mm::testing::FixtureTensor;
using ::mm::testing::SafetensorsBytes;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::mm::testing::WriteFile;
using ::mm::testing::WriteSafetensors;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

std::vector<std::string> Names(const LoadPlan& plan) {
  std::vector<std::string> names;
  for (const PlannedTensor& t : plan.tensors) names.push_back(t.name);
  return names;
}

TEST(LoadPlanTest, SingleFileTensorsAreAlignedInFileOrder) {
  TempDir dir;
  WriteSafetensors(dir.path() / "m.safetensors",
                   {{.name = "b", .dtype = "F32", .shape = {3, 5}},
                    {.name = "a", .dtype = "F16", .shape = {7}},
                    {.name = "c", .dtype = "I64", .shape = {2}}});
  ASSERT_OK_AND_ASSIGN(LoadPlan plan,
                       PlanLoad({.path = dir.path() / "m.safetensors"}));
  EXPECT_THAT(Names(plan), ElementsAre("b", "a", "c"));
  EXPECT_EQ(plan.tensors[0].region_offset, 0u);
  EXPECT_EQ(plan.tensors[0].byte_size, 60u);
  EXPECT_EQ(plan.tensors[1].region_offset, 64u);
  EXPECT_EQ(plan.tensors[1].byte_size, 14u);
  EXPECT_EQ(plan.tensors[2].region_offset, 128u);
  EXPECT_EQ(plan.total_bytes, 192u);
  EXPECT_EQ(plan.data_bytes, 60u + 14u + 16u);
  EXPECT_THAT(plan.tensors[0].shape, ElementsAre(3, 5));
  EXPECT_EQ(plan.tensors[1].dtype, "F16");
  EXPECT_TRUE(plan.side_files.empty());
}

TEST(LoadPlanTest, MissingPathIsNotFound) {
  TempDir dir;
  EXPECT_THAT(PlanLoad({.path = dir.path() / "gone.safetensors"}),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("model not found on disk: ")));
}

TEST(LoadPlanTest, LyingHeaderIsDataLoss) {
  TempDir dir;
  // The header promises 400 bytes of data; the file has 10.
  std::string bytes =
      SafetensorsBytes({{.name = "w", .dtype = "F32", .shape = {100}}});
  bytes.resize(bytes.size() - 390);
  WriteFile(dir.path() / "m.safetensors", bytes);
  EXPECT_THAT(PlanLoad({.path = dir.path() / "m.safetensors"}),
              StatusIs(absl::StatusCode::kDataLoss));
}

TEST(LoadPlanTest, SubmodelOfASingleFileIsRefused) {
  TempDir dir;
  WriteSafetensors(dir.path() / "m.safetensors", {{.name = "w", .shape = {1}}});
  EXPECT_THAT(
      PlanLoad({.path = dir.path() / "m.safetensors", .submodel = "vae"}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("submodel 'vae' asked of the single file")));
}

class DiffusersFolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::path vae = dir_.path() / "vae";
    WriteSafetensors(vae / "diffusion_pytorch_model.safetensors",
                     {{.name = "full", .dtype = "F32", .shape = {4}}});
    WriteSafetensors(vae / "diffusion_pytorch_model.fp16.safetensors",
                     {{.name = "half", .dtype = "F16", .shape = {4}}});
    WriteFile(vae / "config.json", R"({"_class_name": "AutoencoderKL"})");
    WriteFile(vae / "README.md", "not a side file");
    WriteFile(dir_.path() / "model_index.json", "{}");
  }
  TempDir dir_;
};

TEST_F(DiffusersFolderTest, MainModelNeedsASubmodel) {
  EXPECT_THAT(
      PlanLoad({.path = dir_.path(), .type = "main", .format = "diffusers"}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               "a diffusers main model is loaded one submodel at a time: "
               "pass a submodel (unet, vae, text_encoder, ...)"));
}

TEST_F(DiffusersFolderTest, VariantChoosesTheWeightsFile) {
  ASSERT_OK_AND_ASSIGN(LoadPlan plain, PlanLoad({.path = dir_.path(),
                                                 .type = "main",
                                                 .format = "diffusers",
                                                 .submodel = "vae"}));
  EXPECT_THAT(Names(plain), ElementsAre("full"));
  EXPECT_THAT(
      plain.side_files,
      ElementsAre(Pair("config.json", R"({"_class_name": "AutoencoderKL"})")));
  ASSERT_OK_AND_ASSIGN(LoadPlan half, PlanLoad({.path = dir_.path(),
                                                .type = "main",
                                                .format = "diffusers",
                                                .submodel = "vae",
                                                .repo_variant = "fp16"}));
  EXPECT_THAT(Names(half), ElementsAre("half"));
}

TEST_F(DiffusersFolderTest, VariantMissingFallsBackToTheUnlabelledFile) {
  fs::remove(dir_.path() / "vae" / "diffusion_pytorch_model.fp16.safetensors");
  ASSERT_OK_AND_ASSIGN(LoadPlan plan, PlanLoad({.path = dir_.path(),
                                                .submodel = "vae",
                                                .repo_variant = "fp16"}));
  EXPECT_THAT(Names(plan), ElementsAre("full"));
}

TEST_F(DiffusersFolderTest, UnknownSubmodelIsNotFound) {
  EXPECT_THAT(PlanLoad({.path = dir_.path(), .submodel = "unet"}),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("submodel 'unet' not found: no folder ")));
  EXPECT_THAT(PlanLoad({.path = dir_.path(), .submodel = ".."}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "submodel '..' is not a folder name (unet, vae, ...)"));
}

TEST_F(DiffusersFolderTest, FolderWithoutWeightsIsNotFound) {
  WriteFile(dir_.path() / "unet" / "config.json", "{}");
  EXPECT_THAT(
      PlanLoad({.path = dir_.path(), .submodel = "unet"}),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("no weights in ")));
}

TEST_F(DiffusersFolderTest, CheckpointOnlyFolderIsUnimplemented) {
  fs::path te = dir_.path() / "text_encoder";
  WriteFile(te / "model.ckpt", "x");
  EXPECT_THAT(PlanLoad({.path = dir_.path(), .submodel = "text_encoder"}),
              StatusIs(absl::StatusCode::kUnimplemented,
                       te.string() +
                           ": no safetensors, diffusion_pytorch_model*.bin or "
                           "pytorch_model*.bin weights; the loader does not "
                           "read model.ckpt from a folder: convert them to "
                           "safetensors"));
}

TEST_F(DiffusersFolderTest, BrokenBinWeightsAreDataLoss) {
  fs::path bin = dir_.path() / "text_encoder" / "pytorch_model.bin";
  WriteFile(bin, "x");
  EXPECT_THAT(PlanLoad({.path = dir_.path(), .submodel = "text_encoder"}),
              StatusIs(absl::StatusCode::kDataLoss,
                       bin.string() +
                           ": zip archive: the archive is 1 bytes, too short "
                           "for an end-of-central-directory record; the file "
                           "is truncated or corrupt"));
}

class ShardedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unet_ = dir_.path() / "unet";
    WriteSafetensors(
        unet_ / "m-00001-of-00002.safetensors",
        {{.name = "x", .shape = {2}}, {.name = "y", .shape = {3}}});
    WriteSafetensors(unet_ / "m-00002-of-00002.safetensors",
                     {{.name = "z", .shape = {5}}});
  }
  void WriteIndex(const std::string& weight_map) {
    WriteFile(unet_ / "m.safetensors.index.json",
              R"({"metadata": {"total_size": 40}, "weight_map": )" +
                  weight_map + "}");
  }
  TempDir dir_;
  fs::path unet_;
};

TEST_F(ShardedTest, ShardsMakeOneRegion) {
  WriteIndex(R"({"x": "m-00001-of-00002.safetensors",
                 "y": "m-00001-of-00002.safetensors",
                 "z": "m-00002-of-00002.safetensors"})");
  ASSERT_OK_AND_ASSIGN(LoadPlan plan,
                       PlanLoad({.path = dir_.path(), .submodel = "unet"}));
  EXPECT_THAT(Names(plan), ElementsAre("x", "y", "z"));
  EXPECT_EQ(plan.files.size(), 2u);
  EXPECT_EQ(plan.tensors[2].file, 1u);
  EXPECT_EQ(plan.tensors[2].region_offset, 128u);
  EXPECT_EQ(plan.total_bytes, 192u);
}

TEST_F(ShardedTest, IndexNamingAMissingTensorIsDataLoss) {
  WriteIndex(R"({"x": "m-00001-of-00002.safetensors",
                 "w": "m-00002-of-00002.safetensors"})");
  EXPECT_THAT(PlanLoad({.path = dir_.path(), .submodel = "unet"}),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr(": tensor 'w' is missing from "
                                 "m-00002-of-00002.safetensors")));
}

TEST_F(ShardedTest, TensorInTheWrongShardIsDataLoss) {
  WriteIndex(R"({"x": "m-00002-of-00002.safetensors",
                 "y": "m-00001-of-00002.safetensors",
                 "z": "m-00002-of-00002.safetensors"})");
  EXPECT_THAT(PlanLoad({.path = dir_.path(), .submodel = "unet"}),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("tensor 'x' is mapped to "
                                 "m-00002-of-00002.safetensors but found in "
                                 "m-00001-of-00002.safetensors")));
}

TEST_F(ShardedTest, ShardPathLeavingTheFolderIsDataLoss) {
  WriteIndex(R"({"x": "../secret.safetensors"})");
  EXPECT_THAT(PlanLoad({.path = dir_.path(), .submodel = "unet"}),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("shard name '../secret.safetensors' is not "
                                 "a file in the folder")));
}

TEST_F(ShardedTest, DuplicateTensorAcrossShardsIsDataLoss) {
  WriteSafetensors(unet_ / "m-00002-of-00002.safetensors",
                   {{.name = "x", .shape = {5}}});
  // "x" is in no map entry, so only the duplicate check can catch it.
  WriteIndex(R"({"y": "m-00001-of-00002.safetensors",
                 "q": "m-00002-of-00002.safetensors"})");
  EXPECT_THAT(PlanLoad({.path = dir_.path(), .submodel = "unet"}),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("tensor 'x' also appears in ")));
}

TEST_F(ShardedTest, BrokenIndexIsDataLoss) {
  WriteFile(unet_ / "m.safetensors.index.json", "[1, 2");
  EXPECT_THAT(
      PlanLoad({.path = dir_.path(), .submodel = "unet"}),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("not a shard index")));
}

}  // namespace
}  // namespace mm::loader
