#include "tests/testing/fake_hf_hub.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/strings.h"
#include "model/huggingface.h"
#include "nlohmann/json.hpp"

namespace mm::testing {
namespace {

using json = nlohmann::json;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "fake_hf_hub: %s\n", what.c_str());
  std::abort();
}

std::string Digest(const EVP_MD* algorithm, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(data.data(), data.size(), out, &length, algorithm, nullptr) !=
      1) {
    Die("EVP_Digest failed");
  }
  constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex += kHex[out[i] >> 4];
    hex += kHex[out[i] & 0xF];
  }
  return hex;
}

std::string Sha256Hex(std::string_view data) {
  return Digest(EVP_sha256(), data);
}

// git's object id of a blob with `contents`.
std::string GitBlobId(std::string_view contents) {
  std::string object = absl::StrCat("blob ", contents.size());
  object.push_back('\0');
  object.append(contents);
  return Digest(EVP_sha1(), object);
}

// The pointer file git stores in place of an LFS object.
std::string LfsPointer(std::string_view contents) {
  return absl::StrCat("version https://git-lfs.github.com/spec/v1\noid sha256:",
                      Sha256Hex(contents), "\nsize ", contents.size(), "\n");
}

std::string BlobIdOf(const FakeHfFile& file) {
  return GitBlobId(file.lfs ? LfsPointer(file.contents) : file.contents);
}

bool IsCommitId(std::string_view text) {
  return text.size() == 40 && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX decoding; a malformed escape is kept as it is (the lookup then fails
// with a 404, as on the real hub).
std::string PercentDecode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size()) {
      int high = HexValue(text[i + 1]);
      int low = HexValue(text[i + 2]);
      if (high >= 0 && low >= 0) {
        out += static_cast<char>(high * 16 + low);
        i += 2;
        continue;
      }
    }
    out += text[i];
  }
  return out;
}

// The token of "Authorization: Bearer <token>"; the whole value for another
// scheme; "" without the header.
std::string TokenOf(const HttpRequestRecord& request) {
  auto it = request.headers.find("authorization");
  if (it == request.headers.end()) return "";
  constexpr std::string_view kBearer = "Bearer ";
  if (absl::StartsWith(it->second, AsAbsl(kBearer))) {
    return it->second.substr(kBearer.size());
  }
  return it->second;
}

std::shared_ptr<const HttpTestFile> HubError(int status, std::string code,
                                             const std::string& message) {
  HttpTestFile file{.body = json{{"error", message}}.dump(),
                    .content_type = "application/json; charset=utf-8",
                    .status = status};
  if (!code.empty()) file.headers.emplace_back("X-Error-Code", std::move(code));
  file.headers.emplace_back("X-Error-Message", message);
  return std::make_shared<const HttpTestFile>(std::move(file));
}

std::string_view PathOf(std::string_view target) {
  return target.substr(0, target.find('?'));
}

std::string_view QueryOf(std::string_view target) {
  size_t question = target.find('?');
  return question == std::string_view::npos ? "" : target.substr(question + 1);
}

bool HasBlobsTrue(std::string_view target) {
  for (absl::string_view pair : absl::StrSplit(AsAbsl(QueryOf(target)), '&')) {
    if (pair == "blobs=true" || pair == "blobs=True" || pair == "blobs=1") {
      return true;
    }
  }
  return false;
}

}  // namespace

FakeHfFile MakeHubFile(std::string path, std::string contents) {
  static const std::set<std::string, std::less<>> kLfsSuffixes = {
      ".7z",   ".arrow",     ".bin",   ".bz2",     ".ckpt", ".ftz",
      ".gguf", ".gz",        ".h5",    ".jpg",     ".jpeg", ".joblib",
      ".lfs",  ".mlmodel",   ".model", ".msgpack", ".npy",  ".npz",
      ".onnx", ".onnx_data", ".ot",    ".parquet", ".pb",   ".pickle",
      ".pkl",  ".png",       ".pt",    ".pth",     ".rar",  ".safetensors",
      ".tar",  ".tflite",    ".tgz",   ".wasm",    ".xz",   ".zip",
      ".zst"};
  const size_t slash = path.rfind('/');
  const size_t dot = path.rfind('.');
  const bool lfs = dot != std::string::npos &&
                   (slash == std::string::npos || dot > slash) &&
                   kLfsSuffixes.count(std::string_view(path).substr(dot)) > 0;
  return {.path = std::move(path), .contents = std::move(contents), .lfs = lfs};
}

