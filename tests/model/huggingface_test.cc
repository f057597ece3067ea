#include "model/huggingface.h"

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/source.h"
#include "tests/testing/status_matchers.h"

namespace mm::model {
namespace {

using ::mm::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// ---------------------------------------------------------------------------
// ParseHfModelInfo

constexpr std::string_view kSha256 =
    "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

std::string ModelInfoWith(std::string_view siblings,
                          std::string_view extra = "") {
  return std::string(R"({"id":"stabilityai/sdxl-turbo",)") +
         std::string(extra) + R"("siblings":)" + std::string(siblings) + "}";
}

TEST(ParseHfModelInfoTest, ReadsTheUsedFields) {
  const std::string text = R"({
    "_id": "6564bc0c2e01a3c5b67bd8ff",
    "id": "stabilityai/sdxl-turbo",
    "author": "stabilityai",
    "sha": "462165984030d82259a11f4367a4eed129e94a7b",
    "lastModified": "2024-07-10T11:59:31.000Z",
    "private": false,
    "gated": "auto",
    "tags": ["diffusers", "safetensors", "text-to-image"],
    "cardData": {"license": "other", "nested": {"deeper": [1, 2, {"x": null}]}},
    "siblings": [
      {"rfilename": ".gitattributes", "size": 1519,
       "blobId": "a6344aac8c09253b3b630fb776ae94478aa0275b"},
      {"rfilename": "unet/diffusion_pytorch_model.fp16.safetensors",
       "size": 5135149760,
       "blobId": "F1DE8C1A2E1F5EF8F2A2F1DE8C1A2E1F5EF8F2A2",
       "lfs": {"sha256": "A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F90",
               "size": 5135149760, "pointerSize": 135}},
      {"rfilename": "model_index.json"}
    ]
  })";
  ASSERT_OK_AND_ASSIGN(HfModelInfo info, ParseHfModelInfo(text));
  EXPECT_EQ(info.id, "stabilityai/sdxl-turbo");
  EXPECT_EQ(info.author, "stabilityai");
  EXPECT_EQ(info.sha, "462165984030d82259a11f4367a4eed129e94a7b");
  EXPECT_EQ(info.last_modified, "2024-07-10T11:59:31.000Z");
  EXPECT_FALSE(info.private_repo);
  EXPECT_EQ(info.gated, "auto");
  EXPECT_THAT(info.tags,
              ElementsAre("diffusers", "safetensors", "text-to-image"));
  EXPECT_EQ(info.raw_json, text);
  ASSERT_EQ(info.files.size(), 3u);
  EXPECT_EQ(info.files[0],
            (HfFile{".gitattributes", 1519, std::nullopt,
                    "a6344aac8c09253b3b630fb776ae94478aa0275b"}));
  // Hex digests are normalised to lowercase.
  EXPECT_EQ(info.files[1],
            (HfFile{"unet/diffusion_pytorch_model.fp16.safetensors",
                    5135149760u, std::string(kSha256),
                    "f1de8c1a2e1f5ef8f2a2f1de8c1a2e1f5ef8f2a2"}));
  EXPECT_EQ(info.files[2], (HfFile{"model_index.json", std::nullopt,
                                   std::nullopt, std::nullopt}));
}

TEST(ParseHfModelInfoTest, GatedAndPrivateForms) {
  ASSERT_OK_AND_ASSIGN(
      HfModelInfo info,
      ParseHfModelInfo(ModelInfoWith("[]", R"("gated":true,"private":true,)")));
  EXPECT_EQ(info.gated, "true");
  EXPECT_TRUE(info.private_repo);
  ASSERT_OK_AND_ASSIGN(
      info, ParseHfModelInfo(ModelInfoWith("[]", R"("gated":false,)")));
  EXPECT_EQ(info.gated, "");
  ASSERT_OK_AND_ASSIGN(
      info, ParseHfModelInfo(ModelInfoWith("[]", R"("gated":"manual",)")));
  EXPECT_EQ(info.gated, "manual");
  ASSERT_OK_AND_ASSIGN(info, ParseHfModelInfo(ModelInfoWith("[]")));
  EXPECT_EQ(info.gated, "");
  EXPECT_THAT(info.files, IsEmpty());
}

TEST(ParseHfModelInfoTest, NullCountsAsAbsent) {
  ASSERT_OK_AND_ASSIGN(
      HfModelInfo info,
      ParseHfModelInfo(ModelInfoWith(
          R"([{"rfilename":"a.json","size":null,"lfs":null,"blobId":null}])",
          R"("author":null,"sha":null,"tags":null,"gated":null,"private":null,)")));
  EXPECT_EQ(info.author, "");
  EXPECT_EQ(info.files[0],
            (HfFile{"a.json", std::nullopt, std::nullopt, std::nullopt}));
}

