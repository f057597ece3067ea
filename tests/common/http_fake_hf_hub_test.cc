// The fake Hugging Face hub (tests/testing/fake_hf_hub.h) against the
// manager's own client code: its model-info parses with model/huggingface's
// parser into the files and sizes it serves, the file selection of spec
// §6.2 picks what the spec says on its SDXL repo, its files arrive through
// common/http's transfer loop (redirects followed, the token kept from the
// CDN), and its error answers have the hub's shape. The canned repos'
// files probe as the models they stand for.
#include "tests/testing/fake_hf_hub.h"

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "common/http/transfer_loop.h"
#include "common/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/hashing.h"
#include "model/huggingface.h"
#include "model/probe.h"
#include "model/source.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Key;
using ::testing::Not;
using ::testing::Pair;
using ::testing::StartsWith;
using json = nlohmann::json;

// Long enough for a loaded machine, short enough that a hang fails.
constexpr absl::Duration kWait = absl::Seconds(20);
constexpr char kToken[] = "hf_fixture_token";

// What one transfer saw.
struct Fetched {
  http::ResponseHead head;
  std::string body;
  http::TransferResult result;
};

class CollectingHandler : public http::TransferHandler {
 public:
  bool OnResponse(const http::ResponseHead& head) override {
    MutexLock lock(&mu_);
    fetched_.head = head;
    return true;
  }
  bool OnBody(const char* data, size_t size) override {
    MutexLock lock(&mu_);
    fetched_.body.append(data, size);
    return true;
  }
  void OnDone(const http::TransferResult& result) override {
    MutexLock lock(&mu_);
    fetched_.result = result;
    done_ = true;
  }
  // The transfer's outcome; nullopt if it did not end within kWait.
  std::optional<Fetched> Wait() {
    MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(
            [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_; },
            kWait)) {
      return std::nullopt;
    }
    return fetched_;
  }

 private:
  Mutex mu_;
  Fetched fetched_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

class FakeHfHubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(hub_, FakeHfHub::Start());
    AddCannedRepos(*hub_, kToken);
    endpoint_.base = hub_->endpoint();
  }

  // One transfer through common/http, as the downloader makes them.
  Fetched Get(const std::string& url, const std::string& token = "",
              int64_t range_begin = -1, bool head = false,
              int max_redirects = 10) {
    auto handler = std::make_shared<CollectingHandler>();
    loop_->Start({.url = url,
                  .range_begin = range_begin,
                  .bearer_token = token,
                  .head = head,
                  .max_redirects = max_redirects,
                  .stall_timeout = kWait},
                 handler);
    std::optional<Fetched> fetched = handler->Wait();
    EXPECT_TRUE(fetched.has_value())
        << "no answer within " << kWait << ": " << url;
    return fetched.value_or(Fetched());
  }

  // The parsed model-info of `repo_id` (at `revision`), fetched over HTTP.
  model::HfModelInfo Info(const std::string& repo_id,
                          std::optional<std::string> revision = std::nullopt,
                          const std::string& token = "") {
    Fetched fetched =
        Get(model::ModelInfoUrl(endpoint_, repo_id, revision), token);
    EXPECT_EQ(fetched.head.status, 200) << fetched.body;
    absl::StatusOr<model::HfModelInfo> info =
        model::ParseHfModelInfo(fetched.body);
    EXPECT_OK(info.status());
    EXPECT_EQ(fetched.head.Header("x-repo-commit"),
              info.value_or(model::HfModelInfo()).sha);
    return info.value_or(model::HfModelInfo());
  }

  // The paths SelectHfFiles picks from `repo_id`'s model-info.
  std::vector<std::string> Selected(const std::string& repo_id,
                                    const std::string& variant,
                                    std::vector<std::string> subfolders = {}) {
    absl::StatusOr<std::vector<model::HfFile>> files =
        model::SelectHfFiles(Info(repo_id).files, variant, subfolders);
    EXPECT_OK(files.status());
    std::vector<std::string> paths;
    for (const model::HfFile& file :
         files.value_or(std::vector<model::HfFile>())) {
      paths.push_back(file.path);
    }
    return paths;
  }

  // Fetches every file `source` selects into `dir_` where the installer
  // would put it (spec §6.2) and returns the model's folder or file.
  fs::path Download(const std::string& source_text,
                    const std::string& token = "") {
    absl::StatusOr<model::ModelSource> source = model::ParseModelSource(
        source_text, [](std::string_view) { return false; });
    EXPECT_OK(source.status());
    const auto* repo = std::get_if<model::HfRepoSource>(&*source);
    EXPECT_NE(repo, nullptr) << source_text;
    if (repo == nullptr) return {};
    model::HfModelInfo info = Info(repo->repo_id, std::nullopt, token);
    absl::StatusOr<std::vector<model::HfFile>> files =
        model::SelectHfFiles(info.files, *repo);
    EXPECT_OK(files.status()) << source_text;
    fs::path first;
    for (const model::HfFile& file :
         files.value_or(std::vector<model::HfFile>())) {
      Fetched fetched = Get(
          model::ResolveUrl(endpoint_, info.id, info.sha, file.path), token);
      EXPECT_EQ(fetched.head.status, 200) << file.path;
      EXPECT_EQ(fetched.body.size(), file.size.value_or(0)) << file.path;
      const std::string local = model::HfLocalPath(*repo, file.path);
      WriteFile(dir_.path() / local, fetched.body);
      if (first.empty())
        first = dir_.path() / fs::path(local).begin()->string();
    }
    return first;
  }

  std::unique_ptr<FakeHfHub> hub_;
  model::HfEndpoint endpoint_;
  std::unique_ptr<http::TransferLoop> loop_ = http::TransferLoop::Create({});
  TempDir dir_;
};

