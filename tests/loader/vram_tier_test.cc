// The VRAM tier's policy on a host-memory fake device: a TIER_VRAM load is
// a device copy of the RAM entry, unleased entries are moved out smallest
// first, leased ones never, and a load that cannot fit is
// RESOURCE_EXHAUSTED.
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/loader/model_loader.h"
#include "tests/loader/fake_device.h"
#include "tests/loader/fake_records.h"
#include "tests/testing/model_fixtures.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::loader {
namespace {

namespace v1 = ::modelmanager::v1;
using ::mm::testing::FixtureByteSize;
using ::mm::testing::FixtureTensor;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class VramTierTest : public ::testing::Test {
 protected:
  void Init(uint64_t vram_budget) {
    loader_ = std::make_unique<ModelLoader>(
        ModelLoader::Options{.models_dir = dir_.path(),
                             .ram_budget_bytes = 1 << 20,
                             .records = &records_,
                             .device = &device_,
                             .vram_budget_bytes = vram_budget});
  }
  // A model of `floats` F32 values (region: floats * 4 rounded up to 64).
  std::string Add(const std::string& key, int floats) {
    FixtureTensor t{.name = "w", .dtype = "F32", .shape = {floats}};
    std::mt19937 random(floats);
    t.data.resize(FixtureByteSize(t));
    for (char& c : t.data) c = static_cast<char>(random());
    testing::WriteSafetensors(dir_.path() / (key + ".safetensors"), {t});
    records_.Put(TestRecord(key, key + ".safetensors", "vae", "checkpoint"));
    return t.data;
  }
  absl::StatusOr<ModelLoader::Loaded> LoadVram(const std::string& key) {
    v1::LoadRequest request;
    request.set_key(key);
    request.set_tier(v1::TIER_VRAM);
    return loader_->Load(request, {});
  }
  std::vector<std::string> VramKeys() {
    std::vector<std::string> keys;
    v1::CacheStats stats = loader_->GetCacheStats();
    for (const v1::CachedModel& m : stats.models()) {
      if (m.tier() == v1::TIER_VRAM) keys.push_back(m.cache_key());
    }
    return keys;
  }

  TempDir dir_;
  FakeRecords records_;
  FakeDevice device_{1 << 20};
  std::unique_ptr<ModelLoader> loader_;
};

TEST_F(VramTierTest, HandleNamesADeviceCopyOfTheFile) {
  Init(4096);
  std::string data = Add("a", 100);
  ASSERT_OK_AND_ASSIGN(ModelLoader::Loaded loaded, LoadVram("a"));
  EXPECT_EQ(loaded.handle.tier(), v1::TIER_VRAM);
  EXPECT_EQ(loaded.handle.cuda_ipc_handle().size(), 64u);
  EXPECT_TRUE(loaded.handle.shm_name().empty());
  EXPECT_EQ(loaded.handle.total_bytes(), 448);
  ASSERT_EQ(loaded.handle.tensors_size(), 1);
  const void* address = nullptr;
  std::memcpy(&address, loaded.handle.cuda_ipc_handle().data(),
              sizeof(address));
  EXPECT_EQ(std::string(static_cast<const char*>(address), data.size()), data);
  // A second load is a hit: no new device allocation.
  ASSERT_OK_AND_ASSIGN(ModelLoader::Loaded again, LoadVram("a"));
  EXPECT_TRUE(again.lease.hit());
  EXPECT_EQ(device_.allocations(), 1);
  v1::CacheStats stats = loader_->GetCacheStats();
  EXPECT_EQ(stats.vram_budget_bytes(), 4096);
  EXPECT_EQ(stats.vram_used_bytes(), 448);
}

TEST_F(VramTierTest, UnleasedEntriesMoveOutSmallestFirst) {
  Init(2048);
  Add("big", 240);                        // 960 bytes
  Add("small", 100);                      // 448
  Add("new", 200);                        // 832
  ASSERT_OK(LoadVram("big").status());    // least recently used
  ASSERT_OK(LoadVram("small").status());  // smallest
  // 960 + 448 + 832 > 2048: "small" goes although "big" is older.
  ASSERT_OK(LoadVram("new").status());
  EXPECT_THAT(VramKeys(), ElementsAre("new", "big"));
  EXPECT_EQ(device_.used(), 960u + 832u);
}

TEST_F(VramTierTest, LeasedEntriesStayAndAFullTierIsResourceExhausted) {
  Init(1500);
  Add("held", 240);   // 960
  Add("other", 200);  // 832
  ASSERT_OK_AND_ASSIGN(ModelLoader::Loaded held, LoadVram("held"));
  EXPECT_THAT(LoadVram("other").status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("other needs 832 bytes but the cache budget "
                                 "is 1500 bytes, of which 960 bytes are held "
                                 "by open Load streams or loads in progress; "
                                 "end those streams or raise the budget "
                                 "(--vram-cache)")));
  EXPECT_THAT(VramKeys(), ElementsAre("held"));
  held.lease.Release();
  ASSERT_OK(LoadVram("other").status());
  EXPECT_THAT(VramKeys(), ElementsAre("other"));
}

TEST_F(VramTierTest, NoDeviceIsFailedPrecondition) {
  ModelLoader loader(
      {.models_dir = dir_.path(),
       .ram_budget_bytes = 1 << 20,
       .records = &records_,
       .vram_unavailable = absl::FailedPreconditionError("no CUDA here")});
  Add("a", 10);
  v1::LoadRequest request;
  request.set_key("a");
  request.set_tier(v1::TIER_VRAM);
  EXPECT_THAT(loader.Load(request, {}),
              StatusIs(absl::StatusCode::kFailedPrecondition, "no CUDA here"));
}

TEST_F(VramTierTest, WrongDeviceOrdinalIsFailedPrecondition) {
  Init(4096);
  Add("a", 10);
  v1::LoadRequest request;
  request.set_key("a");
  request.set_tier(v1::TIER_VRAM);
  request.set_device(3);
  EXPECT_THAT(loader_->Load(request, {}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "device: this loader serves CUDA device 0, not 3"));
}

}  // namespace
}  // namespace mm::loader
