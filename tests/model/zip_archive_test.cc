#include "model/zip_archive.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/model_fixtures.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::model {
namespace {

using ::mm::testing::StatusIs;
using ::mm::testing::ZipBytes;
using ::testing::HasSubstr;

TEST(ZipArchiveTest, ListsAndReadsStoredEntries) {
  const std::string bytes =
      ZipBytes({{.name = "archive/data.pkl", .data = "hello"},
                {.name = "archive/data/0", .data = std::string(100, 'x')}});
  ASSERT_OK_AND_ASSIGN(auto zip, ZipArchive::FromBytes(bytes));
  ASSERT_EQ(zip->entries().size(), 2u);
  const ZipEntry* pkl = zip->Find("archive/data.pkl");
  ASSERT_NE(pkl, nullptr);
  EXPECT_EQ(pkl->uncompressed_size, 5u);
  EXPECT_EQ(pkl->crc32, mm::testing::Crc32("hello"));
  ASSERT_OK_AND_ASSIGN(std::string data, zip->ReadEntry(*pkl, 1024));
  EXPECT_EQ(data, "hello");
  const ZipEntry* storage = zip->Find("archive/data/0");
  ASSERT_NE(storage, nullptr);
  ASSERT_OK_AND_ASSIGN(uint64_t offset, zip->DataOffset(*storage));
  EXPECT_EQ(bytes.substr(offset, 100), std::string(100, 'x'));
  EXPECT_EQ(zip->Find("nope"), nullptr);
}

TEST(ZipArchiveTest, ReadsZip64Records) {
  const std::string bytes =
      ZipBytes({{.name = "a", .data = "1234"}}, /*force_zip64=*/true);
  ASSERT_OK_AND_ASSIGN(auto zip, ZipArchive::FromBytes(bytes));
  ASSERT_EQ(zip->entries().size(), 1u);
  ASSERT_OK_AND_ASSIGN(std::string data,
                       zip->ReadEntry(zip->entries()[0], 1024));
  EXPECT_EQ(data, "1234");
}

TEST(ZipArchiveTest, OpensFromDisk) {
  mm::testing::TempDir dir;
  const auto path = dir.path() / "x.zip";
  mm::testing::WriteFile(path, ZipBytes({{.name = "f", .data = "abc"}}));
  ASSERT_OK_AND_ASSIGN(auto zip, ZipArchive::Open(path));
  ASSERT_OK_AND_ASSIGN(std::string data, zip->ReadEntry(*zip->Find("f"), 1024));
  EXPECT_EQ(data, "abc");
  EXPECT_THAT(ZipArchive::Open(dir.path() / "missing.zip"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing.zip")));
}

TEST(ZipArchiveTest, RefusesPathTraversal) {
  EXPECT_THAT(ZipArchive::FromBytes(ZipBytes({{.name = "../x", .data = "a"}})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("zip entry path '../x' escapes the archive")));
  EXPECT_THAT(
      ZipArchive::FromBytes(ZipBytes({{.name = "a/../../x", .data = "a"}})),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("escapes")));
  EXPECT_THAT(
      ZipArchive::FromBytes(ZipBytes({{.name = "/etc/x", .data = ""}})),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is absolute")));
  EXPECT_THAT(
      ZipArchive::FromBytes(ZipBytes({{.name = "a\\..\\x", .data = ""}})),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("backslash")));
}

TEST(ZipArchiveTest, RefusesDeflatedEntriesOnRead) {
  ASSERT_OK_AND_ASSIGN(
      auto zip, ZipArchive::FromBytes(
                    ZipBytes({{.name = "d", .data = "x", .method = 8}})));
  EXPECT_THAT(zip->ReadEntry(zip->entries()[0], 1024),
              StatusIs(absl::StatusCode::kUnimplemented,
                       HasSubstr("is compressed (method 8)")));
}

TEST(ZipArchiveTest, EntryLargerThanLimit) {
  ASSERT_OK_AND_ASSIGN(
      auto zip,
      ZipArchive::FromBytes(ZipBytes({{.name = "d", .data = "12345"}})));
  EXPECT_THAT(zip->ReadEntry(zip->entries()[0], 4),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("over the 4-byte limit")));
}

TEST(ZipArchiveTest, DuplicateNames) {
  EXPECT_THAT(ZipArchive::FromBytes(ZipBytes(
                  {{.name = "a", .data = "1"}, {.name = "a", .data = "2"}})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'a' appears twice")));
}

TEST(ZipArchiveTest, NotAZip) {
  EXPECT_THAT(ZipArchive::FromBytes("short"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("too short")));
  EXPECT_THAT(ZipArchive::FromBytes(std::string(100, 'z')),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("no end-of-central-directory record")));
}

TEST(ZipArchiveTest, TruncatedArchive) {
  const std::string bytes = ZipBytes({{.name = "a", .data = "hello world"}});
  // Cut the front: the directory offset now points past the data.
  EXPECT_THAT(
      ZipArchive::FromBytes(bytes.substr(20)),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("central directory")));
}

TEST(ZipArchiveTest, EntryCountBeyondDirectory) {
  std::string bytes = ZipBytes({{.name = "a", .data = "x"}});
  // total_entries (EOCD offset 10) = 0xFFFE; the directory holds one.
  const size_t eocd = bytes.size() - 22;
  bytes[eocd + 8] = '\xfe';
  bytes[eocd + 9] = '\xff';
  bytes[eocd + 10] = '\xfe';
  bytes[eocd + 11] = '\xff';
  EXPECT_THAT(ZipArchive::FromBytes(bytes),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("65534 entries cannot fit")));
}

TEST(ZipArchiveTest, EntryOffsetPastDirectory) {
  std::string bytes = ZipBytes({{.name = "a", .data = "x"}});
  const size_t eocd = bytes.size() - 22;
  const size_t directory = static_cast<unsigned char>(bytes[eocd + 16]);
  // Local header offset (central header +42) → 0x7fffffff.
  bytes.replace(directory + 42, 4, "\xff\xff\xff\x7f");
  EXPECT_THAT(ZipArchive::FromBytes(bytes),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("runs into the central directory")));
}

}  // namespace
}  // namespace mm::model