TEST(ParseHfModelInfoTest, LfsSizeFillsAMissingSize) {
  ASSERT_OK_AND_ASSIGN(
      HfModelInfo info,
      ParseHfModelInfo(
          ModelInfoWith(R"([{"rfilename":"a.bin","lfs":{"size":42,"sha256":")" +
                        std::string(kSha256) + R"("}}])")));
  EXPECT_EQ(info.files[0].size, 42u);
  EXPECT_EQ(info.files[0].sha256, std::string(kSha256));
}

struct HostileCase {
  std::string name;
  std::string json;
  std::string message_part;
};

class HostileModelInfoTest : public ::testing::TestWithParam<HostileCase> {};

TEST_P(HostileModelInfoTest, IsRefusedAsDataLoss) {
  EXPECT_THAT(ParseHfModelInfo(GetParam().json),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr("Hugging Face model info response"),
                             HasSubstr(GetParam().message_part))));
}

std::string Sibling(std::string_view body) {
  return ModelInfoWith("[" + std::string(body) + "]");
}

INSTANTIATE_TEST_SUITE_P(
    Hostile, HostileModelInfoTest,
    ::testing::Values(
        HostileCase{"NotJson", "{\"id\": ", "not valid JSON"},
        HostileCase{"Empty", "", "not valid JSON"},
        HostileCase{"TrailingGarbage", ModelInfoWith("[]") + "x",
                    "not valid JSON"},
        HostileCase{"InvalidUtf8", "{\"id\":\"a/\xff\",\"siblings\":[]}",
                    "not valid JSON"},
        HostileCase{"RootIsArray", "[]", "expected an object"},
        HostileCase{"MissingId", R"({"siblings":[]})", "'id' is missing"},
        HostileCase{"IdNotString", R"({"id":5,"siblings":[]})",
                    "'id' is missing"},
        HostileCase{"IdTraversal", R"({"id":"../x","siblings":[]})",
                    "is not a repo id"},
        HostileCase{"MissingSiblings", R"({"id":"a/b"})",
                    "'siblings' is missing"},
        HostileCase{"SiblingsObject", R"({"id":"a/b","siblings":{}})",
                    "'siblings' is missing or not a list"},
        HostileCase{"SiblingNotObject", ModelInfoWith("[1]"),
                    "siblings[0] is a number"},
        HostileCase{"NoRfilename", Sibling(R"({"size":1})"),
                    "'rfilename' is missing"},
        HostileCase{"RfilenameNumber", Sibling(R"({"rfilename":7})"),
                    "'rfilename' is missing or not a string"},
        HostileCase{"DotDot", Sibling(R"({"rfilename":"../../etc/passwd"})"),
                    "unsafe file name '../../etc/passwd'"},
        HostileCase{"InnerDotDot", Sibling(R"({"rfilename":"unet/../../x"})"),
                    "'.' or '..' component"},
        HostileCase{"Absolute", Sibling(R"({"rfilename":"/etc/passwd"})"),
                    "it is absolute"},
        HostileCase{"Backslash", Sibling(R"({"rfilename":"..\\x.bin"})"),
                    "backslash"},
        HostileCase{"EmptyName", Sibling(R"({"rfilename":""})"), "is empty"},
        HostileCase{"DoubleSlash", Sibling(R"({"rfilename":"a//b"})"),
                    "empty path component"},
        HostileCase{"TrailingSlash", Sibling(R"({"rfilename":"a/"})"),
                    "empty path component"},
        HostileCase{"ControlChar", Sibling(R"({"rfilename":"a\u0001b"})"),
                    "control character"},
        HostileCase{"NulChar", Sibling(R"({"rfilename":"a\u0000.bin"})"),
                    "control character"},
        HostileCase{
            "LongName",
            Sibling(R"({"rfilename":")" + std::string(2000, 'a') + R"("})"),
            "bytes long"},
        HostileCase{"NegativeSize", Sibling(R"({"rfilename":"a","size":-1})"),
                    "'size' is -1"},
        HostileCase{"FloatSize", Sibling(R"({"rfilename":"a","size":1.5})"),
                    "expected a non-negative integer"},
        HostileCase{"StringSize", Sibling(R"({"rfilename":"a","size":"1"})"),
                    "expected a non-negative integer"},
        HostileCase{"AbsurdSize",
                    Sibling(R"({"rfilename":"a","size":18446744073709551615})"),
                    "more than the"},
        HostileCase{"HugeNumber", Sibling(R"({"rfilename":"a","size":1e400})"),
                    "not valid JSON"},
        HostileCase{"BadSha256",
                    Sibling(R"({"rfilename":"a","lfs":{"sha256":"xyz"}})"),
                    "lfs.'sha256' is 'xyz'"},
        HostileCase{"ShortSha256",
                    Sibling(R"({"rfilename":"a","lfs":{"sha256":"abcd"}})"),
                    "expected a hex digest"},
        HostileCase{"LfsNotObject", Sibling(R"({"rfilename":"a","lfs":[]})"),
                    "'lfs' is an array"},
        HostileCase{"BadBlobId",
                    Sibling(R"({"rfilename":"a","blobId":"not-hex"})"),
                    "'blobId'"},
        HostileCase{"SizeMismatch",
                    Sibling(R"({"rfilename":"a","size":1,"lfs":{"size":2}})"),
                    "disagrees with 'lfs.size' 2"},
        HostileCase{"NegativePointerSize",
                    Sibling(R"({"rfilename":"a","lfs":{"pointerSize":-5}})"),
                    "'pointerSize'"},
        HostileCase{
            "Duplicate",
            ModelInfoWith(R"([{"rfilename":"a.json"},{"rfilename":"a.json"}])"),
            "listed twice"},
        HostileCase{"TagsNotList",
                    ModelInfoWith("[]", R"("tags":"diffusers",)"),
                    "'tags' is a string"},
        HostileCase{"TagNotString", ModelInfoWith("[]", R"("tags":["a",1],)"),
                    "tags[1] is a number"},
        HostileCase{"PrivateString", ModelInfoWith("[]", R"("private":"yes",)"),
                    "'private' is \"yes\""},
        HostileCase{"GatedNumber", ModelInfoWith("[]", R"("gated":3,)"),
                    "'gated'"},
        HostileCase{"BadCommit", ModelInfoWith("[]", R"("sha":"main",)"),
                    "40-digit hex"},
        HostileCase{"AuthorNumber", ModelInfoWith("[]", R"("author":1,)"),
                    "'author' is a number"},
        HostileCase{"DeepNesting",
                    std::string(5000, '[') + std::string(5000, ']'),
                    "nesting deeper than 100"},
        HostileCase{
            "DeepNestingInField",
            ModelInfoWith("[]", "\"cardData\":" + std::string(200, '[') +
                                    std::string(200, ']') + ","),
            "nesting deeper"}),
    [](const ::testing::TestParamInfo<HostileCase>& info) {
      return info.param.name;
    });

TEST(ParseHfModelInfoTest, BracketsInsideStringsDoNotCountAsNesting) {
  std::string brackets(500, '[');
  ASSERT_OK_AND_ASSIGN(
      HfModelInfo info,
      ParseHfModelInfo(ModelInfoWith(
          "[]", "\"cardData\":\"" + brackets + "\\\"" + brackets + "\",")));
  EXPECT_EQ(info.id, "stabilityai/sdxl-turbo");
}

TEST(ParseHfModelInfoTest, RefusesOversizedResponses) {
  std::string huge(kMaxHfModelInfoBytes + 1, ' ');
  EXPECT_THAT(
      ParseHfModelInfo(huge),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("more than the limit")));
}