// ---------------------------------------------------------------------------
// Model info.

TEST_F(FakeHfHubTest, ModelInfoParsesIntoTheServedFilesAndSizes) {
  const FakeHfRepo repo = SdxlDiffusersRepo();
  model::HfModelInfo info = Info(repo.id);
  EXPECT_EQ(info.id, "fixture/sdxl-base");
  EXPECT_EQ(info.author, "fixture");
  EXPECT_EQ(info.sha, hub_->CommitOf(repo.id));
  EXPECT_EQ(info.tags, repo.tags);
  EXPECT_FALSE(info.private_repo);
  EXPECT_EQ(info.gated, "");
  ASSERT_EQ(info.files.size(), repo.files.size());
  for (size_t i = 0; i < repo.files.size(); ++i) {
    const FakeHfFile& served = repo.files[i];
    const model::HfFile& listed = info.files[i];
    EXPECT_EQ(listed.path, served.path);
    EXPECT_EQ(listed.size, served.contents.size()) << served.path;
    ASSERT_TRUE(listed.blob_id.has_value()) << served.path;
    if (!served.lfs) {
      EXPECT_EQ(listed.sha256, std::nullopt) << served.path;
      continue;
    }
    // The hub's sha256 is the content's, as an independent hasher says.
    const fs::path copy = dir_.path() / "hash" / served.path;
    WriteFile(copy, served.contents);
    ASSERT_OK_AND_ASSIGN(
        std::string hash,
        model::HashFile(copy, {.algorithm = model::HashAlgorithm::kSha256}));
    EXPECT_EQ("sha256:" + listed.sha256.value_or(""), hash) << served.path;
  }
  // Weights, ONNX and the image are LFS; configs and text are not.
  auto lfs = [&](const std::string& path) {
    for (const model::HfFile& file : info.files) {
      if (file.path == path) return file.sha256.has_value();
    }
    ADD_FAILURE() << "no " << path;
    return false;
  };
  EXPECT_TRUE(lfs("unet/diffusion_pytorch_model.fp16.safetensors"));
  EXPECT_TRUE(lfs("sd_xl_base_1.0.safetensors"));
  EXPECT_TRUE(lfs("unet/model.onnx_data"));
  EXPECT_TRUE(lfs("01.png"));
  EXPECT_FALSE(lfs("unet/config.json"));
  EXPECT_FALSE(lfs("tokenizer/merges.txt"));
  EXPECT_FALSE(lfs("README.md"));
}

