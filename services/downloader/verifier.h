// The last check of a downloaded file before it is renamed into place: the
// size it must have, the SHA-256 it must hash to, and (with sync) its data
// on disk first. Also used on a file already at the destination with the
// expected size, to skip downloading it again.
//
//   FileCheck check{.path = partial, .display_path = final_path, ...};
//   if (std::optional<JobError> error = VerifyFile(check)) Fail(*error);
//
// Thread-safety: VerifyFile may run on any thread; it touches only the file
// and the descriptor it is given.
#ifndef MM_SERVICES_DOWNLOADER_VERIFIER_H_
#define MM_SERVICES_DOWNLOADER_VERIFIER_H_

#include <cstdint>
#include <optional>
#include <string>

#include "services/downloader/job.h"

namespace mm::downloader {

struct FileCheck {
  // The file read (the partial file, or the existing final file).
  std::string path;
  // The name errors mention: the final path the user asked for.
  std::string display_path;
  // The open partial file, or -1 for an existing file: then nothing is
  // truncated or synced.
  int fd = -1;
  // The size the transfer found (0 = unknown). A pre-allocated partial file
  // larger than this is cut to it.
  int64_t total_bytes = 0;
  int64_t expected_size = 0;    // 0 = no expectation
  std::string expected_sha256;  // lowercase hex; empty = no expectation
  // The digest computed while the bytes streamed in, when every byte went
  // through it; empty: the file is read back to hash it.
  std::string streamed_sha256;
  // fdatasync the descriptor first (EngineOptions::sync_files).
  bool sync = false;
};

// Whether VerifyFile can block long (a sync or reading the whole file
// back): then it belongs on its own thread, not the job thread.
bool VerifyIsSlow(const FileCheck& check);

// nullopt when the file passes. Otherwise the failure as data: DATA_LOSS
// "SizeMismatch" or "ChecksumMismatch", or "VerificationError" with the
// code of the I/O error (INTERNAL, NOT_FOUND, ...). Messages start with
// display_path.
std::optional<JobError> VerifyFile(const FileCheck& check);

}  // namespace mm::downloader

#endif  // MM_SERVICES_DOWNLOADER_VERIFIER_H_
