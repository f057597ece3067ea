#include "model/torch_checkpoint.h"

#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/weights_file.h"
#include "tests/testing/model_fixtures.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::model {
namespace {

using ::mm::testing::FixtureTensor;
using ::mm::testing::PickleWriter;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::mm::testing::TorchCheckpointBytes;
using ::mm::testing::ZipBytes;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<FixtureTensor> SmallTensors() {
  return {{.name = "model.diffusion_model.input_blocks.0.0.weight",
           .dtype = "F16",
           .shape = {320, 4, 3, 3}},
          {.name = "first_stage_model.decoder.conv_in.bias",
           .dtype = "F32",
           .shape = {512}},
          {.name = "cond_stage_model.position_ids",
           .dtype = "I64",
           .shape = {1, 77}}};
}

TEST(TorchCheckpointTest, ReadsStateDict) {
  ASSERT_OK_AND_ASSIGN(
      TensorIndex index,
      ParseTorchCheckpoint(TorchCheckpointBytes(
          SmallTensors(), {.scalars = {{"epoch", int64_t{3}}}})));
  EXPECT_EQ(index.format, WeightsFormat::kTorchZip);
  ASSERT_EQ(index.tensors.size(), 3u);
  const TensorInfo* conv =
      index.Find("model.diffusion_model.input_blocks.0.0.weight");
  ASSERT_NE(conv, nullptr);
  EXPECT_EQ(conv->dtype, "F16");
  EXPECT_THAT(conv->shape, ElementsAre(320, 4, 3, 3));
  EXPECT_THAT(conv->strides, ElementsAre(36, 9, 3, 1));
  EXPECT_EQ(conv->storage, "archive/data/0");
  EXPECT_EQ(conv->offset, 0u);
  EXPECT_EQ(conv->byte_size, 320u * 36 * 2);
  EXPECT_EQ(index.Find("cond_stage_model.position_ids")->dtype, "I64");
  EXPECT_EQ(index.scalars["epoch"], 3);
  EXPECT_TRUE(index.findings.empty());
}

TEST(TorchCheckpointTest, UnwrapsStateDictAndKeepsScalars) {
  ASSERT_OK_AND_ASSIGN(
      TensorIndex index,
      ParseTorchCheckpoint(TorchCheckpointBytes(
          SmallTensors(), {.scalars = {{"global_step", int64_t{220000}},
                                       {"lr", 0.25},
                                       {"name", std::string("sd2")},
                                       {"ema", true}},
                           .wrap_in_state_dict = true,
                           .as_parameters = true})));
  EXPECT_EQ(index.tensors.size(), 3u);
  EXPECT_NE(index.Find("first_stage_model.decoder.conv_in.bias"), nullptr);
  EXPECT_EQ(index.Find("state_dict"), nullptr);
  EXPECT_EQ(index.scalars["global_step"], 220000);
  EXPECT_EQ(index.scalars["lr"], 0.25);
  EXPECT_EQ(index.scalars["name"], "sd2");
  EXPECT_EQ(index.scalars["ema"], true);
}

TEST(TorchCheckpointTest, ReadsFromDiskViaDispatch) {
  TempDir dir;
  for (const char* name : {"m.ckpt", "m.pt", "m.pth", "pytorch_model.bin"}) {
    const auto path = dir.path() / name;
    mm::testing::WriteTorchCheckpoint(path, SmallTensors(),
                                      {.archive_name = "m"});
    ASSERT_OK_AND_ASSIGN(TensorIndex index, ReadTensorIndex(path));
    EXPECT_EQ(index.tensors.size(), 3u) << name;
    EXPECT_EQ(index.tensors[0].storage, "m/data/0");
  }
}

TEST(TorchCheckpointTest, SparseSevenGigabyteCheckpointUsesZip64) {
  TempDir dir;
  const auto path = dir.path() / "big.ckpt";
  mm::testing::WriteTorchCheckpoint(
      path, {{.name = "a", .dtype = "F32", .shape = {1 << 20, 1024}},
             {.name = "b", .dtype = "F32", .shape = {1 << 20, 768}}});
  struct stat info;
  ASSERT_EQ(::stat(path.c_str(), &info), 0);
  EXPECT_GT(info.st_size, int64_t{7} << 30);
  EXPECT_LT(info.st_blocks * 512, int64_t{1} << 20);
  ASSERT_OK_AND_ASSIGN(TensorIndex index, ReadTensorIndex(path));
  ASSERT_EQ(index.tensors.size(), 2u);
  EXPECT_EQ(index.Find("b")->byte_size, uint64_t{3} << 30);
  ASSERT_OK_AND_ASSIGN(auto zip, ZipArchive::Open(path));
  const ZipEntry* storage = zip->Find("archive/data/1");
  ASSERT_NE(storage, nullptr);
  EXPECT_EQ(storage->uncompressed_size, uint64_t{3} << 30);
  EXPECT_GT(storage->local_header_offset, uint64_t{4} << 30);
  ASSERT_OK_AND_ASSIGN(uint64_t offset, zip->DataOffset(*storage));
  EXPECT_EQ(offset % 64, 0u);
}

TEST(TorchCheckpointTest, MaliciousPickleRunsNothing) {
  TempDir dir;
  const std::filesystem::path pwned = dir.path() / "pwned";
  // {"w": os.system("touch <dir>/pwned"), ...}: the call is a placeholder.
  PickleWriter p;
  p.Proto(2).EmptyDict().Mark();
  p.Unicode("hack").Global("os", "system");
  p.Mark().Unicode("touch " + pwned.string()).Tuple().Reduce();
  p.Unicode("global_step").Int(5);
  p.SetItems().Stop();
  const std::string zip =
      ZipBytes({{.name = "archive/data.pkl", .data = p.bytes()},
                {.name = "archive/version", .data = "3\n"}});
  const auto path = dir.path() / "evil.ckpt";
  mm::testing::WriteFile(path, zip);
  ASSERT_OK_AND_ASSIGN(TensorIndex index, ReadTensorIndex(path));
  EXPECT_FALSE(std::filesystem::exists(pwned));
  EXPECT_TRUE(index.tensors.empty());
  EXPECT_EQ(index.scalars["global_step"], 5);
  EXPECT_THAT(index.findings, Contains(HasSubstr("refused global os.system")));
}

TEST(TorchCheckpointTest, ForeignClassesStillYieldTheStateDict) {
  // A Lightning-like checkpoint: callbacks and hyper-parameters pickled as
  // foreign classes next to the state dict.
  std::string pickle = mm::testing::TorchPickleBytes(SmallTensors());
  // Wrap it by hand: {"callbacks": ModelCheckpoint(), "state_dict": <od>}
  PickleWriter p;
  p.Proto(2).EmptyDict().Mark();
  p.Unicode("callbacks")
      .Global("pytorch_lightning.callbacks", "ModelCheckpoint");
  p.EmptyTuple().Raw("\x81");
  p.EmptyDict().Unicode("monitor").Unicode("val").SetItem().Build();
  p.Unicode("hparams").Global("argparse", "Namespace").EmptyTuple().Reduce();
  p.Unicode("state_dict");
  // Splice the fixture's OrderedDict (without PROTO and STOP) into place.
  // Its memo keys start at 0, which this outer pickle does not use.
  p.Raw(pickle.substr(2, pickle.size() - 3));
  p.SetItems().Stop();
  std::vector<mm::testing::ZipFixtureEntry> entries = {
      {.name = "archive/data.pkl", .data = p.bytes()}};
  for (size_t i = 0; i < SmallTensors().size(); ++i) {
    entries.push_back(
        {.name = "archive/data/" + std::to_string(i),
         .data = std::string(mm::testing::FixtureByteSize(SmallTensors()[i]),
                             '\0')});
  }
  ASSERT_OK_AND_ASSIGN(TensorIndex index,
                       ParseTorchCheckpoint(ZipBytes(entries)));
  EXPECT_EQ(index.tensors.size(), 3u);
  EXPECT_THAT(
      index.findings,
      Contains(HasSubstr("pytorch_lightning.callbacks.ModelCheckpoint")));
  EXPECT_THAT(index.findings, Contains(HasSubstr("argparse.Namespace")));
}

TEST(TorchCheckpointTest, LegacyFormatIsRefused) {
  TempDir dir;
  const auto path = dir.path() / "old.ckpt";
  // torch.save before 1.6: a bare pickle stream (magic number first).
  mm::testing::WriteFile(
      path, std::string("\x80\x02\x8a\x0a", 4) + std::string(10, '\x6c') + ".");
  EXPECT_THAT(ReadTensorIndex(path),
              StatusIs(absl::StatusCode::kUnimplemented,
                       HasSubstr("legacy checkpoint format not supported")));
  EXPECT_THAT(ReadTorchCheckpoint(path),
              StatusIs(absl::StatusCode::kUnimplemented,
                       HasSubstr("legacy checkpoint format not supported")));
}

TEST(TorchCheckpointTest, MissingDataPkl) {
  EXPECT_THAT(
      ParseTorchCheckpoint(ZipBytes({{.name = "x/other", .data = "1"}})),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("no <archive>/data.pkl")));
}

