#include "services/installer/install_plan.h"

namespace mm::installer {

int64_t InstallPlan::TotalBytes() const {
  int64_t total = 0;
  for (const PlannedFile& file : files) {
    if (file.size <= 0) return 0;
    total += file.size;
  }
  return total;
}

modelmanager::v1::InstallPlan PlanToProto(const InstallPlan& plan) {
  modelmanager::v1::InstallPlan out;
  out.set_source(plan.source);
  out.set_source_type(plan.source_type);
  out.set_repo_id(plan.repo_id);
  out.set_revision(plan.revision);
  out.set_commit(plan.commit);
  out.set_variant(plan.variant);
  for (const std::string& subfolder : plan.subfolders) {
    out.add_subfolders(subfolder);
  }
  for (const PlannedFile& file : plan.files) {
    modelmanager::v1::PlannedFile* planned = out.add_files();
    planned->set_path(file.path);
    planned->set_url(file.url);
    planned->set_size(file.size);
    planned->set_sha256(file.sha256);
  }
  out.set_total_bytes(plan.TotalBytes());
  out.set_local_path(plan.local_path);
  return out;
}

modelmanager::v1::CreateDownloadRequest DownloadRequestFor(
    const InstallPlan& plan, const std::string& dest_dir,
    const std::string& token) {
  modelmanager::v1::CreateDownloadRequest request;
  request.set_dest_dir(dest_dir);
  request.set_access_token(token);
  if (plan.source_type == "url") {
    request.set_url(plan.files.front().url);
    return request;
  }
  for (const PlannedFile& file : plan.files) {
    modelmanager::v1::DownloadFile* out = request.add_files();
    out->set_url(file.url);
    out->set_relative_path(file.path);
    out->set_size(file.size);
    out->set_sha256(file.sha256);
  }
  return request;
}

std::filesystem::path DownloadedModelPath(
    const InstallPlan& plan, const modelmanager::v1::DownloadJob& download,
    const std::filesystem::path& dest_dir) {
  if (plan.source_type == "hf_repo_id") return dest_dir / plan.model_entry;
  return download.final_path();
}

}  // namespace mm::installer