std::vector<FakeHfFile> MakeHubFiles(const std::vector<FixtureFile>& files,
                                     std::string_view prefix) {
  std::vector<FakeHfFile> out;
  for (const FixtureFile& file : files) {
    out.push_back(MakeHubFile(
        prefix.empty() ? file.path
                       : absl::StrCat(AsAbsl(prefix), "/", file.path),
        file.contents));
  }
  return out;
}

const FakeHfFile* FindHubFile(const FakeHfRepo& repo, std::string_view path,
                              std::string_view branch) {
  const std::vector<FakeHfFile>* files = &repo.files;
  if (branch != "main") {
    auto found = repo.branches.find(std::string(branch));
    if (found == repo.branches.end()) return nullptr;
    files = &found->second;
  }
  for (const FakeHfFile& file : *files) {
    if (file.path == path) return &file;
  }
  return nullptr;
}

FakeHfHub::FakeHfHub(Options options, std::unique_ptr<HttpTestServer> hub,
                     std::unique_ptr<HttpTestServer> cdn)
    : options_(options), hub_(std::move(hub)), cdn_(std::move(cdn)) {}

absl::StatusOr<std::unique_ptr<FakeHfHub>> FakeHfHub::Start(Options options) {
  absl::StatusOr<std::unique_ptr<HttpTestServer>> hub = HttpTestServer::Start(
      HttpTestServer::Options{.bind_address = "127.0.0.1"});
  if (!hub.ok()) return hub.status();
  absl::StatusOr<std::unique_ptr<HttpTestServer>> cdn = HttpTestServer::Start(
      HttpTestServer::Options{.bind_address = "127.0.0.2"});
  if (!cdn.ok()) return cdn.status();
  std::unique_ptr<FakeHfHub> fake(
      new FakeHfHub(options, *std::move(hub), *std::move(cdn)));
  FakeHfHub* self = fake.get();
  fake->hub_->SetHandler([self](const HttpRequestRecord& request) {
    return self->Answer(request);
  });
  return fake;
}

absl::StatusOr<std::unique_ptr<FakeHfHub>> FakeHfHub::Start() {
  return Start(Options());
}

void FakeHfHub::AddRepo(FakeHfRepo spec) {
  const std::vector<std::string> parts = absl::StrSplit(spec.id, '/');
  if (parts.size() != 2 || parts[0].empty() || parts[1].empty()) {
    Die("repo id " + spec.id + " is not owner/name");
  }
  if (spec.branches.count("main") > 0) {
    Die("repo " + spec.id + ": main's files go in `files`, not `branches`");
  }
  auto repo = std::make_shared<Repo>();
  auto add_branch = [&](const std::string& name,
                        const std::vector<FakeHfFile>& files) {
    if (IsCommitId(name)) Die("branch " + name + " looks like a commit id");
    std::string identity =
        absl::StrCat("fixture commit\n", spec.id, "\n", name);
    for (const FakeHfFile& file : files) {
      absl::StrAppend(&identity, "\n", file.path, " ", BlobIdOf(file));
      if (file.lfs) {
        cdn_->SetFile(
            CdnPath(file.contents),
            {.body = file.contents,
             .etag = absl::StrCat("\"", Sha256Hex(file.contents), "\"")});
      }
    }
    repo->branches[name] =
        Branch{.commit = Digest(EVP_sha1(), identity), .files = files};
  };
  add_branch("main", spec.files);
  for (const auto& [name, files] : spec.branches) add_branch(name, files);
  repo->spec = std::move(spec);
  MutexLock lock(&mu_);
  repos_[repo->spec.id] = std::move(repo);
}

void FakeHfHub::RemoveRepo(std::string_view repo_id) {
  MutexLock lock(&mu_);
  repos_.erase(std::string(repo_id));
}

std::string FakeHfHub::endpoint() const { return hub_->Url(""); }

