#include "model/huggingface.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace mm::model {
namespace {

using nlohmann::json;

bool EndsWith(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() &&
         text.substr(text.size() - suffix.size()) == suffix;
}

bool Contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

template <typename Table>
bool IsOneOf(std::string_view value, const Table& table) {
  return std::find(table.begin(), table.end(), value) != table.end();
}

// ---------------------------------------------------------------------------
// Model info parsing.

constexpr char kResponse[] = "Hugging Face model info response";

absl::Status Corrupt(std::string_view what) {
  return absl::DataLossError(absl::StrCat(
      kResponse, ": ", AsAbsl(what),
      "; the hub or HF_ENDPOINT mirror sent a malformed answer: check "
      "HF_ENDPOINT and retry later"));
}

// Deeper nesting than any real response: refused before the parser sees it,
// so a hostile "[[[[..." cannot exhaust the stack anywhere downstream.
std::optional<std::size_t> NestingTooDeepAt(std::string_view text) {
  std::size_t depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxHfModelInfoDepth) return i;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return std::nullopt;
}

// "a string", "an array", ... for messages.
std::string TypeOf(const json& value) {
  switch (value.type()) {
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::null:
      return "null";
    default:
      return "a number";
  }
}

bool IsHex(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
           (c >= 'A' && c <= 'F');
  });
}

std::string LowerHex(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Why `path` is not a safe repo-relative file path, or "" when it is.
std::string UnsafePathReason(std::string_view path) {
  if (path.empty()) return "it is empty";
  if (path.size() > kMaxHfPathBytes) {
    return absl::StrCat("it is ", path.size(), " bytes long (limit ",
                        kMaxHfPathBytes, ")");
  }
  for (char c : path) {
    auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7F) return "it contains a control character";
  }
  if (Contains(path, "\\")) return "it contains a backslash";
  if (path.front() == '/') return "it is absolute";
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view segment = path.substr(start, end - start);
    if (segment.empty()) return "it has an empty path component";
    if (segment == "." || segment == "..") {
      return "it has a '.' or '..' component";
    }
    start = end + 1;
  }
  return "";
}

// Reads an optional string field; null counts as absent.
absl::Status ReadString(const json& object, const char* key,
                        std::string_view where, std::string* out) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_string()) {
    return Corrupt(absl::StrCat(AsAbsl(where), "'", key, "' is ", TypeOf(*it),
                                ", expected a string"));
  }
  *out = it->get<std::string>();
  return absl::OkStatus();
}

absl::StatusOr<std::optional<uint64_t>> ReadSize(const json& object,
                                                 const char* key,
                                                 std::string_view where) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_unsigned()) {
    return Corrupt(absl::StrCat(AsAbsl(where), "'", key, "' is ", it->dump(),
                                ", expected a non-negative integer"));
  }
  uint64_t size = it->get<uint64_t>();
  if (size > kMaxHfFileBytes) {
    return Corrupt(absl::StrCat(AsAbsl(where), "'", key, "' is ", size,
                                " bytes, more than the ", kMaxHfFileBytes,
                                "-byte limit"));
  }
  return size;
}

absl::StatusOr<std::optional<std::string>> ReadHex(
    const json& object, const char* key, std::string_view where,
    std::initializer_list<std::size_t> lengths) {
  std::string value;
  bool present = object.contains(key) && !object.at(key).is_null();
  RETURN_IF_ERROR(ReadString(object, key, where, &value));
  if (!present) return std::nullopt;
  if (!IsHex(value) || std::find(lengths.begin(), lengths.end(),
                                 value.size()) == lengths.end()) {
    return Corrupt(absl::StrCat(AsAbsl(where), "'", key, "' is ",
                                QuotedForMessage(value),
                                ", expected a hex digest"));
  }
  return LowerHex(value);
}

