#include "model/source.h"

#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::model {
namespace {

using ::mm::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

bool NothingExists(std::string_view) { return false; }

absl::StatusOr<ModelSource> Parse(std::string_view text) {
  return ParseModelSource(text, NothingExists);
}

HfRepoSource Repo(std::string repo_id, std::string variant = "",
                  std::vector<std::string> subfolders = {},
                  std::string file_path = "") {
  return HfRepoSource{std::move(repo_id), std::move(variant),
                      std::move(subfolders), std::move(file_path)};
}

// Every grammar example of spec §6.3, with the value it parses to, formats
// back to exactly the same text.
struct GrammarCase {
  std::string text;
  HfRepoSource expected;
};

class RepoGrammarTest : public ::testing::TestWithParam<GrammarCase> {};

TEST_P(RepoGrammarTest, ParsesAndRoundTrips) {
  const GrammarCase& c = GetParam();
  ASSERT_OK_AND_ASSIGN(ModelSource source, Parse(c.text));
  ASSERT_TRUE(std::holds_alternative<HfRepoSource>(source)) << c.text;
  EXPECT_EQ(std::get<HfRepoSource>(source), c.expected);
  EXPECT_EQ(SourceTypeName(source), "hf_repo_id");
  EXPECT_EQ(FormatModelSource(source), c.text);
}

INSTANTIATE_TEST_SUITE_P(
    SpecExamples, RepoGrammarTest,
    ::testing::Values(
        GrammarCase{"owner/name", Repo("owner/name")},
        GrammarCase{"owner/name:fp16", Repo("owner/name", "fp16")},
        GrammarCase{"owner/name:fp32", Repo("owner/name", "fp32")},
        GrammarCase{"owner/name:onnx", Repo("owner/name", "onnx")},
        GrammarCase{"owner/name:openvino", Repo("owner/name", "openvino")},
        GrammarCase{"owner/name:flax", Repo("owner/name", "flax")},
        GrammarCase{"owner/name:fp16:vae", Repo("owner/name", "fp16", {"vae"})},
        GrammarCase{"owner/name::vae", Repo("owner/name", "", {"vae"})},
        GrammarCase{"owner/name::path/to/file.safetensors",
                    Repo("owner/name", "", {}, "path/to/file.safetensors")},
        GrammarCase{"owner/name::text_encoder+tokenizer",
                    Repo("owner/name", "", {"text_encoder", "tokenizer"})},
        GrammarCase{"owner/name:fp16:unet/sub",
                    Repo("owner/name", "fp16", {"unet/sub"})},
        GrammarCase{"stabilityai/sdxl-turbo:fp16:unet/model.fp16.safetensors",
                    Repo("stabilityai/sdxl-turbo", "fp16", {},
                         "unet/model.fp16.safetensors")},
        GrammarCase{"o/n::a.bin+b", Repo("o/n", "", {"a.bin", "b"})}));

TEST(ParseModelSourceTest, LeadingSlashOfSubfolderIsDropped) {
  ASSERT_OK_AND_ASSIGN(ModelSource source,
                       Parse("owner/name::/path/to/file.safetensors"));
  EXPECT_EQ(std::get<HfRepoSource>(source),
            Repo("owner/name", "", {}, "path/to/file.safetensors"));
  EXPECT_EQ(FormatModelSource(source), "owner/name::path/to/file.safetensors");

  ASSERT_OK_AND_ASSIGN(source, Parse("owner/name:fp16:/vae"));
  EXPECT_EQ(std::get<HfRepoSource>(source),
            Repo("owner/name", "fp16", {"vae"}));
}

TEST(ParseModelSourceTest, TrailingSlashOfSubfolderIsDropped) {
  ASSERT_OK_AND_ASSIGN(ModelSource source, Parse("owner/name::vae/"));
  EXPECT_EQ(std::get<HfRepoSource>(source), Repo("owner/name", "", {"vae"}));
}

TEST(ParseModelSourceTest, EmptyVariantWithoutSubfolderIsTheDefault) {
  ASSERT_OK_AND_ASSIGN(ModelSource source, Parse("owner/name:"));
  EXPECT_EQ(std::get<HfRepoSource>(source), Repo("owner/name"));
  EXPECT_EQ(FormatModelSource(source), "owner/name");
}

TEST(ParseModelSourceTest, NonGrammarStringsDoNotParse) {
  for (std::string_view text :
       {"owner/name:vae", "owner/name:fp16::vae", "owner/name:FP16",
        "owner/name::", "owner/name:fp16:", "owner/name:fp16:a:b", "owner",
        "owner/name/extra", "/owner/name", "owner/", "/name", ":fp16",
        "ftp://example.com/x.bin", "C:\\models\\x.safetensors"}) {
    EXPECT_THAT(Parse(text), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("unsupported model source")))
        << text;
  }
}

