// The property every model fuzzer adds: a message built from the input
// (an error, or a finding of a successful read) is printable UTF-8 of
// bounded length, so hostile files cannot put raw bytes or terminal escapes
// into stderr, gRPC statuses or JSON output. Traps otherwise.
#ifndef MM_TESTS_FUZZ_MESSAGE_CHECK_H_
#define MM_TESTS_FUZZ_MESSAGE_CHECK_H_

#include <cstddef>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/strings.h"

namespace mm::fuzz {

// Longer than any reader's message: a few quoted names of at most 200 bytes
// with the advice around them.
inline constexpr size_t kMaxMessageBytes = 4096;

inline void CheckMessage(std::string_view message) {
  if (message.size() > kMaxMessageBytes || !IsValidUtf8(message)) {
    __builtin_trap();
  }
  for (char c : message) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7F) __builtin_trap();
  }
}

inline void CheckMessage(const absl::Status& status) {
  CheckMessage(AsStd(status.message()));
}

}  // namespace mm::fuzz

#endif  // MM_TESTS_FUZZ_MESSAGE_CHECK_H_