std::string FakeHfHub::CommitOf(std::string_view repo_id,
                                std::string_view branch) const {
  MutexLock lock(&mu_);
  auto repo = repos_.find(std::string(repo_id));
  if (repo == repos_.end()) Die(absl::StrCat("no repo ", AsAbsl(repo_id)));
  auto found = repo->second->branches.find(std::string(branch));
  if (found == repo->second->branches.end()) {
    Die(absl::StrCat("repo ", AsAbsl(repo_id), " has no branch ",
                     AsAbsl(branch)));
  }
  return found->second.commit;
}

std::string FakeHfHub::ModelInfoPath(std::string_view repo_id,
                                     std::optional<std::string_view> revision) {
  return std::string(PathOf(
      model::ModelInfoUrl(model::HfEndpoint{.base = ""}, repo_id, revision)));
}

std::string FakeHfHub::ResolvePath(std::string_view repo_id,
                                   std::string_view revision,
                                   std::string_view file_path) {
  return model::ResolveUrl(model::HfEndpoint{.base = ""}, repo_id, revision,
                           file_path);
}

std::string FakeHfHub::CdnPath(std::string_view contents) {
  return absl::StrCat("/repos/", Sha256Hex(contents));
}

int FakeHfHub::RequestCount(std::string_view path) const {
  return static_cast<int>(hub_->RequestsFor(path).size());
}

int FakeHfHub::CdnRequestCount(std::string_view path) const {
  return static_cast<int>(cdn_->RequestsFor(path).size());
}

std::map<std::string, int> FakeHfHub::RequestCounts() const {
  std::map<std::string, int> counts;
  for (const HttpRequestRecord& record : hub_->Requests()) {
    ++counts[std::string(PathOf(record.target))];
  }
  return counts;
}

std::vector<std::string> FakeHfHub::TokensSeen() const {
  std::vector<std::string> tokens;
  for (const HttpRequestRecord& record : hub_->Requests()) {
    if (record.headers.count("authorization") > 0) {
      tokens.push_back(TokenOf(record));
    }
  }
  return tokens;
}

std::vector<std::string> FakeHfHub::TokensFor(std::string_view path) const {
  std::vector<std::string> tokens;
  for (const HttpRequestRecord& record : hub_->RequestsFor(path)) {
    tokens.push_back(TokenOf(record));
  }
  return tokens;
}

bool FakeHfHub::CdnSawAuthorization() const {
  for (const HttpRequestRecord& record : cdn_->Requests()) {
    if (record.headers.count("authorization") > 0) return true;
  }
  return false;
}

std::shared_ptr<const HttpTestFile> FakeHfHub::Answer(
    const HttpRequestRecord& request) {
  std::vector<std::string> segments;
  for (absl::string_view raw :
       absl::StrSplit(AsAbsl(PathOf(request.target).substr(1)), '/')) {
    segments.push_back(PercentDecode(AsStd(raw)));
  }
  // /api/models/{owner}/{name}[/revision/{rev}]
  const bool info = segments.size() >= 4 && segments[0] == "api" &&
                    segments[1] == "models" &&
                    (segments.size() == 4 ||
                     (segments.size() == 6 && segments[4] == "revision"));
  // /{owner}/{name}/resolve/{rev}/{path...}
  const bool resolve =
      !info && segments.size() >= 5 && segments[2] == "resolve";
  if (!info && !resolve) return nullptr;
  const std::string repo_id = info
                                  ? absl::StrCat(segments[2], "/", segments[3])
                                  : absl::StrCat(segments[0], "/", segments[1]);
  std::shared_ptr<const Repo> repo;
  {
    MutexLock lock(&mu_);
    auto found = repos_.find(repo_id);
    if (found != repos_.end()) repo = found->second;
  }
  if (repo == nullptr) {
    const int status =
        options_.unknown_repo_is_401 && TokenOf(request).empty() ? 401 : 404;
    return HubError(status, "RepoNotFound", "Repository not found");
  }
  if (auto refusal = Refusal(request, *repo, info)) return refusal;

  std::string revision = "main";
  if (info && segments.size() == 6) revision = segments[5];
  if (resolve) revision = segments[3];
  const Branch* branch = nullptr;
  if (auto found = repo->branches.find(revision);
      found != repo->branches.end()) {
    branch = &found->second;
  } else {
    for (const auto& [name, candidate] : repo->branches) {
      if (candidate.commit == revision) branch = &candidate;
    }
  }
  if (branch == nullptr) {
    return HubError(404, "RevisionNotFound",
                    absl::StrCat("Invalid rev id: ", revision));
  }
  if (info) return AnswerModelInfo(request, *repo, *branch);
  std::vector<std::string> path_segments(segments.begin() + 4, segments.end());
  return AnswerResolve(*branch, absl::StrJoin(path_segments, "/"));
}