// ---------------------------------------------------------------------------
// Endpoints and URLs

// Sets HF_ENDPOINT for one test and puts back what was there.
class ScopedHfEndpoint {
 public:
  explicit ScopedHfEndpoint(const char* value) {
    if (const char* old = std::getenv("HF_ENDPOINT")) saved_ = old;
    if (value == nullptr) {
      unsetenv("HF_ENDPOINT");
    } else {
      setenv("HF_ENDPOINT", value, /*overwrite=*/1);
    }
  }
  ~ScopedHfEndpoint() {
    if (saved_.has_value()) {
      setenv("HF_ENDPOINT", saved_->c_str(), 1);
    } else {
      unsetenv("HF_ENDPOINT");
    }
  }

 private:
  std::optional<std::string> saved_;
};

TEST(HfEndpointTest, DefaultsToTheHub) {
  ScopedHfEndpoint env(nullptr);
  EXPECT_EQ(HfEndpointFromEnvironment().base, "https://huggingface.co");
  EXPECT_EQ(HfEndpoint().base, "https://huggingface.co");
}

TEST(HfEndpointTest, HonoursHfEndpointWithoutTrailingSlash) {
  ScopedHfEndpoint env("https://hf-mirror.example.com//");
  HfEndpoint endpoint = HfEndpointFromEnvironment();
  EXPECT_EQ(endpoint.base, "https://hf-mirror.example.com");
  EXPECT_EQ(ModelInfoUrl(endpoint, "owner/name"),
            "https://hf-mirror.example.com/api/models/owner/name?blobs=true");
  EXPECT_EQ(ResolveUrl(endpoint, "owner/name", "main", "unet/config.json"),
            "https://hf-mirror.example.com/owner/name/resolve/main/unet/"
            "config.json");
}

