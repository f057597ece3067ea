// Model source strings: what a user types to name a model to install (spec
// §6.3). A source is an existing local path, a Hugging Face repo id with an
// optional variant and subfolder(s) or single file, or an http(s) URL.
//
// Pure functions over values; thread-safe. No network and no filesystem
// access beyond the `path_exists` probe handed to ParseModelSource.
//
//   ASSIGN_OR_RETURN(ModelSource source,
//                    ParseModelSource("stabilityai/sdxl-turbo:fp16:vae"));
//   // std::get<HfRepoSource>(source).variant == "fp16"
//   std::string again = FormatModelSource(source);  // the same string
#ifndef MM_MODEL_SOURCE_H_
#define MM_MODEL_SOURCE_H_

#include <cstddef>
#include <functional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace mm::model {

// Longer source strings are refused: no real path, repo id or URL needs more,
// and the string ends up in database columns and log lines.
inline constexpr std::size_t kMaxModelSourceBytes = 4096;

// A file or folder on this machine, as the user wrote it (not made absolute:
// the installer decides what a relative path is relative to).
struct LocalSource {
  std::string path;

  bool operator==(const LocalSource&) const = default;
};

// A Hugging Face repo, or a part of one.
struct HfRepoSource {
  // "owner/name".
  std::string repo_id;
  // The repo variant: "" (default), "fp16", "fp32", "onnx", "openvino" or
  // "flax" (spec §1 repo_variant).
  std::string variant;
  // Folders of the repo to take ("text_encoder+tokenizer" gives two). Empty
  // for the whole repo or when `file_path` is set. Each is a relative path
  // with no empty, "." or ".." components and no trailing '/'.
  std::vector<std::string> subfolders;
  // Set instead of `subfolders` when the user named exactly one path that
  // ends in a weight suffix (".safetensors", ".bin", ...): just that file.
  std::string file_path;

  bool operator==(const HfRepoSource&) const = default;
};

// An http:// or https:// URL. A Hugging Face "/blob/" page URL has already
// been rewritten to the "/resolve/" download URL.
struct UrlSource {
  std::string url;

  bool operator==(const UrlSource&) const = default;
};

// One parsed source. Use std::holds_alternative / std::get / std::visit.
using ModelSource = std::variant<LocalSource, HfRepoSource, UrlSource>;

// std::filesystem::exists without exceptions (false on any error). The
// default `path_exists` of ParseModelSource.
bool LocalPathExists(std::string_view path);

// Parses `text` trying, in order (spec §6.3):
//   1. an existing local path (`path_exists(text)`) → LocalSource;
//   2. a repo id `owner/name[:variant[:subfolder]]` (the spec's regex
//      `^([^/:]+/[^/:]+)(?::(|fp16|fp32|onnx|openvino|flax)?(?::/?([^:]+))?)?$`,
//      one leading '/' of the subfolder dropped, '+' joining several
//      subfolders) → HfRepoSource;
//   3. an http(s) URL → UrlSource, except that a Hugging Face page URL
//      `https://huggingface.co/owner/name` → HfRepoSource, and a Hugging Face
//      `/blob/` file URL is rewritten to `/resolve/`.
// Errors (all INVALID_ARGUMENT, naming the text): empty, longer than
// kMaxModelSourceBytes, control characters or NUL, invalid UTF-8, a repo id
// whose owner or name is "." or "..", a subfolder with an empty, "." or ".."
// component or a backslash, a URL without a host or with whitespace, and
// anything else ("unsupported model source '<text>'").
absl::StatusOr<ModelSource> ParseModelSource(
    std::string_view text,
    const std::function<bool(std::string_view)>& path_exists = LocalPathExists);

// The string a user would type for `source`; ParseModelSource of it gives
// `source` back (for a LocalSource, as long as the path still exists):
// "owner/name", "owner/name:fp16", "owner/name:fp16:vae",
// "owner/name::text_encoder+tokenizer", "owner/name::unet/x.safetensors".
std::string FormatModelSource(const ModelSource& source);

// The record's source_type wire value: "path", "url" or "hf_repo_id".
std::string_view SourceTypeName(const ModelSource& source);

// True when `name` ends in a weight-file suffix of spec §6.2 step 1
// (.safetensors .bin .onnx .xml .pth .pt .ckpt .msgpack).
bool HasWeightSuffix(std::string_view name);

// True for "", "fp16", "fp32", "onnx", "openvino" and "flax".
bool IsRepoVariant(std::string_view variant);

}  // namespace mm::model

#endif  // MM_MODEL_SOURCE_H_
