#include "services/installer/placement.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::installer {
namespace {

namespace fs = std::filesystem;
using ::mm::testing::IsOkAndHolds;
using ::mm::testing::ReadFile;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::mm::testing::WriteFile;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kKey[] = "0123456789abcdef0123456789abcdef";

ino_t Inode(const fs::path& path) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_ino;
}

dev_t Device(const fs::path& path) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_dev;
}

// A folder on /dev/shm (tmpfs): another filesystem than the temporary
// directory, so a move between them cannot be a rename.
class ShmDir {
 public:
  ShmDir() {
    std::string base = "/dev/shm/mm-placement-XXXXXX";
    EXPECT_NE(::mkdtemp(base.data()), nullptr);
    path_ = base;
  }
  ~ShmDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

TEST(PlacementTest, AFileMovesByRenameIntoItsKeyFolder) {
  TempDir dir;
  const fs::path models = dir.path() / "models";
  fs::create_directories(models);
  const fs::path source = dir.path() / "incoming" / "sd15.safetensors";
  WriteFile(source, "weights");
  const ino_t inode = Inode(source);

  ASSERT_OK_AND_ASSIGN(PlacedModel placed, PlaceModel(source, models, kKey));
  EXPECT_EQ(placed.absolute, models / kKey / "sd15.safetensors");
  EXPECT_EQ(placed.record_path, std::string(kKey) + "/sd15.safetensors");
  EXPECT_EQ(ReadFile(placed.absolute), "weights");
  EXPECT_EQ(Inode(placed.absolute), inode);  // renamed, not copied
  EXPECT_FALSE(fs::exists(source));
}

TEST(PlacementTest, AFolderBecomesTheKeyFolder) {
  TempDir dir;
  const fs::path models = dir.path() / "models";
  fs::create_directories(models);
  const fs::path source = dir.path() / "sdxl";
  WriteFile(source / "model_index.json", "{}");
  WriteFile(source / "unet" / "diffusion_pytorch_model.safetensors", "u");

  ASSERT_OK_AND_ASSIGN(PlacedModel placed, PlaceModel(source, models, kKey));
  EXPECT_EQ(placed.absolute, models / kKey);
  EXPECT_EQ(placed.record_path, kKey);
  EXPECT_EQ(ReadFile(models / kKey / "model_index.json"), "{}");
  EXPECT_EQ(
      ReadFile(models / kKey / "unet" / "diffusion_pytorch_model.safetensors"),
      "u");
  EXPECT_FALSE(fs::exists(source));
}

TEST(PlacementTest, PlacingAgainAfterItHappenedFindsThePlacement) {
  TempDir dir;
  const fs::path models = dir.path() / "models";
  fs::create_directories(models);
  const fs::path file = dir.path() / "lora.safetensors";
  WriteFile(file, "lora");
  ASSERT_OK_AND_ASSIGN(PlacedModel first, PlaceModel(file, models, kKey));
  // A restarted install places again: the source is gone, the model is
  // where the first attempt put it.
  ASSERT_OK_AND_ASSIGN(PlacedModel again, PlaceModel(file, models, kKey));
  EXPECT_EQ(again.absolute, first.absolute);
  EXPECT_EQ(again.record_path, first.record_path);

  const fs::path folder = dir.path() / "vae";
  WriteFile(folder / "config.json", "{}");
  const std::string other = "fedcba9876543210fedcba9876543210";
  ASSERT_OK_AND_ASSIGN(PlacedModel folder_first,
                       PlaceModel(folder, models, other));
  ASSERT_OK_AND_ASSIGN(PlacedModel folder_again,
                       PlaceModel(folder, models, other));
  EXPECT_EQ(folder_again.absolute, models / other);
  EXPECT_EQ(folder_again.record_path, other);
}

TEST(PlacementTest, AnEmptyKeyFolderLeftByACrashIsReplaced) {
  TempDir dir;
  const fs::path models = dir.path() / "models";
  fs::create_directories(models / kKey);
  const fs::path folder = dir.path() / "vae";
  WriteFile(folder / "config.json", "{}");
  ASSERT_OK_AND_ASSIGN(PlacedModel placed, PlaceModel(folder, models, kKey));
  EXPECT_EQ(ReadFile(models / kKey / "config.json"), "{}");
}

TEST(PlacementTest, AcrossFilesystemsTheCopyIsPublishedThenTheSourceRemoved) {
  TempDir dir;
  ShmDir shm;
  const fs::path models = dir.path() / "models";
  fs::create_directories(models);
  ASSERT_NE(Device(shm.path()), Device(models))
      << "/dev/shm and the temporary directory must be different filesystems "
         "for this test";
  WriteFile(shm.path() / "one.safetensors", "file bytes");
  WriteFile(shm.path() / "tree" / "a" / "b.bin", "b");
  WriteFile(shm.path() / "tree" / "c.json", "c");

  ASSERT_OK_AND_ASSIGN(
      PlacedModel file,
      PlaceModel(shm.path() / "one.safetensors", models, kKey));
  EXPECT_EQ(ReadFile(file.absolute), "file bytes");
  EXPECT_FALSE(fs::exists(shm.path() / "one.safetensors"));

  const std::string other = "fedcba9876543210fedcba9876543210";
  ASSERT_OK_AND_ASSIGN(PlacedModel tree,
                       PlaceModel(shm.path() / "tree", models, other));
  EXPECT_EQ(ReadFile(models / other / "a" / "b.bin"), "b");
  EXPECT_EQ(ReadFile(models / other / "c.json"), "c");
  EXPECT_FALSE(fs::exists(shm.path() / "tree"));
  // No staging folder is left behind.
  for (const fs::directory_entry& entry : fs::directory_iterator(models)) {
    EXPECT_NE(entry.path().filename().string().front(), '.') << entry.path();
  }
}

TEST(PlacementTest, ACopyPublishedBeforeACrashIsFinishedByRemovingTheSource) {
  TempDir dir;
  ShmDir shm;
  const fs::path models = dir.path() / "models";
  WriteFile(models / kKey / "config.json", "{}");       // published copy
  WriteFile(shm.path() / "vae" / "config.json", "{}");  // not yet removed
  ASSERT_OK_AND_ASSIGN(PlacedModel placed,
                       PlaceModel(shm.path() / "vae", models, kKey));
  EXPECT_EQ(placed.absolute, models / kKey);
  EXPECT_FALSE(fs::exists(shm.path() / "vae"));
}

TEST(PlacementTest, ASymbolicLinkIsNotCopiedAcrossFilesystems) {
  TempDir dir;
  ShmDir shm;
  const fs::path models = dir.path() / "models";
  fs::create_directories(models);
  WriteFile(dir.path() / "secret", "not a model");
  WriteFile(shm.path() / "repo" / "config.json", "{}");
  fs::create_symlink(dir.path() / "secret",
                     shm.path() / "repo" / "model.safetensors");
  EXPECT_THAT(
      PlaceModel(shm.path() / "repo", models, kKey),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("symbolic link")));
  // Nothing published, the source untouched.
  EXPECT_FALSE(fs::exists(models / kKey));
  EXPECT_TRUE(fs::exists(shm.path() / "repo" / "config.json"));
  EXPECT_FALSE(fs::exists(models / (std::string(".placing-") + kKey)));
}