TEST(HfEndpointTest, IgnoresValuesThatAreNotHttpUrls) {
  {
    ScopedHfEndpoint env("");
    EXPECT_EQ(HfEndpointFromEnvironment().base, "https://huggingface.co");
  }
  {
    ScopedHfEndpoint env("ftp://mirror.example.com");
    EXPECT_EQ(HfEndpointFromEnvironment().base, "https://huggingface.co");
  }
  {
    ScopedHfEndpoint env("http://127.0.0.1:8080/hub/");
    EXPECT_EQ(HfEndpointFromEnvironment().base, "http://127.0.0.1:8080/hub");
  }
}

TEST(HfUrlTest, ModelInfoUrl) {
  HfEndpoint hub;
  EXPECT_EQ(ModelInfoUrl(hub, "stabilityai/sdxl-turbo"),
            "https://huggingface.co/api/models/stabilityai/sdxl-turbo"
            "?blobs=true");
  EXPECT_EQ(ModelInfoUrl(hub, "stabilityai/sdxl-turbo", "fp16"),
            "https://huggingface.co/api/models/stabilityai/sdxl-turbo/"
            "revision/fp16?blobs=true");
  EXPECT_EQ(ModelInfoUrl(hub, "o/n", "refs/pr/1"),
            "https://huggingface.co/api/models/o/n/revision/refs%2Fpr%2F1"
            "?blobs=true");
}

TEST(HfUrlTest, ResolveUrlEncodesEachSegment) {
  HfEndpoint hub;
  EXPECT_EQ(ResolveUrl(hub, "o/n", "main",
                       "unet/diffusion_pytorch_model.fp16.safetensors"),
            "https://huggingface.co/o/n/resolve/main/unet/"
            "diffusion_pytorch_model.fp16.safetensors");
  EXPECT_EQ(ResolveUrl(hub, "o/n", "", "my dir/a#b?c%d+e.json"),
            "https://huggingface.co/o/n/resolve/main/my%20dir/"
            "a%23b%3Fc%25d%2Be.json");
  EXPECT_EQ(ResolveUrl(hub, "o/n", "refs/pr/3", "mod\xc3\xa8le.bin"),
            "https://huggingface.co/o/n/resolve/refs%2Fpr%2F3/"
            "mod%C3%A8le.bin");
  EXPECT_EQ(PercentEncode("a-b_c.d~e/f", /*keep_slash=*/false),
            "a-b_c.d~e%2Ff");
}

// ---------------------------------------------------------------------------
// SelectHfFiles: the worked example of spec §6.2, a repo laid out like
// stabilityai/sdxl-turbo.

std::vector<HfFile> Files(const std::vector<std::string>& paths) {
  std::vector<HfFile> files;
  for (const std::string& path : paths) files.push_back(HfFile{path});
  return files;
}

std::vector<std::string> Paths(const std::vector<HfFile>& files) {
  std::vector<std::string> paths;
  for (const HfFile& file : files) paths.push_back(file.path);
  return paths;
}

std::vector<HfFile> SdxlTurboFiles() {
  return Files({
      ".gitattributes",
      "README.md",
      "model_index.json",
      "output_tile.jpg",
      "image_grid.png",
      "sd_xl_turbo_1.0.safetensors",
      "sd_xl_turbo_1.0_fp16.safetensors",
      "scheduler/scheduler_config.json",
      "text_encoder/config.json",
      "text_encoder/model.safetensors",
      "text_encoder/model.fp16.safetensors",
      "text_encoder/model.onnx",
      "text_encoder_2/config.json",
      "text_encoder_2/model.safetensors",
      "text_encoder_2/model.fp16.safetensors",
      "text_encoder_2/model.onnx",
      "text_encoder_2/model.onnx_data",
      "tokenizer/merges.txt",
      "tokenizer/special_tokens_map.json",
      "tokenizer/tokenizer_config.json",
      "tokenizer/vocab.json",
      "tokenizer_2/merges.txt",
      "tokenizer_2/special_tokens_map.json",
      "tokenizer_2/tokenizer_config.json",
      "tokenizer_2/vocab.json",
      "unet/config.json",
      "unet/diffusion_pytorch_model.safetensors",
      "unet/diffusion_pytorch_model.fp16.safetensors",
      "unet/model.onnx",
      "unet/model.onnx_data",
      "vae/config.json",
      "vae/diffusion_pytorch_model.safetensors",
      "vae/diffusion_pytorch_model.fp16.safetensors",
      "vae/model.onnx",
      "vae_decoder/config.json",
      "vae_decoder/model.onnx",
      "vae_encoder/config.json",
      "vae_encoder/model.onnx",
  });
}