std::shared_ptr<const HttpTestFile> FakeHfHub::Refusal(
    const HttpRequestRecord& request, const Repo& repo, bool for_info) const {
  const FakeHfRepo& spec = repo.spec;
  if (spec.gated.empty() || (for_info && spec.info_is_public)) return nullptr;
  const std::string token = TokenOf(request);
  if (token.empty()) {
    return HubError(
        401, "GatedRepo",
        absl::StrCat("Access to model ", spec.id,
                     " is restricted. You must have access to it and be "
                     "authenticated to access it. Please log in."));
  }
  if (std::find(spec.tokens.begin(), spec.tokens.end(), token) ==
      spec.tokens.end()) {
    return HubError(
        403, "GatedRepo",
        absl::StrCat("Access to model ", spec.id,
                     " is restricted and you are not in the authorized list. "
                     "Visit https://huggingface.co/",
                     spec.id, " to ask for access."));
  }
  return nullptr;
}

std::shared_ptr<const HttpTestFile> FakeHfHub::AnswerModelInfo(
    const HttpRequestRecord& request, const Repo& repo,
    const Branch& branch) const {
  const FakeHfRepo& spec = repo.spec;
  // Without ?blobs=true the real hub lists names only.
  const bool blobs = HasBlobsTrue(request.target);
  json siblings = json::array();
  uint64_t used_storage = 0;
  for (const FakeHfFile& file : branch.files) {
    json sibling = {{"rfilename", file.path}};
    if (blobs) {
      sibling["blobId"] = BlobIdOf(file);
      sibling["size"] = file.contents.size();
      if (file.lfs) {
        sibling["lfs"] = {{"sha256", Sha256Hex(file.contents)},
                          {"size", file.contents.size()},
                          {"pointerSize", LfsPointer(file.contents).size()}};
      }
    }
    used_storage += file.contents.size();
    siblings.push_back(std::move(sibling));
  }
  json info = {
      {"_id", GitBlobId(spec.id).substr(0, 24)},
      {"id", spec.id},
      {"modelId", spec.id},
      {"author", spec.id.substr(0, spec.id.find('/'))},
      {"sha", branch.commit},
      {"lastModified", spec.last_modified},
      {"createdAt", "2024-01-01T00:00:00.000Z"},
      {"private", false},
      {"disabled", false},
      {"downloads", 0},
      {"likes", 0},
      {"tags", spec.tags},
      {"siblings", std::move(siblings)},
      {"usedStorage", used_storage},
  };
  if (spec.gated.empty()) {
    info["gated"] = false;
  } else {
    info["gated"] = spec.gated;
  }
  return std::make_shared<const HttpTestFile>(
      HttpTestFile{.body = info.dump(),
                   .content_type = "application/json; charset=utf-8",
                   .headers = {{"X-Repo-Commit", branch.commit}}});
}

std::shared_ptr<const HttpTestFile> FakeHfHub::AnswerResolve(
    const Branch& branch, const std::string& path) const {
  auto file = std::find_if(
      branch.files.begin(), branch.files.end(),
      [&](const FakeHfFile& candidate) { return candidate.path == path; });
  if (file == branch.files.end()) {
    return HubError(404, "EntryNotFound", "Entry not found");
  }
  const std::string blob_etag = absl::StrCat("\"", BlobIdOf(*file), "\"");
  if (!file->lfs) {
    return std::make_shared<const HttpTestFile>(
        HttpTestFile{.body = file->contents,
                     .etag = blob_etag,
                     .headers = {{"X-Repo-Commit", branch.commit}}});
  }
  const std::string sha256 = Sha256Hex(file->contents);
  // A signed-looking query, as the real CDN URLs carry one; the CDN serves
  // by path and ignores it.
  const std::string location = absl::StrCat(
      cdn_->Url(CdnPath(file->contents)),
      "?X-Amz-Expires=3600&X-Amz-Signature=fixture", sha256.substr(0, 8));
  return std::make_shared<const HttpTestFile>(HttpTestFile{
      .body = absl::StrCat("Found. Redirecting to ", location),
      .etag = blob_etag,
      .content_type = "text/plain; charset=utf-8",
      .status = 302,
      .headers = {{"Location", location},
                  {"X-Repo-Commit", branch.commit},
                  {"X-Linked-Etag", absl::StrCat("\"", sha256, "\"")},
                  {"X-Linked-Size", std::to_string(file->contents.size())}}});
}

