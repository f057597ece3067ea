// Format detection: safetensors by its structure, every other format by its
// whole signature, whatever the file is called.
#include "model/weights_file.h"

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/safetensors.h"
#include "tests/testing/model_fixtures.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::model {
namespace {

namespace fs = std::filesystem;

using ::mm::testing::FixtureTensor;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::mm::testing::WriteFile;
using ::testing::HasSubstr;

std::string LittleEndian64(uint64_t value) {
  std::string out;
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>(value >> (8 * i)));
  return out;
}

// The value of `prefix` read as the low bytes of a little-endian length.
uint64_t LengthSpelling(const std::string& prefix) {
  uint64_t value = 0;
  for (size_t i = 0; i < prefix.size(); ++i) {
    value |= uint64_t{static_cast<unsigned char>(prefix[i])} << (8 * i);
  }
  return value;
}

constexpr char kOneTensor[] =
    R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

// A valid safetensors file whose JSON header is exactly `header_length`
// bytes (safetensors allows trailing spaces): one F32 tensor "w" of 8 data
// bytes, or no tensor when the header is too short to hold it.
std::string SafetensorsWithHeaderLength(uint64_t header_length) {
  const std::string json =
      header_length >= sizeof(kOneTensor) - 1 ? kOneTensor : "{}";
  std::string out = LittleEndian64(header_length) + json;
  out.append(header_length - json.size(), ' ');
  if (json != "{}") out.append(8, '\0');
  return out;
}

const char* const kExtensions[] = {".safetensors", ".ckpt", ".pt",   ".pth",
                                   ".bin",         ".gguf", ".onnx", ""};

// Every signature the detector knows, and the prefixes of it a header
// length can spell in its low bytes. A length up to the 100 MB header limit
// can spell at most four bytes ("PK\3\4" is 67,324,752), and "GGUF" not at
// all.
const char* const kMagicPrefixes[] = {
    "\x80",          // pickle PROTO
    "\x80\x02",      // protocol 2 (torch.save before 1.6)
    "\x80\x02\x8a",  // PROTO 2, LONG1: the legacy torch magic number's start
    "\x80\x04\x95",  // PROTO 4, FRAME: Python's default pickles
    "P",
    "PK",
    "PK\x03",
    "PK\x03\x04",  // zip local header
    "PK\x05",      // empty zip ("PK\5\6" > 100 MB)
    "G",
    "GG",
    "GGU",  // GGUF
};

TEST(SniffWeightsFormatTest, HeaderLengthsThatSpellAMagicAreSafetensors) {
  int checked = 0;
  for (const std::string prefix : kMagicPrefixes) {
    for (uint64_t extra = 0; extra < 4; ++extra) {
      const uint64_t length =
          LengthSpelling(prefix) + (extra << (8 * prefix.size()));
      if (length > kMaxSafetensorsHeaderBytes) continue;
      // Only the first 512 bytes are sniffed; the size says the rest is
      // there.
      std::string head = LittleEndian64(length) + "{";
      head.resize(512, ' ');
      ASSERT_EQ(head.substr(0, prefix.size()), prefix);
      EXPECT_EQ(SniffWeightsFormat(head, 8 + length),
                SniffedFormat::kSafetensors)
          << "header length " << length;
      // One byte short of the length it declares, it is not safetensors.
      EXPECT_NE(SniffWeightsFormat(head, 8 + length - 1),
                SniffedFormat::kSafetensors)
          << "header length " << length;
      ++checked;
    }
  }
  EXPECT_GT(checked, 40);
}