TEST(TorchCheckpointTest, StorageMissingOrTooSmall) {
  std::vector<FixtureTensor> tensors = {
      {.name = "w", .dtype = "F32", .shape = {4, 4}}};
  const std::string pickle = mm::testing::TorchPickleBytes(tensors);
  EXPECT_THAT(ParseTorchCheckpoint(
                  ZipBytes({{.name = "archive/data.pkl", .data = pickle}})),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("storage entry 'archive/data/0' is missing")));
  EXPECT_THAT(
      ParseTorchCheckpoint(ZipBytes(
          {{.name = "archive/data.pkl", .data = pickle},
           {.name = "archive/data/0", .data = std::string(60, '\0')}})),
      StatusIs(absl::StatusCode::kDataLoss,
               HasSubstr("reaches byte 64 of storage 'archive/data/0', which "
                         "has only 60 bytes")));
}

TEST(TorchCheckpointTest, ModelObjectInsteadOfStateDict) {
  PickleWriter p;
  p.Proto(2).Global("mymodels", "UNet").EmptyTuple().Raw("\x81");
  p.EmptyDict().Build().Stop();
  EXPECT_THAT(
      ParseTorchCheckpoint(
          ZipBytes({{.name = "archive/data.pkl", .data = p.bytes()}})),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("holds a pickled mymodels.UNet object, not a state "
                         "dict")));
}

