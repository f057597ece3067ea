#include "services/loader/model_cache.h"

#include <atomic>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"

namespace mm::loader {
namespace {

using ::mm::testing::FakeClock;
using ::mm::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A value that counts its own destruction.
class CountedValue : public CachedValue {
 public:
  explicit CountedValue(std::atomic<int>* destroyed) : destroyed_(destroyed) {}
  ~CountedValue() override { destroyed_->fetch_add(1); }

 private:
  std::atomic<int>* destroyed_;
};

class ModelCacheTest : public ::testing::Test {
 protected:
  ModelCache::Filler Fill() {
    return [this]() -> absl::StatusOr<std::shared_ptr<const CachedValue>> {
      fills_.fetch_add(1);
      return std::make_shared<CountedValue>(&destroyed_);
    };
  }
  static ModelCache::EntrySpec Spec(const std::string& key, uint64_t bytes) {
    return {.cache_key = key, .bytes = bytes, .model_key = key};
  }
  std::vector<std::string> Keys(const ModelCache& cache) {
    std::vector<std::string> keys;
    for (const auto& e : cache.GetStats().entries) {
      keys.push_back(e.spec.cache_key);
    }
    return keys;
  }

  FakeClock clock_;
  std::atomic<int> fills_{0};
  std::atomic<int> destroyed_{0};
};

TEST(CacheKeyTest, JoinsSubmodelAndDtype) {
  EXPECT_EQ(CacheKey("k", "", ""), "k");
  EXPECT_EQ(CacheKey("k", "vae", ""), "k:vae");
  EXPECT_EQ(CacheKey("k", "", "F16"), "k@F16");
  EXPECT_EQ(CacheKey("k", "unet", "BF16"), "k:unet@BF16");
}

TEST_F(ModelCacheTest, SecondAcquireIsAHitWithoutFilling) {
  ModelCache cache({.budget_bytes = 100, .clock = &clock_});
  ASSERT_OK_AND_ASSIGN(ModelCache::Lease first,
                       cache.Acquire(Spec("a", 10), Fill()));
  EXPECT_FALSE(first.hit());
  ASSERT_OK_AND_ASSIGN(ModelCache::Lease second,
                       cache.Acquire(Spec("a", 10), Fill()));
  EXPECT_TRUE(second.hit());
  EXPECT_EQ(first.value(), second.value());
  EXPECT_EQ(fills_.load(), 1);
  ModelCache::Stats stats = cache.GetStats();
  EXPECT_EQ(stats.hits, 1);
  EXPECT_EQ(stats.misses, 1);
  EXPECT_EQ(stats.used_bytes, 10u);
  ASSERT_EQ(stats.entries.size(), 1u);
  EXPECT_EQ(stats.entries[0].leases, 2);
  first.Release();
  second = ModelCache::Lease();
  EXPECT_EQ(cache.GetStats().entries[0].leases, 0);
  // Unleased entries stay cached.
  EXPECT_EQ(destroyed_.load(), 0);
}

TEST_F(ModelCacheTest, EvictsLeastRecentlyUsedUnleasedEntries) {
  ModelCache cache({.budget_bytes = 100, .clock = &clock_});
  for (const char* key : {"a", "b", "c"}) {
    ASSERT_OK(cache.Acquire(Spec(key, 30), Fill()).status());
    clock_.Advance(absl::Seconds(1));
  }
  // Touch "a": "b" becomes the least recently used.
  ASSERT_OK(cache.Acquire(Spec("a", 30), Fill()).status());
  clock_.Advance(absl::Seconds(1));
  ASSERT_OK(cache.Acquire(Spec("d", 30), Fill()).status());
  EXPECT_THAT(Keys(cache), ElementsAre("d", "a", "c"));
  EXPECT_EQ(destroyed_.load(), 1);
  clock_.Advance(absl::Seconds(1));
  // 70 bytes into 90 used of 100: "c" then "a" go, in that order, and
  // "d" (the most recent) stays.
  ASSERT_OK(cache.Acquire(Spec("e", 70), Fill()).status());
  EXPECT_THAT(Keys(cache), ElementsAre("e", "d"));
  ModelCache::Stats stats = cache.GetStats();
  EXPECT_EQ(stats.evictions, 3);
  EXPECT_EQ(stats.used_bytes, 100u);
  EXPECT_EQ(stats.high_watermark_bytes, 100u);
}

TEST_F(ModelCacheTest, LeasedEntriesAreNeverEvicted) {
  ModelCache cache({.budget_bytes = 100, .clock = &clock_});
  ASSERT_OK_AND_ASSIGN(ModelCache::Lease held,
                       cache.Acquire(Spec("held", 60), Fill()));
  clock_.Advance(absl::Seconds(1));
  ASSERT_OK(cache.Acquire(Spec("free", 30), Fill()).status());
  EXPECT_THAT(
      cache.Acquire(Spec("big", 50), Fill()),
      StatusIs(absl::StatusCode::kResourceExhausted,
               "big needs 50 bytes but the cache budget is 100 bytes, of "
               "which 60 bytes are held by open Load streams or loads in "
               "progress; end those streams or raise the budget "
               "(--ram-cache)"));
  // Nothing was evicted for a load that could not fit anyway.
  EXPECT_THAT(Keys(cache), ElementsAre("free", "held"));
  // 40 fits by evicting "free" only.
  ASSERT_OK(cache.Acquire(Spec("fits", 40), Fill()).status());
  EXPECT_THAT(Keys(cache), ElementsAre("fits", "held"));
}

TEST_F(ModelCacheTest, EntryLargerThanTheBudgetIsRefused) {
  ModelCache cache({.budget_bytes = 100, .clock = &clock_});
  EXPECT_THAT(cache.Acquire(Spec("huge", 101), Fill()),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("huge needs 101 bytes but the cache budget "
                                 "is 100 bytes")));
  EXPECT_EQ(fills_.load(), 0);
}

TEST_F(ModelCacheTest, FailedFillFreesItsBudgetAndIsRetried) {
  ModelCache cache({.budget_bytes = 100, .clock = &clock_});
  EXPECT_THAT(
      cache.Acquire(Spec("a", 90),
                    []() -> absl::StatusOr<std::shared_ptr<const CachedValue>> {
                      return absl::DataLossError("truncated");
                    }),
      StatusIs(absl::StatusCode::kDataLoss, "truncated"));
  EXPECT_EQ(cache.GetStats().used_bytes, 0u);
  EXPECT_TRUE(cache.GetStats().entries.empty());
  ASSERT_OK_AND_ASSIGN(ModelCache::Lease lease,
                       cache.Acquire(Spec("a", 90), Fill()));
  EXPECT_FALSE(lease.hit());
}

TEST_F(ModelCacheTest, ConcurrentAcquiresOfOneEntryFillOnce) {
  ModelCache cache({.budget_bytes = 100, .clock = &clock_});
  constexpr int kClients = 10;
  absl::Notification release_fill;
  std::atomic<int> fills{0};
  auto slow_fill = [&]() -> absl::StatusOr<std::shared_ptr<const CachedValue>> {
    fills.fetch_add(1);
    release_fill.WaitForNotification();
    return std::make_shared<CountedValue>(&destroyed_);
  };
  std::vector<ModelCache::Lease> leases(kClients);
  std::vector<absl::Status> statuses(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      absl::StatusOr<ModelCache::Lease> lease =
          cache.Acquire(Spec("m", 50), slow_fill);
      statuses[i] = lease.status();
      if (lease.ok()) leases[i] = *std::move(lease);
    });
  }
  // Wait (with a deadline) until one caller fills and nine wait for it.
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  for (;;) {
    ModelCache::Stats stats = cache.GetStats();
    if (!stats.entries.empty() && stats.entries[0].waiters == kClients - 1) {
      break;
    }
    ASSERT_LT(absl::Now(), deadline) << "the callers never all waited";
    std::this_thread::yield();
  }
  release_fill.Notify();
  for (std::thread& t : threads) t.join();
  int misses = 0;
  for (int i = 0; i < kClients; ++i) {
    ASSERT_OK(statuses[i]);
    if (!leases[i].hit()) ++misses;
  }
  EXPECT_EQ(fills.load(), 1);
  EXPECT_EQ(misses, 1);
  ModelCache::Stats stats = cache.GetStats();
  EXPECT_EQ(stats.hits, kClients - 1);
  EXPECT_EQ(stats.entries[0].leases, kClients);
  EXPECT_EQ(stats.entries[0].waiters, 0);
}