TEST(PlacementTest, MissingSourceAndBadKeysAreRefused) {
  TempDir dir;
  const fs::path models = dir.path() / "models";
  fs::create_directories(models);
  EXPECT_THAT(PlaceModel(dir.path() / "absent.safetensors", models, kKey),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("absent")));
  WriteFile(dir.path() / "x.safetensors", "x");
  for (const std::string key : {"", "../escape", ".hidden", "a/b"}) {
    EXPECT_THAT(PlaceModel(dir.path() / "x.safetensors", models, key),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << key;
  }
  EXPECT_TRUE(fs::exists(dir.path() / "x.safetensors"));
}

TEST(PlacementTest, InsideTheModelsFolderIsDecidedOnResolvedPaths) {
  TempDir dir;
  const fs::path models = dir.path() / "models";
  fs::create_directories(models / "k");
  fs::create_directories(dir.path() / "elsewhere");
  fs::create_symlink(dir.path() / "elsewhere", models / "link");
  EXPECT_TRUE(IsInsideModelsDir(models / "k" / "m.safetensors", models));
  EXPECT_TRUE(IsInsideModelsDir(models / "k", models));
  EXPECT_FALSE(IsInsideModelsDir(models, models));
  EXPECT_FALSE(IsInsideModelsDir(models / ".." / "x", models));
  // A link inside that leads out is outside.
  EXPECT_FALSE(IsInsideModelsDir(models / "link" / "m.safetensors", models));
  EXPECT_FALSE(IsInsideModelsDir(dir.path() / "models-other", models));
}