TEST(ParseModelSourceTest, UnsupportedMessageNamesTheTextAndTheGrammar) {
  EXPECT_THAT(Parse("owner/name:vae"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("'owner/name:vae'"),
                             HasSubstr("owner/name[:variant[:subfolder]]"))));
  EXPECT_THAT(Parse("/models/missing.safetensors"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no such file or directory")));
}

TEST(ParseModelSourceTest, BadSubfoldersAreRefusedWithTheReason) {
  struct Case {
    std::string text;
    std::string reason;
  };
  for (const Case& c : std::vector<Case>{
           {"owner/name::../x", "'.' or '..'"},
           {"owner/name::a/./b", "'.' or '..'"},
           {"owner/name::a//b", "empty path component"},
           {"owner/name:://vae", "empty path component"},
           {"owner/name::/", "empty path component"},
           {"owner/name::a+", "is empty"},
           {"owner/name::+a", "is empty"},
           {"owner/name::a++b", "is empty"},
           {"owner/name::a\\b", "backslash"},
       }) {
    EXPECT_THAT(Parse(c.text),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("subfolder"), HasSubstr(c.reason))))
        << c.text;
  }
}

TEST(ParseModelSourceTest, DotOwnerOrNameIsNotARepo) {
  EXPECT_THAT(Parse("../model"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("not an existing local path"),
                             HasSubstr("'..'"))));
  EXPECT_THAT(Parse("./model"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'.'")));
  EXPECT_THAT(Parse("owner/..:fp16"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'..'")));
}

TEST(ParseModelSourceTest, ExistingLocalPathWinsOverEverything) {
  auto exists = [](std::string_view path) {
    return path == "owner/name" || path == "https://example.com/x";
  };
  ASSERT_OK_AND_ASSIGN(ModelSource source,
                       ParseModelSource("owner/name", exists));
  EXPECT_EQ(std::get<LocalSource>(source).path, "owner/name");
  EXPECT_EQ(SourceTypeName(source), "path");
  ASSERT_OK_AND_ASSIGN(source,
                       ParseModelSource("https://example.com/x", exists));
  EXPECT_TRUE(std::holds_alternative<LocalSource>(source));
  // A path that does not exist is read as a repo id.
  ASSERT_OK_AND_ASSIGN(source, ParseModelSource("owner/other", exists));
  EXPECT_TRUE(std::holds_alternative<HfRepoSource>(source));
}

TEST(ParseModelSourceTest, DefaultProbeLooksAtTheFilesystem) {
  mm::testing::TempDir dir;
  const std::string file = (dir.path() / "model.safetensors").string();
  mm::testing::WriteFile(file, "x");
  ASSERT_OK_AND_ASSIGN(ModelSource source, ParseModelSource(file));
  EXPECT_EQ(std::get<LocalSource>(source).path, file);
  EXPECT_EQ(FormatModelSource(source), file);
  ASSERT_OK_AND_ASSIGN(source, ParseModelSource(dir.path().string()));
  EXPECT_TRUE(std::holds_alternative<LocalSource>(source));
  EXPECT_THAT(ParseModelSource((dir.path() / "missing.ckpt").string()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unsupported model source")));
}

TEST(ParseModelSourceTest, PlainUrlsStayUrls) {
  for (std::string_view url :
       {"https://example.com/models/x.safetensors",
        "http://127.0.0.1:8080/x.ckpt?token=abc", "HTTPS://Example.com/x.bin",
        "https://user@host.example/x",
        "https://github.com/owner/name/blob/main/x.safetensors",
        "https://[::1]:8080/x.safetensors"}) {
    ASSERT_OK_AND_ASSIGN(ModelSource source, Parse(url));
    ASSERT_TRUE(std::holds_alternative<UrlSource>(source)) << url;
    EXPECT_EQ(std::get<UrlSource>(source).url, url);
    EXPECT_EQ(SourceTypeName(source), "url");
    EXPECT_EQ(FormatModelSource(source), url);
  }
}

TEST(ParseModelSourceTest, HuggingFacePageUrlIsTheRepo) {
  for (std::string_view url :
       {"https://huggingface.co/stabilityai/sdxl-turbo",
        "https://huggingface.co/stabilityai/sdxl-turbo/",
        "http://huggingface.co/stabilityai/sdxl-turbo",
        "https://HuggingFace.co/stabilityai/sdxl-turbo",
        "https://huggingface.co/stabilityai/sdxl-turbo#model-card",
        "https://hf.co/stabilityai/sdxl-turbo"}) {
    ASSERT_OK_AND_ASSIGN(ModelSource source, Parse(url));
    ASSERT_TRUE(std::holds_alternative<HfRepoSource>(source)) << url;
    EXPECT_EQ(std::get<HfRepoSource>(source), Repo("stabilityai/sdxl-turbo"));
    EXPECT_EQ(FormatModelSource(source), "stabilityai/sdxl-turbo");
  }
}

TEST(ParseModelSourceTest, HuggingFaceSitePagesAreNotRepos) {
  ASSERT_OK_AND_ASSIGN(ModelSource source,
                       Parse("https://huggingface.co/docs/hub"));
  EXPECT_TRUE(std::holds_alternative<UrlSource>(source));
  ASSERT_OK_AND_ASSIGN(source, Parse("https://huggingface.co/owner//name"));
  EXPECT_TRUE(std::holds_alternative<UrlSource>(source));
}

TEST(ParseModelSourceTest, BlobUrlIsRewrittenToResolve) {
  ASSERT_OK_AND_ASSIGN(
      ModelSource source,
      Parse("https://huggingface.co/stabilityai/sdxl-turbo/blob/main/"
            "sd_xl_turbo_1.0_fp16.safetensors"));
  EXPECT_EQ(std::get<UrlSource>(source).url,
            "https://huggingface.co/stabilityai/sdxl-turbo/resolve/main/"
            "sd_xl_turbo_1.0_fp16.safetensors");

  ASSERT_OK_AND_ASSIGN(source,
                       Parse("https://huggingface.co/o/n/blob/main/unet/"
                             "blob/x.safetensors?download=true"));
  EXPECT_EQ(std::get<UrlSource>(source).url,
            "https://huggingface.co/o/n/resolve/main/unet/blob/"
            "x.safetensors?download=true");

  ASSERT_OK_AND_ASSIGN(
      source, Parse("https://huggingface.co/datasets/o/n/blob/main/x.bin"));
  EXPECT_EQ(std::get<UrlSource>(source).url,
            "https://huggingface.co/datasets/o/n/resolve/main/x.bin");
}

TEST(ParseModelSourceTest, ResolveUrlIsLeftAlone) {
  const std::string url =
      "https://huggingface.co/o/n/resolve/main/blob/x.safetensors";
  ASSERT_OK_AND_ASSIGN(ModelSource source, Parse(url));
  EXPECT_EQ(std::get<UrlSource>(source).url, url);
}

TEST(ParseModelSourceTest, MalformedUrlsAreRefused) {
  EXPECT_THAT(Parse("https://"), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr("has no host")));
  EXPECT_THAT(
      Parse("http:///path"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("has no host")));
  EXPECT_THAT(Parse("https://example.com/my model.safetensors"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("%20")));
}

TEST(ParseModelSourceTest, RefusesEmptyText) {
  EXPECT_THAT(Parse(""), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("model source is empty")));
}

TEST(ParseModelSourceTest, RefusesControlCharactersAndNul) {
  EXPECT_THAT(Parse("owner/name\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("control character 0x0a"),
                             HasSubstr("byte 10"))));
  const std::string with_nul("owner/na\0me", 11);
  EXPECT_THAT(Parse(with_nul), StatusIs(absl::StatusCode::kInvalidArgument,
                                        HasSubstr("control character 0x00")));
  EXPECT_THAT(Parse("owner/name\x7f"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("control character 0x7f")));
}

TEST(ParseModelSourceTest, RefusesAbsurdLengths) {
  const std::string too_long(kMaxModelSourceBytes + 1, 'a');
  EXPECT_THAT(Parse(too_long),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("4097 bytes"), HasSubstr("4096"))));
  // At the limit, the text is judged on its content.
  const std::string at_limit =
      "o/" + std::string(kMaxModelSourceBytes - 2, 'n');
  EXPECT_OK(Parse(at_limit));
}

