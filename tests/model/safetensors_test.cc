#include "model/safetensors.h"

#include <sys/stat.h>

#include <chrono>
#include <cstdint>
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
using ::mm::testing::SafetensorsBytes;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string LengthPrefixed(const std::string& json) {
  std::string out;
  uint64_t size = json.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(size >> (8 * i)));
  return out + json;
}

// A file of `header` JSON followed by `data_bytes` zero bytes.
std::string File(const std::string& header, size_t data_bytes) {
  return LengthPrefixed(header) + std::string(data_bytes, '\0');
}

absl::StatusOr<TensorIndex> Parse(const std::string& bytes) {
  return ParseSafetensorsHeader(bytes, bytes.size());
}

TEST(SafetensorsTest, ReadsTensorTableAndMetadata) {
  const std::string bytes =
      SafetensorsBytes({{.name = "b", .dtype = "F16", .shape = {2, 3}},
                        {.name = "a", .dtype = "I64", .shape = {4}},
                        {.name = "scalar", .dtype = "F32", .shape = {}}},
                       {{"format", "pt"}});
  ASSERT_OK_AND_ASSIGN(TensorIndex index, Parse(bytes));
  EXPECT_EQ(index.format, WeightsFormat::kSafetensors);
  ASSERT_EQ(index.tensors.size(), 3u);
  // File order: b (12 bytes), a (32 bytes), scalar (4 bytes).
  EXPECT_EQ(index.tensors[0].name, "b");
  EXPECT_EQ(index.tensors[1].name, "a");
  EXPECT_EQ(index.tensors[2].name, "scalar");
  const uint64_t header = bytes.size() - 48;
  EXPECT_EQ(index.tensors[0].offset, header);
  EXPECT_EQ(index.tensors[0].byte_size, 12u);
  EXPECT_EQ(index.tensors[1].offset, header + 12);
  EXPECT_EQ(index.tensors[1].byte_size, 32u);
  EXPECT_THAT(index.tensors[0].shape, ElementsAre(2, 3));
  EXPECT_TRUE(index.tensors[2].shape.empty());
  const TensorInfo* a = index.Find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, "I64");
  EXPECT_EQ(index.Find("missing"), nullptr);
  EXPECT_EQ(index.scalars["metadata"]["format"], "pt");
}

TEST(SafetensorsTest, ReadsFromDisk) {
  TempDir dir;
  const auto path = dir.path() / "m.safetensors";
  mm::testing::WriteSafetensors(
      path, {{.name = "w", .dtype = "BF16", .shape = {8, 8}}});
  ASSERT_OK_AND_ASSIGN(TensorIndex index, ReadSafetensorsIndex(path));
  ASSERT_EQ(index.tensors.size(), 1u);
  EXPECT_EQ(index.tensors[0].byte_size, 128u);
  ASSERT_OK_AND_ASSIGN(TensorIndex again, ReadTensorIndex(path));
  EXPECT_EQ(again.tensors.size(), 1u);
}

TEST(SafetensorsTest, SparseSevenGigabyteFileCostsNoDisk) {
  TempDir dir;
  const auto path = dir.path() / "big.safetensors";
  // 7 GiB of F16 zeros in two tensors.
  mm::testing::WriteSafetensors(
      path, {{.name = "big.0", .dtype = "F16", .shape = {1 << 20, 1792}},
             {.name = "big.1", .dtype = "F16", .shape = {1 << 20, 1792}}});
  struct stat info;
  ASSERT_EQ(::stat(path.c_str(), &info), 0);
  EXPECT_GT(info.st_size, int64_t{7} << 30);
  EXPECT_LT(info.st_blocks * 512, int64_t{1} << 20);
  ASSERT_OK_AND_ASSIGN(TensorIndex index, ReadTensorIndex(path));
  EXPECT_EQ(index.tensors[1].byte_size, uint64_t{1792} << 21);
}