const std::vector<std::string> kSdxlCommon = {
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder_2/config.json",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "tokenizer_2/merges.txt",
    "tokenizer_2/special_tokens_map.json",
    "tokenizer_2/tokenizer_config.json",
    "tokenizer_2/vocab.json",
    "unet/config.json",
    "vae/config.json",
};

std::vector<std::string> Sorted(std::vector<std::string> paths) {
  std::sort(paths.begin(), paths.end());
  return paths;
}

std::vector<std::string> CommonPlus(std::vector<std::string> extra) {
  extra.insert(extra.end(), kSdxlCommon.begin(), kSdxlCommon.end());
  return Sorted(std::move(extra));
}

TEST(SelectHfFilesTest, WorkedExampleDefaultAndFp32) {
  const std::vector<std::string> expected = CommonPlus({
      "text_encoder/model.safetensors",
      "text_encoder_2/model.safetensors",
      "unet/diffusion_pytorch_model.safetensors",
      "vae/diffusion_pytorch_model.safetensors",
  });
  for (std::string_view variant : {"", "fp32"}) {
    ASSERT_OK_AND_ASSIGN(std::vector<HfFile> chosen,
                         SelectHfFiles(SdxlTurboFiles(), variant, {}));
    EXPECT_THAT(Paths(chosen), ElementsAreArray(expected)) << variant;
  }
}

TEST(SelectHfFilesTest, WorkedExampleFp16) {
  ASSERT_OK_AND_ASSIGN(std::vector<HfFile> chosen,
                       SelectHfFiles(SdxlTurboFiles(), "fp16", {}));
  EXPECT_THAT(Paths(chosen),
              ElementsAreArray(CommonPlus({
                  "text_encoder/model.fp16.safetensors",
                  "text_encoder_2/model.fp16.safetensors",
                  "unet/diffusion_pytorch_model.fp16.safetensors",
                  "vae/diffusion_pytorch_model.fp16.safetensors",
              })));
}

TEST(SelectHfFilesTest, WorkedExampleOnnx) {
  ASSERT_OK_AND_ASSIGN(std::vector<HfFile> chosen,
                       SelectHfFiles(SdxlTurboFiles(), "onnx", {}));
  EXPECT_THAT(Paths(chosen), ElementsAreArray(CommonPlus({
                                 "text_encoder/model.onnx",
                                 "text_encoder_2/model.onnx",
                                 "text_encoder_2/model.onnx_data",
                                 "unet/model.onnx",
                                 "unet/model.onnx_data",
                                 "vae/model.onnx",
                                 "vae_decoder/config.json",
                                 "vae_decoder/model.onnx",
                                 "vae_encoder/config.json",
                                 "vae_encoder/model.onnx",
                             })));
}

TEST(SelectHfFilesTest, WorkedExampleNeverTakesTopLevelCheckpointsOrImages) {
  for (std::string_view variant : {"", "fp16", "fp32", "onnx"}) {
    ASSERT_OK_AND_ASSIGN(std::vector<HfFile> chosen,
                         SelectHfFiles(SdxlTurboFiles(), variant, {}));
    for (std::string_view never :
         {"sd_xl_turbo_1.0.safetensors", "sd_xl_turbo_1.0_fp16.safetensors",
          "README.md", ".gitattributes", "output_tile.jpg", "image_grid.png"}) {
      EXPECT_THAT(Paths(chosen), Not(::testing::Contains(never))) << variant;
    }
  }
}

TEST(SelectHfFilesTest, OpenvinoAndFlaxHaveNothingToDownload) {
  for (std::string_view variant : {"openvino", "flax"}) {
    EXPECT_THAT(SelectHfFiles(SdxlTurboFiles(), variant, {}),
                StatusIs(absl::StatusCode::kNotFound,
                         HasSubstr(std::string("no downloadable files for "
                                               "variant '") +
                                   std::string(variant) + "'")));
  }
}

TEST(SelectHfFilesTest, OpenvinoAndFlaxFilesAreChosenForTheirVariant) {
  std::vector<HfFile> files =
      Files({"config.json", "openvino_model.xml", "openvino_model.bin",
             "flax_model.msgpack", "model.safetensors"});
  ASSERT_OK_AND_ASSIGN(std::vector<HfFile> chosen,
                       SelectHfFiles(files, "openvino", {}));
  EXPECT_THAT(Paths(chosen), ElementsAre("config.json", "openvino_model.bin",
                                         "openvino_model.xml"));
  ASSERT_OK_AND_ASSIGN(chosen, SelectHfFiles(files, "flax", {}));
  EXPECT_THAT(Paths(chosen), ElementsAre("config.json", "flax_model.msgpack"));
  ASSERT_OK_AND_ASSIGN(chosen, SelectHfFiles(files, "", {}));
  EXPECT_THAT(Paths(chosen), ElementsAre("config.json", "model.safetensors"));
}