TEST(SniffWeightsFormatTest, WholeSignaturesOfEveryFormat) {
  const std::vector<FixtureTensor> tensors = {
      {.name = "w", .dtype = "F32", .shape = {2}}};
  const std::string torch_zip = mm::testing::TorchCheckpointBytes(tensors);
  EXPECT_EQ(SniffWeightsFormat(torch_zip, torch_zip.size()),
            SniffedFormat::kZip);
  const std::string empty_zip = mm::testing::ZipBytes({});
  EXPECT_EQ(SniffWeightsFormat(empty_zip, empty_zip.size()),
            SniffedFormat::kZip);
  const std::string gguf = mm::testing::GgufBytes({});
  EXPECT_EQ(SniffWeightsFormat(gguf, gguf.size()), SniffedFormat::kGguf);
  const std::string pickle = mm::testing::TorchPickleBytes(tensors);
  EXPECT_EQ(SniffWeightsFormat(pickle, pickle.size()), SniffedFormat::kPickle);
  const std::string legacy_magic =
      std::string("\x80\x02\x8a\x0a", 4) + std::string(10, '\x6c') + ".";
  EXPECT_EQ(SniffWeightsFormat(legacy_magic, legacy_magic.size()),
            SniffedFormat::kPickle);
  std::string tar(1024, '\0');
  tar.replace(0, 8, "archive/");
  tar.replace(257, 6, std::string("ustar\0", 6));
  EXPECT_EQ(SniffWeightsFormat(tar, tar.size()), SniffedFormat::kTar);
  tar.replace(257, 8, "ustar  \0");
  EXPECT_EQ(SniffWeightsFormat(tar, tar.size()), SniffedFormat::kTar);
  const std::string safetensors = mm::testing::SafetensorsBytes(tensors);
  EXPECT_EQ(SniffWeightsFormat(safetensors, safetensors.size()),
            SniffedFormat::kSafetensors);
}

TEST(SniffWeightsFormatTest, OneMatchingByteIsNotASignature) {
  for (const std::string head :
       {std::string("\x80"), std::string("\x80\x02"),
        std::string("\x80\x01}", 3),     // protocol 1 has no PROTO
        std::string("\x80\x06}", 3),     // no protocol 6
        std::string("\x80\x02\x00", 3),  // 0x00 is no opcode
        std::string("\x80\x02{", 3),     // '{' is no opcode either
        std::string("PK"), std::string("PK\x03\x05"), std::string("GGU"),
        std::string("GGUf"), std::string("{}")}) {
    EXPECT_EQ(SniffWeightsFormat(head, head.size()), SniffedFormat::kUnknown)
        << ::testing::PrintToString(head);
  }
  // '{' at byte 8, but a length past the end of the file or the limit.
  std::string head = LittleEndian64(100) + "{}";
  EXPECT_EQ(SniffWeightsFormat(head, head.size()), SniffedFormat::kUnknown);
  head = LittleEndian64(kMaxSafetensorsHeaderBytes + 1) + "{}";
  EXPECT_EQ(SniffWeightsFormat(head, uint64_t{1} << 40),
            SniffedFormat::kUnknown);
  head = LittleEndian64(1) + "{";
  EXPECT_EQ(SniffWeightsFormat(head, head.size()), SniffedFormat::kUnknown);
}

// The end-to-end sweep: real files whose header length spells each magic,
// under every name, read as safetensors. (Before the fix a header of 384
// bytes, "80 01 00 ...", was refused as a legacy pickle.)
TEST(ReadTensorIndexTest, SafetensorsWhoseLengthSpellsAMagicIsRead) {
  TempDir dir;
  int file_number = 0;
  for (const std::string prefix : kMagicPrefixes) {
    for (uint64_t extra = 0; extra < 3; ++extra) {
      const uint64_t length =
          LengthSpelling(prefix) + (extra << (8 * prefix.size()));
      // Past a few megabytes only the exact spelling, to keep the test
      // quick; "PK\3\4" (64 MiB) and "\x80\x02\x8a" (9 MiB) stay in.
      if (length > kMaxSafetensorsHeaderBytes ||
          (extra > 0 && length > (4 << 20))) {
        continue;
      }
      const std::string bytes = SafetensorsWithHeaderLength(length);
      ASSERT_EQ(bytes.substr(0, prefix.size()), prefix);
      const fs::path path =
          dir.path() / ("model" + std::to_string(file_number) +
                        kExtensions[file_number % std::size(kExtensions)]);
      ++file_number;
      WriteFile(path, bytes);
      absl::StatusOr<TensorIndex> index = ReadTensorIndex(path);
      ASSERT_TRUE(index.ok()) << "header length " << length << " ("
                              << path.filename() << "): " << index.status();
      EXPECT_EQ(index->format, WeightsFormat::kSafetensors);
      if (length >= sizeof(kOneTensor) - 1) {
        EXPECT_NE(index->Find("w"), nullptr) << "header length " << length;
      }
      fs::remove(path);
    }
  }
}