TEST(SafetensorsTest, AcceptsZeroSizedTensorsAtTheSameOffset) {
  const std::string bytes =
      File(R"({"e1":{"dtype":"F32","shape":[0,4],"data_offsets":[0,0]},)"
           R"("e2":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
           R"("x":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})",
           2);
  ASSERT_OK_AND_ASSIGN(TensorIndex index, Parse(bytes));
  EXPECT_EQ(index.tensors.size(), 3u);
}

TEST(SafetensorsTest, TruncatedBeforeLength) {
  EXPECT_THAT(Parse("\x10\0\0"),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("shorter than the 8-byte header length")));
}

TEST(SafetensorsTest, HeaderLengthTwoToTheSixtyThree) {
  std::string bytes(8, '\0');
  bytes[7] = '\x80';
  bytes += "{}";
  EXPECT_THAT(Parse(bytes),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("header length 9223372036854775808 exceeds "
                                 "the 100000000-byte limit")));
}

TEST(SafetensorsTest, HeaderLengthPastEndOfFile) {
  std::string bytes = LengthPrefixed("{}");
  bytes[0] = 50;
  EXPECT_THAT(Parse(bytes),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("header length 50 runs past the end")));
}

TEST(SafetensorsTest, TruncatedFileOnDisk) {
  TempDir dir;
  const std::string bytes =
      SafetensorsBytes({{.name = "w", .dtype = "F32", .shape = {16}}});
  const auto path = dir.path() / "cut.safetensors";
  mm::testing::WriteFile(path, bytes.substr(0, bytes.size() - 10));
  EXPECT_THAT(ReadSafetensorsIndex(path),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("past the end of the data area")));
  mm::testing::WriteFile(path, bytes.substr(0, 20));
  EXPECT_THAT(
      ReadSafetensorsIndex(path),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("runs past the end")));
}

TEST(SafetensorsTest, OffsetsPastTheEnd) {
  EXPECT_THAT(
      Parse(File(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}})",
                 16)),
      StatusIs(absl::StatusCode::kDataLoss,
               HasSubstr("data_offsets [16, 32] point past the end of the "
                         "data area (16 bytes)")));
}

TEST(SafetensorsTest, OverlappingTensors) {
  EXPECT_THAT(
      Parse(File(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                 R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                 16)),
      StatusIs(absl::StatusCode::kDataLoss,
               HasSubstr("tensors 'a' (bytes 0..16) and 'b' (from byte 8) "
                         "overlap")));
}

TEST(SafetensorsTest, ShapeProductOverflows) {
  EXPECT_THAT(
      Parse(File(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],)"
                 R"("data_offsets":[0,0]}})",
                 0)),
      StatusIs(absl::StatusCode::kDataLoss,
               HasSubstr("overflows 64-bit byte size")));
  // The element count fits but × 8 bytes does not.
  EXPECT_THAT(Parse(File(R"({"w":{"dtype":"F64","shape":[2305843009213693952],)"
                         R"("data_offsets":[0,0]}})",
                         0)),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("overflows 64-bit byte size")));
}

TEST(SafetensorsTest, ShapeDisagreesWithByteLength) {
  EXPECT_THAT(
      Parse(File(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})",
                 16)),
      StatusIs(absl::StatusCode::kDataLoss,
               HasSubstr("hold 16 bytes but shape [3] of dtype F32 needs 12")));
}

TEST(SafetensorsTest, UnknownDtype) {
  EXPECT_THAT(
      Parse(File(R"({"w":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}})",
                 16)),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("unknown dtype 'F128'")));
}

TEST(SafetensorsTest, InvalidJson) {
  EXPECT_THAT(Parse(File(R"({"w":{"dtype":)", 0)),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("header is not valid JSON")));
}

TEST(SafetensorsTest, InvalidUtf8InHeader) {
  EXPECT_THAT(Parse(File("{\"w\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[],"
                         "\"data_offsets\":[0,4]}}",
                         4)),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("header is not valid JSON")));
}

