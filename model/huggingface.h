// Hugging Face hub knowledge without a network client (spec §6.1, §6.2):
// building the model-info and file URLs, parsing the model-info JSON,
// choosing which files of a repo to fetch for a variant and subfolder(s), and
// where each fetched file lands under the download folder. The downloader
// does the HTTP; this file decides what to ask for and checks what came back.
//
// Pure functions over values; thread-safe (HfEndpointFromEnvironment reads
// the environment, which is only safe while nobody calls setenv).
//
//   HfEndpoint hub = HfEndpointFromEnvironment();
//   std::string url = ModelInfoUrl(hub, "stabilityai/sdxl-turbo");
//   // ... the downloader GETs `url` into `body` ...
//   ASSIGN_OR_RETURN(HfModelInfo info, ParseHfModelInfo(body));
//   ASSIGN_OR_RETURN(std::vector<HfFile> files,
//                    SelectHfFiles(info.files, "fp16", {}));
//   for (const HfFile& f : files) {
//     Fetch(ResolveUrl(hub, info.id, info.sha, f.path),
//           dest / HfLocalPath(info.id, {}, f.path));
//   }
#ifndef MM_MODEL_HUGGINGFACE_H_
#define MM_MODEL_HUGGINGFACE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/source.h"

namespace mm::model {

inline constexpr std::string_view kHfDefaultEndpoint = "https://huggingface.co";

// Limits on a model-info response. Real responses are well below each; a
// response above one is broken or hostile, and is refused (DATA_LOSS).
inline constexpr std::size_t kMaxHfModelInfoBytes = 64u << 20;
inline constexpr std::size_t kMaxHfModelInfoDepth = 100;
inline constexpr std::size_t kMaxHfSiblings = 200'000;
inline constexpr std::size_t kMaxHfPathBytes = 1024;
// 16 TiB: far above any single file the hub stores.
inline constexpr uint64_t kMaxHfFileBytes = uint64_t{1} << 44;

// One file ("sibling") of a repo.
struct HfFile {
  // The repo-relative path ("unet/config.json"), the hub's `rfilename`.
  // ParseHfModelInfo guarantees it is a safe relative path: no leading '/',
  // no empty, "." or ".." component, no backslash or control character.
  std::string path;
  // Bytes, when the hub said (`size`, or `lfs.size`).
  std::optional<uint64_t> size;
  // Lowercase hex SHA-256 of the content; the hub gives it for LFS files.
  std::optional<std::string> sha256;
  // The git blob id (lowercase hex).
  std::optional<std::string> blob_id;