TEST_F(ModelCacheTest, WaitersGetTheFillersError) {
  ModelCache cache({.budget_bytes = 100, .clock = &clock_});
  absl::Notification release_fill;
  auto failing_fill =
      [&]() -> absl::StatusOr<std::shared_ptr<const CachedValue>> {
    release_fill.WaitForNotification();
    return absl::NotFoundError("model not found on disk");
  };
  absl::Status first_status;
  std::thread first([&] {
    first_status = cache.Acquire(Spec("m", 50), failing_fill).status();
  });
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (cache.GetStats().entries.empty()) {
    ASSERT_LT(absl::Now(), deadline);
    std::this_thread::yield();
  }
  absl::Status waiter_status;
  std::thread waiter(
      [&] { waiter_status = cache.Acquire(Spec("m", 50), Fill()).status(); });
  for (;;) {
    ModelCache::Stats stats = cache.GetStats();
    if (!stats.entries.empty() && stats.entries[0].waiters == 1) break;
    ASSERT_LT(absl::Now(), deadline);
    std::this_thread::yield();
  }
  release_fill.Notify();
  first.join();
  waiter.join();
  EXPECT_THAT(first_status,
              StatusIs(absl::StatusCode::kNotFound, "model not found on disk"));
  EXPECT_THAT(waiter_status,
              StatusIs(absl::StatusCode::kNotFound, "model not found on disk"));
  EXPECT_EQ(fills_.load(), 0);
}