TEST(ParseModelSourceTest, RefusesInvalidUtf8) {
  EXPECT_THAT(Parse("owner/\xff"), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("not valid UTF-8")));
  EXPECT_THAT(Parse("owner/\xc0\xaf"),  // Overlong '/'.
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not valid UTF-8")));
  ASSERT_OK_AND_ASSIGN(ModelSource source, Parse("owner/mod\xc3\xa8le"));
  EXPECT_EQ(std::get<HfRepoSource>(source).repo_id, "owner/mod\xc3\xa8le");
}

TEST(FormatModelSourceTest, RoundTripsEveryKind) {
  for (std::string_view text :
       {"owner/name", "owner/name:fp16:vae", "owner/name::a+b/c",
        "https://example.com/x.safetensors",
        "https://huggingface.co/o/n/resolve/main/x.bin"}) {
    ASSERT_OK_AND_ASSIGN(ModelSource first, Parse(text));
    ASSERT_OK_AND_ASSIGN(ModelSource second, Parse(FormatModelSource(first)));
    EXPECT_EQ(first, second) << text;
  }
  EXPECT_EQ(FormatModelSource(ModelSource(LocalSource{"/m/x.ckpt"})),
            "/m/x.ckpt");
}

TEST(SourceHelpersTest, WeightSuffixesAndVariants) {
  for (std::string_view name : {"a.safetensors", "a.bin", "a.onnx", "a.xml",
                                "a.pth", "a.pt", "a.ckpt", "a.msgpack"}) {
    EXPECT_TRUE(HasWeightSuffix(name)) << name;
  }
  EXPECT_FALSE(HasWeightSuffix("vae"));
  EXPECT_FALSE(HasWeightSuffix("config.json"));
  EXPECT_FALSE(HasWeightSuffix("a.gguf"));
  EXPECT_TRUE(IsRepoVariant(""));
  EXPECT_TRUE(IsRepoVariant("openvino"));
  EXPECT_FALSE(IsRepoVariant("fp8"));
  EXPECT_FALSE(IsRepoVariant("FP16"));
}

TEST(SourceHelpersTest, SubfoldersKeepOrder) {
  ASSERT_OK_AND_ASSIGN(ModelSource source,
                       Parse("o/n::tokenizer+text_encoder+unet/sub"));
  EXPECT_THAT(std::get<HfRepoSource>(source).subfolders,
              ElementsAre("tokenizer", "text_encoder", "unet/sub"));
  EXPECT_THAT(std::get<HfRepoSource>(source).file_path, IsEmpty());
}

}  // namespace
}  // namespace mm::model