TEST_F(FakeHfHubTest, ModelInfoWithoutBlobsListsNamesOnly) {
  Fetched fetched = Get(hub_->endpoint() + "/api/models/fixture/sd-vae");
  ASSERT_EQ(fetched.head.status, 200);
  json info = json::parse(fetched.body);
  ASSERT_FALSE(info["siblings"].empty());
  for (const json& sibling : info["siblings"]) {
    EXPECT_EQ(sibling.size(), 1u) << sibling.dump();
    EXPECT_TRUE(sibling.contains("rfilename"));
  }
  EXPECT_EQ(hub_->RequestCount("/api/models/fixture/sd-vae"), 1);
}

TEST_F(FakeHfHubTest, BranchRevisionHasItsOwnCommitAndFiles) {
  const std::string repo = "fixture/sd-vae";
  model::HfModelInfo main = Info(repo);
  model::HfModelInfo fp16 = Info(repo, "fp16");
  EXPECT_EQ(fp16.sha, hub_->CommitOf(repo, "fp16"));
  EXPECT_NE(fp16.sha, main.sha);
  ASSERT_EQ(fp16.files.size(), 2u);  // no README on the branch
  EXPECT_EQ(fp16.files[1].path, "diffusion_pytorch_model.safetensors");
  EXPECT_NE(fp16.files[1].sha256, main.files[1].sha256);
  // The same files by branch name and by commit id.
  EXPECT_EQ(Info(repo, fp16.sha).files, fp16.files);
  const std::string by_branch =
      Get(model::ResolveUrl(endpoint_, repo, "fp16", fp16.files[1].path)).body;
  const std::string by_commit =
      Get(model::ResolveUrl(endpoint_, repo, fp16.sha, fp16.files[1].path))
          .body;
  EXPECT_EQ(by_branch, VaeFolderFiles({.fp16_weights = true})[1].contents);
  const FakeHfRepo canned = VaeWithFp16BranchRepo();
  EXPECT_EQ(FindHubFile(canned, fp16.files[1].path, "fp16")->contents,
            by_branch);
  EXPECT_NE(FindHubFile(canned, fp16.files[1].path)->contents, by_branch);
  EXPECT_EQ(FindHubFile(canned, "README.md", "fp16"), nullptr);
  EXPECT_EQ(FindHubFile(canned, "config.json", "fp32"), nullptr);
  EXPECT_EQ(by_commit, by_branch);
  EXPECT_EQ(hub_->RequestCount(FakeHfHub::ModelInfoPath(repo, "fp16")), 1);
}

TEST_F(FakeHfHubTest, HostileNameIsRefusedByTheParser) {
  Fetched fetched =
      Get(model::ModelInfoUrl(endpoint_, "fixture/hostile", std::nullopt));
  ASSERT_EQ(fetched.head.status, 200);
  EXPECT_THAT(model::ParseHfModelInfo(fetched.body),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr("'../../x'"),
                             HasSubstr("'.' or '..' component"))));
}

// ---------------------------------------------------------------------------
// File selection (spec §6.2's worked example, on the SDXL repo).

TEST_F(FakeHfHubTest, SdxlDefaultSelectionIsThePipelineInFp32) {
  const std::vector<std::string> expected = {
      "model_index.json",
      "scheduler/scheduler_config.json",
      "text_encoder/config.json",
      "text_encoder/model.safetensors",
      "text_encoder_2/config.json",
      "text_encoder_2/model.safetensors",
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
      "vae/config.json",
      "vae/diffusion_pytorch_model.safetensors"};
  EXPECT_THAT(Selected("fixture/sdxl-base", ""), ElementsAreArray(expected));
  EXPECT_THAT(Selected("fixture/sdxl-base", "fp32"),
              ElementsAreArray(expected));
}