TEST(ReadTensorIndexTest, TheIssueExample) {
  TempDir dir;
  const fs::path path = dir.path() / "model.safetensors";
  const std::string bytes = SafetensorsWithHeaderLength(384);
  ASSERT_EQ(bytes.substr(0, 9), std::string("\x80\x01\0\0\0\0\0\0{", 9));
  WriteFile(path, bytes);
  ASSERT_OK_AND_ASSIGN(TensorIndex index, ReadTensorIndex(path));
  EXPECT_EQ(index.format, WeightsFormat::kSafetensors);
  EXPECT_NE(index.Find("w"), nullptr);
}

TEST(ReadTensorIndexTest, TarSignatureInsideASafetensorsHeader) {
  // A metadata string puts "ustar  " at byte 257, where tar keeps it.
  std::string json = R"({"__metadata__":{"note":")";
  json.append(257 - 8 - json.size(), 'x');
  json += R"(ustar  "}})";
  const std::string bytes = LittleEndian64(json.size()) + json;
  ASSERT_EQ(bytes.substr(257, 8), "ustar  \"");
  TempDir dir;
  const fs::path path = dir.path() / "model.ckpt";
  WriteFile(path, bytes);
  ASSERT_OK_AND_ASSIGN(TensorIndex index, ReadTensorIndex(path));
  EXPECT_EQ(index.format, WeightsFormat::kSafetensors);
}

TEST(ReadTensorIndexTest, ContentDecidesWhateverTheName) {
  TempDir dir;
  const std::vector<FixtureTensor> tensors = {
      {.name = "w", .dtype = "F32", .shape = {2}}};
  for (const char* extension : kExtensions) {
    const fs::path safetensors =
        dir.path() / (std::string("safetensors") + extension);
    WriteFile(safetensors, mm::testing::SafetensorsBytes(tensors));
    ASSERT_OK_AND_ASSIGN(TensorIndex index, ReadTensorIndex(safetensors));
    EXPECT_EQ(index.format, WeightsFormat::kSafetensors) << extension;

    const fs::path torch = dir.path() / (std::string("torch") + extension);
    WriteFile(torch, mm::testing::TorchCheckpointBytes(tensors));
    ASSERT_OK_AND_ASSIGN(index, ReadTensorIndex(torch));
    EXPECT_EQ(index.format, WeightsFormat::kTorchZip) << extension;

    const fs::path gguf = dir.path() / (std::string("gguf") + extension);
    mm::testing::WriteGguf(gguf, {.tensors = {{.name = "w", .shape = {32}}}});
    ASSERT_OK_AND_ASSIGN(index, ReadTensorIndex(gguf));
    EXPECT_EQ(index.format, WeightsFormat::kGguf) << extension;

    // A bare pickle (what torch.save wrote before 1.6), however named.
    const fs::path pickle = dir.path() / (std::string("pickle") + extension);
    WriteFile(pickle, mm::testing::TorchPickleBytes(tensors));
    EXPECT_THAT(ReadTensorIndex(pickle),
                StatusIs(absl::StatusCode::kUnimplemented,
                         HasSubstr(pickle.string() +
                                   ": legacy checkpoint format not supported")))
        << extension;
  }
}

// A crafted pickle can start like a safetensors header (PROTO 2, LONG1 of
// five bytes whose last is '{': a 92,930,688-byte "header"). The header
// does not parse, so the pickle signature decides.
TEST(ReadTensorIndexTest, HeaderThatDoesNotParseFallsBackToTheSignature) {
  const std::string head("\x80\x02\x8a\x05\0\0\0\0{.", 10);
  const uint64_t length = LengthSpelling(head.substr(0, 8));
  ASSERT_EQ(length, 92'930'688u);
  ASSERT_EQ(SniffWeightsFormat(head, 8 + length + 10),
            SniffedFormat::kSafetensors);
  TempDir dir;
  const fs::path path = dir.path() / "crafted.safetensors";
  WriteFile(path, head);
  // The rest is a hole: no disk, and no parseable JSON.
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(8 + length + 10)), 0);
  EXPECT_THAT(ReadTensorIndex(path),
              StatusIs(absl::StatusCode::kUnimplemented,
                       HasSubstr("legacy checkpoint format not supported")));
}

TEST(ReadTensorIndexTest, CorruptSafetensorsIsReportedAsSafetensors) {
  TempDir dir;
  const fs::path path = dir.path() / "model.ckpt";
  WriteFile(path, LittleEndian64(4) + "{\"a\xFF" + std::string(8, '\0'));
  EXPECT_THAT(ReadTensorIndex(path),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("safetensors header is not valid JSON")));
}

}  // namespace
}  // namespace mm::model