TEST(SafetensorsTest, DeeplyNestedJson) {
  EXPECT_THAT(Parse(File(std::string(10000, '[') + std::string(10000, ']'), 0)),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("nests JSON deeper than 16 levels")));
}

TEST(SafetensorsTest, NotAnObject) {
  EXPECT_THAT(Parse(File("[1,2]", 0)),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("header is not a JSON object")));
}

TEST(SafetensorsTest, DuplicateTensorName) {
  EXPECT_THAT(
      Parse(File(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                 R"("w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                 2)),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("names 'w' twice")));
}

TEST(SafetensorsTest, BadFields) {
  EXPECT_THAT(Parse(File(R"({"w":{"shape":[1],"data_offsets":[0,1]}})", 1)),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("field 'dtype' is missing")));
  EXPECT_THAT(
      Parse(
          File(R"({"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", 1)),
      StatusIs(absl::StatusCode::kDataLoss,
               HasSubstr("not a non-negative integer")));
  EXPECT_THAT(
      Parse(
          File(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[1,0]}})", 1)),
      StatusIs(absl::StatusCode::kDataLoss,
               HasSubstr("end before they begin")));
  EXPECT_THAT(Parse(File(R"({"__metadata__":{"k":1}})", 0)),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("'__metadata__' value for 'k'")));
}

TEST(SafetensorsTest, ReadingTheHeaderDoesNotReadTheData) {
  // A file whose data area is unreadable garbage still indexes: only the
  // header is parsed.
  std::string bytes =
      SafetensorsBytes({{.name = "w", .dtype = "U8", .shape = {4}}});
  bytes.replace(bytes.size() - 4, 4, "\xff\xff\xff\xff");
  ASSERT_OK_AND_ASSIGN(TensorIndex index, Parse(bytes));
  EXPECT_EQ(index.tensors.size(), 1u);
}

TEST(SafetensorsTest, IndexesTwoThousandFiveHundredTensorsQuickly) {
  std::vector<FixtureTensor> tensors;
  for (int i = 0; i < 2500; ++i) {
    tensors.push_back({.name = "model.diffusion_model.block." +
                               std::to_string(i) + ".attn.to_k.weight",
                       .dtype = "F16",
                       .shape = {320, 768}});
  }
  TempDir dir;
  const auto path = dir.path() / "many.safetensors";
  mm::testing::WriteSafetensors(path, tensors);
  const auto start = std::chrono::steady_clock::now();
  ASSERT_OK_AND_ASSIGN(TensorIndex index, ReadTensorIndex(path));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(index.tensors.size(), 2500u);
  EXPECT_NE(index.Find("model.diffusion_model.block.2499.attn.to_k.weight"),
            nullptr);
  // Informational: the benchmark, not this test, judges speed.
  RecordProperty(
      "index_micros",
      std::to_string(
          std::chrono::duration_cast<std::chrono::microseconds>(elapsed)
              .count()));
}

TEST(WeightsFileTest, DispatchRefusesUnknownAndMissingFiles) {
  TempDir dir;
  mm::testing::WriteFile(dir.path() / "notes.txt", "hello world, not weights");
  EXPECT_THAT(ReadTensorIndex(dir.path() / "notes.txt"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a recognised weights file")));
  EXPECT_THAT(ReadTensorIndex(dir.path() / "absent.safetensors"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no such file")));
  EXPECT_THAT(ReadTensorIndex(dir.path()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("not a regular file")));
  // A .safetensors name with garbage content still gets the safetensors
  // reader's precise error, naming the path.
  mm::testing::WriteFile(dir.path() / "bad.safetensors", "\xff\xff\xff\xff");
  EXPECT_THAT(
      ReadTensorIndex(dir.path() / "bad.safetensors"),
      StatusIs(absl::StatusCode::kDataLoss,
               HasSubstr("bad.safetensors: safetensors file is 4 bytes")));
}

}  // namespace
}  // namespace mm::model