TEST_F(FakeHfHubTest, SdxlFp16SelectionTakesTheFp16Weights) {
  EXPECT_THAT(
      Selected("fixture/sdxl-base", "fp16"),
      ElementsAre(
          "model_index.json", "scheduler/scheduler_config.json",
          "text_encoder/config.json", "text_encoder/model.fp16.safetensors",
          "text_encoder_2/config.json", "text_encoder_2/model.fp16.safetensors",
          "tokenizer/merges.txt", "tokenizer/special_tokens_map.json",
          "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
          "tokenizer_2/merges.txt", "tokenizer_2/special_tokens_map.json",
          "tokenizer_2/tokenizer_config.json", "tokenizer_2/vocab.json",
          "unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors",
          "vae/config.json", "vae/diffusion_pytorch_model.fp16.safetensors"));
}

TEST_F(FakeHfHubTest, SdxlOnnxSelectionTakesTheOnnxFiles) {
  std::vector<std::string> onnx = Selected("fixture/sdxl-base", "onnx");
  EXPECT_THAT(
      onnx,
      AllOf(Contains("unet/model.onnx"), Contains("unet/model.onnx_data"),
            Contains("text_encoder/model.onnx"),
            Contains("text_encoder_2/model.onnx"),
            Contains("text_encoder_2/model.onnx_data"),
            Contains("vae_decoder/model.onnx"),
            Contains("vae_encoder/model.onnx"), Contains("model_index.json")));
  for (const std::string& path : onnx) {
    EXPECT_THAT(path, Not(HasSubstr(".safetensors")));
  }
}

TEST_F(FakeHfHubTest, SdxlSelectionNeverTakesTheRepoExtras) {
  for (const char* variant : {"", "fp16", "fp32", "onnx"}) {
    EXPECT_THAT(Selected("fixture/sdxl-base", variant),
                AllOf(Not(Contains("sd_xl_base_1.0.safetensors")),
                      Not(Contains("README.md")), Not(Contains("01.png")),
                      Not(Contains(".gitattributes"))))
        << variant;
  }
}

TEST_F(FakeHfHubTest, SdxlSubfolderAndSingleFileSelection) {
  EXPECT_THAT(Selected("fixture/sdxl-base", "fp16", {"vae"}),
              ElementsAre("vae/config.json",
                          "vae/diffusion_pytorch_model.fp16.safetensors"));
  EXPECT_THAT(
      Selected("fixture/sdxl-base", "", {"text_encoder_2", "tokenizer_2"}),
      ElementsAre(
          "text_encoder_2/config.json", "text_encoder_2/model.safetensors",
          "tokenizer_2/merges.txt", "tokenizer_2/special_tokens_map.json",
          "tokenizer_2/tokenizer_config.json", "tokenizer_2/vocab.json"));
  EXPECT_THAT(Selected("fixture/sdxl-base", "", {"sd_xl_base_1.0.safetensors"}),
              ElementsAre("sd_xl_base_1.0.safetensors"));
}

// ---------------------------------------------------------------------------
// Files: the hub, the redirect and the CDN.

TEST_F(FakeHfHubTest, RegularFileIsServedByTheHubWithRanges) {
  const std::string repo = "fixture/sd-vae";
  const std::string url =
      model::ResolveUrl(endpoint_, repo, "main", "config.json");
  Fetched full = Get(url, kToken);
  EXPECT_EQ(full.head.status, 200);
  EXPECT_EQ(full.body, VaeFolderFiles({})[0].contents);
  EXPECT_EQ(full.head.Header("x-repo-commit"), hub_->CommitOf(repo));
  EXPECT_THAT(full.head.Header("etag"), StartsWith("\""));
  EXPECT_EQ(full.head.effective_url, url);

  Fetched part = Get(url, kToken, /*range_begin=*/5);
  EXPECT_EQ(part.head.status, 206);
  EXPECT_EQ(part.body, full.body.substr(5));
  EXPECT_EQ(
      hub_->RequestCount(FakeHfHub::ResolvePath(repo, "main", "config.json")),
      2);
  EXPECT_THAT(hub_->TokensSeen(), ElementsAre(kToken, kToken));
}

