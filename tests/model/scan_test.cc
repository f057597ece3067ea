// Spec §4.3: which paths a folder scan offers as model candidates.
#include "model/scan.h"

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/unprivileged.h"

namespace mm::model {
namespace {

namespace fs = std::filesystem;
using ::mm::testing::RunUnprivilegedForText;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::mm::testing::WriteFile;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class ScanTest : public ::testing::Test {
 protected:
  fs::path P(const std::string& relative) { return dir_.path() / relative; }
  void Touch(const std::string& relative) { WriteFile(P(relative), "x"); }
  std::vector<fs::path> Scan() {
    absl::StatusOr<std::vector<fs::path>> found = ScanForModels(dir_.path());
    EXPECT_TRUE(found.ok()) << found.status();
    return found.ok() ? *found : std::vector<fs::path>{};
  }

  TempDir dir_;
};

TEST_F(ScanTest, EveryCandidateSuffix) {
  for (const char* name :
       {"a.ckpt", "b.bin", "c.pth", "d.safetensors", "e.pt", "f.gguf"}) {
    Touch(name);
  }
  Touch("g.onnx");
  Touch("h.txt");
  Touch("i.json");
  EXPECT_THAT(Scan(), ElementsAre(P("a.ckpt"), P("b.bin"), P("c.pth"),
                                  P("d.safetensors"), P("e.pt"), P("f.gguf")));
}

TEST_F(ScanTest, SuffixIsCaseInsensitive) {
  Touch("Model.SafeTensors");
  EXPECT_THAT(Scan(), ElementsAre(P("Model.SafeTensors")));
}

TEST_F(ScanTest, EachMarkerMakesADirectoryOneModel) {
  for (const char* marker :
       {"config.json", "model_index.json", "learned_embeds.bin",
        "pytorch_lora_weights.bin", "image_encoder.txt"}) {
    const std::string dir = std::string("m_") + marker;
    Touch(dir + "/" + marker);
    Touch(dir + "/sub/weights.safetensors");  // not descended
  }
  EXPECT_THAT(Scan(),
              ElementsAre(P("m_config.json"), P("m_image_encoder.txt"),
                          P("m_learned_embeds.bin"), P("m_model_index.json"),
                          P("m_pytorch_lora_weights.bin")));
}

TEST_F(ScanTest, DescendsIntoPlainDirectoriesSorted) {
  Touch("z/deep/er/model.safetensors");
  Touch("a/lora.safetensors");
  Touch("m/pipeline/model_index.json");
  EXPECT_THAT(Scan(), ElementsAre(P("a/lora.safetensors"), P("m/pipeline"),
                                  P("z/deep/er/model.safetensors")));
}

TEST_F(ScanTest, SkipsDotEntries) {
  Touch(".hidden.safetensors");
  Touch(".cache/model.safetensors");
  Touch(".git/config.json");
  Touch("ok/.secret/model.ckpt");
  Touch("ok/model.ckpt");
  EXPECT_THAT(Scan(), ElementsAre(P("ok/model.ckpt")));
}

TEST_F(ScanTest, DepthLimitIsTwenty) {
  std::string twenty;
  for (int i = 1; i <= kMaxScanDepth; ++i)
    twenty += "d" + std::to_string(i) + "/";
  Touch(twenty + "deep.safetensors");          // in a depth-20 dir
  Touch(twenty + "d21/too_deep.safetensors");  // depth 21
  EXPECT_THAT(Scan(), ElementsAre(P(twenty + "deep.safetensors")));
}

TEST_F(ScanTest, SymlinkLoopIsHarmless) {
  Touch("a/model.safetensors");
  fs::create_directory_symlink(dir_.path(), P("a/loop"));
  fs::create_directory_symlink(P("a"), P("b"));
  std::vector<fs::path> found = Scan();
  // The real directory is listed once; the loop adds nothing.
  EXPECT_THAT(found, ElementsAre(P("a/model.safetensors")));
}

TEST_F(ScanTest, LinkedFileIsACandidate) {
  Touch("store/blob");
  fs::create_symlink(P("store/blob"), P("linked.safetensors"));
  fs::create_symlink(P("missing"), P("dangling.safetensors"));
  EXPECT_THAT(Scan(), ElementsAre(P("linked.safetensors")));
}

TEST_F(ScanTest, RootThatIsAModelIsItself) {
  Touch("config.json");
  Touch("model.safetensors");
  EXPECT_THAT(Scan(), ElementsAre(dir_.path()));
}

TEST_F(ScanTest, EmptyFolder) { EXPECT_THAT(Scan(), IsEmpty()); }

TEST_F(ScanTest, MissingFolderIsNotFound) {
  EXPECT_THAT(ScanForModels(P("nope")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
}

TEST_F(ScanTest, FileIsInvalidArgument) {
  Touch("model.safetensors");
  EXPECT_THAT(ScanForModels(P("model.safetensors")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is not a folder")));
}

TEST_F(ScanTest, UnreadableSubfolderIsSkipped) {
  Touch("locked/model.safetensors");
  Touch("open/model.safetensors");
  fs::permissions(P("locked"), fs::perms::none);
  // As root (CI), in a child without the capabilities that ignore modes.
  absl::StatusOr<std::string> found =
      RunUnprivilegedForText([&]() -> absl::StatusOr<std::string> {
        ASSIGN_OR_RETURN(std::vector<fs::path> paths,
                         ScanForModels(dir_.path()));
        return absl::StrJoin(paths, "\n",
                             [](std::string* out, const fs::path& path) {
                               out->append(path.string());
                             });
      });
  fs::permissions(P("locked"), fs::perms::owner_all);
  ASSERT_OK(found);
  EXPECT_EQ(*found, P("open/model.safetensors").string());
}

}  // namespace
}  // namespace mm::model
