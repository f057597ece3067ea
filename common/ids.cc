#include "common/ids.h"

#include <sys/random.h>

#include <array>
#include <cerrno>

#include "absl/strings/escaping.h"
#include "absl/strings/string_view.h"

namespace mm {

std::string NewResourceId() {
  std::array<unsigned char, 16> bytes{};
  size_t filled = 0;
  while (filled < bytes.size()) {
    // Blocks only before the kernel's pool is first seeded (early boot);
    // an interrupted or short read continues where it stopped.
    ssize_t n = ::getrandom(bytes.data() + filled, bytes.size() - filled, 0);
    if (n > 0) filled += static_cast<size_t>(n);
  }
  return absl::BytesToHexString(absl::string_view(
      reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

}  // namespace mm
