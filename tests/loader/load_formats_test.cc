// The loading formats beyond one weights file: a single-file main
// checkpoint split into submodels by key prefix, PyTorch `.bin` weights in
// a diffusers folder, files-only submodel folders, and PyTorch views
// (tensors sharing a storage; strided ones refused). Each is planned and
// read into a real shared-memory region, and the bytes compared with the
// fixture's.
#include <unistd.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/loader/load_plan.h"
#include "services/loader/model_loader.h"
#include "services/loader/ram_tier.h"
#include "tests/loader/fake_records.h"
#include "tests/testing/model_fixtures.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::loader {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::modelmanager::v1;
using ::mm::testing::FixtureByteSize;
using ::mm::testing::FixtureTensor;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::mm::testing::TorchFixtureView;
using ::mm::testing::WriteFile;
using ::mm::testing::WriteSafetensors;
using ::mm::testing::WriteTorchCheckpoint;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;

std::vector<std::string> Names(const LoadPlan& plan) {
  std::vector<std::string> names;
  for (const PlannedTensor& t : plan.tensors) names.push_back(t.name);
  return names;
}

// Gives every tensor distinct random bytes, so a tensor read from the
// wrong place cannot compare equal.
void FillRandom(std::vector<FixtureTensor>& tensors, unsigned seed) {
  std::mt19937 random(seed);
  for (FixtureTensor& t : tensors) {
    t.data.resize(FixtureByteSize(t));
    for (char& c : t.data) c = static_cast<char>(random());
  }
}

// Reads `plan` into shared memory and returns each tensor's bytes by name.
std::map<std::string, std::string> LoadBytes(const LoadPlan& plan) {
  absl::StatusOr<std::shared_ptr<const RamModel>> model =
      LoadIntoShm(plan, {}, {.threads = 2, .chunk_bytes = 4096});
  EXPECT_TRUE(model.ok()) << model.status();
  std::map<std::string, std::string> out;
  if (!model.ok()) return out;
  EXPECT_EQ((*model)->region().size(), plan.total_bytes);
  for (const PlannedTensor& t : (*model)->plan().tensors) {
    out[t.name] =
        std::string((*model)->region().data() + t.region_offset, t.byte_size);
  }
  return out;
}

uint64_t AlignedSum(const std::vector<const FixtureTensor*>& tensors) {
  uint64_t end = 0;
  for (const FixtureTensor* t : tensors) {
    end = (end + kTensorAlignment - 1) / kTensorAlignment * kTensorAlignment +
          FixtureByteSize(*t);
  }
  return (end + kTensorAlignment - 1) / kTensorAlignment * kTensorAlignment;
}

// --- single-file main checkpoints split by prefix -------------------------

// An SDXL checkpoint in the LDM layout: tensors of every submodel mixed in
// file order, and two that belong to none (one whose name only looks like
// an embedder's prefix).
std::vector<FixtureTensor> SdxlTensors() {
  std::vector<FixtureTensor> tensors = {
      {.name = "conditioner.embedders.0.transformer.w", .shape = {5}},
      {.name = "model.diffusion_model.input_blocks.0.0.weight",
       .dtype = "F16",
       .shape = {3, 7}},
      {.name = "first_stage_model.decoder.conv_in.weight", .shape = {9}},
      {.name = "conditioner.embedders.1.model.w", .shape = {2, 2}},
      {.name = "model.diffusion_model.out.2.bias", .shape = {1}},
      {.name = "conditioner.embedders.10.w", .shape = {3}},
      {.name = "denoiser.sigmas", .shape = {4}},
      {.name = "first_stage_model.encoder.conv_in.bias",
       .dtype = "BF16",
       .shape = {6}},
  };
  FillRandom(tensors, 1);
  return tensors;
}

