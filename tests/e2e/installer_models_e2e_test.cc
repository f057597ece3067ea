// End to end (installer_harness.h): what the installer does to models
// already installed: DeleteModel (inside and outside the models folder,
// unconditionally), SyncModels (missing files reported, orphans registered
// when asked) and DownloadAndCache (one transfer, LRU eviction, the size
// bound).

#include <filesystem>
#include <string>
#include <vector>

#include "common/grpc_status.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "modelmanager/v1/installer.grpc.pb.h"
#include "tests/e2e/installer_harness.h"
#include "tests/testing/model_fixtures.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::e2e {
namespace {

namespace v1 = ::modelmanager::v1;
namespace fs = std::filesystem;
using ::mm::testing::ReadFile;
using ::mm::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

TEST_F(InstallerE2eTest, DeleteRemovesFilesInsideTheModelsFolderOnlyWhenAsked) {
  auto remove =
      [&](const std::string& key, bool files,
          bool always) -> absl::StatusOr<v1::DeleteInstalledModelResponse> {
    grpc::ClientContext context;
    SetDeadline(context, absl::Seconds(30));
    v1::DeleteInstalledModelRequest request;
    request.set_key(key);
    request.set_delete_files(files);
    request.set_unconditionally(always);
    v1::DeleteInstalledModelResponse response;
    RETURN_IF_ERROR(
        FromGrpcStatus(stub_->DeleteModel(&context, request, &response)));
    return response;
  };
  const fs::path a = dir_.path() / "a.safetensors";
  testing::WriteLoraSd1(a);
  ASSERT_OK_AND_ASSIGN(v1::InstallJob inside, Install(a.string()));
  const fs::path outside = dir_.path() / "keep" / "sd15.safetensors";
  testing::WriteSd1Checkpoint(outside);
  ASSERT_OK_AND_ASSIGN(v1::InstallJob in_place,
                       Install(outside.string(), /*inplace=*/true));
  ASSERT_EQ(in_place.state(), v1::INSTALL_STATE_COMPLETED);

  // delete: the record and models/<key>/.
  ASSERT_OK_AND_ASSIGN(auto removed, remove(inside.key(), true, false));
  EXPECT_THAT(removed.removed_paths(),
              ElementsAre((models_ / inside.key()).string()));
  EXPECT_FALSE(fs::exists(models_ / inside.key()));
  // delete of a file outside the models folder: only the record.
  ASSERT_OK_AND_ASSIGN(removed, remove(in_place.key(), true, false));
  EXPECT_THAT(removed.removed_paths(), IsEmpty());
  EXPECT_TRUE(fs::exists(outside));
  EXPECT_THAT(Records(), IsEmpty());
  EXPECT_THAT(remove(in_place.key(), true, false),
              StatusIs(absl::StatusCode::kNotFound));
  // unconditionally: the files wherever they are.
  ASSERT_OK_AND_ASSIGN(v1::InstallJob again,
                       Install(outside.string(), /*inplace=*/true));
  ASSERT_OK_AND_ASSIGN(removed, remove(again.key(), false, true));
  EXPECT_THAT(removed.removed_paths(), ElementsAre(outside.string()));
  EXPECT_FALSE(fs::exists(outside));
}

TEST_F(InstallerE2eTest, SyncReportsMissingFilesAndRegistersOrphansWhenAsked) {
  auto sync =
      [&](bool register_orphans) -> absl::StatusOr<v1::SyncModelsResponse> {
    grpc::ClientContext context;
    SetDeadline(context, absl::Seconds(30));
    v1::SyncModelsRequest request;
    request.set_register_orphans(register_orphans);
    v1::SyncModelsResponse response;
    RETURN_IF_ERROR(
        FromGrpcStatus(stub_->SyncModels(&context, request, &response)));
    return response;
  };
  const fs::path a = dir_.path() / "a.safetensors";
  testing::WriteLoraSd1(a);
  ASSERT_OK_AND_ASSIGN(v1::InstallJob gone, Install(a.string()));
  fs::remove_all(models_ / gone.key());
  testing::WriteSd1Checkpoint(models_ / "dropped" / "sd15.safetensors");

  ASSERT_OK_AND_ASSIGN(v1::SyncModelsResponse report, sync(false));
  EXPECT_THAT(report.missing_keys(), ElementsAre(gone.key()));
  EXPECT_THAT(report.orphan_paths(),
              ElementsAre((models_ / "dropped" / "sd15.safetensors").string()));
  EXPECT_THAT(report.registered_keys(), IsEmpty());
  EXPECT_EQ(Records().size(), 1u);  // missing files never delete a record

  ASSERT_OK_AND_ASSIGN(report, sync(true));
  ASSERT_EQ(report.registered_keys_size(), 1);
  ASSERT_OK_AND_ASSIGN(report, sync(false));
  EXPECT_THAT(report.orphan_paths(), IsEmpty());
  EXPECT_EQ(Records().size(), 2u);
}

TEST_F(InstallerE2eTest,
       DownloadAndCacheFetchesOnceAndEvictsTheLeastRecentlyUsed) {
  auto fetch = [&](const std::string& source)
      -> absl::StatusOr<v1::DownloadAndCacheResponse> {
    grpc::ClientContext context;
    SetDeadline(context, absl::Seconds(60));
    v1::DownloadAndCacheRequest request;
    request.set_source(source);
    v1::DownloadAndCacheResponse response;
    RETURN_IF_ERROR(
        FromGrpcStatus(stub_->DownloadAndCache(&context, request, &response)));
    return response;
  };
  // A cache of 2.5 files of this size.
  const std::string body = testing::LoraSd1Bytes();
  ASSERT_OK(RestartInstaller(
      {"--download-cache-size", std::to_string(body.size() * 5 / 2)}));
  for (const char* name :
       {"/c/one.safetensors", "/c/two.safetensors", "/c/three.safetensors"}) {
    web_->SetFile(name, {.body = body});
  }
  ASSERT_OK_AND_ASSIGN(auto one, fetch(web_->Url("/c/one.safetensors")));
  EXPECT_FALSE(one.cached());
  EXPECT_EQ(ReadFile(one.path()), body);
  EXPECT_THAT(one.path(), HasSubstr("/.download_cache/"));
  ASSERT_OK_AND_ASSIGN(auto again, fetch(web_->Url("/c/one.safetensors")));
  EXPECT_TRUE(again.cached());
  EXPECT_EQ(again.path(), one.path());
  EXPECT_EQ(web_->RequestsFor("/c/one.safetensors").size(), 1u);

  ASSERT_OK_AND_ASSIGN(auto two, fetch(web_->Url("/c/two.safetensors")));
  // One is used again, so two is the least recently used when three needs
  // room.
  ASSERT_OK(fetch(web_->Url("/c/one.safetensors")).status());
  ASSERT_OK_AND_ASSIGN(auto three, fetch(web_->Url("/c/three.safetensors")));
  EXPECT_TRUE(fs::exists(one.path()));
  EXPECT_FALSE(fs::exists(two.path()));
  EXPECT_TRUE(fs::exists(three.path()));

  // Larger than the whole cache.
  web_->SetFile("/c/huge.safetensors",
                {.body = std::string(body.size() * 3, 'x')});
  EXPECT_THAT(fetch(web_->Url("/c/huge.safetensors")),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("--download-cache-size")));
  EXPECT_TRUE(fs::exists(one.path()));
}

}  // namespace
}  // namespace mm::e2e
