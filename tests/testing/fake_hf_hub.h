// A fake Hugging Face hub for installer tests: two loopback HTTP servers
// (tests/testing/http_test_server.h), the hub on 127.0.0.1 and its "CDN" on
// 127.0.0.2 (another host as far as a client can tell, so an Authorization
// header that follows a redirect there is a leaked token).
//
//   ASSERT_OK_AND_ASSIGN(auto hub, FakeHfHub::Start());
//   hub->AddRepo(SdxlDiffusersRepo());
//   ... run the installer with --hf-endpoint hub->endpoint() ...
//   EXPECT_EQ(hub->RequestCount(FakeHfHub::ModelInfoPath("fixture/sdxl-base")),
//             1);
//   EXPECT_FALSE(hub->CdnSawAuthorization());
//
// The hub answers, as the real one does (spec §6.1):
//   GET|HEAD /api/models/{owner}/{name}[/revision/{rev}]?blobs=true: the
//     model-info JSON — id, modelId, author, sha (the revision's commit),
//     lastModified, private, gated, tags, and siblings with rfilename,
//     size, blobId and, for LFS files, lfs {sha256, size, pointerSize} —
//     with the header X-Repo-Commit. Without blobs=true in the query the
//     siblings carry rfilename only, as on the real hub.
//   GET|HEAD /{owner}/{name}/resolve/{rev}/{path}: a regular file's bytes
//     (200, Range honoured) with X-Repo-Commit and ETag "<blob id>"; an LFS
//     file is a 302 to http://127.0.0.2:PORT/repos/<sha256>?<signature>
//     with X-Repo-Commit, X-Linked-Etag "<sha256>", X-Linked-Size and ETag.
//     The CDN serves the bytes (Range, If-Range with ETag "<sha256>").
//   {rev} is a branch name ("main", or any branch the repo has) or a
//   commit id; the owner, name, revision and path are percent-decoded
//   first ("refs%2Fpr%2F1" is one revision).
// Errors carry the hub's X-Error-Code and X-Error-Message headers and a
// body {"error": "<message>"}:
//   unknown repo       404 RepoNotFound "Repository not found" (401 without
//                      a token when Options::unknown_repo_is_401 is set —
//                      what the real hub answers, since it cannot say
//                      whether a private repo exists)
//   unknown revision   404 RevisionNotFound "Invalid rev id: <rev>"
//   unknown file       404 EntryNotFound "Entry not found"
//   gated, no token    401 GatedRepo "Access to model <id> is restricted.
//                      You must have access to it and be authenticated to
//                      access it. Please log in."
//   gated, token not among the repo's `tokens`
//                      403 GatedRepo "Access to model <id> is restricted
//                      and you are not in the authorized list. Visit
//                      https://huggingface.co/<id> to ask for access."
// A gated repo refuses model-info and files alike (spec §6.1), unless
// `info_is_public`, which mimics the real hub: model-info for anyone, the
// files only with access. Anything else gets a plain 404.
//
// Faults: hub_server() and cdn_server() are the HttpTestServers; their
// SetBehavior applies on top, e.g. a 503 on ModelInfoPath(repo), or a slow
// download to kill a process in the middle of:
//   hub->cdn_server().SetBehavior(FakeHfHub::CdnPath(contents),
//                                 {.bytes_per_second = 64 * 1024});
// (make such a file large enough: any contents will do, e.g.
// SafetensorsBytes of a big zero tensor).
//
// Thread-safety: every method may be called from any thread while the
// servers run; a request sees the repos as they were when it arrived.
#ifndef MM_TESTS_TESTING_FAKE_HF_HUB_H_
#define MM_TESTS_TESTING_FAKE_HF_HUB_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "common/mutex.h"
#include "tests/testing/http_test_server.h"
#include "tests/testing/install_fixtures.h"

namespace mm::testing {

// One file of a repo revision.
struct FakeHfFile {
  std::string path;  // rfilename, '/' separated; sent as given
  std::string contents;
  // Stored in LFS: model-info gives lfs {sha256, size}, and the resolve URL
  // redirects to the CDN.
  bool lfs = false;
};

// A file stored in LFS when the hub's default .gitattributes would put it
// there (weights, archives, images: .safetensors .bin .ckpt .pt .pth .onnx
// .onnx_data .gguf .msgpack .h5 .pb .png .jpg .zip ...).
FakeHfFile MakeHubFile(std::string path, std::string contents);
// MakeHubFile for each file of a fixture folder, under `prefix` ("" or a
// folder name without a trailing '/').
std::vector<FakeHfFile> MakeHubFiles(const std::vector<FixtureFile>& files,
                                     std::string_view prefix = "");

struct FakeHfRepo {
  std::string id;  // "owner/name"
  // The files of the main branch.
  std::vector<FakeHfFile> files;
  // Other branches by name (e.g. "fp16"; not "main"), each with its whole
  // file list.
  std::map<std::string, std::vector<FakeHfFile>> branches;
  std::vector<std::string> tags;
  // "" (not gated), "auto" or "manual": needs a token in `tokens`.
  std::string gated;
  std::vector<std::string> tokens;
  // See the header comment: model-info of a gated repo without a token.
  bool info_is_public = false;
  std::string last_modified = "2024-05-01T12:00:00.000Z";
};

// The file at `path` of `branch` of `repo`, or nullptr: what a test
// compares an installed file with.
const FakeHfFile* FindHubFile(const FakeHfRepo& repo, std::string_view path,
                              std::string_view branch = "main");

class FakeHfHub {
 public:
  struct Options {
    // Unknown repos answer 401 (not 404) to requests without a token.
    bool unknown_repo_is_401 = false;
  };