absl::StatusOr<HfFile> ParseSibling(const json& sibling, std::size_t index) {
  std::string where = absl::StrCat("siblings[", index, "]");
  if (!sibling.is_object()) {
    return Corrupt(
        absl::StrCat(where, " is ", TypeOf(sibling), ", expected an object"));
  }
  where += ": ";
  HfFile file;
  auto name = sibling.find("rfilename");
  if (name == sibling.end() || !name->is_string()) {
    return Corrupt(absl::StrCat(where,
                                "'rfilename' is missing or not a "
                                "string"));
  }
  file.path = name->get<std::string>();
  if (std::string why = UnsafePathReason(file.path); !why.empty()) {
    return Corrupt(absl::StrCat(where, "refusing unsafe file name ",
                                QuotedForMessage(file.path), ": ", why));
  }
  where = absl::StrCat("siblings[", index, "] (", QuotedForMessage(file.path),
                       "): ");
  ASSIGN_OR_RETURN(file.size, ReadSize(sibling, "size", where));
  ASSIGN_OR_RETURN(file.blob_id, ReadHex(sibling, "blobId", where, {40, 64}));
  auto lfs = sibling.find("lfs");
  if (lfs != sibling.end() && !lfs->is_null()) {
    if (!lfs->is_object()) {
      return Corrupt(absl::StrCat(where, "'lfs' is ", TypeOf(*lfs),
                                  ", expected an object"));
    }
    std::string lfs_where = absl::StrCat(where, "lfs.");
    ASSIGN_OR_RETURN(file.sha256, ReadHex(*lfs, "sha256", lfs_where, {64}));
    ASSIGN_OR_RETURN(std::optional<uint64_t> lfs_size,
                     ReadSize(*lfs, "size", lfs_where));
    ASSIGN_OR_RETURN(std::optional<uint64_t> pointer_size,
                     ReadSize(*lfs, "pointerSize", lfs_where));
    (void)pointer_size;  // Only checked: the pointer file is never fetched.
    if (lfs_size.has_value()) {
      if (file.size.has_value() && *file.size != *lfs_size) {
        return Corrupt(absl::StrCat(where, "'size' ", *file.size,
                                    " disagrees with 'lfs.size' ", *lfs_size));
      }
      file.size = lfs_size;
    }
  }
  return file;
}

