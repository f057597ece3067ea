// What an install will fetch and from where (PlanInstall, and the first step
// of every remote install): a parsed source resolved against the hub or a
// URL into a list of files with their sizes and expected SHA-256.
//
// Thread-safety: plain values.
#ifndef MM_SERVICES_INSTALLER_INSTALL_PLAN_H_
#define MM_SERVICES_INSTALLER_INSTALL_PLAN_H_

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "modelmanager/v1/downloader.pb.h"
#include "modelmanager/v1/installer.pb.h"

namespace mm::installer {

struct PlannedFile {
  // Where it lands, relative to the download folder (spec §6.2); empty for
  // a URL whose file name the server decides (Content-Disposition).
  std::string path;
  std::string url;
  int64_t size = 0;    // 0 = unknown
  std::string sha256;  // lowercase hex; empty = unknown
};

struct InstallPlan {
  // The source as normalised, and "path", "url" or "hf_repo_id".
  std::string source;
  std::string source_type;
  // Hugging Face sources.
  std::string repo_id;
  std::string revision;  // "main", or the variant's branch
  std::string commit;    // what the revision resolved to ("" if unknown)
  std::string variant;
  std::vector<std::string> subfolders;
  std::vector<std::string> tags;
  // The model-info response as received (stored in the record's
  // source_api_response).
  std::string api_response;
  // The files to fetch (none for a local source).
  std::vector<PlannedFile> files;
  // A local source: its absolute path.
  std::string local_path;
  // Remote sources: the model's top-level entry in the download folder
  // (its first path component, e.g. "sdxl-vae" or "sdxl-vae_vae"); empty
  // when the URL's server names the file.
  std::string model_entry;

  // The sum of the sizes; 0 when any is unknown.
  int64_t TotalBytes() const;
};

modelmanager::v1::InstallPlan PlanToProto(const InstallPlan& plan);

// The downloader job that fetches the plan's files into `dest_dir`: the one
// URL of a URL source (the server names the file), else one multi-file job
// with each file's size and SHA-256.
modelmanager::v1::CreateDownloadRequest DownloadRequestFor(
    const InstallPlan& plan, const std::string& dest_dir,
    const std::string& token);

// Where the model is once the plan's download into `dest_dir` succeeded:
// a repo's model entry under it, or the one file of a URL where the
// downloader put it (the server may have named it).
std::filesystem::path DownloadedModelPath(
    const InstallPlan& plan, const modelmanager::v1::DownloadJob& download,
    const std::filesystem::path& dest_dir);

}  // namespace mm::installer

#endif  // MM_SERVICES_INSTALLER_INSTALL_PLAN_H_