TEST_F(FakeHfHubTest, LfsFileRedirectsToTheCdnWithoutTheToken) {
  const std::string repo = "fixture/sdxl-base";
  const std::string path = "unet/diffusion_pytorch_model.safetensors";
  const FakeHfRepo canned = SdxlDiffusersRepo();
  const FakeHfFile* file = FindHubFile(canned, path);
  ASSERT_NE(file, nullptr);
  ASSERT_TRUE(file->lfs);
  const std::string contents = file->contents;
  const std::string url = model::ResolveUrl(endpoint_, repo, "main", path);

  Fetched fetched = Get(url, kToken);
  ASSERT_EQ(fetched.result.kind, http::TransferResult::Kind::kComplete)
      << fetched.result.message;
  EXPECT_EQ(fetched.head.status, 200);
  EXPECT_EQ(fetched.body, contents);
  EXPECT_THAT(
      fetched.head.effective_url,
      StartsWith(hub_->cdn_server().Url(FakeHfHub::CdnPath(contents)) + "?"));
  // A resumed download: a range through the redirect.
  Fetched part = Get(url, kToken, /*range_begin=*/100);
  EXPECT_EQ(part.head.status, 206);
  EXPECT_EQ(part.body, contents.substr(100));

  const std::string resolve = FakeHfHub::ResolvePath(repo, "main", path);
  EXPECT_EQ(hub_->RequestCount(resolve), 2);
  EXPECT_THAT(hub_->TokensFor(resolve), ElementsAre(kToken, kToken));
  EXPECT_EQ(hub_->CdnRequestCount(FakeHfHub::CdnPath(contents)), 2);
  EXPECT_FALSE(hub_->CdnSawAuthorization());
  for (const HttpRequestRecord& request : hub_->cdn_server().Requests()) {
    EXPECT_THAT(request.headers, Not(Contains(Key("authorization"))));
  }
}

TEST_F(FakeHfHubTest, CdnRecordsAnAuthorizationHeaderThatReachesIt) {
  // The check can fail: a client that sends the token to the CDN host
  // itself is seen.
  const std::string contents = LoraSd1Bytes();
  Fetched fetched =
      Get(hub_->cdn_server().Url(FakeHfHub::CdnPath(contents)), kToken);
  EXPECT_EQ(fetched.body, contents);
  EXPECT_TRUE(hub_->CdnSawAuthorization());
}

TEST_F(FakeHfHubTest, LfsHeadGivesTheLinkedHeaders) {
  const std::string repo = "fixture/detail-lora";
  const std::string contents = LoraSd1Bytes();
  const std::string url =
      model::ResolveUrl(endpoint_, repo, "main", "detail_tweaker.safetensors");
  // Not following the redirect: what the hub itself says.
  Fetched hub = Get(url, "", -1, /*head=*/true, /*max_redirects=*/0);
  EXPECT_EQ(hub.head.status, 302);
  EXPECT_THAT(hub.head.Header("location"),
              StartsWith(hub_->cdn_server().Url(FakeHfHub::CdnPath(contents))));
  EXPECT_EQ(hub.head.Header("x-repo-commit"), hub_->CommitOf(repo));
  EXPECT_EQ(hub.head.Header("x-linked-size"), std::to_string(contents.size()));
  const std::string linked_etag = hub.head.Header("x-linked-etag");
  ASSERT_EQ(linked_etag.size(), 66u) << linked_etag;
  EXPECT_EQ(linked_etag, "\"" + Info(repo).files[0].sha256.value_or("") + "\"");
  // Following it: the CDN's answer, with the sha256 as its ETag.
  Fetched cdn = Get(url, "", -1, /*head=*/true);
  EXPECT_EQ(cdn.head.status, 200);
  EXPECT_EQ(cdn.head.ContentLength(), static_cast<int64_t>(contents.size()));
  EXPECT_EQ(cdn.head.Header("etag"), linked_etag);
  EXPECT_TRUE(cdn.body.empty());
}

