// Tests for the checks on names and destinations that come from clients
// and servers: nothing may be written outside the download roots.
#include "services/downloader/paths.h"

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::downloader {
namespace {

namespace fs = std::filesystem;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::mm::testing::WriteFile;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(ValidateFileNameTest, AcceptsOrdinaryNames) {
  for (const char* name :
       {"model.safetensors", "a b.bin", "na\xc3\xafve.bin", ".hidden", "a..b",
        "...", "x", "v1.5-pruned-emaonly.ckpt", "1:2.bin"}) {
    EXPECT_OK(ValidateFileName(name, "file_name")) << name;
  }
  EXPECT_OK(ValidateFileName(std::string(kMaxFileNameBytes, 'a'), "name"));
}

TEST(ValidateFileNameTest, RefusesUnsafeNamesSayingWhy) {
  struct Case {
    std::string name;
    const char* why;
  };
  const Case cases[] = {
      {"", "empty"},
      {".", "a dot entry"},
      {"..", "a dot entry"},
      {"a/b", "contains a slash"},
      {"/", "contains a slash"},
      {"a\\b", "contains a slash"},
      {"C:x", "starts with a drive letter"},
      {"z:", "starts with a drive letter"},
      {"a\x01"
       "b",
       "contains a control character"},
      {"line\nbreak", "contains a control character"},
      {"tab\t", "contains a control character"},
      {"del\x7f", "contains a control character"},
      {std::string("nul\0byte", 8), "contains a control character"},
      {std::string(kMaxFileNameBytes + 1, 'a'), "longer than 255 bytes"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(
        ValidateFileName(c.name, "file_name"),
        StatusIs(absl::StatusCode::kInvalidArgument,
                 AllOf(HasSubstr("file_name"),
                       HasSubstr("is not a safe file name"), HasSubstr(c.why))))
        << c.name;
  }
}

TEST(ValidateRelativePathTest, AcceptsRelativePathsOfSafeComponents) {
  for (const char* path :
       {"a/b.bin", "model.bin", "unet/diffusion_pytorch_model.safetensors",
        "a/b/c/d.json", ".cache/x"}) {
    EXPECT_OK(ValidateRelativePath(path, "relative_path")) << path;
  }
}

TEST(ValidateRelativePathTest, RefusesEscapesAndOddComponents) {
  for (const char* path : {"", "../x", "/x", "a/../b", "a/..", "a//b", "a/",
                           "a\\b", "./a", "a/./b", "C:/x", "a/b\x01/c"}) {
    EXPECT_THAT(ValidateRelativePath(path, "relative_path"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("relative_path")))
        << path;
  }
  EXPECT_THAT(ValidateRelativePath("a/../b", "relative_path"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("component '..' is not allowed")));
  EXPECT_THAT(
      ValidateRelativePath("/x", "relative_path"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("absolute")));
}

TEST(FileNameFromUrlTest, TakesTheLastSegmentDecoded) {
  EXPECT_EQ(FileNameFromUrl("https://host/a/b/model.bin"), "model.bin");
  EXPECT_EQ(FileNameFromUrl("https://host/a/model.bin?download=true#top"),
            "model.bin");
  EXPECT_EQ(FileNameFromUrl("https://host/model.bin#frag/ment"), "model.bin");
  EXPECT_EQ(FileNameFromUrl("https://host/my%20model.bin"), "my model.bin");
  EXPECT_EQ(FileNameFromUrl("https://host/caf%C3%A9.bin"), "caf\xc3\xa9.bin");
  // A broken escape stays as sent.
  EXPECT_EQ(FileNameFromUrl("https://host/100%.bin"), "100%.bin");
  EXPECT_EQ(FileNameFromUrl("https://host/a%2"), "a%2");
}

TEST(FileNameFromUrlTest, NoSegmentIsEmpty) {
  EXPECT_EQ(FileNameFromUrl("https://host/a/"), "");
  EXPECT_EQ(FileNameFromUrl("https://host/"), "");
  EXPECT_EQ(FileNameFromUrl("https://host"), "");
  EXPECT_EQ(FileNameFromUrl("https://host?next=/x.bin"), "");
  EXPECT_EQ(FileNameFromUrl("https://host/#/x.bin"), "");
}

TEST(FileNameFromUrlTest, DecodedNamesAreNotJudged) {
  // The caller validates; an encoded slash must come out as a slash so that
  // ValidateFileName can refuse it.
  std::string name = FileNameFromUrl("https://host/..%2F..%2Fetc%2Fpasswd");
  EXPECT_EQ(name, "../../etc/passwd");
  EXPECT_THAT(ValidateFileName(name, "url"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(PartialPathTest, AddsTheSuffix) {
  EXPECT_EQ(PartialPath("/d/m.bin"), "/d/m.bin.downloading");
}

class DownloadRootsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_.path() / "root";
    outside_ = dir_.path() / "outside";
    fs::create_directories(root_ / "sub");
    fs::create_directories(outside_);
    ASSERT_OK_AND_ASSIGN(roots_, DownloadRoots::Create({root_.string()}));
    canonical_root_ = fs::canonical(root_);
  }

  TempDir dir_;
  fs::path root_;
  fs::path outside_;
  fs::path canonical_root_;
  DownloadRoots roots_;
};

TEST_F(DownloadRootsTest, CreateCanonicalizesAndChecksRoots) {
  ASSERT_EQ(roots_.roots().size(), 1u);
  EXPECT_EQ(roots_.roots()[0], canonical_root_);

  EXPECT_THAT(DownloadRoots::Create({}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("at least one --download-root")));
  EXPECT_THAT(DownloadRoots::Create({(dir_.path() / "missing").string()}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is not a directory")));
  WriteFile(dir_.path() / "file", "x");
  EXPECT_THAT(DownloadRoots::Create({(dir_.path() / "file").string()}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is not a directory")));
}

TEST_F(DownloadRootsTest, DirectoriesInsideResolve) {
  ASSERT_OK_AND_ASSIGN(fs::path root,
                       roots_.ResolveDirectory(root_.string(), "destination"));
  EXPECT_EQ(root, canonical_root_);
  ASSERT_OK_AND_ASSIGN(
      fs::path sub, roots_.ResolveDirectory((root_ / "sub").string(), "dest"));
  EXPECT_EQ(sub, canonical_root_ / "sub");
  ASSERT_OK_AND_ASSIGN(
      fs::path dotted,
      roots_.ResolveDirectory((root_ / "sub" / ".." / "sub").string(), "d"));
  EXPECT_EQ(dotted, canonical_root_ / "sub");
  // A symlink that stays inside is fine and resolves to its target.
  fs::create_directory_symlink(root_ / "sub", root_ / "link-in");
  ASSERT_OK_AND_ASSIGN(fs::path linked, roots_.ResolveDirectory(
                                            (root_ / "link-in").string(), "d"));
  EXPECT_EQ(linked, canonical_root_ / "sub");
}

TEST_F(DownloadRootsTest, DirectoriesOutsideAreRefused) {
  EXPECT_THAT(roots_.ResolveDirectory(outside_.string(), "destination"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("destination"),
                             HasSubstr("outside the download roots"))));
  EXPECT_THAT(roots_.ResolveDirectory((root_ / "..").string(), "destination"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("outside the download roots")));
  EXPECT_THAT(
      roots_.ResolveDirectory(
          (root_ / "sub" / ".." / ".." / "outside").string(), "destination"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("outside the download roots")));
  // A sibling whose name starts with the root's is not inside it.
  fs::create_directories(dir_.path() / "root2");
  EXPECT_THAT(
      roots_.ResolveDirectory((dir_.path() / "root2").string(), "destination"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("outside the download roots")));
}

TEST_F(DownloadRootsTest, SymlinkPointingOutIsRefused) {
  fs::create_directory_symlink(outside_, root_ / "escape");
  EXPECT_THAT(roots_.ResolveDirectory((root_ / "escape").string(), "dest"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("outside the download roots")));
  EXPECT_THAT(roots_.ResolveFile((root_ / "escape" / "m.bin").string(), "dest"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("outside the download roots")));
}

TEST_F(DownloadRootsTest, MissingRelativeAndNonDirectoriesAreRefused) {
  EXPECT_THAT(roots_.ResolveDirectory((root_ / "missing").string(), "dest"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("dest"),
                             HasSubstr("is not an existing directory"))));
  EXPECT_THAT(roots_.ResolveDirectory("sub", "dest"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("dest must be an absolute path")));
  EXPECT_THAT(roots_.ResolveDirectory("", "dest"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("must be an absolute path")));
  WriteFile(root_ / "file.bin", "x");
  EXPECT_THAT(roots_.ResolveDirectory((root_ / "file.bin").string(), "dest"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is not an existing directory")));
}

TEST_F(DownloadRootsTest, ResolveFileInsideNeedNotExist) {
  ASSERT_OK_AND_ASSIGN(fs::path file,
                       roots_.ResolveFile((root_ / "m.bin").string(), "dest"));
  EXPECT_EQ(file, canonical_root_ / "m.bin");
  EXPECT_FALSE(fs::exists(file));
  ASSERT_OK_AND_ASSIGN(
      fs::path nested,
      roots_.ResolveFile((root_ / "sub" / "m.bin").string(), "dest"));
  EXPECT_EQ(nested, canonical_root_ / "sub" / "m.bin");
  // An existing regular file is fine (it may be overwritten).
  WriteFile(root_ / "exists.bin", "x");
  EXPECT_OK(roots_.ResolveFile((root_ / "exists.bin").string(), "dest"));
}

TEST_F(DownloadRootsTest, ResolveFileRefusesAFinalSymlink) {
  WriteFile(outside_ / "target.bin", "secret");
  fs::create_symlink(outside_ / "target.bin", root_ / "link.bin");
  EXPECT_THAT(
      roots_.ResolveFile((root_ / "link.bin").string(), "dest"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("dest"), HasSubstr("is a symbolic link"))));
  // Dangling links too: writing through one would create its target.
  fs::create_symlink(outside_ / "not-yet.bin", root_ / "dangling.bin");
  EXPECT_THAT(roots_.ResolveFile((root_ / "dangling.bin").string(), "dest"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is a symbolic link")));
  // Even a link to a file inside the root.
  WriteFile(root_ / "real.bin", "x");
  fs::create_symlink(root_ / "real.bin", root_ / "alias.bin");
  EXPECT_THAT(roots_.ResolveFile((root_ / "alias.bin").string(), "dest"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is a symbolic link")));
}

TEST_F(DownloadRootsTest, ResolveFileRefusesUnsafeNamesAndPlaces) {
  const std::string root = root_.string();
  for (const std::string& file : {root + "/..", root + "/.", root + "/a\\b",
                                  root + "/C:x", root + "/tab\t.bin"}) {
    EXPECT_THAT(roots_.ResolveFile(file, "dest"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("is not a safe file name")))
        << file;
  }
  EXPECT_THAT(roots_.ResolveFile(root + "/", "dest"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("must be an absolute file path")));
  EXPECT_THAT(roots_.ResolveFile("m.bin", "dest"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("must be an absolute file path")));
  EXPECT_THAT(roots_.ResolveFile((outside_ / "m.bin").string(), "dest"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("outside the download roots")));
  EXPECT_THAT(roots_.ResolveFile((root_ / "missing" / "m.bin").string(), "d"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is not an existing directory")));
  EXPECT_THAT(roots_.ResolveFile((root_ / ".." / "m.bin").string(), "d"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("outside the download roots")));
}

TEST_F(DownloadRootsTest, SeveralRoots) {
  ASSERT_OK_AND_ASSIGN(
      DownloadRoots both,
      DownloadRoots::Create({root_.string(), outside_.string()}));
  EXPECT_OK(both.ResolveDirectory(outside_.string(), "dest"));
  EXPECT_OK(both.ResolveDirectory((root_ / "sub").string(), "dest"));
  EXPECT_THAT(both.ResolveDirectory(dir_.path().string(), "dest"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("outside the download roots")));
}

TEST_F(DownloadRootsTest, FreeBytes) {
  ASSERT_OK_AND_ASSIGN(int64_t available, FreeBytes(canonical_root_));
  EXPECT_GT(available, 0);
  EXPECT_THAT(FreeBytes(dir_.path() / "missing"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("statvfs")));
}

}  // namespace
}  // namespace mm::downloader