TEST_F(ModelCacheTest, UnloadRefusesLeasedAndUnknownEntries) {
  ModelCache cache({.budget_bytes = 100, .clock = &clock_});
  EXPECT_THAT(cache.Unload("nope"),
              StatusIs(absl::StatusCode::kNotFound,
                       "nope is not in the cache (see mm ps)"));
  ASSERT_OK_AND_ASSIGN(ModelCache::Lease lease,
                       cache.Acquire(Spec("a", 40), Fill()));
  EXPECT_THAT(cache.Unload("a"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "a is held by 1 open Load stream(s); it can be "
                       "unloaded once they end"));
  lease.Release();
  ASSERT_OK_AND_ASSIGN(uint64_t freed, cache.Unload("a"));
  EXPECT_EQ(freed, 40u);
  EXPECT_EQ(destroyed_.load(), 1);
  EXPECT_EQ(cache.GetStats().used_bytes, 0u);
}

TEST_F(ModelCacheTest, InvalidatedLeasedEntryGoesWhenItsLastLeaseEnds) {
  ModelCache cache({.budget_bytes = 100, .clock = &clock_});
  ASSERT_OK_AND_ASSIGN(ModelCache::Lease old_lease,
                       cache.Acquire(Spec("a", 40), Fill()));
  ASSERT_OK(cache.Acquire(Spec("other", 10), Fill()).status());
  EXPECT_EQ(cache.InvalidateModel("a"), 1);
  // A new Acquire loads afresh; the old entry still counts until released.
  ASSERT_OK_AND_ASSIGN(ModelCache::Lease new_lease,
                       cache.Acquire(Spec("a", 40), Fill()));
  EXPECT_FALSE(new_lease.hit());
  EXPECT_NE(new_lease.value(), old_lease.value());
  EXPECT_EQ(cache.GetStats().used_bytes, 90u);
  EXPECT_EQ(destroyed_.load(), 0);
  old_lease.Release();
  EXPECT_EQ(destroyed_.load(), 1);
  EXPECT_EQ(cache.GetStats().used_bytes, 50u);
  // An unleased entry goes at once.
  EXPECT_EQ(cache.InvalidateModel("other"), 1);
  EXPECT_EQ(destroyed_.load(), 2);
}