  bool operator==(const HfFile&) const = default;
};

// The fields of `GET /api/models/{repo_id}?blobs=true` the manager uses.
struct HfModelInfo {
  std::string id;             // "owner/name"
  std::string author;         // "" when absent
  std::string sha;            // commit of the revision; "" when absent
  std::string last_modified;  // as sent, e.g. "2023-11-28T15:08:52.000Z"
  std::vector<std::string> tags;
  bool private_repo = false;
  // "" when not gated (false or absent); otherwise the hub's value: "auto",
  // "manual", or "true" when it sent a bare boolean.
  std::string gated;
  std::vector<HfFile> files;
  // The response text exactly as received: stored in the record's
  // source_api_response.
  std::string raw_json;
};

// Parses and checks a model-info response. Untrusted input: anything that is
// not the documented shape is refused as a whole with DATA_LOSS, naming the
// field and value — not valid JSON, nesting or size beyond the limits above,
// a missing `id` or `siblings`, a field of the wrong type, a negative or
// absurd size, a malformed sha256/blob id, `size` and `lfs.size` that
// disagree, a duplicate path, and any unsafe `rfilename` (absolute, "..",
// backslash, control character, empty component). Refusing the whole
// response rather than dropping a bad entry is deliberate: a hub that sends
// a path-traversal name is compromised or broken, and installing the
// remaining files of such a repo would give a silently incomplete model.
// JSON null counts as absent; unknown fields are ignored.
absl::StatusOr<HfModelInfo> ParseHfModelInfo(std::string_view json_text);

// Where the hub is. `base` has no trailing '/'.
struct HfEndpoint {
  std::string base = std::string(kHfDefaultEndpoint);
};

// The endpoint named by the HF_ENDPOINT environment variable (trailing '/'
// stripped), or the default when it is unset or empty. A value that is not
// an http(s) URL is ignored with a warning in the log.
HfEndpoint HfEndpointFromEnvironment();

// `{base}/api/models/{repo_id}?blobs=true`, or with a revision
// `{base}/api/models/{repo_id}/revision/{revision}?blobs=true`. The owner
// and name are percent-encoded each; the revision is encoded as one segment
// ("refs/pr/1" → "refs%2Fpr%2F1"), as the hub expects.
std::string ModelInfoUrl(
    const HfEndpoint& endpoint, std::string_view repo_id,
    std::optional<std::string_view> revision = std::nullopt);

// `{base}/{repo_id}/resolve/{revision}/{rfilename}`: each component of the
// repo id and of the file path percent-encoded, the '/' between them kept;
// the revision encoded as one segment. An empty revision means "main".
std::string ResolveUrl(const HfEndpoint& endpoint, std::string_view repo_id,
                       std::string_view revision, std::string_view rfilename);

// RFC 3986 percent-encoding: everything but A-Z a-z 0-9 - . _ ~ becomes
// %XX (uppercase hex); '/' is kept when `keep_slash`.
std::string PercentEncode(std::string_view text, bool keep_slash);

// Chooses the files to download from a repo's file list (spec §6.2):
//   1. exactly one subfolder ending in a weight suffix: that one file
//      (NOT_FOUND when the repo has no such path);
//   2. candidates: .json .txt .jinja; learned_embeds.bin, ip_adapter.bin,
//      lora_weights.safetensors, weights.pb, onnx_data, spiece.model; or a
//      file name matching `model.*\.(safetensors|bin|onnx|xml|pth|pt|ckpt|
//      msgpack)$`;
//   3. only paths inside one of `subfolders` (any depth);
//   4. the variant filter, with weight files competing per folder;
//   5. a config.json alone in its folder is dropped.
// Returns the chosen files sorted by path, or NOT_FOUND saying why nothing
// is left ("no downloadable files for variant 'onnx'", "... in subfolder
// 'x'"). INVALID_ARGUMENT for a variant outside "", fp16, fp32, onnx,
// openvino, flax.
//
// Where the spec's reference behaviour depends on listing order or
// mis-handles shards, this picks the evident intent (documented in
// docs/sources.md): `.bin` files are dropped from any folder that has a
// `.safetensors` wherever it is listed; ties go to the first path in sorted
// order; shard siblings must share prefix, shard count and extension; and
// the variant label of `x.fp16-00001-of-00002.safetensors` is ".fp16".
absl::StatusOr<std::vector<HfFile>> SelectHfFiles(
    const std::vector<HfFile>& files, std::string_view variant,
    const std::vector<std::string>& subfolders);

// SelectHfFiles with the variant and subfolders (or single file) of a
// parsed source.
absl::StatusOr<std::vector<HfFile>> SelectHfFiles(
    const std::vector<HfFile>& files, const HfRepoSource& source);

// Where a downloaded file lands, relative to the download folder (spec
// §6.2), with `name` the part of `repo_id` after '/':
//   no subfolder:              name/<rfilename>
//   one subfolder sf:          name_<last component of sf>/<rfilename
//                              relative to sf>
//   one file picked by path:   name_<file name>
//   several subfolders a+b/c:  name_a+c/<rfilename> (the whole repo path is
//                              kept, so two folders' config.json files do
//                              not collide, and the folder name differs per
//                              selection)
// Always a safe relative path: empty, "." and ".." components become "_",
// and backslashes and control characters become '_'.
std::string HfLocalPath(std::string_view repo_id,
                        const std::vector<std::string>& subfolders,
                        std::string_view rfilename);

// HfLocalPath for a parsed source (its file_path counts as the one
// subfolder naming a file).
std::string HfLocalPath(const HfRepoSource& source, std::string_view rfilename);

}  // namespace mm::model

#endif  // MM_MODEL_HUGGINGFACE_H_
