// What the C++ client does with a handle of a files-only submodel (a
// diffusers tokenizer folder): zero tensors, the side files in the handle,
// and the minimal region mapped like any other.
#include <memory>
#include <string>

#include "common/client.h"
#include "common/server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/loader/client/loaded_model.h"
#include "services/loader/load_plan.h"
#include "services/loader/loader_service.h"
#include "services/loader/model_loader.h"
#include "tests/loader/fake_records.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::loader::client {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::modelmanager::v1;
using ::mm::testing::TempDir;
using ::mm::testing::WriteFile;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

TEST(LoadedModelFilesTest, FilesOnlySubmodelHasNoTensorsAndItsFiles) {
  TempDir dir;
  fs::path model = dir.path() / "sd";
  WriteFile(model / "model_index.json", "{}");
  WriteFile(model / "tokenizer" / "merges.txt", "a b\n");
  WriteFile(model / "tokenizer" / "special_tokens_map.json", "{}");
  FakeRecords records;
  records.Put(TestRecord("k", "sd", "main", "diffusers"));
  ModelLoader loader({.models_dir = dir.path(),
                      .ram_budget_bytes = 1 << 20,
                      .records = &records});
  LoaderService service(&loader);
  ServerOptions options;
  options.listen = "unix:" + (dir.path() / "loader.sock").string();
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<ServiceHost> host,
      ServiceHost::Start(options, {&service}, {kLoaderServiceName}));
  host->AddShutdownHook([&service] { service.Shutdown(); });
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<grpc::Channel> channel,
                       MakeChannel(host->address(), {}));
  {
    ASSERT_OK_AND_ASSIGN(
        std::unique_ptr<LoadedModel> loaded,
        LoadedModel::Load(channel, {.key = "k", .submodel = "tokenizer"}));
    EXPECT_THAT(loaded->tensors(), IsEmpty());
    EXPECT_EQ(loaded->handle().total_bytes(),
              static_cast<int64_t>(kTensorAlignment));
    EXPECT_EQ(loaded->handle().cache_key(), "k:tokenizer");
    EXPECT_THAT(loaded->handle().files(),
                UnorderedElementsAre(Pair("merges.txt", "a b\n"),
                                     Pair("special_tokens_map.json", "{}")));
    EXPECT_TRUE(loaded->lease_held());
  }
  host->Shutdown(absl::Seconds(5));
}

}  // namespace
}  // namespace mm::loader::client
