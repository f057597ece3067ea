// install_plan.h: where a finished download of a plan leaves the model.
#include "services/installer/install_plan.h"

#include <filesystem>

#include "gtest/gtest.h"

namespace mm::installer {
namespace {

namespace fs = std::filesystem;

TEST(InstallPlanTest, ARepoModelIsItsEntryInTheDownloadFolder) {
  InstallPlan plan;
  plan.source_type = "hf_repo_id";
  plan.model_entry = "sdxl-base_vae";
  modelmanager::v1::DownloadJob download;
  // A multi-file job's final path is its folder, not the model.
  download.set_final_path("/models/tmpinstall_1");
  EXPECT_EQ(DownloadedModelPath(plan, download, "/models/tmpinstall_1"),
            fs::path("/models/tmpinstall_1/sdxl-base_vae"));
}

TEST(InstallPlanTest, AUrlModelIsTheFileTheDownloaderNamed) {
  InstallPlan plan;
  plan.source_type = "url";
  modelmanager::v1::DownloadJob download;
  download.set_final_path("/models/tmpinstall_1/named-by-server.safetensors");
  EXPECT_EQ(DownloadedModelPath(plan, download, "/models/tmpinstall_1"),
            fs::path("/models/tmpinstall_1/named-by-server.safetensors"));
}

}  // namespace
}  // namespace mm::installer