absl::Status ParseTopLevel(const json& root, HfModelInfo& info) {
  if (!root.is_object()) {
    return Corrupt(
        absl::StrCat("the JSON is ", TypeOf(root), ", expected an object"));
  }
  auto id = root.find("id");
  if (id == root.end() || !id->is_string() ||
      id->get_ref<const std::string&>().empty()) {
    return Corrupt("'id' is missing or not a non-empty string");
  }
  info.id = id->get<std::string>();
  if (info.id.size() > kMaxHfPathBytes || !UnsafePathReason(info.id).empty()) {
    return Corrupt(absl::StrCat("'id' ", QuotedForMessage(info.id),
                                " is not a repo id like owner/name"));
  }
  RETURN_IF_ERROR(ReadString(root, "author", "", &info.author));
  RETURN_IF_ERROR(ReadString(root, "sha", "", &info.sha));
  if (!info.sha.empty() && (!IsHex(info.sha) || info.sha.size() != 40)) {
    return Corrupt(absl::StrCat("'sha' ", QuotedForMessage(info.sha),
                                " is not a 40-digit hex commit id"));
  }
  info.sha = LowerHex(info.sha);
  RETURN_IF_ERROR(ReadString(root, "lastModified", "", &info.last_modified));

  if (auto tags = root.find("tags"); tags != root.end() && !tags->is_null()) {
    if (!tags->is_array()) {
      return Corrupt(absl::StrCat("'tags' is ", TypeOf(*tags),
                                  ", expected a list of strings"));
    }
    for (std::size_t i = 0; i < tags->size(); ++i) {
      const json& tag = (*tags)[i];
      if (!tag.is_string()) {
        return Corrupt(absl::StrCat("tags[", i, "] is ", TypeOf(tag),
                                    ", expected a string"));
      }
      info.tags.push_back(tag.get<std::string>());
    }
  }
  if (auto priv = root.find("private");
      priv != root.end() && !priv->is_null()) {
    if (!priv->is_boolean()) {
      return Corrupt(absl::StrCat("'private' is ", priv->dump(),
                                  ", expected true or false"));
    }
    info.private_repo = priv->get<bool>();
  }
  if (auto gated = root.find("gated");
      gated != root.end() && !gated->is_null()) {
    if (gated->is_boolean()) {
      info.gated = gated->get<bool>() ? "true" : "";
    } else if (gated->is_string() &&
               gated->get_ref<const std::string&>().size() <= 64) {
      info.gated = gated->get<std::string>();
      if (info.gated == "false") info.gated.clear();
    } else {
      return Corrupt(absl::StrCat("'gated' is ",
                                  QuotedForMessage(gated->dump()),
                                  ", expected a boolean or a short string"));
    }
  }

  auto siblings = root.find("siblings");
  if (siblings == root.end() || !siblings->is_array()) {
    return Corrupt(
        "'siblings' is missing or not a list (was the request made with "
        "?blobs=true to /api/models/...? use ModelInfoUrl)");
  }
  if (siblings->size() > kMaxHfSiblings) {
    return Corrupt(absl::StrCat("'siblings' lists ", siblings->size(),
                                " files, more than the limit of ",
                                kMaxHfSiblings));
  }
  std::set<std::string_view> seen;
  info.files.reserve(siblings->size());
  for (std::size_t i = 0; i < siblings->size(); ++i) {
    ASSIGN_OR_RETURN(HfFile file, ParseSibling((*siblings)[i], i));
    info.files.push_back(std::move(file));
  }
  for (const HfFile& file : info.files) {
    if (!seen.insert(file.path).second) {
      return Corrupt(absl::StrCat("the file ", QuotedForMessage(file.path),
                                  " is listed twice in 'siblings'"));
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// File selection.

// Python's PurePath.suffixes of a file name: "a.fp16.safetensors" →
// {".fp16", ".safetensors"}; leading dots belong to the stem.
std::vector<std::string_view> Suffixes(std::string_view name) {
  std::vector<std::string_view> out;
  if (name.empty() || name.back() == '.') return out;
  std::size_t start = name.find_first_not_of('.');
  if (start == std::string_view::npos) return out;
  std::size_t dot = name.find('.', start);
  while (dot != std::string_view::npos) {
    std::size_t next = name.find('.', dot + 1);
    out.push_back(name.substr(dot, next == std::string_view::npos
                                       ? std::string_view::npos
                                       : next - dot));
    dot = next;
  }
  return out;
}

// Python's PurePath.suffix: the last suffix, "" when none.
std::string_view Suffix(std::string_view name) {
  std::size_t dot = name.rfind('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 == name.size()) {
    return "";
  }
  return name.substr(dot);
}

std::string_view BaseName(std::string_view path) {
  std::size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

std::string_view DirName(std::string_view path) {
  std::size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? std::string_view()
                                         : path.substr(0, slash);
}

bool AllDigits(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return c >= '0' && c <= '9';
  });
}

// A shard name "<prefix>-<index>-of-<count><ext>" (ext a single ".\w+").
struct ShardName {
  std::string_view prefix;
  std::string_view count;
  std::string_view ext;
  bool operator==(const ShardName&) const = default;
};

std::optional<ShardName> ParseShard(std::string_view name) {
  std::size_t dot = name.rfind('.');
  if (dot == std::string_view::npos || dot + 1 == name.size()) {
    return std::nullopt;
  }
  std::string_view ext = name.substr(dot);
  for (char c : ext.substr(1)) {
    bool word = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                (c >= 'A' && c <= 'Z') || c == '_';
    if (!word) return std::nullopt;
  }
  std::string_view stem = name.substr(0, dot);
  std::size_t of = stem.rfind("-of-");
  if (of == std::string_view::npos) return std::nullopt;
  std::string_view count = stem.substr(of + 4);
  std::string_view head = stem.substr(0, of);
  std::size_t dash = head.rfind('-');
  if (dash == std::string_view::npos || !AllDigits(count) ||
      !AllDigits(head.substr(dash + 1))) {
    return std::nullopt;
  }
  return ShardName{head.substr(0, dash), count, ext};
}

// The variant label of a weight file name: the first of exactly two
// suffixes (".fp16" in "model.fp16.safetensors"). A shard tag is not part
// of the label: diffusers names fp16 shards
// "model.fp16-00001-of-00002.safetensors".
std::string_view VariantLabel(std::string_view name) {
  std::vector<std::string_view> suffixes = Suffixes(name);
  if (suffixes.size() != 2) return "";
  std::string_view label = suffixes[0];
  std::size_t of = label.rfind("-of-");
  if (of != std::string_view::npos && AllDigits(label.substr(of + 4))) {
    std::size_t dash = label.substr(0, of).rfind('-');
    if (dash != std::string_view::npos &&
        AllDigits(label.substr(dash + 1, of - dash - 1))) {
      label = label.substr(0, dash);
    }
  }
  return label;
}

bool MatchesModelPattern(std::string_view name) {
  // re.search(r"model.*\.(safetensors|bin|onnx|xml|pth|pt|ckpt|msgpack)$").
  constexpr std::array<std::string_view, 8> kExtensions = {
      ".safetensors", ".bin", ".onnx", ".xml",
      ".pth",         ".pt",  ".ckpt", ".msgpack"};
  std::size_t model = name.find("model");
  if (model == std::string_view::npos) return false;
  return std::any_of(
      kExtensions.begin(), kExtensions.end(), [&](std::string_view ext) {
        return EndsWith(name, ext) && name.size() - ext.size() >= model + 5;
      });
}

bool IsCandidate(std::string_view name) {
  constexpr std::array<std::string_view, 9> kEndings = {
      ".json",          ".txt",
      ".jinja",         "learned_embeds.bin",
      "ip_adapter.bin", "lora_weights.safetensors",
      "weights.pb",     "onnx_data",
      "spiece.model"};
  return std::any_of(
             kEndings.begin(), kEndings.end(),
             [&](std::string_view end) { return EndsWith(name, end); }) ||
         MatchesModelPattern(name);
}

bool UnderFolder(std::string_view path, std::string_view folder) {
  return path.size() > folder.size() + 1 &&
         path.substr(0, folder.size()) == folder && path[folder.size()] == '/';
}

std::string_view TrimSlashes(std::string_view text) {
  while (!text.empty() && text.front() == '/') text.remove_prefix(1);
  while (!text.empty() && text.back() == '/') text.remove_suffix(1);
  return text;
}

std::string JoinPlus(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& part : parts) {
    if (!out.empty()) out += '+';
    out += part;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Local paths.

std::string SafeComponent(std::string_view component) {
  if (component.empty() || component == "." || component == "..") return "_";
  std::string out(component);
  for (char& c : out) {
    auto byte = static_cast<unsigned char>(c);
    if (c == '/' || c == '\\' || byte < 0x20 || byte == 0x7F) c = '_';
  }
  return out;
}

std::string SafeRelative(std::string_view path) {
  std::string out;
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view segment = path.substr(start, end - start);
    if (!segment.empty()) {
      if (!out.empty()) out += '/';
      out += SafeComponent(segment);
    }
    start = end + 1;
  }
  return out.empty() ? "_" : out;
}

}  // namespace

absl::StatusOr<HfModelInfo> ParseHfModelInfo(std::string_view json_text) {
  if (json_text.size() > kMaxHfModelInfoBytes) {
    return Corrupt(absl::StrCat("it is ", json_text.size(),
                                " bytes, more than the limit of ",
                                kMaxHfModelInfoBytes));
  }
  if (std::optional<std::size_t> at = NestingTooDeepAt(json_text)) {
    return Corrupt(absl::StrCat("JSON nesting deeper than ",
                                kMaxHfModelInfoDepth, " levels at byte ", *at));
  }
  HfModelInfo info;
  try {
    json root = json::parse(json_text.begin(), json_text.end());
    RETURN_IF_ERROR(ParseTopLevel(root, info));
  } catch (const json::exception& e) {
    return Corrupt(
        absl::StrCat("not valid JSON (", SafeForMessage(e.what()), ")"));
  }
  info.raw_json = std::string(json_text);
  return info;
}

HfEndpoint HfEndpointFromEnvironment() {
  HfEndpoint endpoint;
  const char* value = std::getenv("HF_ENDPOINT");
  if (value == nullptr) return endpoint;
  std::string_view base = value;
  while (!base.empty() && base.back() == '/') base.remove_suffix(1);
  if (base.empty()) return endpoint;
  std::string lowered(base.substr(0, 8));
  for (char& c : lowered) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  bool has_space = std::any_of(base.begin(), base.end(), [](char c) {
    return static_cast<unsigned char>(c) <= 0x20 || c == 0x7F;
  });
  if ((lowered.rfind("http://", 0) != 0 && lowered.rfind("https://", 0) != 0) ||
      has_space) {
    MM_LOG(WARNING) << "ignoring HF_ENDPOINT=" << QuotedForMessage(value)
                    << ": not an http(s) URL; using " << kHfDefaultEndpoint
                    << " (set it like https://hf-mirror.example.com)";
    return endpoint;
  }
  endpoint.base = std::string(base);
  return endpoint;
}

std::string PercentEncode(std::string_view text, bool keep_slash) {
  constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                      (c >= '0' && c <= '9') || c == '-' || c == '.' ||
                      c == '_' || c == '~' || (keep_slash && c == '/');
    if (unreserved) {
      out += c;
    } else {
      out += '%';
      out += kHex[byte >> 4];
      out += kHex[byte & 0x0F];
    }
  }
  return out;
}

