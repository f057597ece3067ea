#include "services/downloader/verifier.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "model/hashing.h"

namespace mm::downloader {
namespace {

constexpr std::string_view kVerificationError = "VerificationError";

JobError IoError(const FileCheck& check, absl::StatusCode code,
                 const std::string& message) {
  return JobError{code, std::string(kVerificationError),
                  absl::StrCat(check.display_path, ": ", message)};
}

}  // namespace

bool VerifyIsSlow(const FileCheck& check) {
  return check.sync ||
         (!check.expected_sha256.empty() && check.streamed_sha256.empty());
}

std::optional<JobError> VerifyFile(const FileCheck& check) {
  if (check.fd >= 0) {
    struct stat info;
    if (fstat(check.fd, &info) == 0 && check.total_bytes > 0 &&
        info.st_size != check.total_bytes &&
        ftruncate(check.fd, check.total_bytes) != 0) {
      return IoError(
          check, absl::StatusCode::kInternal,
          absl::StrCat("cannot size ", check.path, ": ", std::strerror(errno)));
    }
    // On disk before it is renamed into place and reported complete: a
    // crash after that must not leave a complete-looking file of zeros.
    if (check.sync && fdatasync(check.fd) != 0) {
      return IoError(
          check, absl::StatusCode::kInternal,
          absl::StrCat("cannot sync ", check.path, ": ", std::strerror(errno)));
    }
  }
  std::error_code ec;
  const auto size =
      static_cast<int64_t>(std::filesystem::file_size(check.path, ec));
  if (ec) {
    return IoError(
        check, absl::StatusCode::kInternal,
        absl::StrCat("cannot stat ", check.path, ": ", ec.message()));
  }
  if (check.expected_size > 0 && size != check.expected_size) {
    return JobError{absl::StatusCode::kDataLoss, "SizeMismatch",
                    absl::StrCat(check.display_path, ": received ", size,
                                 " bytes, expected ", check.expected_size)};
  }
  if (check.expected_sha256.empty()) return std::nullopt;
  std::string digest = check.streamed_sha256;
  if (digest.empty()) {
    model::HashOptions options;
    options.algorithm = model::HashAlgorithm::kSha256;
    absl::StatusOr<std::string> hash = model::HashFile(check.path, options);
    if (!hash.ok()) {
      return IoError(check, hash.status().code(),
                     std::string(hash.status().message()));
    }
    digest = hash->substr(hash->find(':') + 1);
  }
  if (digest != check.expected_sha256) {
    return JobError{
        absl::StatusCode::kDataLoss, "ChecksumMismatch",
        absl::StrCat(check.display_path, ": sha256 of the download is ", digest,
                     ", expected ", check.expected_sha256)};
  }
  return std::nullopt;
}

}  // namespace mm::downloader
