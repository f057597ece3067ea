// The C++ client against an in-process loader service.
#include "services/loader/client/loaded_model.h"

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/client.h"
#include "common/server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/loader/loader_service.h"
#include "services/loader/model_loader.h"
#include "tests/loader/fake_records.h"
#include "tests/testing/model_fixtures.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::loader::client {
namespace {

namespace v1 = ::modelmanager::v1;
using ::mm::testing::FixtureByteSize;
using ::mm::testing::FixtureTensor;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class LoadedModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tensors_ = {{.name = "w", .dtype = "F32", .shape = {4, 100}},
                {.name = "b", .dtype = "F16", .shape = {5}}};
    std::mt19937 random(3);
    for (FixtureTensor& t : tensors_) {
      t.data.resize(FixtureByteSize(t));
      for (char& c : t.data) c = static_cast<char>(random());
    }
    testing::WriteSafetensors(dir_.path() / "m.safetensors", tensors_);
    records_.Put(TestRecord("k", "m.safetensors", "vae", "checkpoint"));
    loader_ = std::make_unique<ModelLoader>(
        ModelLoader::Options{.models_dir = dir_.path(),
                             .ram_budget_bytes = 1 << 20,
                             .records = &records_});
    service_ = std::make_unique<LoaderService>(loader_.get());
    ServerOptions options;
    options.listen = "unix:" + (dir_.path() / "loader.sock").string();
    ASSERT_OK_AND_ASSIGN(host_, ServiceHost::Start(options, {service_.get()},
                                                   {kLoaderServiceName}));
    host_->AddShutdownHook([this] { service_->Shutdown(); });
    ASSERT_OK_AND_ASSIGN(channel_, MakeChannel(host_->address(), {}));
  }
  void TearDown() override {
    host_->Shutdown(absl::Seconds(5));
    host_.reset();
    service_.reset();
    loader_.reset();
  }
  int Leases() {
    int leases = 0;
    v1::CacheStats stats = loader_->GetCacheStats();
    for (const v1::CachedModel& m : stats.models()) leases += m.leases();
    return leases;
  }

  TempDir dir_;
  std::vector<FixtureTensor> tensors_;
  FakeRecords records_;
  std::unique_ptr<ModelLoader> loader_;
  std::unique_ptr<LoaderService> service_;
  std::unique_ptr<ServiceHost> host_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(LoadedModelTest, SpansShowTheFilesBytesAndDestroyingReleases) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<LoadedModel> model,
                       LoadedModel::Load(channel_, {.key = "k"}));
  EXPECT_TRUE(model->lease_held());
  ASSERT_EQ(model->tensors().size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const TensorView& t = model->tensors()[i];
    EXPECT_EQ(t.name, tensors_[i].name);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(t.bytes.data()),
                          t.bytes.size()),
              tensors_[i].data);
  }
  EXPECT_THAT(model->Find("w")->shape, ElementsAre(4, 100));
  EXPECT_EQ(model->Find("nope"), nullptr);
  EXPECT_EQ(Leases(), 1);
  model.reset();
  // The destructor cancels and joins the stream's thread; the server
  // releases the lease on its own thread right after.
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Leases() != 0) {
    ASSERT_LT(absl::Now(), deadline);
    absl::SleepFor(absl::Milliseconds(5));
  }
}

TEST_F(LoadedModelTest, LoaderErrorsComeBackAsTheyAre) {
  EXPECT_THAT(
      LoadedModel::Load(channel_, {.key = "missing"}),
      StatusIs(absl::StatusCode::kNotFound, "unknown model key 'missing'"));
}

TEST_F(LoadedModelTest, LoaderShutdownEndsTheLease) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<LoadedModel> model,
                       LoadedModel::Load(channel_, {.key = "k"}));
  host_->Shutdown(absl::Seconds(5));
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (model->lease_held()) {
    ASSERT_LT(absl::Now(), deadline);
    absl::SleepFor(absl::Milliseconds(5));
  }
  // The mapping stays readable after the lease ended.
  EXPECT_EQ(model->tensors()[1].bytes.size(), 10u);
}

}  // namespace
}  // namespace mm::loader::client