std::string ModelInfoUrl(const HfEndpoint& endpoint, std::string_view repo_id,
                         std::optional<std::string_view> revision) {
  std::string url = absl::StrCat(endpoint.base, "/api/models/",
                                 PercentEncode(repo_id, /*keep_slash=*/true));
  if (revision.has_value()) {
    absl::StrAppend(&url, "/revision/",
                    PercentEncode(*revision, /*keep_slash=*/false));
  }
  absl::StrAppend(&url, "?blobs=true");
  return url;
}

std::string ResolveUrl(const HfEndpoint& endpoint, std::string_view repo_id,
                       std::string_view revision, std::string_view rfilename) {
  if (revision.empty()) revision = "main";
  return absl::StrCat(endpoint.base, "/",
                      PercentEncode(repo_id, /*keep_slash=*/true), "/resolve/",
                      PercentEncode(revision, /*keep_slash=*/false), "/",
                      PercentEncode(rfilename, /*keep_slash=*/true));
}

absl::StatusOr<std::vector<HfFile>> SelectHfFiles(
    const std::vector<HfFile>& files, std::string_view variant,
    const std::vector<std::string>& subfolders) {
  if (!IsRepoVariant(variant)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "variant ", QuotedForMessage(variant),
        " is not a repo variant; use one of '' (default), fp16, fp32, onnx, "
        "openvino, flax"));
  }
  // Deduplicated and in path order, so the outcome does not depend on the
  // order the hub lists files in.
  std::vector<const HfFile*> sorted;
  sorted.reserve(files.size());
  for (const HfFile& file : files) sorted.push_back(&file);
  std::stable_sort(
      sorted.begin(), sorted.end(),
      [](const HfFile* a, const HfFile* b) { return a->path < b->path; });
  sorted.erase(std::unique(sorted.begin(), sorted.end(),
                           [](const HfFile* a, const HfFile* b) {
                             return a->path == b->path;
                           }),
               sorted.end());

  // Step 1: one file named by path.
  if (subfolders.size() == 1 && HasWeightSuffix(subfolders.front())) {
    std::string_view wanted = TrimSlashes(subfolders.front());
    for (const HfFile* file : sorted) {
      if (file->path == wanted) return std::vector<HfFile>{*file};
    }
    return absl::NotFoundError(absl::StrCat(
        "the repo has no file ", QuotedForMessage(wanted),
        "; check the path after '::' (it is case-sensitive and relative to "
        "the repo root)"));
  }

  // Steps 2 and 3: candidates, inside the subfolders.
  std::vector<std::string_view> folders;
  for (const std::string& folder : subfolders) {
    folders.push_back(TrimSlashes(folder));
  }
  std::vector<const HfFile*> candidates;
  for (const HfFile* file : sorted) {
    if (!IsCandidate(BaseName(file->path))) continue;
    if (!folders.empty() &&
        std::none_of(folders.begin(), folders.end(), [&](std::string_view f) {
          return UnderFolder(file->path, f);
        })) {
      continue;
    }
    candidates.push_back(file);
  }

  // Step 4: the variant filter.
  const bool weights_compete =
      variant.empty() || variant == "fp16" || variant == "fp32";
  std::set<const HfFile*> chosen;
  std::map<std::string_view, std::vector<const HfFile*>> weights_by_folder;
  for (const HfFile* file : candidates) {
    std::string_view name = BaseName(file->path);
    std::string_view suffix = Suffix(name);
    if (suffix == ".onnx" || suffix == ".pb" || suffix == ".onnx_data") {
      if (variant == "onnx") chosen.insert(file);
    } else if (Contains(name, "openvino_model")) {
      if (variant == "openvino") chosen.insert(file);
    } else if (Contains(name, "flax_model")) {
      if (variant == "flax") chosen.insert(file);
    } else if (suffix == ".json" || suffix == ".txt" || suffix == ".model" ||
               suffix == ".jinja") {
      chosen.insert(file);
    } else if (weights_compete &&
               (suffix == ".bin" || suffix == ".safetensors" ||
                suffix == ".pt" || suffix == ".ckpt")) {
      weights_by_folder[DirName(file->path)].push_back(file);
    }
  }
  const std::string wanted_label = absl::StrCat(".", AsAbsl(variant));
  for (auto& [folder, weights] : weights_by_folder) {
    bool has_safetensors =
        std::any_of(weights.begin(), weights.end(), [](const HfFile* f) {
          return Suffix(BaseName(f->path)) == ".safetensors";
        });
    if (has_safetensors) {
      weights.erase(std::remove_if(weights.begin(), weights.end(),
                                   [](const HfFile* f) {
                                     return Suffix(BaseName(f->path)) == ".bin";
                                   }),
                    weights.end());
    }
    bool has_fp16_label =
        std::any_of(weights.begin(), weights.end(), [](const HfFile* f) {
          return VariantLabel(BaseName(f->path)) == ".fp16";
        });
    if (!has_fp16_label) {
      // The folder does not follow the variant naming convention (e.g. an
      // unlabelled set of shards): keep every weight file.
      chosen.insert(weights.begin(), weights.end());
      continue;
    }
    const HfFile* best = nullptr;
    int best_score = -1;
    for (const HfFile* f : weights) {
      std::string_view name = BaseName(f->path);
      std::string_view label = VariantLabel(name);
      int score = Suffix(name) == ".safetensors" ? 1 : 0;
      if (label == wanted_label ||
          (label.empty() && (variant.empty() || variant == "fp32"))) {
        ++score;
      }
      if (score > best_score) {
        best = f;
        best_score = score;
      }
    }
    std::optional<ShardName> shard = ParseShard(BaseName(best->path));
    if (!shard.has_value()) {
      chosen.insert(best);
      continue;
    }
    for (const HfFile* f : weights) {
      if (ParseShard(BaseName(f->path)) == shard) chosen.insert(f);
    }
  }

  if ((variant == "onnx" || variant == "openvino" || variant == "flax") &&
      std::none_of(chosen.begin(), chosen.end(), [&](const HfFile* f) {
        return Contains(BaseName(f->path), variant);
      })) {
    return absl::NotFoundError(absl::StrCat(
        "no downloadable files for variant '", AsAbsl(variant), "'",
        folders.empty()
            ? ""
            : absl::StrCat(" in subfolder '", JoinPlus(subfolders), "'"),
        ": the repo has no ", AsAbsl(variant),
        " weights; pick another variant (e.g. owner/name or owner/name:fp16)"));
  }

  // Step 5: a config.json alone in its folder.
  std::map<std::string_view, int> per_folder;
  for (const HfFile* f : chosen) ++per_folder[DirName(f->path)];
  std::vector<HfFile> result;
  for (const HfFile* f : sorted) {
    if (chosen.count(f) == 0) continue;
    if (BaseName(f->path) == "config.json" &&
        per_folder[DirName(f->path)] == 1) {
      continue;
    }
    result.push_back(*f);
  }
  if (result.empty()) {
    if (!folders.empty()) {
      return absl::NotFoundError(absl::StrCat(
          "no downloadable files for variant '", AsAbsl(variant),
          "' in subfolder '", JoinPlus(subfolders),
          "': check the subfolder names against the repo's folders"));
    }
    return absl::NotFoundError(absl::StrCat(
        "no downloadable files for variant '", AsAbsl(variant),
        "': the repo has no config, text or diffusers-style weight files; to "
        "fetch a single checkpoint name it with owner/name::file.safetensors"));
  }
  return result;
}