// ---------------------------------------------------------------------------
// Canned repos.

FakeHfRepo GatedVaeRepo(std::string token) {
  FakeHfRepo repo{.id = "fixture/gated-vae"};
  repo.files = MakeHubFiles(VaeFolderFiles({.sdxl = true}));
  repo.files.push_back(MakeHubFile(
      "README.md", "---\nextra_gated_prompt: agree to the terms\n---\n"));
  repo.tags = {"diffusers", "safetensors", "license:other", "region:us"};
  repo.gated = "manual";
  repo.tokens = {std::move(token)};
  return repo;
}

FakeHfRepo VaeWithFp16BranchRepo() {
  FakeHfRepo repo{.id = "fixture/sd-vae"};
  repo.files = MakeHubFiles(VaeFolderFiles({}));
  repo.files.push_back(MakeHubFile("README.md", "# sd-1 VAE fixture\n"));
  repo.branches["fp16"] = MakeHubFiles(VaeFolderFiles({.fp16_weights = true}));
  repo.tags = {"diffusers", "safetensors", "stable-diffusion", "license:mit",
               "region:us"};
  return repo;
}

FakeHfRepo SdxlDiffusersRepo() {
  FakeHfRepo repo{.id = "fixture/sdxl-base"};
  repo.files = MakeHubFiles(
      DiffusersSdxlFiles({.fp16 = true, .onnx = true, .repo_extras = true}));
  repo.tags = {"diffusers",
               "onnx",
               "safetensors",
               "text-to-image",
               "stable-diffusion",
               "license:openrail++",
               "diffusers:StableDiffusionXLPipeline",
               "region:us"};
  return repo;
}

FakeHfRepo EmbeddingsRepo() {
  FakeHfRepo repo{.id = "fixture/embeddings"};
  repo.files = {
      MakeHubFile("sd1/easynegative.safetensors", EmbeddingSd1Bytes()),
      MakeHubFile("sdxl/negative_xl.safetensors", EmbeddingSdxlBytes()),
      MakeHubFile("concept/learned_embeds.bin", LearnedEmbedsBinBytes()),
      MakeHubFile("concept/token_identifier.txt", "<fixture-concept>"),
      MakeHubFile("README.md", "# textual inversion fixtures\n"),
  };
  repo.tags = {"textual-inversion", "stable-diffusion", "license:mit",
               "region:us"};
  return repo;
}

FakeHfRepo SingleFileLoraRepo() {
  FakeHfRepo repo{.id = "fixture/detail-lora"};
  repo.files = {MakeHubFile("detail_tweaker.safetensors", LoraSd1Bytes()),
                MakeHubFile("README.md", "# detail tweaker LoRA fixture\n")};
  repo.tags = {"lora", "stable-diffusion", "text-to-image",
               "base_model:runwayml/stable-diffusion-v1-5", "region:us"};
  return repo;
}

FakeHfRepo HostileNameRepo() {
  FakeHfRepo repo{.id = "fixture/hostile"};
  repo.files = MakeHubFiles(VaeFolderFiles({}));
  repo.files.push_back(MakeHubFile("../../x", "escaped the models folder\n"));
  repo.tags = {"diffusers"};
  return repo;
}

void AddCannedRepos(FakeHfHub& hub, const std::string& token) {
  hub.AddRepo(GatedVaeRepo(token));
  hub.AddRepo(VaeWithFp16BranchRepo());
  hub.AddRepo(SdxlDiffusersRepo());
  hub.AddRepo(EmbeddingsRepo());
  hub.AddRepo(SingleFileLoraRepo());
  hub.AddRepo(HostileNameRepo());
}

}  // namespace mm::testing