TEST(SelectHfFilesTest, SelectionIgnoresListingOrder) {
  std::vector<HfFile> files = SdxlTurboFiles();
  std::reverse(files.begin(), files.end());
  ASSERT_OK_AND_ASSIGN(std::vector<HfFile> reversed,
                       SelectHfFiles(files, "fp16", {}));
  ASSERT_OK_AND_ASSIGN(std::vector<HfFile> forward,
                       SelectHfFiles(SdxlTurboFiles(), "fp16", {}));
  EXPECT_EQ(reversed, forward);
}

TEST(SelectHfFilesTest, KeepsSizesAndDigests) {
  std::vector<HfFile> files = {
      HfFile{"vae/config.json", 600, std::nullopt, std::nullopt},
      HfFile{"vae/diffusion_pytorch_model.safetensors", 334643268,
             std::string(kSha256), std::nullopt}};
  ASSERT_OK_AND_ASSIGN(std::vector<HfFile> chosen,
                       SelectHfFiles(files, "", {}));
  EXPECT_EQ(chosen, files);
}

TEST(SelectHfFilesTest, UnlabelledShardsAreAllKept) {
  // A FLUX-like transformer folder: no ".fp16" labels, so every weight file
  // is kept.
  std::vector<HfFile> files = Files({
      "model_index.json",
      "transformer/config.json",
      "transformer/diffusion_pytorch_model-00001-of-00003.safetensors",
      "transformer/diffusion_pytorch_model-00002-of-00003.safetensors",
      "transformer/diffusion_pytorch_model-00003-of-00003.safetensors",
      "transformer/diffusion_pytorch_model.safetensors.index.json",
  });
  for (std::string_view variant : {"", "fp16", "fp32"}) {
    ASSERT_OK_AND_ASSIGN(std::vector<HfFile> chosen,
                         SelectHfFiles(files, variant, {}));
    EXPECT_EQ(Paths(chosen), Paths(files)) << variant;
  }
}

TEST(SelectHfFilesTest, BestShardBringsItsSiblings) {
  std::vector<HfFile> files = Files({
      "text_encoder_2/config.json",
      "text_encoder_2/model-00001-of-00002.safetensors",
      "text_encoder_2/model-00002-of-00002.safetensors",
      "text_encoder_2/model.fp16-00001-of-00002.safetensors",
      "text_encoder_2/model.fp16-00002-of-00002.safetensors",
      "text_encoder_2/model.safetensors.index.json",
      "text_encoder_2/model.safetensors.index.fp16.json",
  });
  ASSERT_OK_AND_ASSIGN(std::vector<HfFile> chosen,
                       SelectHfFiles(files, "", {}));
  EXPECT_THAT(Paths(chosen),
              ElementsAre("text_encoder_2/config.json",
                          "text_encoder_2/model-00001-of-00002.safetensors",
                          "text_encoder_2/model-00002-of-00002.safetensors",
                          "text_encoder_2/model.safetensors.index.fp16.json",
                          "text_encoder_2/model.safetensors.index.json"));
  ASSERT_OK_AND_ASSIGN(chosen, SelectHfFiles(files, "fp16", {}));
  EXPECT_THAT(
      Paths(chosen),
      ElementsAre("text_encoder_2/config.json",
                  "text_encoder_2/model.fp16-00001-of-00002.safetensors",
                  "text_encoder_2/model.fp16-00002-of-00002.safetensors",
                  "text_encoder_2/model.safetensors.index.fp16.json",
                  "text_encoder_2/model.safetensors.index.json"));
}

TEST(SelectHfFilesTest, ShardSiblingsShareCountAndExtension) {
  std::vector<HfFile> files = Files({
      "unet/config.json",
      "unet/model.fp16.safetensors",
      "unet/model-00001-of-00002.safetensors",
      "unet/model-00002-of-00002.safetensors",
      "unet/model-00001-of-00003.safetensors",
      "unet/model-00001-of-00002.ckpt",
  });
  ASSERT_OK_AND_ASSIGN(std::vector<HfFile> chosen,
                       SelectHfFiles(files, "", {}));
  // The first best scorer in path order is model-00001-of-00002.safetensors.
  EXPECT_THAT(
      Paths(chosen),
      ElementsAre("unet/config.json", "unet/model-00001-of-00002.safetensors",
                  "unet/model-00002-of-00002.safetensors"));
}