TEST_F(ModelCacheTest, InvalidateModelIfDropsOnlyStaleEntries) {
  ModelCache cache({.budget_bytes = 100, .clock = &clock_});
  ModelCache::EntrySpec a = Spec("m", 10);
  ModelCache::EntrySpec b = Spec("m:vae", 10);
  b.model_key = "m";
  ASSERT_OK_AND_ASSIGN(ModelCache::Lease la, cache.Acquire(a, Fill()));
  ASSERT_OK(cache.Acquire(b, Fill()).status());
  const CachedValue* stale_value = la.value().get();
  la.Release();
  EXPECT_EQ(
      cache.InvalidateModelIf(
          "m", [&](const CachedValue& value) { return &value == stale_value; }),
      1);
  EXPECT_THAT(Keys(cache), ElementsAre("m:vae"));
  EXPECT_EQ(
      cache.InvalidateModelIf("other", [](const CachedValue&) { return true; }),
      0);
}

TEST_F(ModelCacheTest, KeepAliveDropsIdleUnleasedEntries) {
  ModelCache cache(
      {.budget_bytes = 100, .keep_alive = absl::Minutes(5), .clock = &clock_});
  ASSERT_OK(cache.Acquire(Spec("idle", 10), Fill()).status());
  ASSERT_OK_AND_ASSIGN(ModelCache::Lease held,
                       cache.Acquire(Spec("held", 10), Fill()));
  clock_.Advance(absl::Minutes(4));
  EXPECT_EQ(cache.ExpireIdle(), 0);
  clock_.Advance(absl::Minutes(1));
  EXPECT_EQ(cache.ExpireIdle(), 1);
  EXPECT_THAT(Keys(cache), ElementsAre("held"));
  // Idle time counts from the end of the last lease.
  held.Release();
  clock_.Advance(absl::Minutes(4));
  EXPECT_EQ(cache.ExpireIdle(), 0);
  clock_.Advance(absl::Minutes(1));
  EXPECT_EQ(cache.ExpireIdle(), 1);
}

TEST_F(ModelCacheTest, KeepAliveZeroKeepsEntries) {
  ModelCache cache({.budget_bytes = 100, .clock = &clock_});
  ASSERT_OK(cache.Acquire(Spec("a", 10), Fill()).status());
  clock_.Advance(absl::Hours(1000));
  EXPECT_EQ(cache.ExpireIdle(), 0);
}

// Many threads acquiring, releasing, unloading and invalidating a few keys
// under a budget that forces eviction: for TSan, and for the accounting.
TEST_F(ModelCacheTest, ConcurrentUseKeepsTheBudget) {
  ModelCache cache({.budget_bytes = 100});
  std::vector<std::thread> threads;
  std::atomic<bool> over_budget{false};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 random(t);
      for (int i = 0; i < 300; ++i) {
        std::string key = std::string(1, static_cast<char>('a' + random() % 6));
        switch (random() % 8) {
          case 0:
            (void)cache.Unload(key);
            break;
          case 1:
            cache.InvalidateModel(key);
            break;
          default: {
            absl::StatusOr<ModelCache::Lease> lease =
                cache.Acquire(Spec(key, 30), Fill());
            if (cache.GetStats().used_bytes > 100) over_budget = true;
            break;
          }
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_FALSE(over_budget.load());
  ModelCache::Stats stats = cache.GetStats();
  uint64_t sum = 0;
  for (const auto& e : stats.entries) {
    EXPECT_EQ(e.leases, 0);
    sum += e.spec.bytes;
  }
  EXPECT_EQ(stats.used_bytes, sum);
  EXPECT_EQ(fills_.load() - destroyed_.load(),
            static_cast<int>(stats.entries.size()));
}

}  // namespace
}  // namespace mm::loader
