// The requests of `mm download` and `mm downloads list|prune` built from
// the command line, checked before anything is sent: bad values are usage
// errors naming the flag (or the line of a --files list) and the value.
//
//   ASSIGN_OR_RETURN(v1::CreateDownloadRequest request,
//                    BuildCreateDownloadRequest(args, io.working_dir));
//
// Thread-safety: reentrant.
#ifndef MM_CLI_DOWNLOAD_REQUESTS_H_
#define MM_CLI_DOWNLOAD_REQUESTS_H_

#include <filesystem>
#include <string>

#include "absl/status/statusor.h"
#include "cli/cli.h"
#include "modelmanager/v1/downloader.pb.h"

namespace mm::cli {

// `mm download URL ...` (or `mm download --files LIST ...`, the files of
// LIST as one multi-file job) as the request, with --dest/--output made
// absolute against `working_dir` and the --token-file's token as
// access_token. Bad flag values and bad lines of LIST are usage errors; an
// unreadable token file or LIST is NOT_FOUND; a relative path with an empty
// `working_dir` is FAILED_PRECONDITION.
absl::StatusOr<modelmanager::v1::CreateDownloadRequest>
BuildCreateDownloadRequest(const ParsedArgs& args,
                           const std::filesystem::path& working_dir);

// `mm downloads list [--state STATE...]` as the first page's request. Each
// --state may also hold a comma-separated list.
absl::StatusOr<modelmanager::v1::ListDownloadsRequest>
BuildListDownloadsRequest(const ParsedArgs& args);

// `mm downloads prune [--before RFC3339]`.
absl::StatusOr<modelmanager::v1::PruneDownloadsRequest> BuildPruneRequest(
    const ParsedArgs& args);

// The URL's access token from --token-file (the file's first line), or ""
// without the flag. NOT_FOUND when the file cannot be read.
absl::StatusOr<std::string> ReadUrlAccessToken(const ParsedArgs& args);

}  // namespace mm::cli

#endif  // MM_CLI_DOWNLOAD_REQUESTS_H_