TEST(SelectHfFilesTest, BinIsDroppedWhenTheFolderHasSafetensors) {
  std::vector<HfFile> files = Files({
      "text_encoder/config.json",
      "text_encoder/pytorch_model.bin",
      "text_encoder/model.safetensors",
      "unet/config.json",
      "unet/diffusion_pytorch_model.bin",
      "unet/diffusion_pytorch_model.fp16.bin",
  });
  ASSERT_OK_AND_ASSIGN(std::vector<HfFile> chosen,
                       SelectHfFiles(files, "", {}));
  EXPECT_THAT(
      Paths(chosen),
      ElementsAre("text_encoder/config.json", "text_encoder/model.safetensors",
                  "unet/config.json", "unet/diffusion_pytorch_model.bin"));
  ASSERT_OK_AND_ASSIGN(chosen, SelectHfFiles(files, "fp16", {}));
  EXPECT_THAT(
      Paths(chosen),
      ElementsAre("text_encoder/config.json", "text_encoder/model.safetensors",
                  "unet/config.json", "unet/diffusion_pytorch_model.fp16.bin"));
}

TEST(SelectHfFilesTest, SafetensorsOnlyFolderFallsBackToTheOtherVariant) {
  // The repo has only fp16 weights in unet: a default request still gets
  // them (the best scorer), not an empty folder.
  std::vector<HfFile> files = Files({
      "unet/config.json",
      "unet/diffusion_pytorch_model.fp16.safetensors",
  });
  ASSERT_OK_AND_ASSIGN(std::vector<HfFile> chosen,
                       SelectHfFiles(files, "", {}));
  EXPECT_THAT(Paths(chosen),
              ElementsAre("unet/config.json",
                          "unet/diffusion_pytorch_model.fp16.safetensors"));
}

TEST(SelectHfFilesTest, SubfolderSelection) {
  ASSERT_OK_AND_ASSIGN(std::vector<HfFile> chosen,
                       SelectHfFiles(SdxlTurboFiles(), "fp16", {"vae"}));
  EXPECT_THAT(Paths(chosen),
              ElementsAre("vae/config.json",
                          "vae/diffusion_pytorch_model.fp16.safetensors"));
  // "vae" does not take "vae_decoder" or "vae_encoder".
  ASSERT_OK_AND_ASSIGN(chosen,
                       SelectHfFiles(SdxlTurboFiles(), "onnx", {"vae"}));
  EXPECT_THAT(Paths(chosen), ElementsAre("vae/config.json", "vae/model.onnx"));
}

TEST(SelectHfFilesTest, SeveralSubfolders) {
  ASSERT_OK_AND_ASSIGN(
      ModelSource source,
      ParseModelSource("stabilityai/sdxl-turbo::text_encoder+"
                       "tokenizer",
                       [](std::string_view) { return false; }));
  ASSERT_OK_AND_ASSIGN(
      std::vector<HfFile> chosen,
      SelectHfFiles(SdxlTurboFiles(), std::get<HfRepoSource>(source)));
  EXPECT_THAT(
      Paths(chosen),
      ElementsAre("text_encoder/config.json", "text_encoder/model.safetensors",
                  "tokenizer/merges.txt", "tokenizer/special_tokens_map.json",
                  "tokenizer/tokenizer_config.json", "tokenizer/vocab.json"));
}

TEST(SelectHfFilesTest, MissingSubfolderIsNotFound) {
  EXPECT_THAT(SelectHfFiles(SdxlTurboFiles(), "", {"transformer"}),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("in subfolder 'transformer'")));
}

TEST(SelectHfFilesTest, SingleFileByPath) {
  ASSERT_OK_AND_ASSIGN(std::vector<HfFile> chosen,
                       SelectHfFiles(SdxlTurboFiles(), "",
                                     {"sd_xl_turbo_1.0_fp16.safetensors"}));
  EXPECT_THAT(Paths(chosen), ElementsAre("sd_xl_turbo_1.0_fp16.safetensors"));
  // The variant does not filter a file named by path.
  ASSERT_OK_AND_ASSIGN(
      chosen, SelectHfFiles(SdxlTurboFiles(), "onnx",
                            {"unet/diffusion_pytorch_model.safetensors"}));
  EXPECT_THAT(Paths(chosen),
              ElementsAre("unet/diffusion_pytorch_model.safetensors"));
  HfRepoSource source{"stabilityai/sdxl-turbo", "", {}, "vae/model.onnx"};
  ASSERT_OK_AND_ASSIGN(chosen, SelectHfFiles(SdxlTurboFiles(), source));
  EXPECT_THAT(Paths(chosen), ElementsAre("vae/model.onnx"));
}