absl::StatusOr<std::vector<HfFile>> SelectHfFiles(
    const std::vector<HfFile>& files, const HfRepoSource& source) {
  if (!source.file_path.empty()) {
    return SelectHfFiles(files, source.variant, {source.file_path});
  }
  return SelectHfFiles(files, source.variant, source.subfolders);
}

std::string HfLocalPath(std::string_view repo_id,
                        const std::vector<std::string>& subfolders,
                        std::string_view rfilename) {
  std::string name = SafeComponent(BaseName(TrimSlashes(repo_id)));
  if (subfolders.empty()) {
    return absl::StrCat(name, "/", SafeRelative(rfilename));
  }
  if (subfolders.size() == 1 && HasWeightSuffix(subfolders.front())) {
    return absl::StrCat(name, "_",
                        SafeComponent(BaseName(TrimSlashes(rfilename))));
  }
  std::string folder_tag;
  for (const std::string& folder : subfolders) {
    if (!folder_tag.empty()) folder_tag += '+';
    folder_tag += SafeComponent(BaseName(TrimSlashes(folder)));
  }
  std::string_view rest = rfilename;
  if (subfolders.size() == 1) {
    std::string_view folder = TrimSlashes(subfolders.front());
    if (UnderFolder(rfilename, folder)) {
      rest = rfilename.substr(folder.size() + 1);
    }
  }
  return absl::StrCat(name, "_", folder_tag, "/", SafeRelative(rest));
}

std::string HfLocalPath(const HfRepoSource& source,
                        std::string_view rfilename) {
  if (!source.file_path.empty()) {
    return HfLocalPath(source.repo_id, {source.file_path}, rfilename);
  }
  return HfLocalPath(source.repo_id, source.subfolders, rfilename);
}

}  // namespace mm::model