// Checks that the plan for `submodel` holds exactly the tensors named with
// `prefix`, in file order, with their bytes, in a region of their size.
void ExpectSubmodel(const fs::path& file, const std::string& base,
                    const std::string& submodel, const std::string& prefix,
                    const std::vector<FixtureTensor>& tensors) {
  SCOPED_TRACE(submodel);
  absl::StatusOr<LoadPlan> plan = PlanLoad({.path = file,
                                            .type = "main",
                                            .format = "checkpoint",
                                            .base = base,
                                            .submodel = submodel});
  ASSERT_TRUE(plan.ok()) << plan.status();
  std::vector<std::string> expected_names;
  std::vector<const FixtureTensor*> expected;
  for (const FixtureTensor& t : tensors) {
    if (t.name.starts_with(prefix)) {
      expected_names.push_back(t.name);
      expected.push_back(&t);
    }
  }
  ASSERT_FALSE(expected.empty());
  EXPECT_THAT(Names(*plan), ElementsAreArray(expected_names));
  EXPECT_EQ(plan->total_bytes, AlignedSum(expected));
  std::map<std::string, std::string> bytes = LoadBytes(*plan);
  for (const FixtureTensor* t : expected) {
    EXPECT_EQ(bytes[t->name], t->data) << t->name;
  }
}

TEST(CheckpointSplitTest, SdxlSafetensorsSubmodelsAreTheirPrefixesTensors) {
  TempDir dir;
  std::vector<FixtureTensor> tensors = SdxlTensors();
  fs::path file = dir.path() / "sdxl.safetensors";
  WriteSafetensors(file, tensors);
  ExpectSubmodel(file, "sdxl", "unet", "model.diffusion_model.", tensors);
  ExpectSubmodel(file, "sdxl", "vae", "first_stage_model.", tensors);
  ExpectSubmodel(file, "sdxl", "text_encoder", "conditioner.embedders.0.",
                 tensors);
  // "conditioner.embedders.10.w" is not text_encoder_2's.
  ExpectSubmodel(file, "sdxl", "text_encoder_2", "conditioner.embedders.1.",
                 tensors);
}

TEST(CheckpointSplitTest, Sd1TorchZipSubmodelsAreTheirPrefixesTensors) {
  TempDir dir;
  std::vector<FixtureTensor> tensors = {
      {.name = "model.diffusion_model.input_blocks.0.0.weight",
       .shape = {4, 9}},
      {.name = "cond_stage_model.transformer.w", .dtype = "F16", .shape = {7}},
      {.name = "first_stage_model.decoder.conv_in.weight", .shape = {3}},
      {.name = "model_ema.decay", .shape = {1}},
  };
  FillRandom(tensors, 2);
  fs::path file = dir.path() / "sd1.ckpt";
  WriteTorchCheckpoint(
      file, tensors,
      {.scalars = {{"global_step", int64_t{1}}}, .wrap_in_state_dict = true});
  ExpectSubmodel(file, "sd-1", "unet", "model.diffusion_model.", tensors);
  ExpectSubmodel(file, "sd-1", "vae", "first_stage_model.", tensors);
  ExpectSubmodel(file, "sd-1", "text_encoder", "cond_stage_model.", tensors);
}

TEST(CheckpointSplitTest, BareFluxFileIsTheTransformer) {
  TempDir dir;
  std::vector<FixtureTensor> tensors = {
      {.name = "double_blocks.0.img_attn.norm.key_norm.scale", .shape = {8}},
      {.name = "img_in.weight", .dtype = "BF16", .shape = {4, 4}},
  };
  FillRandom(tensors, 3);
  fs::path file = dir.path() / "flux1-dev.safetensors";
  WriteSafetensors(file, tensors);
  ExpectSubmodel(file, "flux", "transformer", "", tensors);
  EXPECT_THAT(
      PlanLoad({.path = file,
                .type = "main",
                .format = "checkpoint",
                .base = "flux",
                .submodel = "vae"}),
      StatusIs(absl::StatusCode::kNotFound,
               "submodel 'vae' not found in " + file.string() +
                   ", a flux main checkpoint (no tensor name starts with "
                   "'vae.'); its submodels: transformer"));
}

TEST(CheckpointSplitTest, AllInOneFluxFileIsSplit) {
  TempDir dir;
  std::vector<FixtureTensor> tensors = {
      {.name = "model.diffusion_model.double_blocks.0.img_attn.norm.key_norm."
               "scale",
       .shape = {8}},
      {.name = "vae.decoder.conv_in.weight", .shape = {2}},
      {.name = "text_encoders.clip_l.transformer.w", .shape = {3}},
      {.name = "text_encoders.t5xxl.transformer.w", .shape = {5}},
  };
  FillRandom(tensors, 4);
  fs::path file = dir.path() / "flux-aio.safetensors";
  WriteSafetensors(file, tensors);
  ExpectSubmodel(file, "flux", "transformer", "model.diffusion_model.",
                 tensors);
  ExpectSubmodel(file, "flux", "vae", "vae.", tensors);
  ExpectSubmodel(file, "flux", "text_encoder", "text_encoders.clip_l.",
                 tensors);
  ExpectSubmodel(file, "flux", "text_encoder_2", "text_encoders.t5xxl.",
                 tensors);
}

class CheckpointSplitErrorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    file_ = dir_.path() / "sd1.safetensors";
    WriteSafetensors(file_, {{.name = "model.diffusion_model.w", .shape = {2}},
                             {.name = "cond_stage_model.w", .shape = {2}}});
  }
  absl::StatusOr<LoadPlan> Plan(const std::string& base,
                                const std::string& submodel,
                                const std::string& type = "main") {
    return PlanLoad({.path = file_,
                     .type = type,
                     .format = "checkpoint",
                     .base = base,
                     .submodel = submodel});
  }
  TempDir dir_;
  fs::path file_;
};

TEST_F(CheckpointSplitErrorsTest, SubmodelNotOfThatBaseListsTheFilesOnes) {
  EXPECT_THAT(Plan("sd-1", "transformer"),
              StatusIs(absl::StatusCode::kNotFound,
                       "submodel 'transformer' not found in " + file_.string() +
                           ", a sd-1 main checkpoint; its submodels: unet, "
                           "text_encoder"));
}

TEST_F(CheckpointSplitErrorsTest, SubmodelTheFileLacksIsNotFound) {
  EXPECT_THAT(Plan("sd-1", "vae"),
              StatusIs(absl::StatusCode::kNotFound,
                       "submodel 'vae' not found in " + file_.string() +
                           ", a sd-1 main checkpoint (no tensor name starts "
                           "with 'first_stage_model.'); its submodels: unet, "
                           "text_encoder"));
}

TEST_F(CheckpointSplitErrorsTest, BaseWithoutATableIsUnimplemented) {
  EXPECT_THAT(
      Plan("sd-3", "unet"),
      StatusIs(absl::StatusCode::kUnimplemented,
               "submodel 'unet' asked of " + file_.string() +
                   ", a single-file main checkpoint of base 'sd-3': the "
                   "loader has no submodel prefix table for that base (it "
                   "has one for sd-1, sd-2, sdxl, sdxl-refiner, flux); load "
                   "it without a submodel"));
}

TEST_F(CheckpointSplitErrorsTest, SubmodelOfANonMainFileIsInvalid) {
  EXPECT_THAT(
      Plan("sd-1", "unet", "vae"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               "submodel 'unet' asked of the single file " + file_.string() +
                   ", which is a vae model: only a main model's "
                   "single-file checkpoint is split into submodels; "
                   "load it without a submodel"));
}

TEST_F(CheckpointSplitErrorsTest, DotDotIsNotASubmodelName) {
  EXPECT_THAT(Plan("sd-1", ".."),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "submodel '..' is not a folder name (unet, vae, ...)"));
  EXPECT_THAT(Plan("sd-1", "../unet"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "submodel '../unet' is not a folder name (unet, vae, "
                       "...)"));
}

TEST_F(CheckpointSplitErrorsTest, OffsetsPastTheEndAreDataLoss) {
  // The header promises 400 bytes of unet data; the file stops short.
  std::string bytes = mm::testing::SafetensorsBytes(
      {{.name = "first_stage_model.w", .shape = {2}},
       {.name = "model.diffusion_model.w", .shape = {100}}});
  bytes.resize(bytes.size() - 200);
  WriteFile(file_, bytes);
  absl::StatusOr<LoadPlan> plan = Plan("sd-1", "vae");
  EXPECT_THAT(plan, StatusIs(absl::StatusCode::kDataLoss));
  // The whole header is checked, not only the asked submodel's part: the
  // file is corrupt.
  EXPECT_EQ(plan.status().message(),
            file_.string() +
                ": safetensors tensor 'model.diffusion_model.w': data_offsets "
                "[8, 408] point past the end of the data area (208 bytes); "
                "the file is corrupt or not safetensors");
}

