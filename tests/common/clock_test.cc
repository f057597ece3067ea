#include "common/clock.h"

#include <atomic>
#include <thread>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"

namespace mm {
namespace {

using ::mm::testing::FakeClock;

TEST(RealClockTest, FollowsTheSystemClock) {
  const absl::Time before = absl::Now();
  const absl::Time now = RealClock()->Now();
  EXPECT_GE(now, before);
  EXPECT_LE(now, absl::Now());
}

TEST(RealClockTest, SleepUntilAPastDeadlineReturnsAtOnce) {
  const absl::Time start = absl::Now();
  RealClock()->SleepUntil(start - absl::Hours(1));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

TEST(FakeClockTest, StandsStillUntilAdvanced) {
  FakeClock clock(absl::FromUnixSeconds(1000));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(1000));
  clock.Advance(absl::Seconds(15));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(1015));
  clock.SetTime(absl::FromUnixSeconds(900));  // never backwards
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(1015));
  clock.SetTime(absl::FromUnixSeconds(2000));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(2000));
}

TEST(FakeClockTest, SleeperWakesOnlyWhenTimeReachesItsDeadline) {
  FakeClock clock;
  const absl::Time deadline = clock.Now() + absl::Seconds(30);
  std::atomic<bool> woke{false};
  std::thread sleeper([&] {
    clock.SleepUntil(deadline);
    woke = true;
  });
  ASSERT_TRUE(clock.AwaitSleepers(1, absl::Seconds(30)));
  clock.Advance(absl::Seconds(29));
  // Still parked: the deadline is one fake second away.
  EXPECT_TRUE(clock.AwaitSleepers(1, absl::ZeroDuration()));
  EXPECT_FALSE(woke);
  clock.Advance(absl::Seconds(1));
  sleeper.join();
  EXPECT_TRUE(woke);
  EXPECT_EQ(clock.sleepers(), 0);
}

TEST(FakeClockTest, SleepForIsRelativeToFakeTime) {
  FakeClock clock;
  clock.Advance(absl::Hours(1));
  std::thread sleeper([&] { clock.SleepFor(absl::Minutes(5)); });
  ASSERT_TRUE(clock.AwaitSleepers(1, absl::Seconds(30)));
  clock.Advance(absl::Minutes(5));
  sleeper.join();
  EXPECT_EQ(clock.sleepers(), 0);
}

}  // namespace
}  // namespace mm