// ---------------------------------------------------------------------------
// Errors.

TEST_F(FakeHfHubTest, GatedRepoNeedsAnAcceptedToken) {
  const std::string repo = "fixture/gated-vae";
  const std::string info_url = model::ModelInfoUrl(endpoint_, repo);
  const std::string file_url = model::ResolveUrl(
      endpoint_, repo, "main", "diffusion_pytorch_model.safetensors");
  for (const std::string& url : {info_url, file_url}) {
    Fetched none = Get(url);
    EXPECT_EQ(none.head.status, 401) << url;
    EXPECT_EQ(none.head.Header("x-error-code"), "GatedRepo");
    EXPECT_EQ(json::parse(none.body)["error"],
              "Access to model fixture/gated-vae is restricted. You must have "
              "access to it and be authenticated to access it. Please log "
              "in.");
    EXPECT_EQ(none.head.Header("x-error-message"),
              json::parse(none.body)["error"]);

    Fetched wrong = Get(url, "hf_someone_else");
    EXPECT_EQ(wrong.head.status, 403) << url;
    EXPECT_EQ(wrong.head.Header("x-error-code"), "GatedRepo");
    EXPECT_THAT(wrong.body, HasSubstr("not in the authorized list"));

    Fetched right = Get(url, kToken);
    EXPECT_EQ(right.head.status, 200) << url;
  }
  EXPECT_EQ(Info(repo, std::nullopt, kToken).gated, "manual");
  EXPECT_FALSE(hub_->CdnSawAuthorization());
}

TEST_F(FakeHfHubTest, GatedRepoWithPublicInfoRefusesOnlyFiles) {
  FakeHfRepo repo = GatedVaeRepo(kToken);
  repo.info_is_public = true;
  hub_->AddRepo(repo);
  EXPECT_EQ(Get(model::ModelInfoUrl(endpoint_, repo.id)).head.status, 200);
  EXPECT_EQ(Get(model::ResolveUrl(endpoint_, repo.id, "main", "config.json"))
                .head.status,
            401);
}

TEST_F(FakeHfHubTest, UnknownRepoRevisionAndFileAre404WithTheirCodes) {
  Fetched repo = Get(model::ModelInfoUrl(endpoint_, "fixture/nope"));
  EXPECT_EQ(repo.head.status, 404);
  EXPECT_EQ(repo.head.Header("x-error-code"), "RepoNotFound");
  EXPECT_EQ(json::parse(repo.body), (json{{"error", "Repository not found"}}));
  EXPECT_EQ(Get(model::ResolveUrl(endpoint_, "fixture/nope", "main", "a.json"))
                .head.Header("x-error-code"),
            "RepoNotFound");

  Fetched revision = Get(
      model::ModelInfoUrl(endpoint_, "fixture/sd-vae", std::string("fp32")));
  EXPECT_EQ(revision.head.status, 404);
  EXPECT_EQ(revision.head.Header("x-error-code"), "RevisionNotFound");
  EXPECT_EQ(json::parse(revision.body)["error"], "Invalid rev id: fp32");

  Fetched file = Get(
      model::ResolveUrl(endpoint_, "fixture/sd-vae", "main", "missing.json"));
  EXPECT_EQ(file.head.status, 404);
  EXPECT_EQ(file.head.Header("x-error-code"), "EntryNotFound");

  hub_->RemoveRepo("fixture/sd-vae");
  EXPECT_EQ(Get(model::ModelInfoUrl(endpoint_, "fixture/sd-vae"))
                .head.Header("x-error-code"),
            "RepoNotFound");
  EXPECT_EQ(Get(hub_->endpoint() + "/not/an/api").head.status, 404);
}