TEST(PlacementTest, ARecordPathIsRelativeInsideTheModelsFolderOnly) {
  TempDir dir;
  const fs::path real = dir.path() / "real-models";
  fs::create_directories(real / "k");
  // The models folder as the service was given it: through a link.
  const fs::path models = dir.path() / "models";
  fs::create_symlink(real, models);
  EXPECT_EQ(RecordPathFor(models / "k" / "m.safetensors", models),
            "k/m.safetensors");
  EXPECT_EQ(RecordPathFor(real / "k", models), "k");
  const fs::path outside = dir.path() / "elsewhere" / "m.safetensors";
  EXPECT_EQ(RecordPathFor(outside, models), outside.string());
  // ResolveModelPath turns a record path back into the file.
  EXPECT_EQ(ResolveModelPath(models, RecordPathFor(outside, models)), outside);
  EXPECT_EQ(ResolveModelPath(models, "k/m.safetensors"),
            models / "k" / "m.safetensors");
}

TEST(PlacementTest, RemovingFilesFollowsTheDeleteRules) {
  TempDir dir;
  const fs::path models = dir.path() / "models";
  WriteFile(models / kKey / "m.safetensors", "m");
  WriteFile(models / kKey / "m.json", "side-car");
  WriteFile(models / "loose" / "x.safetensors", "x");
  WriteFile(dir.path() / "outside.safetensors", "o");

  // models/<key>/ goes as a whole.
  EXPECT_THAT(RemoveModelFiles(models, kKey,
                               std::string(kKey) + "/m.safetensors", false),
              IsOkAndHolds(ElementsAre((models / kKey).string())));
  EXPECT_FALSE(fs::exists(models / kKey));
  // Another path inside the folder: just that path.
  EXPECT_THAT(
      RemoveModelFiles(models, "other-key", "loose/x.safetensors", false),
      IsOkAndHolds(ElementsAre((models / "loose" / "x.safetensors").string())));
  EXPECT_TRUE(fs::exists(models / "loose"));
  // Outside: kept, unless unconditionally.
  const std::string outside = (dir.path() / "outside.safetensors").string();
  EXPECT_THAT(RemoveModelFiles(models, "k", outside, false),
              IsOkAndHolds(IsEmpty()));
  EXPECT_TRUE(fs::exists(outside));
  EXPECT_THAT(RemoveModelFiles(models, "k", outside, true),
              IsOkAndHolds(ElementsAre(outside)));
  EXPECT_FALSE(fs::exists(outside));
  // Already gone: nothing to remove, no error.
  EXPECT_THAT(RemoveModelFiles(models, "k", outside, true),
              IsOkAndHolds(IsEmpty()));
}

}  // namespace
}  // namespace mm::installer