TEST(SelectHfFilesTest, MissingSingleFileIsNotFound) {
  EXPECT_THAT(SelectHfFiles(SdxlTurboFiles(), "", {"unet/missing.safetensors"}),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("no file 'unet/missing.safetensors'")));
}

TEST(SelectHfFilesTest, SpecialCandidateNames) {
  std::vector<HfFile> files = Files({
      "learned_embeds.bin",
      "ip_adapter.bin",
      "lora/pytorch_lora_weights.safetensors",
      "README.md",
      "chat_template.jinja",
      "text_encoder_3/spiece.model",
      "text_encoder_3/config.json",
      "random_checkpoint.ckpt",
  });
  ASSERT_OK_AND_ASSIGN(std::vector<HfFile> chosen,
                       SelectHfFiles(files, "", {}));
  EXPECT_THAT(
      Paths(chosen),
      ElementsAre("chat_template.jinja", "ip_adapter.bin", "learned_embeds.bin",
                  "lora/pytorch_lora_weights.safetensors",
                  "text_encoder_3/config.json", "text_encoder_3/spiece.model"));
}

TEST(SelectHfFilesTest, LoneConfigIsDroppedAndEmptyIsNotFound) {
  std::vector<HfFile> files = Files({"config.json", "README.md", "x.gguf"});
  EXPECT_THAT(SelectHfFiles(files, "", {}),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("no downloadable files for variant ''")));
}

TEST(SelectHfFilesTest, RefusesUnknownVariants) {
  EXPECT_THAT(
      SelectHfFiles(SdxlTurboFiles(), "fp8", {}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("variant 'fp8'")));
}

// ---------------------------------------------------------------------------
// HfLocalPath

TEST(HfLocalPathTest, SpecLayouts) {
  EXPECT_EQ(HfLocalPath("stabilityai/sdxl-turbo", {}, "unet/config.json"),
            "sdxl-turbo/unet/config.json");
  EXPECT_EQ(HfLocalPath("stabilityai/sdxl-turbo", {}, "model_index.json"),
            "sdxl-turbo/model_index.json");
  EXPECT_EQ(HfLocalPath("stabilityai/sdxl-turbo", {"vae"}, "vae/config.json"),
            "sdxl-turbo_vae/config.json");
  EXPECT_EQ(HfLocalPath("o/n", {"a/b"}, "a/b/c/d.json"), "n_b/c/d.json");
  EXPECT_EQ(HfLocalPath("stabilityai/sdxl-turbo",
                        {"unet/diffusion_pytorch_model.safetensors"},
                        "unet/diffusion_pytorch_model.safetensors"),
            "sdxl-turbo_diffusion_pytorch_model.safetensors");
}

TEST(HfLocalPathTest, SeveralSubfoldersKeepTheRepoLayout) {
  EXPECT_EQ(HfLocalPath("o/sdxl", {"text_encoder", "tokenizer"},
                        "text_encoder/config.json"),
            "sdxl_text_encoder+tokenizer/text_encoder/config.json");
  EXPECT_EQ(HfLocalPath("o/sdxl", {"text_encoder", "tokenizer"},
                        "tokenizer/config.json"),
            "sdxl_text_encoder+tokenizer/tokenizer/config.json");
}

TEST(HfLocalPathTest, FromSource) {
  HfRepoSource file_source{"o/n", "", {}, "unet/x.safetensors"};
  EXPECT_EQ(HfLocalPath(file_source, "unet/x.safetensors"), "n_x.safetensors");
  HfRepoSource folder_source{"o/n", "fp16", {"vae"}, ""};
  EXPECT_EQ(HfLocalPath(folder_source, "vae/config.json"), "n_vae/config.json");
}

TEST(HfLocalPathTest, HostileNamesBecomeSafeRelativePaths) {
  EXPECT_EQ(HfLocalPath("o/..", {}, "../../etc/passwd"), "_/_/_/etc/passwd");
  EXPECT_EQ(HfLocalPath("o/n", {}, "/abs//x"), "n/abs/x");
  EXPECT_EQ(HfLocalPath("o/n", {".."}, "../x"), "n__/x");
  EXPECT_EQ(HfLocalPath("o/n", {}, "a\\b\x01.json"), "n/a_b_.json");
  EXPECT_EQ(HfLocalPath("o/n", {}, ""), "n/_");
  EXPECT_EQ(HfLocalPath("o/n", {"x.safetensors"}, ".."), "n__");
}

}  // namespace
}  // namespace mm::model