TEST(FakeHfHubOptionsTest, UnknownRepoCanBe401WithoutAToken) {
  ASSERT_OK_AND_ASSIGN(auto hub,
                       FakeHfHub::Start({.unknown_repo_is_401 = true}));
  auto loop = http::TransferLoop::Create({});
  auto status_of = [&](const std::string& token) {
    auto handler = std::make_shared<CollectingHandler>();
    loop->Start({.url = hub->endpoint() + "/api/models/fixture/nope",
                 .bearer_token = token},
                handler);
    std::optional<Fetched> fetched = handler->Wait();
    EXPECT_TRUE(fetched.has_value());
    EXPECT_EQ(fetched.value_or(Fetched()).head.Header("x-error-code"),
              "RepoNotFound");
    return fetched.value_or(Fetched()).head.status;
  };
  EXPECT_EQ(status_of(""), 401);
  EXPECT_EQ(status_of(kToken), 404);
}

TEST_F(FakeHfHubTest, FaultsOfTheServersApplyOnTop) {
  hub_->hub_server().SetBehavior(FakeHfHub::ModelInfoPath("fixture/sd-vae"),
                                 {.fail_statuses = {503}});
  EXPECT_EQ(Get(model::ModelInfoUrl(endpoint_, "fixture/sd-vae")).head.status,
            503);
  EXPECT_EQ(Get(model::ModelInfoUrl(endpoint_, "fixture/sd-vae")).head.status,
            200);
  EXPECT_EQ(hub_->RequestCounts(),
            (std::map<std::string, int>{
                {FakeHfHub::ModelInfoPath("fixture/sd-vae"), 2}}));
}

// ---------------------------------------------------------------------------
// The canned repos, fetched and placed as the installer would, probe as the
// models they stand for.

void ExpectProbe(const fs::path& path, const std::string& type,
                 const std::string& format, const std::string& base) {
  absl::StatusOr<json> config = model::Probe(path, {});
  ASSERT_OK(config.status()) << path;
  EXPECT_EQ((*config)["type"], type) << config->dump();
  EXPECT_EQ((*config)["format"], format) << config->dump();
  EXPECT_EQ((*config)["base"], base) << config->dump();
}

TEST_F(FakeHfHubTest, CannedReposInstallAsTheirModels) {
  ExpectProbe(Download("fixture/sdxl-base"), "main", "diffusers", "sdxl");
  ExpectProbe(Download("fixture/sdxl-base:fp16:vae"), "vae", "diffusers",
              "sdxl");
  ExpectProbe(Download("fixture/sdxl-base::sd_xl_base_1.0.safetensors"), "main",
              "checkpoint", "sdxl");
  ExpectProbe(Download("fixture/sd-vae"), "vae", "diffusers", "sd-1");
  ExpectProbe(Download("fixture/gated-vae", kToken), "vae", "diffusers",
              "sdxl");
  ExpectProbe(Download("fixture/embeddings::concept"), "embedding",
              "embedding_folder", "sd-1");
  ExpectProbe(Download("fixture/embeddings::sdxl/negative_xl.safetensors"),
              "embedding", "embedding_file", "sdxl");
  ExpectProbe(Download("fixture/detail-lora::detail_tweaker.safetensors"),
              "lora", "lycoris", "sd-1");
  EXPECT_FALSE(hub_->CdnSawAuthorization());
}

TEST_F(FakeHfHubTest, SingleFileLoraRepoHasNothingToSelectAsAWhole) {
  EXPECT_THAT(model::SelectHfFiles(Info("fixture/detail-lora").files, "", {}),
              StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace mm::testing