  // Starts the hub on 127.0.0.1 and the CDN on 127.0.0.2, both on
  // ephemeral ports. INTERNAL when a socket call fails.
  static absl::StatusOr<std::unique_ptr<FakeHfHub>> Start(Options options);
  static absl::StatusOr<std::unique_ptr<FakeHfHub>> Start();

  FakeHfHub(const FakeHfHub&) = delete;
  FakeHfHub& operator=(const FakeHfHub&) = delete;

  // Adds `repo`, replacing one with the same id; its LFS files are put on
  // the CDN. Aborts on a repo id without exactly one '/', a branch named
  // "main" or like a commit id (test bugs).
  void AddRepo(FakeHfRepo repo);
  // The CDN keeps serving the removed repo's LFS objects (as a real CDN
  // would for a while).
  void RemoveRepo(std::string_view repo_id);

  // The base URL for --hf-endpoint / HF_ENDPOINT: "http://127.0.0.1:PORT".
  std::string endpoint() const;

  // The commit id (40 hex digits) of a branch of a repo; derived from the
  // repo id, branch and files, so it changes when they do. Aborts for an
  // unknown repo or branch.
  std::string CommitOf(std::string_view repo_id,
                       std::string_view branch = "main") const;

  // Request paths as the hub records them (no query; encoded like
  // model/huggingface.h's ModelInfoUrl and ResolveUrl).
  static std::string ModelInfoPath(
      std::string_view repo_id,
      std::optional<std::string_view> revision = std::nullopt);
  static std::string ResolvePath(std::string_view repo_id,
                                 std::string_view revision,
                                 std::string_view file_path);
  // The CDN path that serves `contents` (an LFS object, by its sha256).
  static std::string CdnPath(std::string_view contents);

  // Requests that reached the hub (or the CDN) for one path so far.
  int RequestCount(std::string_view path) const;
  int CdnRequestCount(std::string_view path) const;
  // Requests per path (no query) at the hub.
  std::map<std::string, int> RequestCounts() const;
  // The bearer tokens that reached the hub, one entry per request that
  // carried an Authorization header, in arrival order.
  std::vector<std::string> TokensSeen() const;
  // The token each request for `path` carried ("" for none), in order.
  std::vector<std::string> TokensFor(std::string_view path) const;
  // Whether any request to the CDN carried an Authorization header.
  bool CdnSawAuthorization() const;

  HttpTestServer& hub_server() { return *hub_; }
  HttpTestServer& cdn_server() { return *cdn_; }

 private:
  struct Branch {
    std::string commit;
    std::vector<FakeHfFile> files;
  };
  struct Repo {
    FakeHfRepo spec;
    std::map<std::string, Branch> branches;  // "main" included
  };

  FakeHfHub(Options options, std::unique_ptr<HttpTestServer> hub,
            std::unique_ptr<HttpTestServer> cdn);

  // The HttpTestServer handler of the hub.
  std::shared_ptr<const HttpTestFile> Answer(const HttpRequestRecord& request);
  std::shared_ptr<const HttpTestFile> AnswerModelInfo(
      const HttpRequestRecord& request, const Repo& repo,
      const Branch& branch) const;
  std::shared_ptr<const HttpTestFile> AnswerResolve(
      const Branch& branch, const std::string& path) const;
  // The access check: nullptr when the request may see `repo`'s files (or
  // its model-info, with `for_info`), else the error answer.
  std::shared_ptr<const HttpTestFile> Refusal(const HttpRequestRecord& request,
                                              const Repo& repo,
                                              bool for_info) const;

  const Options options_;
  mutable Mutex mu_;
  std::map<std::string, std::shared_ptr<const Repo>> repos_
      ABSL_GUARDED_BY(mu_);
  // Declared after the repos, so the servers stop (joining every handler
  // call, which reads repos_) before the repos are destroyed.
  std::unique_ptr<HttpTestServer> hub_;
  std::unique_ptr<HttpTestServer> cdn_;
};

// Canned repos (owner "fixture"), every weight file a small valid model
// from install_fixtures.h, LFS by MakeHubFile's rule.

// "fixture/gated-vae": gated ("manual"), an sdxl VAE folder (config.json +
// diffusion_pytorch_model.safetensors, installable as a whole repo) and a
// README; accepts `token` only.
FakeHfRepo GatedVaeRepo(std::string token);
// "fixture/sd-vae": an sd-1 VAE folder (config.json + F32
// diffusion_pytorch_model.safetensors) on main, and a branch "fp16" with
// the same names and F16 weights (different bytes). No file carries a
// ".fp16" label, as on repos that publish fp16 as a branch.
FakeHfRepo VaeWithFp16BranchRepo();
// "fixture/sdxl-base": DiffusersSdxlFiles with fp16, onnx and the repo
// extras (the top-level single-file checkpoint sd_xl_base_1.0.safetensors,
// README.md, 01.png, .gitattributes); tags as the real repo's.
FakeHfRepo SdxlDiffusersRepo();
// "fixture/embeddings": sd1/easynegative.safetensors (sd-1),
// sdxl/negative_xl.safetensors (sdxl), concept/learned_embeds.bin with
// concept/token_identifier.txt (an embedding folder), README.md.
FakeHfRepo EmbeddingsRepo();
// "fixture/detail-lora": one LoRA file, detail_tweaker.safetensors, and
// README.md.
FakeHfRepo SingleFileLoraRepo();
// "fixture/hostile": an sd-1 VAE folder and a sibling named "../../x"
// (which model/huggingface's parser must refuse).
FakeHfRepo HostileNameRepo();

// Adds every canned repo above to `hub` (the gated one accepting `token`).
void AddCannedRepos(FakeHfHub& hub, const std::string& token);

}  // namespace mm::testing

#endif  // MM_TESTS_TESTING_FAKE_HF_HUB_H_
