// libFuzzer target for ParseModelSource / FormatModelSource: any input must
// either be refused with an error or parse to a value that formats to a
// string parsing back to the same value, with safe download paths. Error
// messages must be printable UTF-8 (message_check.h).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include "model/huggingface.h"
#include "model/source.h"
#include "tests/fuzz/message_check.h"

namespace {

// A fake filesystem, so the fuzzer reaches the local-path branch without
// touching the disk: paths under "/exists/" exist.
bool FakeExists(std::string_view path) {
  return path.substr(0, 8) == "/exists/";
}

// A path a download may be written to: relative, no "." or ".." component.
bool IsSafeRelative(std::string_view path) {
  if (path.empty() || path.front() == '/') return false;
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view segment = path.substr(start, end - start);
    if (segment.empty() || segment == "." || segment == ".." ||
        segment.find('\\') != std::string_view::npos) {
      return false;
    }
    start = end + 1;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mm::model;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<ModelSource> first = ParseModelSource(text, FakeExists);
  if (!first.ok()) {
    mm::fuzz::CheckMessage(first.status());
    if (first.status().message().empty()) std::abort();
    return 0;
  }
  std::string formatted = FormatModelSource(*first);
  absl::StatusOr<ModelSource> second = ParseModelSource(formatted, FakeExists);
  if (!second.ok() || !(*second == *first)) std::abort();
  if (SourceTypeName(*first).empty()) std::abort();
  if (const auto* repo = std::get_if<HfRepoSource>(&*first)) {
    for (std::string_view file :
         {std::string_view("config.json"), std::string_view(repo->file_path),
          std::string_view("../x"), std::string_view(text)}) {
      if (!IsSafeRelative(HfLocalPath(*repo, file))) std::abort();
    }
    HfEndpoint hub;
    std::string url = ResolveUrl(hub, repo->repo_id, "main", "a b.json");
    if (url.find(' ') != std::string::npos) std::abort();
  }
  return 0;
}