TEST(CheckpointLayoutTest, TheTableHasNoCollisions) {
  ASSERT_FALSE(CheckpointLayouts().empty());
  for (const CheckpointLayout& layout : CheckpointLayouts()) {
    EXPECT_OK(CheckCheckpointLayout(layout)) << layout.base;
  }
}

TEST(CheckpointLayoutTest, CollidingEntriesAreRefused) {
  constexpr SubmodelPrefix kNested[] = {
      {"text_encoder", "conditioner.embedders."},
      {"text_encoder_2", "conditioner.embedders.1."}};
  EXPECT_THAT(CheckCheckpointLayout({"x", kNested, ""}),
              StatusIs(absl::StatusCode::kInternal,
                       "submodel table of base 'x': the prefix "
                       "'conditioner.embedders.1.' of 'text_encoder_2' starts "
                       "with the prefix 'conditioner.embedders.' of "
                       "'text_encoder', so a tensor would belong to both"));
  constexpr SubmodelPrefix kSame[] = {
      {"unet", "model.diffusion_model."},
      {"transformer", "model.diffusion_model."}};
  EXPECT_THAT(CheckCheckpointLayout({"y", kSame, ""}),
              StatusIs(absl::StatusCode::kInternal,
                       "submodel table of base 'y': the prefix "
                       "'model.diffusion_model.' of 'transformer' starts with "
                       "the prefix 'model.diffusion_model.' of 'unet', so a "
                       "tensor would belong to both"));
  constexpr SubmodelPrefix kTwice[] = {{"vae", "first_stage_model."},
                                       {"vae", "vae."}};
  EXPECT_THAT(CheckCheckpointLayout({"z", kTwice, ""}),
              StatusIs(absl::StatusCode::kInternal,
                       "submodel table of base 'z': 'vae' is listed twice"));
  constexpr SubmodelPrefix kEmpty[] = {{"unet", ""}};
  EXPECT_THAT(CheckCheckpointLayout({"w", kEmpty, ""}),
              StatusIs(absl::StatusCode::kInternal,
                       "submodel table of base 'w': 'unet' has an empty "
                       "prefix"));
}

// The budget is checked against the submodel's bytes, before reading: a
// budget too small for the whole file loads its VAE, and refuses a UNet
// bigger than the budget without reading it.
TEST(CheckpointSplitTest, BudgetCountsOnlyTheSubmodel) {
  TempDir dir;
  std::vector<FixtureTensor> tensors = {
      {.name = "model.diffusion_model.w", .shape = {1024}},  // 4096 bytes
      {.name = "first_stage_model.w", .shape = {100}},       // 400 bytes
  };
  FillRandom(tensors, 5);
  WriteSafetensors(dir.path() / "sd1.safetensors", tensors);
  FakeRecords records;
  records.Put(TestRecord("k", "sd1.safetensors", "main", "checkpoint"));
  ModelLoader loader({.models_dir = dir.path(),
                      .ram_budget_bytes = 1024,
                      .records = &records});
  v1::LoadRequest request;
  request.set_key("k");
  request.set_submodel("vae");
  ASSERT_OK_AND_ASSIGN(ModelLoader::Loaded loaded, loader.Load(request, {}));
  EXPECT_EQ(loaded.handle.total_bytes(), 448);
  ASSERT_EQ(loaded.handle.tensors_size(), 1);
  EXPECT_EQ(loaded.handle.tensors(0).name(), "first_stage_model.w");
  EXPECT_EQ(loaded.handle.cache_key(), "k:vae");
  request.set_submodel("unet");
  EXPECT_THAT(loader.Load(request, {}),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("k:unet needs 4096 bytes but the cache "
                                 "budget is 1024 bytes")));
  // Refused before anything was allocated or read: only the VAE is held.
  EXPECT_EQ(loader.GetCacheStats().ram_used_bytes(), 448);
  EXPECT_EQ(loader.GetCacheStats().models_size(), 1);
}

// --- PyTorch .bin weights in a diffusers folder ---------------------------

class BinFolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unet_ = dir_.path() / "unet";
    full_ = {{.name = "full", .shape = {6}}};
    half_ = {{.name = "half", .dtype = "F16", .shape = {6}}};
    FillRandom(full_, 6);
    FillRandom(half_, 7);
    WriteTorchCheckpoint(unet_ / "diffusion_pytorch_model.bin", full_);
    WriteTorchCheckpoint(unet_ / "diffusion_pytorch_model.fp16.bin", half_);
    // Pickles that are not weights: never picked.
    WriteFile(unet_ / "training_args.bin", "not weights");
    WriteFile(unet_ / "config.json", "{}");
  }
  absl::StatusOr<LoadPlan> Plan(const std::string& variant) {
    return PlanLoad({.path = dir_.path(),
                     .type = "main",
                     .format = "diffusers",
                     .submodel = "unet",
                     .repo_variant = variant});
  }
  TempDir dir_;
  fs::path unet_;
  std::vector<FixtureTensor> full_;
  std::vector<FixtureTensor> half_;
};

TEST_F(BinFolderTest, VariantPicksTheBinFileLikeSafetensors) {
  ASSERT_OK_AND_ASSIGN(LoadPlan plain, Plan(""));
  EXPECT_THAT(Names(plain), ElementsAre("full"));
  EXPECT_THAT(plain.side_files, ElementsAre(Pair("config.json", "{}")));
  EXPECT_EQ(LoadBytes(plain)["full"], full_[0].data);
  ASSERT_OK_AND_ASSIGN(LoadPlan half, Plan("fp16"));
  EXPECT_THAT(Names(half), ElementsAre("half"));
  EXPECT_EQ(LoadBytes(half)["half"], half_[0].data);
  fs::remove(unet_ / "diffusion_pytorch_model.fp16.bin");
  ASSERT_OK_AND_ASSIGN(LoadPlan fallback, Plan("fp16"));
  EXPECT_THAT(Names(fallback), ElementsAre("full"));
}

TEST_F(BinFolderTest, SafetensorsWinOverBinWeights) {
  WriteSafetensors(unet_ / "diffusion_pytorch_model.safetensors",
                   {{.name = "st", .shape = {1}}});
  // Even over a .bin of the wanted variant.
  ASSERT_OK_AND_ASSIGN(LoadPlan plan, Plan("fp16"));
  EXPECT_THAT(Names(plan), ElementsAre("st"));
}

TEST_F(BinFolderTest, TransformersNameAndShardIndex) {
  fs::path te = dir_.path() / "text_encoder";
  std::vector<FixtureTensor> first = {{.name = "a", .shape = {3}}};
  std::vector<FixtureTensor> second = {{.name = "b", .shape = {5}}};
  FillRandom(first, 8);
  FillRandom(second, 9);
  WriteTorchCheckpoint(te / "pytorch_model-00001-of-00002.bin", first);
  WriteTorchCheckpoint(te / "pytorch_model-00002-of-00002.bin", second);
  WriteFile(te / "pytorch_model.bin.index.json",
            R"({"weight_map": {"a": "pytorch_model-00001-of-00002.bin",
                               "b": "pytorch_model-00002-of-00002.bin"}})");
  ASSERT_OK_AND_ASSIGN(LoadPlan plan, PlanLoad({.path = dir_.path(),
                                                .submodel = "text_encoder"}));
  EXPECT_THAT(Names(plan), ElementsAre("a", "b"));
  std::map<std::string, std::string> bytes = LoadBytes(plan);
  EXPECT_EQ(bytes["a"], first[0].data);
  EXPECT_EQ(bytes["b"], second[0].data);
  // Shards without their index are no weights of their own.
  fs::remove(te / "pytorch_model.bin.index.json");
  EXPECT_THAT(PlanLoad({.path = dir_.path(), .submodel = "text_encoder"}),
              StatusIs(absl::StatusCode::kNotFound,
                       "no weights in " + te.string() +
                           " (*.safetensors, diffusion_pytorch_model*.bin, "
                           "pytorch_model*.bin, or their *.index.json)"));
}

TEST_F(BinFolderTest, OtherBinFilesAloneAreUnimplemented) {
  fs::remove(unet_ / "diffusion_pytorch_model.bin");
  fs::remove(unet_ / "diffusion_pytorch_model.fp16.bin");
  EXPECT_THAT(Plan(""),
              StatusIs(absl::StatusCode::kUnimplemented,
                       unet_.string() +
                           ": no safetensors, diffusion_pytorch_model*.bin or "
                           "pytorch_model*.bin weights; the loader does not "
                           "read training_args.bin from a folder: convert "
                           "them to safetensors"));
}

