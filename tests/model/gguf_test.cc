#include "model/gguf.h"

#include <chrono>
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

using ::mm::testing::GgufBytes;
using ::mm::testing::GgufFixture;
using ::mm::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

GgufFixture FluxLike() {
  GgufFixture fixture;
  fixture.metadata = {
      {"general.architecture", std::string("flux")},
      {"general.quantization_version", uint32_t{2}},
      {"general.file_type", int32_t{8}},
      {"general.scale", 0.5f},
      {"general.ok", true},
      {"general.size", uint64_t{1} << 40},
      {"tokenizer.tokens", std::vector<std::string>{"a", "b", "c"}},
      {"ids", std::vector<int32_t>(1000, 7)},
  };
  fixture.tensors = {
      {.name = "img_in.weight", .type = 8, .shape = {3072, 64}},
      {.name = "double_blocks.0.img_attn.norm.key_norm.scale",
       .type = 0,
       .shape = {128}},
      {.name = "final.weight", .type = 12, .shape = {64, 3072}},
  };
  return fixture;
}

TEST(GgufTest, ReadsHeaderMetadataAndTensors) {
  const std::string bytes = GgufBytes(FluxLike());
  ASSERT_OK_AND_ASSIGN(TensorIndex index, ParseGguf(bytes));
  EXPECT_EQ(index.format, WeightsFormat::kGguf);
  const nlohmann::json& metadata = index.scalars["metadata"];
  EXPECT_EQ(metadata["general.architecture"], "flux");
  EXPECT_EQ(metadata["general.quantization_version"], 2);
  EXPECT_EQ(metadata["general.file_type"], 8);
  EXPECT_EQ(metadata["general.scale"], 0.5);
  EXPECT_EQ(metadata["general.ok"], true);
  EXPECT_EQ(metadata["tokenizer.tokens"],
            nlohmann::json::array({"a", "b", "c"}));
  EXPECT_EQ(metadata["ids"]["length"], 1000);
  EXPECT_EQ(metadata["ids"]["type"], "array<int32>");
  ASSERT_EQ(index.tensors.size(), 3u);
  const TensorInfo* img_in = index.Find("img_in.weight");
  ASSERT_NE(img_in, nullptr);
  EXPECT_EQ(img_in->dtype, "Q8_0");
  EXPECT_THAT(img_in->shape, ElementsAre(3072, 64));
  EXPECT_EQ(img_in->byte_size, 3072u * 64 / 32 * 34);
  EXPECT_EQ(img_in->offset % 32, 0u);
  const TensorInfo* final_weight = index.Find("final.weight");
  EXPECT_EQ(final_weight->dtype, "Q4_K");
  EXPECT_EQ(final_weight->byte_size, 64u * 3072 / 256 * 144);
  EXPECT_EQ(final_weight->offset + final_weight->byte_size, bytes.size());
}

TEST(GgufTest, CustomAlignmentAndDispatchFromDisk) {
  GgufFixture fixture = FluxLike();
  fixture.alignment = 64;
  mm::testing::TempDir dir;
  const auto path = dir.path() / "flux.gguf";
  mm::testing::WriteGguf(path, fixture);
  ASSERT_OK_AND_ASSIGN(TensorIndex index, ReadTensorIndex(path));
  EXPECT_EQ(index.format, WeightsFormat::kGguf);
  EXPECT_EQ(index.scalars["metadata"]["general.alignment"], 64);
  for (const TensorInfo& t : index.tensors) EXPECT_EQ(t.offset % 64, 0u);
}

TEST(GgufTest, LargeMetadataNeedsSeveralReads) {
  GgufFixture fixture = FluxLike();
  // ~3 MB of tokenizer strings: more than the first 1 MiB read.
  fixture.metadata.push_back(
      {"tokenizer.ggml.tokens",
       std::vector<std::string>(300000, std::string("tokenxx"))});
  mm::testing::TempDir dir;
  const auto path = dir.path() / "llm.gguf";
  mm::testing::WriteGguf(path, fixture);
  ASSERT_OK_AND_ASSIGN(TensorIndex index, ReadGgufIndex(path));
  EXPECT_EQ(index.scalars["metadata"]["tokenizer.ggml.tokens"]["length"],
            300000);
  EXPECT_EQ(index.tensors.size(), 3u);
}

TEST(GgufTest, AbsurdTensorCountFailsFast) {
  std::string bytes = GgufBytes(FluxLike());
  // tensor_count (offset 8) = 2^60.
  bytes.replace(8, 8, std::string("\0\0\0\0\0\0\0\x10", 8));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THAT(ParseGguf(bytes),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tensor_count 1152921504606846976 exceeds "
                                 "the limit")));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  // Within the limit but more than the file can hold.
  bytes.replace(8, 8, std::string("\x40\x42\x0f\0\0\0\0\0", 8));
  EXPECT_THAT(ParseGguf(bytes), StatusIs(absl::StatusCode::kDataLoss,
                                         HasSubstr("more than the")));
}

