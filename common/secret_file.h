// Reading the small files servers and clients are configured with: PEM
// certificates and keys, and bearer tokens.
#ifndef MM_COMMON_SECRET_FILE_H_
#define MM_COMMON_SECRET_FILE_H_

#include <string>

#include "absl/status/statusor.h"

namespace mm {

// The whole file. NOT_FOUND naming `what` and the path when it cannot be
// read (missing, or no permission).
absl::StatusOr<std::string> ReadConfigFile(const std::string& path,
                                           const char* what);

// A bearer token: the file's text without trailing whitespace or newline.
// INVALID_ARGUMENT when nothing is left.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

}  // namespace mm

#endif  // MM_COMMON_SECRET_FILE_H_