TEST_F(BinFolderTest, ShardLeavingTheFolderIsDataLoss) {
  WriteFile(unet_ / "diffusion_pytorch_model.bin.index.json",
            R"({"weight_map": {"w": "../diffusion_pytorch_model.bin"}})");
  EXPECT_THAT(
      Plan(""),
      StatusIs(absl::StatusCode::kDataLoss,
               (unet_ / "diffusion_pytorch_model.bin.index.json").string() +
                   ": shard name '../diffusion_pytorch_model.bin' is "
                   "not a file in the folder"));
}

TEST_F(BinFolderTest, TensorPastItsStorageIsDataLoss) {
  WriteTorchCheckpoint(
      unet_ / "diffusion_pytorch_model.bin", full_,
      {.views = {{.name = "past", .storage = 0, .offset = 4, .shape = {3}}}});
  absl::StatusOr<LoadPlan> plan = Plan("");
  EXPECT_THAT(plan, StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_EQ(plan.status().message(),
            (unet_ / "diffusion_pytorch_model.bin").string() +
                ": checkpoint tensor 'past': it reaches byte 28 of storage "
                "'archive/data/0', which has only 24 bytes; the checkpoint "
                "is corrupt");
}

// --- files-only submodels -------------------------------------------------

class FilesOnlyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tokenizer_ = dir_.path() / "tokenizer";
    WriteFile(tokenizer_ / "merges.txt", "a b\n");
    WriteFile(tokenizer_ / "tokenizer_config.json", R"({"x": 1})");
    WriteFile(tokenizer_ / "vocab.json",
              std::string(kMaxSideFileBytes + 1, ' '));
    WriteFile(dir_.path() / "scheduler" / "scheduler_config.json", "{}");
  }
  absl::StatusOr<LoadPlan> Plan(const std::string& submodel) {
    return PlanLoad({.path = dir_.path(),
                     .type = "main",
                     .format = "diffusers",
                     .submodel = submodel});
  }
  TempDir dir_;
  fs::path tokenizer_;
};

TEST_F(FilesOnlyTest, HandleHasFilesAndNoTensorsInAMinimalRegion) {
  ASSERT_OK_AND_ASSIGN(LoadPlan plan, Plan("tokenizer"));
  EXPECT_THAT(plan.tensors, IsEmpty());
  // Files over the limit are left out of the handle.
  EXPECT_THAT(plan.side_files,
              ElementsAre(Pair("merges.txt", "a b\n"),
                          Pair("tokenizer_config.json", R"({"x": 1})")));
  EXPECT_EQ(plan.total_bytes, kTensorAlignment);
  EXPECT_EQ(plan.data_bytes, 0u);
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const RamModel> model,
                       LoadIntoShm(plan, {}, {}));
  EXPECT_EQ(model->region().size(), kTensorAlignment);
  EXPECT_EQ(std::string(model->region().data(), kTensorAlignment),
            std::string(kTensorAlignment, '\0'));
  ASSERT_OK_AND_ASSIGN(LoadPlan scheduler, Plan("scheduler"));
  EXPECT_THAT(scheduler.side_files,
              ElementsAre(Pair("scheduler_config.json", "{}")));
}

TEST_F(FilesOnlyTest, WeightsInAFilesOnlyFolderAreIgnored) {
  WriteSafetensors(tokenizer_ / "stray.safetensors", {{.name = "w"}});
  ASSERT_OK_AND_ASSIGN(LoadPlan plan, Plan("tokenizer"));
  EXPECT_THAT(plan.tensors, IsEmpty());
}

TEST_F(FilesOnlyTest, FolderWithNoSmallFilesIsNotFound) {
  fs::create_directories(dir_.path() / "feature_extractor");
  WriteFile(dir_.path() / "feature_extractor" / "README.md", "no");
  EXPECT_THAT(Plan("feature_extractor"),
              StatusIs(absl::StatusCode::kNotFound,
                       "no files to hand out in " +
                           (dir_.path() / "feature_extractor").string() +
                           " (*.json, *.txt, *.model, *.jinja of at most "
                           "1048576 bytes)"));
}