TEST(GgufTest, AbsurdKvAndArrayCounts) {
  std::string bytes = GgufBytes(FluxLike());
  bytes.replace(16, 8, std::string("\xff\xff\xff\xff\xff\xff\xff\xff", 8));
  EXPECT_THAT(ParseGguf(bytes),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("kv_count 18446744073709551615 exceeds")));
  GgufFixture fixture;
  fixture.metadata = {{"arr", std::vector<int32_t>{1, 2}}};
  bytes = GgufBytes(fixture);
  // The array length sits after magic, version, counts, key, types.
  const size_t length_at = 4 + 4 + 8 + 8 + 8 + 3 + 4 + 4;
  bytes.replace(length_at, 8, std::string("\0\0\0\0\0\0\0\x10", 8));
  EXPECT_THAT(ParseGguf(bytes),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("claims 1152921504606846976 array elements")));
}

TEST(GgufTest, Truncated) {
  const std::string bytes = GgufBytes(FluxLike());
  EXPECT_THAT(ParseGguf(bytes.substr(0, 30)),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated")));
  // Header intact, data cut: the last tensor runs past the end.
  EXPECT_THAT(
      ParseGguf(bytes.substr(0, bytes.size() - 100)),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("'final.weight'")));
}

TEST(GgufTest, BadMagicAndVersions) {
  EXPECT_THAT(
      ParseGguf("GGML\3\0\0\0"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("GGUF magic")));
  std::string v1 = GgufBytes(FluxLike());
  v1[4] = 1;
  EXPECT_THAT(ParseGguf(v1), StatusIs(absl::StatusCode::kUnimplemented,
                                      HasSubstr("version 1")));
  std::string big_endian = GgufBytes(FluxLike());
  big_endian.replace(4, 4, std::string("\0\0\0\3", 4));
  EXPECT_THAT(ParseGguf(big_endian), StatusIs(absl::StatusCode::kUnimplemented,
                                              HasSubstr("big-endian")));
}

TEST(GgufTest, UnknownTypeAndBadAlignment) {
  GgufFixture fixture;
  fixture.tensors = {{.name = "t", .type = 0, .shape = {4}}};
  std::string bytes = GgufBytes(fixture);
  // The type field follows name (8+1), n_dims (4), one dim (8).
  const size_t type_at = 24 + 8 + 1 + 4 + 8;
  bytes[type_at] = 99;
  EXPECT_THAT(ParseGguf(bytes), StatusIs(absl::StatusCode::kInvalidArgument,
                                         HasSubstr("unknown ggml type 99")));
  bytes[type_at] = 0;
  bytes[type_at + 4] = 3;  // offset 3: not aligned
  EXPECT_THAT(ParseGguf(bytes),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("offset 3 is not a multiple")));
}

TEST(GgufTest, OverlappingTensors) {
  GgufFixture fixture;
  fixture.tensors = {{.name = "a", .type = 0, .shape = {16}},
                     {.name = "b", .type = 0, .shape = {16}}};
  std::string bytes = GgufBytes(fixture);
  // Point b's offset (the last 8 bytes of its info) at a's data.
  const size_t b_offset_at = 24 + (8 + 1 + 4 + 8 + 4 + 8) + 8 + 1 + 4 + 8 + 4;
  bytes.replace(b_offset_at, 8, std::string(8, '\0'));
  EXPECT_THAT(ParseGguf(bytes),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("overlap")));
}

TEST(GgufTest, DimensionProductOverflows) {
  GgufFixture fixture;
  fixture.tensors = {{.name = "t", .type = 0, .shape = {4, 4}}};
  std::string bytes = GgufBytes(fixture);
  // Both dims (after name and n_dims) become 2^32: 2^64 elements.
  const size_t dims_at = 24 + 8 + 1 + 4;
  bytes.replace(dims_at, 16,
                std::string("\0\0\0\0\1\0\0\0\0\0\0\0\1\0\0\0", 16));
  EXPECT_THAT(ParseGguf(bytes),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("dimensions overflow 64-bit sizes")));
}

TEST(GgufTest, TooManyDims) {
  GgufFixture fixture;
  fixture.tensors = {{.name = "t", .type = 0, .shape = {1, 1, 1, 1}}};
  std::string bytes = GgufBytes(fixture);
  bytes[24 + 8 + 1] = 5;
  EXPECT_THAT(ParseGguf(bytes), StatusIs(absl::StatusCode::kDataLoss,
                                         HasSubstr("n_dims 5 exceeds 4")));
}

}  // namespace
}  // namespace mm::model