TEST(TorchCheckpointTest, NestedDictsAreFlattened) {
  // Textual inversion: {"string_to_param": {"*": tensor}, "name": "x"}.
  std::vector<FixtureTensor> inner = {
      {.name = "*", .dtype = "F32", .shape = {1, 768}}};
  const std::string inner_pickle = mm::testing::TorchPickleBytes(inner);
  PickleWriter p;
  p.Proto(2).EmptyDict().Mark();
  p.Unicode("string_to_param");
  p.Raw(inner_pickle.substr(2, inner_pickle.size() - 3));
  p.Unicode("name").Unicode("x");
  p.SetItems().Stop();
  ASSERT_OK_AND_ASSIGN(
      TensorIndex index,
      ParseTorchCheckpoint(ZipBytes(
          {{.name = "archive/data.pkl", .data = p.bytes()},
           {.name = "archive/data/0", .data = std::string(3072, '\0')}})));
  ASSERT_EQ(index.tensors.size(), 1u);
  EXPECT_EQ(index.tensors[0].name, "string_to_param.*");
  EXPECT_EQ(index.scalars["name"], "x");
}

TEST(TorchCheckpointTest, TwoThousandFiveHundredTensors) {
  std::vector<FixtureTensor> tensors;
  for (int i = 0; i < 2500; ++i) {
    tensors.push_back({.name = "model.layers." + std::to_string(i) + ".weight",
                       .dtype = "F16",
                       .shape = {1024, 1024}});
  }
  TempDir dir;
  const auto path = dir.path() / "many.pt";
  mm::testing::WriteTorchCheckpoint(path, tensors);
  ASSERT_OK_AND_ASSIGN(TensorIndex index, ReadTensorIndex(path));
  EXPECT_EQ(index.tensors.size(), 2500u);
  EXPECT_EQ(index.Find("model.layers.2499.weight")->storage,
            "archive/data/2499");
}

}  // namespace
}  // namespace mm::model