TEST_F(FilesOnlyTest, SubmodelFolderLinkedOutOfTheModelIsDataLoss) {
  TempDir outside;
  WriteFile(outside.path() / "secret.json", "{}");
  WriteSafetensors(outside.path() / "model.safetensors", {{.name = "w"}});
  fs::create_directory_symlink(outside.path(), dir_.path() / "tokenizer_2");
  fs::create_directory_symlink(outside.path(), dir_.path() / "unet");
  const std::string real = fs::canonical(outside.path()).string();
  const std::string root = fs::canonical(dir_.path()).string();
  for (const std::string& submodel :
       {std::string("tokenizer_2"), std::string("unet")}) {
    EXPECT_THAT(
        Plan(submodel),
        StatusIs(absl::StatusCode::kDataLoss,
                 "submodel folder '" + submodel + "' (" +
                     (dir_.path() / submodel).string() + ") resolves to " +
                     real + ", outside the model folder " + root +
                     "; refusing to read it"));
  }
}

TEST_F(FilesOnlyTest, SubmodelFolderLinkedInsideTheModelIsRead) {
  fs::create_directory_symlink("tokenizer", dir_.path() / "tokenizer_2");
  ASSERT_OK_AND_ASSIGN(LoadPlan plan, Plan("tokenizer_2"));
  EXPECT_EQ(plan.side_files.size(), 2u);
}

// --- PyTorch views ----------------------------------------------------------

TEST(TorchViewsTest, TensorsSharingAStorageEachGetTheirBytes) {
  TempDir dir;
  std::vector<FixtureTensor> tensors = {{.name = "base", .shape = {8}}};
  FillRandom(tensors, 10);
  const std::string& data = tensors[0].data;
  fs::path file = dir.path() / "views.pt";
  WriteTorchCheckpoint(
      file, tensors,
      {.views = {{.name = "tail", .storage = 0, .offset = 4, .shape = {4}},
                 {.name = "middle", .storage = 0, .offset = 2, .shape = {2, 2}},
                 {.name = "row",
                  .storage = 0,
                  .offset = 6,
                  .shape = {1, 2},
                  .strides = {7, 1}}}});
  ASSERT_OK_AND_ASSIGN(LoadPlan plan, PlanLoad({.path = file}));
  EXPECT_THAT(Names(plan), ElementsAre("base", "tail", "middle", "row"));
  std::map<std::string, std::string> bytes = LoadBytes(plan);
  EXPECT_EQ(bytes["base"], data);
  EXPECT_EQ(bytes["tail"], data.substr(16, 16));
  EXPECT_EQ(bytes["middle"], data.substr(8, 16));
  EXPECT_EQ(bytes["row"], data.substr(24, 8));
}

TEST(TorchViewsTest, StridedViewIsUnimplementedNamingTheTensor) {
  TempDir dir;
  std::vector<FixtureTensor> tensors = {{.name = "w", .shape = {2, 4}}};
  fs::path file = dir.path() / "t.pt";
  WriteTorchCheckpoint(
      file, tensors,
      {.views = {
           {.name = "w_t", .storage = 0, .shape = {4, 2}, .strides = {1, 4}}}});
  EXPECT_THAT(
      PlanLoad({.path = file}),
      StatusIs(absl::StatusCode::kUnimplemented,
               file.string() +
                   ": tensor 'w_t' is a strided view of its storage, which "
                   "is not loaded yet; save it contiguous "
                   "(tensor.contiguous()) or as safetensors"));
}

TEST(TorchViewsTest, ViewPastItsStorageIsDataLoss) {
  TempDir dir;
  std::vector<FixtureTensor> tensors = {{.name = "w", .shape = {4}}};
  fs::path file = dir.path() / "t.pt";
  WriteTorchCheckpoint(
      file, tensors,
      {.views = {{.name = "v", .storage = 0, .offset = 3, .shape = {2}}}});
  absl::StatusOr<LoadPlan> plan = PlanLoad({.path = file});
  EXPECT_THAT(plan, StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_EQ(plan.status().message(),
            file.string() +
                ": checkpoint tensor 'v': it reaches byte 20 of storage "
                "'archive/data/0', which has only 16 bytes; the checkpoint "
                "is corrupt");
}

}  // namespace
}  // namespace mm::loader
